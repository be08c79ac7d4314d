#include "check.h"

#include <cmath>
#include <cstdio>
#include <new>
#include <string>

#include "checked_math.h"
#include "mpsb/kinds.h"
#include "mpsb_text.h"
#include "mpsbc/layout.h"
#include "mpsbc/precision.h"
#include "mpsbc/reference.h"
#include "tensor_files.h"

namespace mpsbc {
namespace {

std::string sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  return "[" + mpsb::text::shape_text(shape, "x") + "]";
}

bool load(const std::filesystem::path& path, const std::vector<uint64_t>& shape, FeatureMap* out,
          std::string* error) {
  out->shape = shape;
  try {
    return read_floats(path, *checked_product(shape), &out->data, error);
  } catch (const std::bad_alloc&) {
    *error = "out of memory reading " + path.string() + " " + shape_text(shape);
    return false;
  }
}

// The precision a bundle stores a layer's weight at, as --check's default
// tolerance depends on it (vectors-only layers count as float32).
Precision stored_precision(const mpsb::Layer& layer) {
  const auto w = layer.find(mpsb::TensorRole::kWeight);
  if (!w || !mpsb::kind_spec(layer.kind()).precision) {
    return Precision::kFloat32;
  }
  switch (layer.quantization()) {
    case mpsb::Quantization::kLinear:
      return Precision::kUInt8Linear;
    case mpsb::Quantization::kLookupTable:
      return Precision::kUInt8Lut;
    case mpsb::Quantization::kNone:
      break;
  }
  return w->dtype() == mpsb::DType::kFloat16 ? Precision::kFloat16 : Precision::kFloat32;
}

// Why a layer of the manifest is not in the bundle, when the bundle says:
// "; it was folded into conv1 (--fold-batchnorm), but this manifest's
// batch norm follows conv2".
std::string folded_into(const mpsb::Bundle& bundle, const ManifestLayer& l) {
  for (size_t i = 0; i < bundle.layer_count(); ++i) {
    const mpsb::Layer other = bundle.layer(i);
    if (other.folded_batchnorm() != l.name) continue;
    std::string why = "; it was folded into " + std::string(other.name()) + " (--fold-batchnorm)";
    if (l.kind != mpsb::LayerKind::kBatchNorm2d) {
      why += ", but in this manifest it is a " + std::string(mpsb::to_string(l.kind));
    } else if (l.follows != other.name()) {
      why += ", but in this manifest it follows " +
             (l.follows.empty() ? std::string("no conv") : "\"" + l.follows + "\"");
    }
    return why;
  }
  return {};
}

// One layer on its probe: the output shape first, so a layer whose output
// would differ from the probe's is reported without computing (or
// allocating) anything and the reference never needs more memory than the
// probe holds; then the reference and the comparison. `folded_from` names
// the batch norm folded into the layer, for the message.
bool check_layer(const mpsb::Layer& layer, LayerCheck c, const std::string& folded_from,
                 const std::string& pointer, const FeatureMap& input, const FeatureMap& want,
                 Diagnostics& diag, std::vector<LayerCheck>* checks) {
  const std::string& name = c.layer;
  const auto shape = reference_output_shape(layer, input.shape);
  if (!shape.ok()) {
    diag.error(pointer, "--check: " + shape.message());
    return false;
  }
  if (*shape != want.shape) {
    diag.error(pointer, "--check: layer " + name + " computes shape " + shape_text(*shape) +
                            " but PyTorch's output is " + shape_text(want.shape));
    c.max_abs_error = c.max_rel_error = INFINITY;
    checks->push_back(std::move(c));
    return false;
  }
  auto got = run_reference(layer, input);
  if (!got.ok()) {
    diag.error(pointer, "--check: " + got.message());
    return false;
  }
  const Comparison cmp = compare(*got, want);
  c.max_abs_error = cmp.max_abs_error;
  c.max_rel_error = cmp.max_rel_error;
  c.passed = !cmp.mismatched_shape && c.max_rel_error <= c.tolerance;
  if (cmp.mismatched_shape) {
    diag.error(pointer, "--check: layer " + name + " computes shape " + shape_text(got->shape) +
                            " but PyTorch's output is " + shape_text(want.shape));
  } else if (!c.passed) {
    diag.error(pointer, "--check: layer " + name + " differs from PyTorch" +
                            (folded_from.empty() ? "" : " (folded " + folded_from + ")") +
                            ": max relative error " + sci(c.max_rel_error) + " > tolerance " +
                            sci(c.tolerance) + " (max absolute error " + sci(c.max_abs_error) +
                            ")");
  }
  const bool passed = c.passed;
  checks->push_back(std::move(c));
  return passed;
}

// A probe file's feature map back in PyTorch's order and shape.
bool probe_map(const mpsb::Tensor& t, FeatureMap* out, std::string* error) {
  const auto plan = plan_from_stored(t.transform(), t.source_layout(), t.source_shape(), t.layout(),
                                     t.shape(), error);
  if (!plan) return false;
  const auto stored = t.bytes();
  try {
    out->shape.assign(t.source_shape().begin(), t.source_shape().end());
    out->data.resize(stored.size() / sizeof(float));
  } catch (const std::bad_alloc&) {
    *error = "out of memory for a probe of " + shape_text(out->shape);
    return false;
  }
  invert(*plan, stored.data(), out->data.data(), sizeof(float));
  return true;
}

}  // namespace

