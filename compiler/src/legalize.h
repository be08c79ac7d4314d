// Convolutions MPS refuses at kernel creation, made runnable (--legalize).
//
// Apple's MPSCNNConvolutionDescriptor.groups: "number of channels in each
// group must be multiple of 4"; MPSCNNDepthWiseConvolutionDescriptor: "only
// channelMultiplier of 1 is supported" (docs/LAYERS.md quotes both). Such a
// layer is an error by default. With --legalize its weight is stored as the
// equivalent dense convolution: groups 1, [O][kH][kW][I] with each output
// channel's kernel at its group's input channels and zeros elsewhere
// (Transform ConvGroupedToDense, docs/FORMAT.md), the manifest's groups kept
// in Layer.legalized_groups. A grouped transposed conv (MPSCNNConvolutionTranspose
// takes the same descriptor) is stored as the dense transposed conv's weight,
// [O][kH][kW][I] rotated 180°, block diagonal (ConvTransposeGroupedToDenseRotated).

#ifndef MPSBC_LEGALIZE_H_
#define MPSBC_LEGALIZE_H_

#include <cstdint>

#include "diagnostics.h"
#include "manifest.h"

namespace mpsbc {

// Every layer parse_manifest() marked (ManifestLayer::mps_refusal): an
// error naming the layer, Apple's rule and --legalize, or with `legalize`
// the dense plan. Returns false when it reported an error.
bool legalize_layers(Manifest& manifest, bool legalize, Diagnostics& diag);

// What storing a legalized layer dense costs, at the weight's stored dtype:
// extra weight bytes, and extra multiply-adds per output position (one per
// added zero weight). Zero for a layer that is not legalized.
struct LegalizeCost {
  uint64_t extra_weight_bytes = 0;
  uint64_t extra_macs_per_position = 0;
};
LegalizeCost legalize_cost(const ManifestLayer& layer);

}  // namespace mpsbc

#endif  // MPSBC_LEGALIZE_H_
