// Kernel placement: for one input size, the output size PyTorch computes and
// where an MPS kernel must read so that it computes the same pixels.
//
// This is every number an MPSNNPadding of mpsb's own (runtime/apple,
// MPSBPadding) reports and sets when MPS asks it, in
// -destinationImageDescriptorForSourceImages:sourceStates:forKernel:
// suggestedDescriptor:, for the image-returning encodes and MPSNNGraph
// nodes; and what an app sets by hand for the destinationImage: encodes
// (docs/APPLE.md, "Padding and output size"). The Objective-C side only
// passes these values on, so they are computed and tested here.
//
// Pure functions of their arguments; thread-safe.

#ifndef MPSB_PLACEMENT_H_
#define MPSB_PLACEMENT_H_

#include <cstdint>

#include "mpsb/bundle.h"
#include "mpsb/result.h"
#include "mpsb/sources.h"
#include "mpsb/types.h"

namespace mpsb {

// MPSNNPaddingMethod bits (MPSNeuralNetworkTypes.h, NS_OPTIONS(NSUInteger)):
// MPSNNPaddingMethodCustom = 1 << 14 makes MPS call the policy's
// -destinationImageDescriptorForSourceImages:... method, which sets the
// size and the offset itself. The size bits below it are left 0
// (MPSNNPaddingMethodSizeValidOnly): they only shape MPS's first guess,
// which the policy replaces.
inline constexpr uint64_t kMPSNNPaddingMethodCustom = uint64_t{1} << 14;

// One layer's placement for one source image size.
struct KernelPlacement {
  uint64_t source_width = 0, source_height = 0;
  // The destination image (MPSImageDescriptor width, height,
  // featureChannels): PyTorch's output size for this input, and the layer's
  // output channels.
  uint64_t destination_width = 0, destination_height = 0;
  uint32_t destination_feature_channels = 0;
  // MPSCNNKernel.offset (z is 0): for a convolution where the window of
  // output pixel 0 is centred (mps_offset_x/y of ConvolutionSource); 0 for
  // a transposed convolution and a fully connected layer.
  int64_t offset_x = 0, offset_y = 0;
  // MPSCNNConvolutionTranspose.kernelOffsetX/Y; 0 for the other kernels.
  int64_t kernel_offset_x = 0, kernel_offset_y = 0;
};

// The placement of a conv2d (any groups) or conv_transpose2d with
// parameters `p` over a `source_width` × `source_height` input; for a
// linear layer (MPSCNNFullyConnected), `p` as ConvolutionSource gives it
// (kernel = the flattened input map, out_channels): it takes exactly a
// kernel-sized input and gives 1 × 1 × out_channels, offsets 0 (Apple,
// MPSCNNFullyConnected: "kernelWidth == source.width", "Offset is not
// applicable and is ignored"). Refuses,
// with kInvalidArgument and a message naming the sizes, what PyTorch
// refuses: an empty input, a conv whose padded input is smaller than its
// dilated kernel, a transposed conv whose output would be empty, an
// output_padding not smaller than stride or dilation, zero strides or
// dilations, groups that do not divide the channels; a linear layer's
// input of another size, because MPS would apply the weights to a
// different window. kWrongLayerKind for other kinds.
[[nodiscard]] Result<KernelPlacement> place_kernel(LayerKind kind, const ConvParams& p,
                                                   uint64_t source_width, uint64_t source_height);

// The same for a bundle layer served by a ConvolutionSource (a linear
// layer over a vector takes 1 × 1). Error messages name the layer.
[[nodiscard]] Result<KernelPlacement> place_kernel(const ConvolutionSource& source,
                                                   uint64_t source_width, uint64_t source_height);

}  // namespace mpsb

#endif  // MPSB_PLACEMENT_H_
