#include "mpsbc/precision.h"

#include <fp16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "mpsb_text.h"

namespace mpsbc {

std::optional<Precision> parse_precision(std::string_view text) {
  if (text == "float32") return Precision::kFloat32;
  if (text == "float16") return Precision::kFloat16;
  if (text == "uint8-linear") return Precision::kUInt8Linear;
  if (text == "uint8-lut") return Precision::kUInt8Lut;
  return std::nullopt;
}

std::string_view to_string(Precision p) {
  switch (p) {
    case Precision::kFloat32:
      return "float32";
    case Precision::kFloat16:
      return "float16";
    case Precision::kUInt8Linear:
      return "uint8-linear";
    case Precision::kUInt8Lut:
      return "uint8-lut";
  }
  return "unknown";
}

mpsb::DType stored_dtype(Precision p) {
  switch (p) {
    case Precision::kFloat32:
      return mpsb::DType::kFloat32;
    case Precision::kFloat16:
      return mpsb::DType::kFloat16;
    case Precision::kUInt8Linear:
    case Precision::kUInt8Lut:
      return mpsb::DType::kUInt8;
  }
  return mpsb::DType::kFloat32;
}

mpsb::Quantization quantization(Precision p) {
  switch (p) {
    case Precision::kUInt8Linear:
      return mpsb::Quantization::kLinear;
    case Precision::kUInt8Lut:
      return mpsb::Quantization::kLookupTable;
    default:
      return mpsb::Quantization::kNone;
  }
}

double default_check_tolerance(Precision p) {
  switch (p) {
    case Precision::kFloat32:
      return 1e-5;
    case Precision::kFloat16:
      return 2e-3;
    case Precision::kUInt8Linear:
      return 3e-2;
    case Precision::kUInt8Lut:
      return 3e-2;
  }
  return 1e-5;
}

uint16_t float_to_half(float f) { return fp16_ieee_from_fp32_value(f); }
float half_to_float(uint16_t h) { return fp16_ieee_to_fp32_value(h); }

float bfloat16_to_float(uint16_t b) { return mpsb::text::bfloat16_to_float(b); }

void to_float(mpsb::DType dtype, const void* in, float* out, size_t n) {
  const auto* p = static_cast<const uint8_t*>(in);
  switch (dtype) {
    case mpsb::DType::kFloat32:
      std::memcpy(out, p, n * sizeof(float));
      return;
    case mpsb::DType::kFloat16:
    case mpsb::DType::kBFloat16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = dtype == mpsb::DType::kFloat16 ? half_to_float(h) : bfloat16_to_float(h);
      }
      return;
    case mpsb::DType::kUInt8:
      return;
  }
}

HalfConversion floats_to_half(const float* in, uint16_t* out, size_t n, bool clamp_overflow) {
  HalfConversion r;
  constexpr uint16_t kMaxHalf = 0x7bff;  // 65504
  for (size_t i = 0; i < n; ++i) {
    uint16_t h = float_to_half(in[i]);
    const uint16_t mag = h & 0x7fff;
    if (mag == 0x7c00 && std::isfinite(in[i])) {
      ++r.overflow;
      if (clamp_overflow) h = uint16_t((h & 0x8000) | kMaxHalf);
    } else if (mag == 0 && in[i] != 0.0f) {
      ++r.flushed_to_zero;
    } else if (mag != 0 && mag < 0x0400) {
      ++r.subnormal;
    }
    out[i] = h;
  }
  return r;
}

void quantize_linear(const float* w, size_t rows, size_t per_row, uint8_t* q, float* ranges) {
  for (size_t r = 0; r < rows; ++r) {
    // Over the finite values only: NaN breaks min/max's ordering and an
    // infinite bound would make every code NaN.
    float lo = 0, hi = 0;
    bool any = false;
    for (size_t i = 0; i < per_row; ++i) {
      const float x = w[r * per_row + i];
      if (!std::isfinite(x)) continue;
      lo = any ? std::min(lo, x) : x;
      hi = any ? std::max(hi, x) : x;
      any = true;
    }
    ranges[2 * r] = lo;
    ranges[2 * r + 1] = hi;
  }
  quantize_linear_with(w, rows, per_row, ranges, q);
}

namespace {

// One uint8-linear code. Non-finite values are mapped before any arithmetic
// (converting NaN to an integer is undefined): NaN and -infinity store code
// 0 (the row's min), +infinity code 255 (its max). docs/LAYERS.md.
uint8_t linear_code(float x, double lo, double span) {
  if (std::isnan(x)) return 0;
  if (x == std::numeric_limits<float>::infinity()) return 255;
  if (x == -std::numeric_limits<float>::infinity() || !(span > 0)) return 0;
  const double t = (double(x) - lo) / span * 255.0;  // not NaN: x, lo and span are finite
  return uint8_t(std::clamp(std::nearbyint(t), 0.0, 255.0));
}

}  // namespace

