#include "mpsb/sources.h"

#include <string>

#include "bundle_internal.h"
#include "mpsb/kinds.h"

namespace mpsb {
namespace {

const float* floats(const std::optional<Tensor>& t) {
  return t ? static_cast<const float*>(t->data()) : nullptr;
}

Result<int> wrong_kind(const Layer& layer, const char* want) {
  return {Error::kWrongLayerKind, "layer '" + std::string(layer.name()) + "' is a " +
                                      std::string(to_string(layer.kind())) + ", not " + want};
}

}  // namespace

MPSDataType mps_data_type(DType t) {
  switch (t) {
    case DType::kFloat32:
      return MPSDataType::kFloat32;
    case DType::kFloat16:
      return MPSDataType::kFloat16;
    case DType::kUInt8:
      return MPSDataType::kUInt8;
    case DType::kBFloat16:
      break;
  }
  return MPSDataType::kInvalid;
}

Result<ConvolutionSource> ConvolutionSource::from(const Bundle& bundle, const Layer& layer) {
  ConvParams p;
  switch (layer.kind()) {
    case LayerKind::kConv2d:
    case LayerKind::kConvTranspose2d:
      p = layer.conv();
      break;
    case LayerKind::kLinear: {
      // MPSCNNFullyConnected: a convolution whose kernel spans the input map.
      const LinearParams l = layer.linear();
      p.out_channels = l.out_features;
      p.in_channels = l.flattened() ? l.input_c : l.in_features;
      p.kernel_h = l.flattened() ? l.input_h : 1;
      p.kernel_w = l.flattened() ? l.input_w : 1;
      break;
    }
    default: {
      auto r = wrong_kind(layer, "a convolution or linear layer");
      return {r.error(), r.message()};
    }
  }
  // Bundle::open guarantees a weight whose shape matches the parameters.
  const std::optional<Tensor> w = layer.find(TensorRole::kWeight);
  if (!w) return {Error::kBadField, "layer '" + std::string(layer.name()) + "' has no weight"};
  return ConvolutionSource(&internal::Access::mapping(bundle), layer, p, *w,
                           layer.find(TensorRole::kBias));
}

int64_t ConvolutionSource::offset(uint32_t k, uint32_t d, uint32_t pad) const {
  if (layer_.kind() == LayerKind::kLinear) return 0;
  const int64_t reach = int64_t(d) * (int64_t(k) - 1);  // dilated kernel size - 1
  const int64_t center = (reach + 1) >> 1;
  return transposed() ? center - (reach - int64_t(pad)) : center - int64_t(pad);
}

uint64_t ConvolutionSource::output_size(uint64_t in, uint32_t k, uint32_t s, uint32_t pad,
                                        uint32_t d, uint32_t op) const {
  if (layer_.kind() == LayerKind::kLinear) return 1;
  const int64_t reach = int64_t(d) * (int64_t(k) - 1);
  const int64_t n = transposed() ? (int64_t(in) - 1) * s - 2 * int64_t(pad) + reach + op + 1
                                 : (int64_t(in) + 2 * int64_t(pad) - reach - 1) / int64_t(s) + 1;
  return n > 0 ? uint64_t(n) : 0;
}

MPSDataType ConvolutionSource::data_type() const { return mps_data_type(weights_.dtype()); }
const float* ConvolutionSource::bias_terms() const { return floats(bias_); }

const float* ConvolutionSource::ranges_for_uint8_kernel() const {
  return floats(layer_.find(TensorRole::kQuantRanges));
}

const float* ConvolutionSource::lookup_table_for_uint8_kernel() const {
  return floats(layer_.find(TensorRole::kQuantLookupTable));
}

MPSDataType ConvolutionSource::kernel_weights_data_type() const {
  return weights_.dtype() == DType::kFloat32 ? MPSDataType::kFloat32 : MPSDataType::kFloat16;
}

bool ConvolutionSource::load() const {
  internal::advise(*mapping_, layer_, true);  // weights, bias and side tables
  return true;
}

void ConvolutionSource::purge() const { internal::advise(*mapping_, layer_, false); }

const float* NormalizationSource::gamma() const { return floats(layer_.find(TensorRole::kWeight)); }
const float* NormalizationSource::beta() const { return floats(layer_.find(TensorRole::kBias)); }
bool NormalizationSource::load() const {
  internal::advise(*mapping_, layer_, true);
  return true;
}
void NormalizationSource::purge() const { internal::advise(*mapping_, layer_, false); }

template <typename Source>
Result<Source> NormalizationSource::make(const Bundle& bundle, const Layer& layer, LayerKind want) {
  if (layer.kind() != want) {
    const std::string name(to_string(want));
    auto r = wrong_kind(layer, ((name[0] == 'i' ? "an " : "a ") + name).c_str());
    return {r.error(), r.message()};
  }
  return Source(&internal::Access::mapping(bundle), layer, layer.norm());
}

Result<BatchNormSource> BatchNormSource::from(const Bundle& bundle, const Layer& layer) {
  return make<BatchNormSource>(bundle, layer, LayerKind::kBatchNorm2d);
}
Result<InstanceNormSource> InstanceNormSource::from(const Bundle& bundle, const Layer& layer) {
  return make<InstanceNormSource>(bundle, layer, LayerKind::kInstanceNorm2d);
}
Result<GroupNormSource> GroupNormSource::from(const Bundle& bundle, const Layer& layer) {
  return make<GroupNormSource>(bundle, layer, LayerKind::kGroupNorm);
}

const float* BatchNormSource::mean() const { return floats(layer_.find(TensorRole::kRunningMean)); }
const float* BatchNormSource::variance() const {
  return floats(layer_.find(TensorRole::kRunningVar));
}

Result<Neuron> neuron(const Layer& layer) {
  const KindSpec& kind = kind_spec(layer.kind());
  Neuron n;
  std::optional<Tensor> slopes;
  if (kind.fused_activation) {
    n.activation = layer.activation();
    slopes = layer.find(TensorRole::kActivationWeight);
  } else if (layer.kind() == LayerKind::kPReLU) {
    n.activation = Activation::kPReLU;
    slopes = layer.find(TensorRole::kWeight);
  } else {
    auto r = wrong_kind(layer, "a layer with a neuron (conv, linear, batch norm or prelu)");
    return {r.error(), r.message()};
  }
  n.mps_neuron_type = activation_spec(n.activation).mps_neuron_type;
  const float alpha = layer.activation_alpha();
  // a, b, c per MPSCNNNeuronType.h; docs/LAYERS.md has each PyTorch form.
  switch (n.activation) {
    case Activation::kNone:
    case Activation::kReLU:  // f(x) = x >= 0 ? x : a * x with a = 0
    case Activation::kSigmoid:
    case Activation::kGELU:
      break;
    case Activation::kReLU6:  // ReLUN: min(x >= 0 ? x : a * x, b)
      n.b = 6.0f;
      break;
    case Activation::kLeakyReLU:
    case Activation::kELU:  // x >= 0 ? x : a * (exp(x) - 1)
      n.a = alpha;
      break;
    case Activation::kTanh:  // a * tanh(b * x)
      n.a = n.b = 1.0f;
      break;
    case Activation::kHardSigmoid:  // clamp(a * x + b, 0, 1)
      n.a = 1.0f / 6.0f;
      n.b = 0.5f;
      break;
    case Activation::kSoftplus:  // a * log(1 + exp(b * x)), PyTorch's 1/beta, beta
      n.a = 1.0f / alpha;
      n.b = alpha;
      break;
    case Activation::kPReLU:
      if (!slopes) {
        return {Error::kBadField, "layer '" + std::string(layer.name()) + "' has no PReLU slopes"};
      }
      n.data = static_cast<const float*>(slopes->data());
      n.count = slopes->element_count();
      break;
  }
  return n;
}

}  // namespace mpsb
