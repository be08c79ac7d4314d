// CPU reference of each layer, computed the way MPS computes it.
//
// It reads a layer's weights from a bundle in their stored (MPS) layout —
// OHWI kernels, transposed-conv kernels already rotated, Linear weights in
// HWC order — and runs the layer on NHWC activations: transposed convolution
// as zero insertion then an ordinary convolution with the stored kernel,
// Linear after flatten on the HWC-ordered feature map. Comparing its output
// with PyTorch's (the exporter's probes) proves the stored layout right,
// without a Mac. Accumulates in double: it is an oracle for layouts, not a
// model of MPS's rounding.
//
// An independent oracle on purpose: it does not use the layout plans of
// mpsbc/layout.h nor the dequantizers of mpsbc/precision.h that wrote the
// bundle, but indexes the stored OHWI, rotated and HWC layouts and
// dequantizes uint8 with its own code, written from Apple's documented
// layouts (docs/LAYERS.md), so a mistake in the compiler's transforms cannot
// also be in the check. Pure and thread-safe.

#ifndef MPSBC_REFERENCE_H_
#define MPSBC_REFERENCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "mpsb/bundle.h"

namespace mpsbc {

// A dense float tensor in PyTorch order: [N, C, H, W] or [N, F].
struct FeatureMap {
  std::vector<uint64_t> shape;
  std::vector<float> data;
};

// The layer's weight as floats in stored order, dequantized exactly as MPS
// would (float16/bfloat16 widened; uint8 through its ranges or table).
mpsb::Result<std::vector<float>> decode_weights(const mpsb::Layer& layer);

// Runs `layer` on `input` (PyTorch order) and returns the output in PyTorch
// order, before any fused activation.
mpsb::Result<FeatureMap> run_reference(const mpsb::Layer& layer, const FeatureMap& input);

// Applies the layer's fused activation in place.
void apply_activation(const mpsb::Layer& layer, FeatureMap* map);

struct Comparison {
  double max_abs_error = 0;
  // max |got - want| / max |want| (max |want| floored at 1e-12).
  double max_rel_error = 0;
  uint64_t mismatched_shape = 0;  // non-zero when the shapes differ
};
Comparison compare(const FeatureMap& got, const FeatureMap& want);

}  // namespace mpsbc

#endif  // MPSBC_REFERENCE_H_
