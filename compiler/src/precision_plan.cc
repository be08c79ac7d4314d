#include "precision_plan.h"

#include <string>
#include <vector>

#include "mpsb/kinds.h"
#include "tensor_files.h"

namespace mpsbc {

using mpsb::DType;
using mpsb::LayerKind;
using mpsb::TensorRole;

void plan_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag) {
  for (ManifestLayer& l : manifest.layers) {
    for (ManifestTensor& t : l.tensors) {
      // MPS takes biases, normalization vectors and tables as float*.
      t.dtype = DType::kFloat32;
      t.size = t.plan.element_count() * 4;
    }
    // The kinds whose weight takes a precision (mpsb/kinds.h).
    if (!mpsb::kind_spec(l.kind).precision || l.tensors.empty() ||
        l.tensors[0].role != TensorRole::kWeight)
      continue;
    const Precision asked = l.precision.value_or(options.precision);
    Precision p = asked;
    const bool depthwise =
        l.kind == LayerKind::kConv2d && l.conv.groups > 1 && l.conv.groups == l.conv.in_channels;
    if (l.kind == LayerKind::kConvTranspose2d && p != Precision::kFloat32) {
      p = Precision::kFloat32;
      l.precision_note = "kept float32: MPSCNNConvolutionTranspose takes float32 weights only";
    } else if (depthwise && (p == Precision::kUInt8Linear || p == Precision::kUInt8Lut)) {
      p = Precision::kFloat16;
      l.precision_note = "float16 instead of " + std::string(to_string(asked)) +
                         ": MPS does not take uint8 weights for depthwise convolutions";
    }
    if (!l.precision_note.empty())
      diag.warning(l.pointer, "layer " + l.name + ": " + l.precision_note);
    l.weight_precision = p;
    ManifestTensor& w = l.tensors[0];
    w.dtype = stored_dtype(p);
    w.size = w.plan.element_count() * mpsb::dtype_size(w.dtype);
    if (p == Precision::kUInt8Linear || p == Precision::kUInt8Lut) {
      ManifestTensor table;
      const bool linear = p == Precision::kUInt8Linear;
      table.role = linear ? TensorRole::kQuantRanges : TensorRole::kQuantLookupTable;
      table.pointer = l.pointer;
      table.path_text =
          "(uint8 " + std::string(linear ? "ranges" : "lookup table") + " of " + l.name + ")";
      const uint64_t n = linear ? w.plan.stored_shape[0] * 2 : 256;
      const mpsb::TensorLayout layout =
          linear ? mpsb::TensorLayout::kRanges : mpsb::TensorLayout::kLookupTable;
      const std::vector<uint64_t> shape =
          linear ? std::vector<uint64_t>{w.plan.stored_shape[0], 2} : std::vector<uint64_t>{256};
      table.plan = {Transform::kIdentity, layout, shape, layout, shape};
      table.source_size = table.size = n * 4;
      table.synthesized.assign(static_cast<size_t>(n), 0.0f);  // measure_precision fills it
      l.tensors.push_back(std::move(table));
    }
  }
}

bool measure_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag) {
  bool ok = true;
  std::vector<float> source, stored;
  for (ManifestLayer& l : manifest.layers) {
    if (l.tensors.empty() || l.tensors[0].role != TensorRole::kWeight ||
        l.weight_precision == Precision::kFloat32) {
      continue;
    }
    ManifestTensor& w = l.tensors[0];
    std::string error;
    if (!read_tensor_floats(w, &source, &error)) {
      diag.error(w.pointer, error);
      ok = false;
      continue;
    }
    // The values the writer will store, before rounding: stored order,
    // batch norm folded in.
    stored.resize(source.size());
    apply(w.plan, source.data(), stored.data(), sizeof(float));
    if (!w.fold_scale.empty()) {
      const size_t rows = w.fold_scale.size(), per = stored.size() / rows;
      for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < per; ++i) stored[r * per + i] *= w.fold_scale[r];
      }
    }
    std::vector<float> back(stored.size());
    switch (l.weight_precision) {
      case Precision::kFloat16: {
        std::vector<uint16_t> half(stored.size());
        l.half = floats_to_half(stored.data(), half.data(), half.size(), options.allow_overflow);
        if (l.half.overflow && !options.allow_overflow) {
          diag.error(w.pointer, "layer " + l.name + ": " + std::to_string(l.half.overflow) +
                                    " weights overflow float16 (|w| > 65504); --allow-overflow "
                                    "clamps them to ±65504");
          ok = false;
        }
        if (l.half.flushed_to_zero) {
          diag.warning(w.pointer, "layer " + l.name + ": " +
                                      std::to_string(l.half.flushed_to_zero) +
                                      " non-zero weights become 0 in float16 (|w| < 2^-25)");
        }
        for (size_t i = 0; i < half.size(); ++i) back[i] = half_to_float(half[i]);
        break;
      }
      case Precision::kUInt8Linear: {
        std::vector<uint8_t> q(stored.size());
        ManifestTensor& ranges = l.tensors.back();
        const size_t rows = w.plan.stored_shape[0];
        quantize_linear(stored.data(), rows, stored.size() / rows, q.data(),
                        ranges.synthesized.data());
        dequantize_linear(q.data(), ranges.synthesized.data(), rows, stored.size() / rows,
                          back.data());
        break;
      }
      case Precision::kUInt8Lut: {
        std::vector<uint8_t> q(stored.size());
        ManifestTensor& table = l.tensors.back();
        quantize_lut(stored.data(), stored.size(), q.data(), table.synthesized.data());
        dequantize_lut(q.data(), table.synthesized.data(), stored.size(), back.data());
        break;
      }
      case Precision::kFloat32:
        break;
    }
    l.weight_error = measure_error(stored.data(), back.data(), stored.size());
    l.weight_signal_energy = l.weight_noise_energy = 0;
    for (size_t i = 0; i < stored.size(); ++i) {
      const double d = double(stored[i]) - double(back[i]);
      l.weight_signal_energy += double(stored[i]) * double(stored[i]);
      l.weight_noise_energy += d * d;
    }
  }
  return ok;
}

}  // namespace mpsbc
