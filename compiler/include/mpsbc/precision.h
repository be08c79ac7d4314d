// Weight precision: float32, float16, and the two uint8 forms MPS accepts.
//
// MPS takes convolution weights as float32, float16, or uint8 with either
// per-output-channel [min, max] ranges (-rangesForUInt8Kernel:
// w = q / 255 · (max − min) + min) or a 256-entry lookup table
// (-lookupTableForUInt8Kernel: w = table[q]). The compiler converts with the
// functions here and measures what each precision costs with them; the CPU
// reference behind --check dequantizes with its own code on purpose
// (mpsbc/reference.h), so that a mistake here cannot hide itself. Pure and
// thread-safe.

#ifndef MPSBC_PRECISION_H_
#define MPSBC_PRECISION_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "mpsb/types.h"

namespace mpsbc {

enum class Precision { kFloat32, kFloat16, kUInt8Linear, kUInt8Lut };

// "float32", "float16", "uint8-linear", "uint8-lut".
std::optional<Precision> parse_precision(std::string_view text);
std::string_view to_string(Precision p);
// The stored element type of weights at this precision.
mpsb::DType stored_dtype(Precision p);
mpsb::Quantization quantization(Precision p);

// IEEE binary16, round to nearest even (the FP16 library, Debian libfp16-dev).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);
float bfloat16_to_float(uint16_t b);

// Widens n elements of `dtype` (float32, float16 or bfloat16) to float.
// REQUIRES: dtype is not kUInt8.
void to_float(mpsb::DType dtype, const void* in, float* out, size_t n);

struct HalfConversion {
  // |x| too large for binary16 (rounds to infinity); clamped to ±65504 when
  // asked, left infinite otherwise.
  uint64_t overflow = 0;
  // Non-zero values that became zero.
  uint64_t flushed_to_zero = 0;
  // Values that became binary16 subnormals (fewer significant bits).
  uint64_t subnormal = 0;
};
HalfConversion floats_to_half(const float* in, uint16_t* out, size_t n, bool clamp_overflow);

// uint8-linear: each of `rows` rows (output channels) of `per_row` values
// gets its own [min, max]; ranges receives rows × {min, max}.
void quantize_linear(const float* w, size_t rows, size_t per_row, uint8_t* q, float* ranges);
// The codes for rows [first, first + rows) of a tensor whose ranges were
// computed over the whole of it (`ranges` points at row `first`'s pair).
void quantize_linear_with(const float* w, size_t rows, size_t per_row, const float* ranges,
                          uint8_t* q);
void dequantize_linear(const uint8_t* q, const float* ranges, size_t rows, size_t per_row,
                       float* out);

// uint8-lut: a 256-entry table fitted by Lloyd-Max (1-D k-means on the
// squared error), started from uint8-linear's evenly spaced levels over the
// tensor so that it is never worse than one global linear range; with 256
// distinct values or fewer the table holds them exactly. Ascending and
// deterministic.
void quantize_lut(const float* w, size_t n, uint8_t* q, float* table);
// The nearest entry of an ascending table for each value.
void lut_codes(const float* w, size_t n, const float* table, uint8_t* q);
void dequantize_lut(const uint8_t* q, const float* table, size_t n, float* out);

// --check's default tolerance for layers whose weights have this precision:
// max |ours − PyTorch| / max |PyTorch| (docs/LAYERS.md has the measurements
// behind each).
double default_check_tolerance(Precision p);

struct QuantizationError {
  double max_abs = 0;
  // Signal-to-quantization-noise ratio: 10·log10(Σx² / Σ(x − x')²);
  // +infinity when exact.
  double sqnr_db = 0;
};
QuantizationError measure_error(const float* reference, const float* approx, size_t n);

}  // namespace mpsbc

#endif  // MPSBC_PRECISION_H_
