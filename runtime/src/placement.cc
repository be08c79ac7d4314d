#include "mpsb/placement.h"

#include <algorithm>
#include <string>

#include "mpsb/kinds.h"
#include "placement_rules.h"

namespace mpsb {
namespace internal {

int64_t mps_axis_offset(bool transposed, uint32_t k, uint32_t d, uint32_t pad) {
  const int64_t reach = int64_t(d) * (int64_t(k) - 1);  // dilated kernel size - 1
  const int64_t center = (reach + 1) >> 1;
  return transposed ? center - (reach - int64_t(pad)) : center - int64_t(pad);
}

int64_t pytorch_axis_size(bool transposed, uint64_t in, uint32_t k, uint32_t s, uint32_t pad,
                          uint32_t d, uint32_t output_padding) {
  const int64_t reach = int64_t(d) * (int64_t(k) - 1);
  if (transposed) {
    return (int64_t(in) - 1) * int64_t(s) - 2 * int64_t(pad) + reach + int64_t(output_padding) + 1;
  }
  const int64_t n = int64_t(in) + 2 * int64_t(pad) - reach - 1;
  // Floor, as PyTorch divides; n < 0 only when the kernel does not fit.
  const int64_t q = n >= 0 ? n / int64_t(s) : -((-n + int64_t(s) - 1) / int64_t(s));
  return q + 1;
}

}  // namespace internal

namespace {

std::string pair(uint64_t h, uint64_t w) { return std::to_string(h) + "x" + std::to_string(w); }

Result<KernelPlacement> refuse(std::string message) {
  return {Error::kInvalidArgument, std::move(message)};
}

}  // namespace

Result<KernelPlacement> place_kernel(LayerKind kind, const ConvParams& p, uint64_t source_width,
                                     uint64_t source_height) {
  if (kind == LayerKind::kLinear) {
    // MPSCNNFullyConnected: the kernel spans the flattened input map exactly.
    if (source_width != p.kernel_w || source_height != p.kernel_h) {
      return refuse("a linear layer over a " + pair(p.kernel_h, p.kernel_w) +
                    " map takes exactly a " + pair(p.kernel_h, p.kernel_w) + " input, not " +
                    pair(source_height, source_width));
    }
    KernelPlacement r;
    r.source_width = source_width;
    r.source_height = source_height;
    r.destination_width = r.destination_height = 1;
    r.destination_feature_channels = p.out_channels;
    return r;
  }
  if (kind != LayerKind::kConv2d && kind != LayerKind::kConvTranspose2d) {
    return {Error::kWrongLayerKind, "a " + std::string(to_string(kind)) +
                                        " layer has no kernel placement (want conv2d, "
                                        "conv_transpose2d or linear)"};
  }
  const bool transposed = kind == LayerKind::kConvTranspose2d;
  if (p.kernel_h == 0 || p.kernel_w == 0 || p.stride_h == 0 || p.stride_w == 0 ||
      p.dilation_h == 0 || p.dilation_w == 0) {
    return refuse("kernel " + pair(p.kernel_h, p.kernel_w) + ", stride " +
                  pair(p.stride_h, p.stride_w) + " and dilation " +
                  pair(p.dilation_h, p.dilation_w) + " must all be positive");
  }
  if (p.groups == 0 || p.in_channels == 0 || p.out_channels == 0 || p.in_channels % p.groups != 0 ||
      p.out_channels % p.groups != 0) {
    return refuse("groups " + std::to_string(p.groups) + " must divide in_channels " +
                  std::to_string(p.in_channels) + " and out_channels " +
                  std::to_string(p.out_channels));
  }
  if (source_width == 0 || source_height == 0) {
    return refuse("input " + pair(source_height, source_width) + " is empty");
  }
  if (!transposed && (p.output_padding_h != 0 || p.output_padding_w != 0)) {
    return refuse("output_padding is only for conv_transpose2d");
  }
  if (transposed && (p.output_padding_h >= std::max(p.stride_h, p.dilation_h) ||
                     p.output_padding_w >= std::max(p.stride_w, p.dilation_w))) {
    // PyTorch: "output padding must be smaller than either stride or dilation".
    return refuse("output_padding " + pair(p.output_padding_h, p.output_padding_w) +
                  " must be smaller than stride " + pair(p.stride_h, p.stride_w) + " or dilation " +
                  pair(p.dilation_h, p.dilation_w));
  }
  if (!transposed) {
    const uint64_t reach_h = uint64_t(p.dilation_h) * (p.kernel_h - 1) + 1;
    const uint64_t reach_w = uint64_t(p.dilation_w) * (p.kernel_w - 1) + 1;
    if (source_height + 2 * uint64_t(p.padding_h) < reach_h ||
        source_width + 2 * uint64_t(p.padding_w) < reach_w) {
      // PyTorch: "Kernel size can't be greater than actual input size".
      return refuse("padded input " +
                    pair(source_height + 2 * uint64_t(p.padding_h),
                         source_width + 2 * uint64_t(p.padding_w)) +
                    " is smaller than the dilated kernel " + pair(reach_h, reach_w));
    }
  }
  const int64_t h = internal::pytorch_axis_size(transposed, source_height, p.kernel_h, p.stride_h,
                                                p.padding_h, p.dilation_h, p.output_padding_h);
  const int64_t w = internal::pytorch_axis_size(transposed, source_width, p.kernel_w, p.stride_w,
                                                p.padding_w, p.dilation_w, p.output_padding_w);
  if (h <= 0 || w <= 0) {
    return refuse("input " + pair(source_height, source_width) + " gives an empty output " +
                  std::to_string(h) + "x" + std::to_string(w));
  }
  KernelPlacement r;
  r.source_width = source_width;
  r.source_height = source_height;
  r.destination_width = uint64_t(w);
  r.destination_height = uint64_t(h);
  r.destination_feature_channels = p.out_channels;
  const int64_t x = internal::mps_axis_offset(transposed, p.kernel_w, p.dilation_w, p.padding_w);
  const int64_t y = internal::mps_axis_offset(transposed, p.kernel_h, p.dilation_h, p.padding_h);
  // Apple (MPSCNNConvolutionTranspose): totalOffset = offset·stride +
  // kernelOffset, so a transposed conv keeps offset 0 and moves the kernel.
  if (transposed) {
    r.kernel_offset_x = x;
    r.kernel_offset_y = y;
  } else {
    r.offset_x = x;
    r.offset_y = y;
  }
  return r;
}

Result<KernelPlacement> place_kernel(const ConvolutionSource& source, uint64_t source_width,
                                     uint64_t source_height) {
  const std::string layer = "layer '" + std::string(source.label()) + "': ";
  Result<KernelPlacement> r =
      place_kernel(source.kind(), source.params(), source_width, source_height);
  if (!r) return {r.error(), layer + r.message()};
  return r;
}

}  // namespace mpsb
