// Data-source views: what MPS's data-source protocols ask for, read from a
// Bundle without copying.
//
// ConvolutionSource mirrors MPSCNNConvolutionDataSource together with the
// MPSCNNConvolutionDescriptor values; BatchNormSource, InstanceNormSource and
// GroupNormSource mirror MPSCNNBatchNormalizationDataSource,
// MPSCNNInstanceNormalizationDataSource and
// MPSCNNGroupNormalizationDataSource; neuron() gives the MPS neuron of a
// fused activation or a PReLU layer. Which kind is served by which is in
// mpsb/kinds.h. Like Layer, they own nothing and are valid while the
// mapping they point into lives: moving the Bundle keeps them valid,
// destroying it does not. They are safe to use from many threads.

#ifndef MPSB_SOURCES_H_
#define MPSB_SOURCES_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "mpsb/bundle.h"

namespace mpsb {

// MPSDataType values (MetalPerformanceShaders/MPSCore/MPSCoreTypes.h).
enum class MPSDataType : uint32_t {
  kInvalid = 0,
  kFloat32 = 0x10000000u | 32u,
  kFloat16 = 0x10000000u | 16u,
  kUInt8 = 8u,
};

// MPSCNNConvolutionWeightsLayout: OHWI is the only value Apple defines.
enum class MPSWeightsLayout : uint32_t { kOHWI = 0 };

// MPSDataType of stored elements of this dtype (bfloat16 has none).
MPSDataType mps_data_type(DType t);

class ConvolutionSource {
 public:
  // Fails with kWrongLayerKind unless the layer is a conv2d,
  // conv_transpose2d or linear (MPSCNNFullyConnected takes a convolution
  // data source whose kernel covers the whole input).
  [[nodiscard]] static Result<ConvolutionSource> from(const Bundle& bundle, const Layer& layer);

  // -label: the layer name. Points into the mapping.
  std::string_view label() const { return layer_.name(); }
  const Layer& layer() const { return layer_; }
  LayerKind kind() const { return layer_.kind(); }
  bool transposed() const { return layer_.kind() == LayerKind::kConvTranspose2d; }

  // -dataType: type of the stored weight elements.
  MPSDataType data_type() const;
  DType weight_dtype() const { return weights_.dtype(); }
  // -weightsLayout
  MPSWeightsLayout weights_layout() const { return MPSWeightsLayout::kOHWI; }

  // MPSCNNConvolutionDescriptor values.
  uint32_t kernel_width() const { return p_.kernel_w; }
  uint32_t kernel_height() const { return p_.kernel_h; }
  // Total input channels, as MPS counts them (not per group).
  uint32_t input_feature_channels() const { return p_.in_channels; }
  uint32_t output_feature_channels() const { return p_.out_channels; }
  uint32_t stride_x() const { return p_.stride_w; }
  uint32_t stride_y() const { return p_.stride_h; }
  uint32_t dilation_x() const { return p_.dilation_w; }
  uint32_t dilation_y() const { return p_.dilation_h; }
  uint32_t groups() const { return p_.groups; }
  // The full PyTorch parameters (padding, output_padding, ...).
  const ConvParams& params() const { return p_; }

  // Where MPS must place the kernel so that it reads what PyTorch's zero
  // padding reads (docs/FORMAT.md, "MPS offsets"). For a convolution, the
  // MPSCNNKernel offset: MPS puts the window's left edge at offset.x -
  // (kW_dilated >> 1) (MPSCNNConvolutionDescriptor.kernelWidth and
  // dilationRateX), PyTorch at x*stride - padding, so offset.x =
  // (((kW-1)*dilation + 1) >> 1) - padding. For a transposed convolution,
  // kernelOffsetX/Y with the MPSCNNKernel offset left at 0: the equivalent
  // convolution over the zero-expanded image starts dilation*(kW-1) -
  // padding pixels before it, so kernelOffset.x = (((kW-1)*dilation + 1) >> 1)
  // - (dilation*(kW-1) - padding). Linear layers: 0 (the kernel covers the
  // whole map; MPSCNNFullyConnected needs no offset).
  int64_t mps_offset_x() const { return offset(p_.kernel_w, p_.dilation_w, p_.padding_w); }
  int64_t mps_offset_y() const { return offset(p_.kernel_h, p_.dilation_h, p_.padding_h); }
  // Output size for an input of `in` pixels, PyTorch's formula.
  uint64_t output_width(uint64_t in) const {
    return output_size(in, p_.kernel_w, p_.stride_w, p_.padding_w, p_.dilation_w,
                       p_.output_padding_w);
  }
  uint64_t output_height(uint64_t in) const {
    return output_size(in, p_.kernel_h, p_.stride_h, p_.padding_h, p_.dilation_h,
                       p_.output_padding_h);
  }
  Activation activation() const { return layer_.activation(); }
  float activation_alpha() const { return layer_.activation_alpha(); }

  // -weights: OHWI, [out][kH][kW][in/groups]. Points into the mapping.
  const void* weights() const { return weights_.data(); }
  const Tensor& weights_tensor() const { return weights_; }
  // -biasTerms: out_channels floats, or nullptr when the layer has no bias.
  const float* bias_terms() const;

