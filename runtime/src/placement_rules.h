// The per-axis rules behind ConvolutionSource's offsets and output sizes and
// place_kernel (mpsb/placement.h), in one place. docs/LAYERS.md ("MPS
// offsets") derives them from Apple's documentation and PyTorch's formulas.

#ifndef MPSB_SRC_PLACEMENT_RULES_H_
#define MPSB_SRC_PLACEMENT_RULES_H_

#include <cstdint>

namespace mpsb::internal {

// Where MPS must put the kernel along one axis so that it reads what
// PyTorch's zero padding reads. Convolution: the MPSCNNKernel offset,
// (((k-1)·d + 1) >> 1) - padding. Transposed convolution: the
// MPSCNNConvolutionTranspose kernelOffset with the MPSCNNKernel offset 0,
// (((k-1)·d + 1) >> 1) - (d·(k-1) - padding).
int64_t mps_axis_offset(bool transposed, uint32_t k, uint32_t d, uint32_t pad);

// PyTorch's output size along one axis: floor((in + 2p - d(k-1) - 1) / s) + 1
// for a convolution, (in - 1)s - 2p + d(k-1) + output_padding + 1 for a
// transposed one. May be zero or negative: the caller refuses those.
int64_t pytorch_axis_size(bool transposed, uint64_t in, uint32_t k, uint32_t s, uint32_t pad,
                          uint32_t d, uint32_t output_padding);

}  // namespace mpsb::internal

#endif  // MPSB_SRC_PLACEMENT_RULES_H_
