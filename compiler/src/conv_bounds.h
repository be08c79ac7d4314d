// The bounds on a convolution's padding and dilation that both the manifest
// parser and the CPU reference enforce (docs/LAYERS.md, "Limits"), and the
// overflow-checked output size they imply.
//
// Every output pixel of an ordinary convolution must cover at least one
// input pixel, and a transposed convolution's implicit zero border
// dilation·(kernel − 1) − padding must not be negative: both say
// padding <= dilation·(kernel − 1). Dilation is at most kMaxConvDilation.
// Together they keep every coordinate the reference computes far inside
// int64, whatever a manifest or a bundle holds.

#ifndef MPSBC_CONV_BOUNDS_H_
#define MPSBC_CONV_BOUNDS_H_

#include <cstdint>
#include <optional>
#include <string>

#include "mpsb/bundle.h"

namespace mpsbc {

inline constexpr uint32_t kMaxConvDilation = 65535;

// The largest padding a dimension with this kernel and dilation accepts.
constexpr uint64_t max_conv_padding(uint32_t kernel, uint32_t dilation) {
  return kernel == 0 ? 0 : uint64_t(dilation) * (uint64_t(kernel) - 1);
}

// Empty when `c` keeps the bounds; otherwise what is wrong, e.g. "padding
// [1073774592, 2147418112] exceeds dilation × (kernel_size − 1) = [2, 2]".
inline std::string conv_bounds_error(const mpsb::ConvParams& c) {
  if (c.dilation_h > kMaxConvDilation || c.dilation_w > kMaxConvDilation) {
    return "dilation [" + std::to_string(c.dilation_h) + ", " + std::to_string(c.dilation_w) +
           "] exceeds the maximum " + std::to_string(kMaxConvDilation);
  }
  const uint64_t max_h = max_conv_padding(c.kernel_h, c.dilation_h);
  const uint64_t max_w = max_conv_padding(c.kernel_w, c.dilation_w);
  if (c.padding_h > max_h || c.padding_w > max_w) {
    return "padding [" + std::to_string(c.padding_h) + ", " + std::to_string(c.padding_w) +
           "] exceeds dilation × (kernel_size − 1) = [" + std::to_string(max_h) + ", " +
           std::to_string(max_w) + "]";
  }
  return {};
}

// One spatial output extent: (in + 2p − d(k − 1) − 1) / s + 1, or for a
// transposed conv (in − 1)·s − 2p + d(k − 1) + output_padding + 1; nullopt
// when it overflows or is not positive. REQUIRES: stride >= 1, kernel >= 1.
inline std::optional<uint64_t> conv_output_extent(uint64_t in, uint32_t kernel, uint32_t stride,
                                                  uint32_t padding, uint32_t dilation,
                                                  uint32_t output_padding, bool transposed) {
  if (in == 0 || in > uint64_t(INT64_MAX) || stride == 0 || kernel == 0) return std::nullopt;
  int64_t span, r;
  if (__builtin_mul_overflow(int64_t(dilation), int64_t(kernel) - 1, &span)) return std::nullopt;
  if (!transposed) {
    // in + 2p − span − 1
    if (__builtin_add_overflow(int64_t(in), 2 * int64_t(padding), &r)) return std::nullopt;
    r = r - span - 1;  // both terms >= 0 and < 2^63: no overflow
    if (r < 0) return std::nullopt;
    return uint64_t(r / int64_t(stride)) + 1;
  }
  if (__builtin_mul_overflow(int64_t(in) - 1, int64_t(stride), &r) ||
      __builtin_add_overflow(r, span, &r) ||
      __builtin_add_overflow(r, int64_t(output_padding) + 1, &r)) {
    return std::nullopt;
  }
  r -= 2 * int64_t(padding);  // r >= 1 and 2p < 2^33: no overflow
  if (r <= 0) return std::nullopt;
  return uint64_t(r);
}

}  // namespace mpsbc

#endif  // MPSBC_CONV_BOUNDS_H_
