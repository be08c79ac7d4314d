// Each weight's stored precision: chosen (with what MPS cannot take), then
// measured against the float32 values before anything is written.

#ifndef MPSBC_PRECISION_PLAN_H_
#define MPSBC_PRECISION_PLAN_H_

#include "diagnostics.h"
#include "manifest.h"
#include "mpsbc/precision.h"

namespace mpsbc {

struct PrecisionOptions {
  Precision precision = Precision::kFloat32;  // for layers without their own
  bool allow_overflow = false;                // clamp float16 overflow to ±65504
};

// Chooses each weight's stored precision (the layer's "precision", else
// options.precision), applying what MPS cannot take: transposed convolutions
// keep float32 weights (MPSCNNConvolutionTranspose takes float32 only) and
// depthwise convolutions do not take uint8 (float16 instead), each with a
// note. Sets every tensor's stored dtype and size (vectors widen to float32)
// and adds the uint8 ranges or lookup table tensors, to be filled by
// measure_precision().
void plan_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag);

// Reads every weight stored at a lower precision than float32, converts it
// as the writer will (after any batch-norm folding) and records the error;
// fits the uint8 ranges and lookup tables. float16 overflow is an error
// naming the layer and the count unless options.allow_overflow; values
// flushed to zero are a warning. Holds one tensor (as floats) at a time.
bool measure_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag);

}  // namespace mpsbc

#endif  // MPSBC_PRECISION_PLAN_H_