bool run_checks(const mpsb::Bundle& bundle, const Manifest& manifest,
                std::optional<double> tolerance, Diagnostics& diag,
                std::vector<LayerCheck>* checks) {
  bool all_passed = true;
  for (const ManifestLayer& l : manifest.layers) {
    // A folded conv reproduces its batch norm's output from its own input.
    const std::optional<Probe>& out_probe = l.folded_from.empty() ? l.probe : l.folded_probe;
    if (!l.probe || !out_probe) continue;
    LayerCheck c;
    c.layer = l.name;
    c.expected_from = l.folded_from.empty() ? l.name : l.folded_from;
    const auto layer = bundle.find(l.name);
    if (!layer) {
      diag.error(l.pointer, "--check: the bundle has no layer " + l.name + folded_into(bundle, l));
      all_passed = false;
      continue;
    }
    c.tolerance = tolerance.value_or(default_check_tolerance(stored_precision(*layer)));
    FeatureMap input, want;
    std::string error;
    if (!load(l.probe->input, l.probe->input_shape, &input, &error) ||
        !load(out_probe->output, out_probe->output_shape, &want, &error)) {
      diag.error(l.probe->pointer, "--check: " + error);
      all_passed = false;
      continue;
    }
    all_passed = check_layer(*layer, std::move(c), l.folded_from, l.probe->pointer, input, want,
                             diag, checks) &&
                 all_passed;
  }
  return all_passed;
}

std::optional<uint64_t> probes_for(const mpsb::Bundle& bundle) {
  for (size_t i = 0; i < bundle.metadata_count(); ++i) {
    const auto [key, value] = bundle.metadata(i);
    if (key != mpsb::text::kProbesForKey) continue;
    uint64_t v = 0;
    // Bundle::open guarantees 16 lowercase hex digits.
    for (char ch : value) v = v << 4 | uint64_t(ch <= '9' ? ch - '0' : ch - 'a' + 10);
    return v;
  }
  return std::nullopt;
}

bool run_probe_checks(const mpsb::Bundle& bundle, const mpsb::Bundle& probes,
                      std::optional<double> tolerance, Diagnostics& diag,
                      std::vector<LayerCheck>* checks) {
  bool all_passed = true;
  for (size_t i = 0; i < probes.layer_count(); ++i) {
    const mpsb::Layer p = probes.layer_in_network_order(i);
    const std::string name(p.name());
    // The probe file's place for messages: its layer, as --layer names it.
    const std::string at = "layer " + name;
    const auto layer = bundle.find(name);
    if (!layer) {
      diag.error(at, "--check: the bundle has no layer " + name);
      all_passed = false;
      continue;
    }
    // A conv with a folded batch norm (Layer.folded_batchnorm) reproduces
    // the batch norm's output, which the probe file stores as its output.
    const std::string folded(layer->folded_batchnorm());
    LayerCheck c;
    c.layer = name;
    c.expected_from = folded.empty() ? name : folded;
    c.tolerance = tolerance.value_or(default_check_tolerance(stored_precision(*layer)));
    FeatureMap input, want;
    std::string error;
    // Bundle::open guarantees both tensors.
    if (!probe_map(*p.find(mpsb::TensorRole::kProbeInput), &input, &error) ||
        !probe_map(*p.find(mpsb::TensorRole::kProbeOutput), &want, &error)) {
      diag.error(at, "--check: " + error);
      all_passed = false;
      continue;
    }
    all_passed =
        check_layer(*layer, std::move(c), folded, at, input, want, diag, checks) && all_passed;
  }
  return all_passed;
}

}  // namespace mpsbc