  // -weightsQuantizationType: how uint8 weights map back to floats.
  Quantization quantization() const { return layer_.quantization(); }
  // -rangesForUInt8Kernel: out_channels × {min, max} floats (w = q / 255 ·
  // (max − min) + min), or nullptr unless quantization() is kLinear.
  const float* ranges_for_uint8_kernel() const;
  // -lookupTableForUInt8Kernel: 256 floats (w = table[q]), or nullptr unless
  // quantization() is kLookupTable.
  const float* lookup_table_for_uint8_kernel() const;
  // -kernelWeightsDataType: the type MPS should compute with — float16 for
  // float16 and uint8 weights (MPS dequantizes uint8 to half), float32 for
  // float32 weights.
  MPSDataType kernel_weights_data_type() const;

  // -load / -purge: madvise(WILLNEED) / madvise(DONTNEED) on the weights.
  bool load() const;
  void purge() const;

 private:
  int64_t offset(uint32_t k, uint32_t d, uint32_t pad) const;
  uint64_t output_size(uint64_t in, uint32_t k, uint32_t s, uint32_t pad, uint32_t d,
                       uint32_t op) const;
  ConvolutionSource(const internal::Mapping* m, Layer l, ConvParams p, Tensor w,
                    std::optional<Tensor> bias)
      : mapping_(m), layer_(l), p_(p), weights_(w), bias_(bias) {}
  const internal::Mapping* mapping_;
  Layer layer_;
  ConvParams p_;
  Tensor weights_;
  std::optional<Tensor> bias_;
};

// What the normalization data sources share: label, channel count, epsilon,
// gamma and beta, load and purge. Gamma and beta point to
// number_of_feature_channels() floats in the mapping, or are nullptr when
// PyTorch had no affine parameters (gamma 1, beta 0).
class NormalizationSource {
 public:
  std::string_view label() const { return layer_.name(); }
  uint32_t number_of_feature_channels() const { return n_.num_features; }
  float epsilon() const { return n_.eps; }
  const float* gamma() const;
  const float* beta() const;
  bool load() const;
  void purge() const;

 protected:
  NormalizationSource(const internal::Mapping* m, Layer l, NormParams n)
      : mapping_(m), layer_(l), n_(n) {}
  // The factory of each: fails with kWrongLayerKind unless the layer is a
  // `want`.
  template <typename Source>
  static Result<Source> make(const Bundle& bundle, const Layer& layer, LayerKind want);
  const internal::Mapping* mapping_;
  Layer layer_;
  NormParams n_;
};

// MPSCNNBatchNormalizationDataSource.
class BatchNormSource : public NormalizationSource {
 public:
  [[nodiscard]] static Result<BatchNormSource> from(const Bundle& bundle, const Layer& layer);
  // number_of_feature_channels() floats in the mapping.
  const float* mean() const;
  const float* variance() const;

 private:
  friend class NormalizationSource;
  using NormalizationSource::NormalizationSource;
};

// MPSCNNInstanceNormalizationDataSource. MPS uses FLT_MIN when a source gives
// no epsilon; this one always gives the PyTorch value.
class InstanceNormSource : public NormalizationSource {
 public:
  [[nodiscard]] static Result<InstanceNormSource> from(const Bundle& bundle, const Layer& layer);

 private:
  friend class NormalizationSource;
  using NormalizationSource::NormalizationSource;
};

// MPSCNNGroupNormalizationDataSource (nn.GroupNorm).
class GroupNormSource : public NormalizationSource {
 public:
  [[nodiscard]] static Result<GroupNormSource> from(const Bundle& bundle, const Layer& layer);
  uint32_t number_of_groups() const { return n_.num_groups; }

 private:
  friend class NormalizationSource;
  using NormalizationSource::NormalizationSource;
};

// An MPS neuron (MPSCNNNeuronType.h) that computes what PyTorch computes:
// the type and its a, b, c (f(x) per Apple's header), and for PReLU one
// slope per feature channel. Where it is the fused activation of a conv or
// linear layer, MPSCNNConvolutionDescriptor.fusedNeuronDescriptor takes it;
// a batch norm's activation (MPSCNNBatchNormalization fuses none) and a
// prelu layer are an MPSCNNNeuron kernel run after it, made from an
// MPSNNNeuronDescriptor (PReLU: cnnNeuronPReLUDescriptorWithData:noCopy:).
struct Neuron {
  Activation activation = Activation::kNone;
  int32_t mps_neuron_type = 0;  // MPSCNNNeuronType value
  float a = 0, b = 0, c = 0;
  // PReLU: `count` floats in the mapping (one per feature channel);
  // otherwise nullptr and 0.
  const float* data = nullptr;
  uint64_t count = 0;
};

// The neuron of a conv, transposed conv, linear or batch norm layer's
// activation (type none when it has none), or of a prelu layer;
// kWrongLayerKind for the other kinds.
[[nodiscard]] Result<Neuron> neuron(const Layer& layer);

}  // namespace mpsb

#endif  // MPSB_SOURCES_H_