void quantize_linear_with(const float* w, size_t rows, size_t per_row, const float* ranges,
                          uint8_t* q) {
  for (size_t r = 0; r < rows; ++r) {
    const double lo = ranges[2 * r], span = double(ranges[2 * r + 1]) - lo;
    for (size_t i = 0; i < per_row; ++i)
      q[r * per_row + i] = linear_code(w[r * per_row + i], lo, span);
  }
}

void dequantize_linear(const uint8_t* q, const float* ranges, size_t rows, size_t per_row,
                       float* out) {
  for (size_t r = 0; r < rows; ++r) {
    const double lo = ranges[2 * r], hi = ranges[2 * r + 1];
    for (size_t i = 0; i < per_row; ++i) {
      out[r * per_row + i] = float(q[r * per_row + i] / 255.0 * (hi - lo) + lo);
    }
  }
}

void quantize_lut(const float* w, size_t n, uint8_t* q, float* table) {
  // The table is fitted to the finite values (sorting NaN is undefined);
  // lut_codes() maps the others.
  std::vector<float> sorted;
  sorted.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(w[i])) sorted.push_back(w[i]);
  }
  if (sorted.empty()) sorted.push_back(0.0f);
  std::sort(sorted.begin(), sorted.end());
  const size_t finite_count = sorted.size();
  // Prefix sums over the sorted values give any cluster's mean in O(1).
  std::vector<double> prefix(finite_count + 1, 0.0);
  for (size_t i = 0; i < finite_count; ++i) prefix[i + 1] = prefix[i] + sorted[i];

  std::vector<double> centers(sorted.begin(), sorted.end());
  centers.erase(std::unique(centers.begin(), centers.end()), centers.end());
  if (centers.size() > 256) {
    // Start from uint8-linear's levels over the whole tensor: Lloyd's
    // iterations only lower the squared error, so the table never does
    // worse than that.
    const double lo = sorted.front(), hi = sorted.back();
    centers.resize(256);
    for (int k = 0; k < 256; ++k) centers[size_t(k)] = lo + (hi - lo) * k / 255.0;
  }
  // Lloyd-Max: each value to its nearest centre (boundaries at midpoints),
  // each centre to its cluster's mean, until nothing moves.
  std::vector<size_t> bounds(centers.size() + 1);
  for (int iter = 0; iter < 1000; ++iter) {
    bounds[0] = 0;
    bounds.back() = finite_count;
    for (size_t c = 1; c < centers.size(); ++c) {
      const double mid = (centers[c - 1] + centers[c]) / 2;
      bounds[c] = size_t(std::upper_bound(sorted.begin(), sorted.end(), mid) - sorted.begin());
    }
    bool moved = false;
    for (size_t c = 0; c < centers.size(); ++c) {
      if (bounds[c + 1] <= bounds[c]) continue;  // empty cluster keeps its centre
      const double mean =
          (prefix[bounds[c + 1]] - prefix[bounds[c]]) / double(bounds[c + 1] - bounds[c]);
      if (mean != centers[c]) moved = true;
      centers[c] = mean;
    }
    if (!moved) break;
  }
  for (size_t c = 0; c < 256; ++c) {
    table[c] = float(centers[std::min(c, centers.size() - 1)]);
  }
  lut_codes(w, n, table, q);
}

void lut_codes(const float* w, size_t n, const float* table, uint8_t* q) {
  // Entries past the fitted ones repeat the last; search the distinct prefix.
  size_t used = 256;
  while (used > 1 && table[used - 2] == table[used - 1]) --used;
  for (size_t i = 0; i < n; ++i) {
    // NaN has no nearest entry: it gets code 0, the smallest entry; the
    // infinities fall to the ends of the search below.
    if (std::isnan(w[i])) {
      q[i] = 0;
      continue;
    }
    const float* hi = std::lower_bound(table, table + used, w[i]);
    size_t c = size_t(hi - table);
    if (c == used) {
      c = used - 1;
    } else if (c > 0 && (w[i] - table[c - 1]) <= (table[c] - w[i])) {
      c = c - 1;
    }
    q[i] = uint8_t(c);
  }
}

void dequantize_lut(const uint8_t* q, const float* table, size_t n, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = table[q[i]];
}

QuantizationError measure_error(const float* reference, const float* approx, size_t n) {
  QuantizationError e;
  double signal = 0, noise = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = double(reference[i]) - double(approx[i]);
    e.max_abs = std::max(e.max_abs, std::fabs(d));
    signal += double(reference[i]) * double(reference[i]);
    noise += d * d;
  }
  e.sqnr_db = noise == 0 ? std::numeric_limits<double>::infinity()
                         : 10.0 * std::log10(std::max(signal, 1e-300) / noise);
  return e;
}

}  // namespace mpsbc
