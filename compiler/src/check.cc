#include "check.h"

#include <cmath>
#include <cstdio>
#include <new>
#include <string>

#include "checked_math.h"
#include "mpsb/kinds.h"
#include "mpsb_text.h"
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
    // The output shape first: a layer whose output would differ from the
    // probe's is reported without computing (or allocating) anything, so
    // the reference never needs more memory than the probe files hold.
    const auto shape = reference_output_shape(*layer, input.shape);
    if (!shape.ok()) {
      diag.error(l.probe->pointer, "--check: " + shape.message());
      all_passed = false;
      continue;
    }
    if (*shape != want.shape) {
      diag.error(l.probe->pointer, "--check: layer " + l.name + " computes shape " +
                                       shape_text(*shape) + " but PyTorch's output is " +
                                       shape_text(want.shape));
      c.max_abs_error = c.max_rel_error = INFINITY;
      all_passed = false;
      checks->push_back(std::move(c));
      continue;
    }
    auto got = run_reference(*layer, input);
    if (!got.ok()) {
      diag.error(l.probe->pointer, "--check: " + got.message());
      all_passed = false;
      continue;
    }
    const Comparison cmp = compare(*got, want);
    c.max_abs_error = cmp.max_abs_error;
    c.max_rel_error = cmp.max_rel_error;
    c.passed = !cmp.mismatched_shape && c.max_rel_error <= c.tolerance;
    if (cmp.mismatched_shape) {
      diag.error(l.probe->pointer, "--check: layer " + l.name + " computes shape " +
                                       shape_text(got->shape) + " but PyTorch's output is " +
                                       shape_text(want.shape));
    } else if (!c.passed) {
      diag.error(l.probe->pointer,
                 "--check: layer " + l.name + " differs from PyTorch" +
                     (l.folded_from.empty() ? "" : " (folded " + l.folded_from + ")") +
                     ": max relative error " + sci(c.max_rel_error) + " > tolerance " +
                     sci(c.tolerance) + " (max absolute error " + sci(c.max_abs_error) + ")");
    }
    all_passed = all_passed && c.passed;
    checks->push_back(std::move(c));
  }
  return all_passed;
}

}  // namespace mpsbc
