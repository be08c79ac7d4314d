#include "precision_plan.h"

#include <cmath>
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

namespace {

// A conv stored dense (--legalize) holds zeros outside its diagonal blocks;
// they must stay 0 after uint8 quantization, or each output channel would
// pick up other groups' inputs. Each row's range is its real weights'
// (quantize_linear over the row, which holds zeros too: widened to 0 when
// the real weights do not straddle it), moved by less than one step so that
// 0 is exactly a code.
void zero_exact_ranges(float* ranges, size_t rows) {
  for (size_t r = 0; r < rows; ++r) {
    const double lo = ranges[2 * r], hi = ranges[2 * r + 1], span = hi - lo;
    if (!(span > 0)) continue;
    const double zero_code = std::nearbyint(-lo / span * 255.0);
    const double new_lo = -zero_code * span / 255.0;
    ranges[2 * r] = float(new_lo);
    ranges[2 * r + 1] = float(new_lo + span);
  }
}

// The same for a lookup table fitted to the real weights: the entry nearest
// 0 becomes 0 (the table stays sorted: no entry lies between it and 0).
void zero_exact_table(float* table) {
  size_t nearest = 0;
  for (size_t k = 1; k < 256; ++k) {
    if (std::fabs(table[k]) < std::fabs(table[nearest])) nearest = k;
  }
  const float old = table[nearest];
  for (size_t k = 0; k < 256; ++k) {
    if (table[k] == old) table[k] = 0.0f;  // repeated trailing entries alike
  }
}

}  // namespace

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
    stored.resize(static_cast<size_t>(w.plan.element_count()));
    apply(w.plan, source.data(), stored.data(), sizeof(float));
    // Row r (outermost dimension) times the folded batch norm's scale r.
    auto fold_rows = [&w](std::vector<float>& v) {
      if (w.fold_scale.empty()) return;
      const size_t rows = w.fold_scale.size(), per = v.size() / rows;
      for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < per; ++i) v[r * per + i] *= w.fold_scale[r];
      }
    };
    fold_rows(stored);
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
        if (l.legalized_groups != 0) {
          zero_exact_ranges(ranges.synthesized.data(), rows);
          quantize_linear_with(stored.data(), rows, stored.size() / rows, ranges.synthesized.data(),
                               q.data());
        }
        dequantize_linear(q.data(), ranges.synthesized.data(), rows, stored.size() / rows,
                          back.data());
        break;
      }
      case Precision::kUInt8Lut: {
        std::vector<uint8_t> q(stored.size());
        ManifestTensor& table = l.tensors.back();
        if (l.legalized_groups != 0) {
          // Fitted to the real weights (the source, folded as stored), not
          // to the zeros of the dense form, which then get an exact 0.
          std::vector<float> real = source;
          fold_rows(real);
          quantize_lut(real.data(), real.size(), q.data(), table.synthesized.data());
          zero_exact_table(table.synthesized.data());
          lut_codes(stored.data(), stored.size(), table.synthesized.data(), q.data());
        } else {
          quantize_lut(stored.data(), stored.size(), q.data(), table.synthesized.data());
        }
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
