// Checks the Objective-C MPS data sources (runtime/apple) against the C++
// views, on a real bundle file, compiled with GCC's Objective-C++ and GNUstep
// Foundation against the MPS declaration stubs in tests/apple/stubs.
//
// A compile-and-logic check: it proves every protocol method returns what
// the C++ views hold (pointers into the mapping at the right offsets, the
// descriptor values, the activation, quantization tables), that copies and
// sources keep the mapping alive on their own, and that errors come back as
// NSError. It does not run anything on Metal.
//
//   mpsb_apple_adapter_test BUNDLE_PATH   (the file is written, then opened)
//
// Prints one line per failure and "N passed, M failed"; exits 1 on failure.
// Manual retain/release, like the GNUstep build of the adapters.

#import <Foundation/Foundation.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#import "MPSBBuffers.h"
#import "MPSBBundle.h"
#import "MPSBKernels.h"

#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsb/placement.h"
#include "mpsb/sources.h"
#include "runtime/test_bundle.h"

namespace {

int g_passed = 0;
int g_failed = 0;

void Check(bool ok, const char *what, const std::string &context, int line) {
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
    std::printf("FAIL line %d [%s]: %s\n", line, context.c_str(), what);
  }
}

#define CHECK(cond) Check((cond), #cond, ctx, __LINE__)

using mpsb::testing::BundleSpec;
using mpsb::testing::LayerSpec;
using mpsb::testing::TensorSpec;

std::vector<uint8_t> FloatBytes(const std::vector<float> &v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// Every kind of layer and every activation the adapters map.
BundleSpec MakeSpec() {
  using namespace mpsb;
  using namespace mpsb::testing;
  BundleSpec spec;
  spec.name = "apple";

  LayerSpec conv1 = conv_layer("conv1", 4, 8, 3);
  conv1.conv.stride_h = 1;
  conv1.conv.stride_w = 2;
  conv1.conv.dilation_h = 2;
  conv1.conv.dilation_w = 1;
  conv1.activation = Activation::kReLU;
  conv1.folded_batchnorm = "bn_folded";  // what --fold-batchnorm records
  spec.layers.push_back(conv1);

  LayerSpec dw = conv_layer("dw", 8, 8, 3, 8, false);  // depthwise
  dw.activation = Activation::kReLU6;
  spec.layers.push_back(dw);

  LayerSpec grouped = conv_layer("grouped", 8, 8, 1, 2, false);
  grouped.activation = Activation::kLeakyReLU;
  grouped.activation_alpha = 0.125f;
  spec.layers.push_back(grouped);

  LayerSpec sig = conv_layer("sig", 8, 4, 1);
  sig.activation = Activation::kSigmoid;
  spec.layers.push_back(sig);

  LayerSpec tanh_layer = conv_layer("tanh", 4, 4, 1);
  tanh_layer.activation = Activation::kTanh;
  spec.layers.push_back(tanh_layer);

  spec.layers.push_back(conv_transpose_layer("up", 8, 4, 3, 2));
  // Even kernel, stride 2, asymmetric padding; a dilated grouped transposed
  // conv with output_padding.
  LayerSpec even = conv_layer("even", 4, 4, 4);
  even.conv.stride_h = even.conv.stride_w = 2;
  even.conv.padding_h = 1;
  even.conv.padding_w = 0;
  spec.layers.push_back(even);
  LayerSpec up_dilated = conv_transpose_layer("up_dilated", 8, 4, 3, 2);
  up_dilated.conv.dilation_h = up_dilated.conv.dilation_w = 2;
  up_dilated.conv.padding_w = 2;
  up_dilated.conv.output_padding_h = 1;
  up_dilated.conv.output_padding_w = 0;
  spec.layers.push_back(up_dilated);
  spec.layers.push_back(linear_layer("fc", 10, 4, 2, 3));
  spec.layers.push_back(linear_layer("fc_vector", 5, 16));
  spec.layers.push_back(batch_norm_layer("bn", 8));

  LayerSpec bn_plain = batch_norm_layer("bn_plain", 8);  // affine=False
  bn_plain.tensors.erase(bn_plain.tensors.begin(), bn_plain.tensors.begin() + 2);
  spec.layers.push_back(bn_plain);

  spec.layers.push_back(instance_norm_layer("in", 8));
  spec.layers.push_back(instance_norm_layer("in_plain", 8, false));

  // uint8 with per-output-channel ranges.
  LayerSpec q8 = conv_layer("q8", 4, 8, 3);
  q8.tensors[0].dtype = DType::kUInt8;
  q8.quantization = Quantization::kLinear;
  TensorSpec ranges;
  ranges.role = TensorRole::kQuantRanges;
  ranges.layout = ranges.source_layout = TensorLayout::kRanges;
  ranges.shape = {8, 2};
  std::vector<float> r;
  for (int i = 0; i < 8; ++i) {
    r.push_back(-1.0f - static_cast<float>(i));
    r.push_back(1.0f + static_cast<float>(i));
  }
  ranges.bytes = FloatBytes(r);
  q8.tensors.push_back(ranges);
  spec.layers.push_back(q8);

  // uint8 with a lookup table.
  LayerSpec qlut = conv_layer("qlut", 4, 4, 1, 1, false);
  qlut.tensors[0].dtype = DType::kUInt8;
  qlut.quantization = Quantization::kLookupTable;
  TensorSpec lut;
  lut.role = TensorRole::kQuantLookupTable;
  lut.layout = lut.source_layout = TensorLayout::kLookupTable;
  lut.shape = {256};
  std::vector<float> table(256);
  for (int i = 0; i < 256; ++i) table[i] = static_cast<float>(i) / 128.0f - 1.0f;
  lut.bytes = FloatBytes(table);
  qlut.tensors.push_back(lut);
  spec.layers.push_back(qlut);

  LayerSpec half = conv_layer("half", 4, 4, 3);
  half.tensors[0].dtype = DType::kFloat16;
  spec.layers.push_back(half);

  // The newer activations, fused.
  LayerSpec elu = conv_layer("elu", 4, 4, 1);
  elu.activation = Activation::kELU;
  elu.activation_alpha = 0.5f;
  spec.layers.push_back(elu);
  LayerSpec hardsigmoid = conv_layer("hardsigmoid", 4, 4, 1);
  hardsigmoid.activation = Activation::kHardSigmoid;
  spec.layers.push_back(hardsigmoid);
  LayerSpec softplus = conv_layer("softplus", 4, 4, 1);
  softplus.activation = Activation::kSoftplus;
  softplus.activation_alpha = 2.0f;  // beta
  softplus.activation_beta = 20.0f;  // threshold
  spec.layers.push_back(softplus);
  LayerSpec gelu = linear_layer("gelu", 6, 4);
  gelu.activation = Activation::kGELU;
  spec.layers.push_back(gelu);
  LayerSpec fused_prelu = conv_layer("conv_prelu", 4, 8, 1);
  fused_prelu.activation = Activation::kPReLU;
  TensorSpec slopes;
  slopes.role = TensorRole::kActivationWeight;
  slopes.shape = {8};
  slopes.bytes = FloatBytes({0.5f, -0.25f, 1.0f, 0.0f, 2.0f, 0.125f, -1.0f, 3.0f});
  fused_prelu.tensors.push_back(slopes);
  spec.layers.push_back(fused_prelu);

  // Group norms (affine and not) and prelu layers (1 and C parameters).
  LayerSpec gn = group_norm_layer("gn", 8, 4);
  gn.norm.eps = 1e-3f;
  spec.layers.push_back(gn);
  spec.layers.push_back(group_norm_layer("gn_plain", 6, 3, false));
  LayerSpec prelu1 = prelu_layer("prelu1", 8, 1);
  prelu1.tensors[0].bytes = FloatBytes(std::vector<float>(8, 0.25f));
  spec.layers.push_back(prelu1);
  spec.layers.push_back(prelu_layer("prelu8", 8, 8));
  // A conv of 2 channels per group stored dense (--legalize).
  spec.layers.push_back(legalized_conv_layer("legal", 8, 8, 1, 4));
  return spec;
}

// The MPS neuron each layer's activation must become, written out here from
// Apple's MPSCNNNeuronType.h (f(x) with a, b) and PyTorch's definitions
// rather than taken from mpsb::neuron: ReLU 1 (a = negative_slope for
// LeakyReLU); ReLUN 11 (a 0, b 6) for ReLU6; Sigmoid 3; TanH 5 (a 1, b 1);
// ELU 9 (a = alpha); HardSigmoid 4 (PyTorch's x/6 + 1/2 clamped: a 1/6,
// b 1/2); SoftPlus 7 (PyTorch's 1/beta·log(1 + exp(beta·x)): a = 1/beta,
// b = beta); GeLU 15; PReLU 10 with its slopes as data.
struct WantNeuron {
  const char *layer;
  MPSCNNNeuronType type;
  float a, b;
};
const WantNeuron kWantNeurons[] = {
    {"conv1", MPSCNNNeuronTypeReLU, 0.0f, 0.0f},
    {"dw", MPSCNNNeuronTypeReLUN, 0.0f, 6.0f},
    {"grouped", MPSCNNNeuronTypeReLU, 0.125f, 0.0f},
    {"sig", MPSCNNNeuronTypeSigmoid, 0.0f, 0.0f},
    {"tanh", MPSCNNNeuronTypeTanH, 1.0f, 1.0f},
    {"up", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"even", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"up_dilated", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"fc", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"fc_vector", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"q8", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"qlut", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"half", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
    {"elu", MPSCNNNeuronTypeELU, 0.5f, 0.0f},
    {"hardsigmoid", MPSCNNNeuronTypeHardSigmoid, 1.0f / 6.0f, 0.5f},
    {"softplus", MPSCNNNeuronTypeSoftPlus, 0.5f, 2.0f},
    {"gelu", MPSCNNNeuronTypeGeLU, 0.0f, 0.0f},
    {"conv_prelu", MPSCNNNeuronTypePReLU, 0.0f, 0.0f},
    {"prelu1", MPSCNNNeuronTypePReLU, 0.0f, 0.0f},
    {"prelu8", MPSCNNNeuronTypePReLU, 0.0f, 0.0f},
    {"legal", MPSCNNNeuronTypeNone, 0.0f, 0.0f},
};

const WantNeuron *WantFor(std::string_view layer) {
  for (const WantNeuron &w : kWantNeurons) {
    if (layer == w.layer) return &w;
  }
  return nullptr;
}

std::string Str(NSString *s) { return s ? std::string([s UTF8String]) : std::string("(nil)"); }

NSString *NS(std::string_view s) {
  return [[[NSString alloc] initWithBytes:s.data() length:s.size()
                                 encoding:NSUTF8StringEncoding] autorelease];
}

// Offset of `p` from the start of the adapter's segment, or -1 when outside.
int64_t OffsetIn(const void *p, const void *segment, NSUInteger length) {
  const auto *b = static_cast<const uint8_t *>(segment);
  const auto *q = static_cast<const uint8_t *>(p);
  if (q < b || q >= b + length) return -1;
  return static_cast<int64_t>(q - b);
}

// Number of mappings of `path` in this process (Linux), -1 elsewhere.
int MappingsOf(const std::string &path) {
#ifdef __linux__
  std::ifstream maps("/proc/self/maps");
  std::string line;
  int n = 0;
  while (std::getline(maps, line)) {
    if (line.size() >= path.size() &&
        line.compare(line.size() - path.size(), path.size(), path) == 0) {
      ++n;
    }
  }
  return n;
#else
  (void)path;
  return -1;
#endif
}

// A tensor of the reference matches what the adapter returned: same place in
// the segment (so no copy was made) and same bytes.
bool SameTensor(const void *got, const std::optional<mpsb::Tensor> &want, MPSBBundle *bundle) {
  if (!want) return got == nullptr;
  if (got == nullptr) return false;
  const int64_t off = OffsetIn(got, [bundle segmentBytes], [bundle segmentLength]);
  return off == static_cast<int64_t>(want->offset()) &&
         std::memcmp(got, want->data(), want->size()) == 0;
}

bool AllEqual(const float *p, size_t n, float v) {
  if (p == nullptr) return false;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != v) return false;
  }
  return true;
}

// A neuron descriptor against the hard-coded expectation, and for PReLU
// its data against the slopes tensor: the same bytes, in place in the
// mapping (no copy), one float per channel.
void CheckNeuronDescriptor(MPSNNNeuronDescriptor *n, MPSBBundle *bundle, const mpsb::Layer &layer,
                           const std::string &ctx) {
  const WantNeuron *want = WantFor(layer.name());
  CHECK(want != nullptr);
  CHECK(n != nil);
  if (n == nil || want == nullptr) return;
  CHECK([n neuronType] == want->type);
  if (want->type == MPSCNNNeuronTypePReLU) {
    const auto slopes =
        layer.find(layer.kind() == mpsb::LayerKind::kPReLU ? mpsb::TensorRole::kWeight
                                                           : mpsb::TensorRole::kActivationWeight);
    CHECK(slopes.has_value());
    NSData *data = [n data];
    CHECK(data != nil);
    if (!slopes || data == nil) return;
    CHECK([data length] == slopes->element_count() * sizeof(float));
    CHECK(SameTensor([data bytes], slopes, bundle));
  } else {
    CHECK([n a] == want->a);
    CHECK([n b] == want->b);
    CHECK([n data] == nil);
  }
}

void CheckConvolution(MPSBBundle *bundle, const mpsb::Bundle &ref, const mpsb::Layer &layer) {
  const std::string ctx = "conv " + std::string(layer.name());
  NSError *error = nil;
  MPSBConvolutionDataSource *src = [bundle convolutionDataSourceForLayer:NS(layer.name())
                                                                   error:&error];
  CHECK(src != nil && error == nil);
  if (src == nil) return;
  mpsb::Result<mpsb::ConvolutionSource> want = mpsb::ConvolutionSource::from(ref, layer);
  CHECK(want.ok());
  if (!want.ok()) return;
  const mpsb::ConvolutionSource &w = *want;

  CHECK([src conformsToProtocol:@protocol(MPSCNNConvolutionDataSource)]);
  CHECK([src dataType] == static_cast<MPSDataType>(w.data_type()));
  CHECK(Str([src label]) == std::string(layer.name()));
  CHECK([src load] == YES);
  [src purge];
  CHECK([src load] == YES);  // MPS balances each purge with a load.

  MPSCNNConvolutionDescriptor *d = [src descriptor];
  CHECK(d != nil && [src descriptor] == d);
  const bool depthwise = layer.kind() == mpsb::LayerKind::kConv2d && w.groups() > 1 &&
                         w.groups() == w.input_feature_channels();
  CHECK([src isDepthwise] == (depthwise ? YES : NO));
  CHECK([d isKindOfClass:[MPSCNNDepthWiseConvolutionDescriptor class]] == (depthwise ? YES : NO));
  CHECK([d kernelWidth] == w.kernel_width());
  CHECK([d kernelHeight] == w.kernel_height());
  CHECK([d inputFeatureChannels] == w.input_feature_channels());
  CHECK([d outputFeatureChannels] == w.output_feature_channels());
  CHECK([d strideInPixelsX] == w.stride_x());
  CHECK([d strideInPixelsY] == w.stride_y());
  CHECK([d dilationRateX] == w.dilation_x());
  CHECK([d dilationRateY] == w.dilation_y());
  CHECK([d groups] == (depthwise ? 1u : w.groups()));
  CheckNeuronDescriptor([d fusedNeuronDescriptor], bundle, layer, ctx);
  // The same neuron by layer name.
  NSError *neuron_error = nil;
  CheckNeuronDescriptor([bundle neuronDescriptorForLayer:NS(layer.name()) error:&neuron_error],
                        bundle, layer, ctx + " by name");
  CHECK(neuron_error == nil);

  CHECK(SameTensor([src weights], w.weights_tensor(), bundle));
  CHECK([src weightsLength] == w.weights_tensor().size());
  CHECK(SameTensor([src biasTerms], layer.find(mpsb::TensorRole::kBias), bundle));
  CHECK([src weightsLayout] == MPSCNNConvolutionWeightsLayoutOHWI);
  CHECK([src isTransposed] == (w.transposed() ? YES : NO));
  CHECK([src isFullyConnected] == (layer.kind() == mpsb::LayerKind::kLinear ? YES : NO));
  CHECK([src paddingX] == w.params().padding_w && [src paddingY] == w.params().padding_h);
  CHECK([src mpsOffsetX] == w.mps_offset_x() && [src mpsOffsetY] == w.mps_offset_y());
  CHECK([src outputPaddingX] == w.params().output_padding_w &&
        [src outputPaddingY] == w.params().output_padding_h);

  MPSCNNWeightsQuantizationType q = MPSCNNWeightsQuantizationTypeNone;
  if (w.weight_dtype() == mpsb::DType::kUInt8) {
    q = layer.quantization() == mpsb::Quantization::kLinear
            ? MPSCNNWeightsQuantizationTypeLinear
            : MPSCNNWeightsQuantizationTypeLookupTable;
  }
  CHECK([src weightsQuantizationType] == q);
  CHECK(SameTensor([src rangesForUInt8Kernel], layer.find(mpsb::TensorRole::kQuantRanges), bundle));
  CHECK(SameTensor([src lookupTableForUInt8Kernel], layer.find(mpsb::TensorRole::kQuantLookupTable),
                   bundle));
  // Exactly the uint8 side table the layer has (Apple: both __nonnull, and
  // before weightsQuantizationType MPS tells them apart by which exists).
  CHECK([src respondsToSelector:@selector(rangesForUInt8Kernel)] ==
        (q == MPSCNNWeightsQuantizationTypeLinear ? YES : NO));
  CHECK([src respondsToSelector:@selector(lookupTableForUInt8Kernel)] ==
        (q == MPSCNNWeightsQuantizationTypeLookupTable ? YES : NO));
  CHECK([src respondsToSelector:@selector(weightsQuantizationType)]);
  CHECK([src respondsToSelector:@selector(kernelWeightsDataType)]);
  CHECK([src respondsToSelector:@selector(copyWithZone:device:)]);

  // kernelWeightsDataType: Float16 by default; Float32 only for float32.
  CHECK([src kernelWeightsDataType] == MPSDataTypeFloat16);
  [src setKernelWeightsDataType:MPSDataTypeFloat32];
  CHECK([src kernelWeightsDataType] ==
        ([src dataType] == MPSDataTypeFloat32 ? MPSDataTypeFloat32 : MPSDataTypeFloat16));

  // A copy is an equal, independent object.
  MPSBConvolutionDataSource *copy = [src copy];
  CHECK(copy != nil && copy != src);
  CHECK([copy weights] == [src weights] && [copy biasTerms] == [src biasTerms]);
  CHECK([copy kernelWeightsDataType] == [src kernelWeightsDataType]);
  CHECK([[copy descriptor] kernelWidth] == [d kernelWidth] &&
        [[copy descriptor] groups] == [d groups]);
  CHECK(Str([copy label]) == Str([src label]));
  [copy release];
  // copyWithZone:device: (what MPS prefers when it copies a kernel).
  MPSBConvolutionDataSource *device_copy = [src copyWithZone:NULL device:nil];
  CHECK(device_copy != nil && device_copy != src);
  CHECK([device_copy weights] == [src weights] &&
        [device_copy kernelWeightsDataType] == [src kernelWeightsDataType]);
  [device_copy release];
}

// A normalization's -gamma and -beta: the layer's tensors in the mapping, or
// n ones and n zeros when the layer has none.
template <typename Source>
void CheckAffine(Source *src, MPSBBundle *bundle, const mpsb::Layer &layer, uint32_t n,
                 const std::string &ctx) {
  const auto gamma = layer.find(mpsb::TensorRole::kWeight);
  const auto beta = layer.find(mpsb::TensorRole::kBias);
  if (gamma) {
    CHECK(SameTensor([src gamma], gamma, bundle));
  } else {
    CHECK(AllEqual([src gamma], n, 1.0f));
  }
  if (beta) {
    CHECK(SameTensor([src beta], beta, bundle));
  } else {
    CHECK(AllEqual([src beta], n, 0.0f));
  }
}

void CheckBatchNorm(MPSBBundle *bundle, const mpsb::Bundle &ref, const mpsb::Layer &layer) {
  const std::string ctx = "bn " + std::string(layer.name());
  NSError *error = nil;
  MPSBBatchNormalizationDataSource *src =
      [bundle batchNormalizationDataSourceForLayer:NS(layer.name()) error:&error];
  CHECK(src != nil && error == nil);
  if (src == nil) return;
  mpsb::Result<mpsb::BatchNormSource> want = mpsb::BatchNormSource::from(ref, layer);
  CHECK(want.ok());
  if (!want.ok()) return;
  const uint32_t n = want->number_of_feature_channels();
  CHECK([src conformsToProtocol:@protocol(MPSCNNBatchNormalizationDataSource)]);
  CHECK([src numberOfFeatureChannels] == n);
  CHECK([src epsilon] == want->epsilon());
  CHECK(Str([src label]) == std::string(layer.name()));
  CheckAffine(src, bundle, layer, n, ctx);
  CHECK(SameTensor([src mean], layer.find(mpsb::TensorRole::kRunningMean), bundle));
  CHECK(SameTensor([src variance], layer.find(mpsb::TensorRole::kRunningVar), bundle));
  CHECK([src load] == YES);
  [src purge];
  MPSBBatchNormalizationDataSource *copy = [src copy];
  CHECK(copy != nil && copy != src && [copy mean] == [src mean]);
  CHECK([copy numberOfFeatureChannels] == n && [copy epsilon] == [src epsilon]);
  CHECK(AllEqual([copy gamma], n, 1.0f) == AllEqual([src gamma], n, 1.0f));
  [copy release];
}

void CheckInstanceNorm(MPSBBundle *bundle, const mpsb::Bundle &ref, const mpsb::Layer &layer) {
  const std::string ctx = "in " + std::string(layer.name());
  NSError *error = nil;
  MPSBInstanceNormalizationDataSource *src =
      [bundle instanceNormalizationDataSourceForLayer:NS(layer.name()) error:&error];
  CHECK(src != nil && error == nil);
  if (src == nil) return;
  mpsb::Result<mpsb::InstanceNormSource> want = mpsb::InstanceNormSource::from(ref, layer);
  CHECK(want.ok());
  if (!want.ok()) return;
  const uint32_t n = want->number_of_feature_channels();
  CHECK([src conformsToProtocol:@protocol(MPSCNNInstanceNormalizationDataSource)]);
  CHECK([src numberOfFeatureChannels] == n);
  CHECK([src epsilon] == want->epsilon() && [src epsilon] == 1e-5f);
  CHECK(Str([src label]) == std::string(layer.name()));
  CheckAffine(src, bundle, layer, n, ctx);
  CHECK([src load] == YES);
  [src purge];
  MPSBInstanceNormalizationDataSource *copy = [src copy];
  CHECK(copy != nil && copy != src && [copy numberOfFeatureChannels] == n);
  CHECK([copy epsilon] == [src epsilon]);
  [copy release];
}

void CheckGroupNorm(MPSBBundle *bundle, const mpsb::Bundle &ref, const mpsb::Layer &layer) {
  const std::string ctx = "gn " + std::string(layer.name());
  NSError *error = nil;
  MPSBGroupNormalizationDataSource *src =
      [bundle groupNormalizationDataSourceForLayer:NS(layer.name()) error:&error];
  CHECK(src != nil && error == nil);
  if (src == nil) return;
  mpsb::Result<mpsb::GroupNormSource> want = mpsb::GroupNormSource::from(ref, layer);
  CHECK(want.ok());
  if (!want.ok()) return;
  const uint32_t n = want->number_of_feature_channels();
  CHECK([src conformsToProtocol:@protocol(MPSCNNGroupNormalizationDataSource)]);
  CHECK([src numberOfFeatureChannels] == n && n == layer.norm().num_features);
  CHECK([src numberOfGroups] == want->number_of_groups() &&
        [src numberOfGroups] == layer.norm().num_groups);
  [src setNumberOfGroups:1];  // the trained grouping stays
  CHECK([src numberOfGroups] == layer.norm().num_groups);
  CHECK([src epsilon] == want->epsilon() && [src epsilon] == layer.norm().eps);
  CHECK(Str([src label]) == std::string(layer.name()));
  CheckAffine(src, bundle, layer, n, ctx);
  CHECK([src load] == YES);
  [src purge];
  MPSBGroupNormalizationDataSource *copy = [src copy];
  CHECK(copy != nil && copy != src && [copy numberOfFeatureChannels] == n);
  CHECK([copy numberOfGroups] == [src numberOfGroups] && [copy epsilon] == [src epsilon]);
  CHECK([copy gamma] == [src gamma] || AllEqual([copy gamma], n, 1.0f));
  CHECK(Str([copy label]) == Str([src label]));
  [copy release];
}

void CheckPReLULayer(MPSBBundle *bundle, const mpsb::Layer &layer) {
  const std::string ctx = "prelu " + std::string(layer.name());
  NSError *error = nil;
  MPSNNNeuronDescriptor *n = [bundle neuronDescriptorForLayer:NS(layer.name()) error:&error];
  CHECK(n != nil && error == nil);
  CheckNeuronDescriptor(n, bundle, layer, ctx);
  CHECK([n data] != nil && [[n data] length] == layer.norm().num_features * sizeof(float));
}

bool SameOffset(MPSOffset a, int64_t x, int64_t y) { return a.x == x && a.y == y && a.z == 0; }

// A source image of the given size for the padding policy.
MPSImage *SourceImage(NSUInteger width, NSUInteger height, NSUInteger channels) {
  MPSImageDescriptor *d =
      [MPSImageDescriptor imageDescriptorWithChannelFormat:MPSImageFeatureChannelFormatFloat16
                                                     width:width
                                                    height:height
                                           featureChannels:channels];
  return [[[MPSImage alloc] initWithDevice:nil imageDescriptor:d] autorelease];
}

// The policy against mpsb::place_kernel, directly and as MPS uses it: the
// image-returning encode's descriptor, and the offsets it leaves on the
// kernel (set to junk first, so the policy must set them).
void CheckPadding(MPSBBundle *bundle, const mpsb::ConvolutionSource &w, MPSCNNKernel *kernel,
                  const std::string &ctx) {
  id<MPSNNPadding> policy = [kernel padding];
  CHECK([(id)policy isKindOfClass:[MPSBPadding class]]);
  if (![(id)policy isKindOfClass:[MPSBPadding class]]) return;
  MPSBPadding *padding = (MPSBPadding *)policy;
  CHECK([padding paddingMethod] == MPSNNPaddingMethodCustom);
  CHECK([padding conformsToProtocol:@protocol(MPSNNPadding)]);
  CHECK([MPSBPadding supportsSecureCoding]);
  CHECK(Str([padding layerName]) == std::string(w.label()));
  CHECK(Str([padding label]).find(std::string(w.label())) != std::string::npos);
  const bool linear = w.kind() == mpsb::LayerKind::kLinear;
  const bool transposed = w.transposed();
  std::vector<std::pair<NSUInteger, NSUInteger>> sizes;
  if (linear) {
    sizes.push_back({w.kernel_width(), w.kernel_height()});
  } else {
    sizes = {{5, 7}, {8, 6}, {13, 2}, {1, 1}};
  }
  for (const auto &[sw, sh] : sizes) {
    const mpsb::Result<mpsb::KernelPlacement> want = mpsb::place_kernel(w, sw, sh);
    NSError *error = nil;
    MPSBPlacement *p = [padding placementForSourceWidth:sw height:sh error:&error];
    CHECK((p != nil) == want.ok());
    if (!want.ok()) {
      CHECK(error != nil && [error code] == MPSB_ERROR_INVALID_ARGUMENT);
      CHECK(error != nil &&
            Str([error localizedDescription]).find(want.message()) != std::string::npos);
      continue;
    }
    if (p == nil) continue;
    CHECK([p destinationWidth] == want->destination_width);
    CHECK([p destinationHeight] == want->destination_height);
    CHECK([p destinationFeatureChannels] == want->destination_feature_channels);
    CHECK(SameOffset([p offset], want -> offset_x, want -> offset_y));
    CHECK([p kernelOffsetX] == want->kernel_offset_x && [p kernelOffsetY] == want->kernel_offset_y);
    // Sizes and offsets by hand from PyTorch's formula and the source's
    // offsets, not through place_kernel.
    if (!linear) {
      CHECK([p destinationWidth] == w.output_width(sw));
      CHECK([p destinationHeight] == w.output_height(sh));
      CHECK((transposed ? [p kernelOffsetX] : [p offset].x) == w.mps_offset_x());
      CHECK((transposed ? [p kernelOffsetY] : [p offset].y) == w.mps_offset_y());
    } else {
      CHECK([p destinationWidth] == 1 && [p destinationHeight] == 1);
    }

    MPSOffset junk = {99, -99, 3};
    [kernel setOffset:junk];
    [kernel setEdgeMode:MPSImageEdgeModeClamp];
    if (transposed) {
      [(MPSCNNConvolutionTranspose *)kernel setKernelOffsetX:77];
      [(MPSCNNConvolutionTranspose *)kernel setKernelOffsetY:77];
    }
    MPSImage *src = SourceImage(sw, sh, w.input_feature_channels());
    MPSImageDescriptor *d =
        [kernel destinationImageDescriptorForSourceImages:[NSArray arrayWithObject:src]
                                             sourceStates:nil];
    CHECK([d width] == want->destination_width && [d height] == want->destination_height);
    CHECK([d featureChannels] == w.output_feature_channels());
    CHECK(SameOffset([kernel offset], want -> offset_x, want -> offset_y));
    CHECK([kernel edgeMode] == MPSImageEdgeModeZero);
    if (transposed) {
      MPSCNNConvolutionTranspose *t = (MPSCNNConvolutionTranspose *)kernel;
      CHECK([t kernelOffsetX] == want->kernel_offset_x &&
            [t kernelOffsetY] == want->kernel_offset_y);
    }
    MPSImage *out = [kernel encodeToCommandBuffer:nil sourceImage:src];
    CHECK([out width] == want->destination_width && [out height] == want->destination_height &&
          [out featureChannels] == w.output_feature_channels());
  }
  // A size PyTorch refuses: MPS's suggestion is kept, and nothing crashes.
  const NSUInteger bad_w = linear ? w.kernel_width() + 1 : 0;
  MPSImage *bad = SourceImage(bad_w, linear ? w.kernel_height() : 3, w.input_feature_channels());
  NSError *error = nil;
  CHECK([padding placementForSourceWidth:bad_w height:[bad height] error:&error] == nil);
  CHECK(error != nil &&
        Str([error localizedDescription]).find("layer '" + std::string(w.label()) + "'") !=
            std::string::npos);
  MPSImageDescriptor *kept =
      [kernel destinationImageDescriptorForSourceImages:[NSArray arrayWithObject:bad]
                                           sourceStates:nil];
  CHECK([kept width] == bad_w);

  // NSSecureCoding: the archived policy places as the original does.
  NSData *archive = [NSKeyedArchiver archivedDataWithRootObject:padding];
  CHECK(archive != nil);
  id restored = archive ? [NSKeyedUnarchiver unarchiveObjectWithData:archive] : nil;
  CHECK([restored isKindOfClass:[MPSBPadding class]]);
  if ([restored isKindOfClass:[MPSBPadding class]]) {
    const auto &[sw, sh] = sizes[0];
    MPSBPlacement *a = [padding placementForSourceWidth:sw height:sh error:NULL];
    MPSBPlacement *b = [restored placementForSourceWidth:sw height:sh error:NULL];
    CHECK(a != nil && b != nil && [a destinationWidth] == [b destinationWidth] &&
          [a destinationHeight] == [b destinationHeight] &&
          [a kernelOffsetX] == [b kernelOffsetX] && [a offset].x == [b offset].x &&
          [a offset].y == [b offset].y);
    CHECK(Str([restored layerName]) == Str([padding layerName]));
  }
  (void)bundle;
}

// The kernel a factory makes for a conv, transposed conv or linear layer:
// what MPS read from the data source at init (the stub records it) and what
// the factory set on the kernel.
void CheckConvolutionKernel(MPSBBundle *bundle, const mpsb::Bundle &ref, const mpsb::Layer &layer) {
  const std::string ctx = "kernel " + std::string(layer.name());
  const mpsb::ConvolutionSource w = mpsb::ConvolutionSource::from(ref, layer).value();
  NSError *error = nil;
  MPSCNNKernel *kernel = [bundle kernelForLayer:NS(layer.name()) device:nil error:&error];
  CHECK(kernel != nil && error == nil);
  if (kernel == nil) return;
  const bool f32 = w.weight_dtype() == mpsb::DType::kFloat32;
  const MPSDataType want_kernel_type = f32 ? MPSDataTypeFloat32 : MPSDataTypeFloat16;
  const MPSNNConvolutionAccumulatorPrecisionOption want_acc =
      f32 ? MPSNNConvolutionAccumulatorPrecisionOptionFloat
          : MPSNNConvolutionAccumulatorPrecisionOptionHalf;
  CHECK(Str([kernel label]) == std::string(layer.name()));
  CHECK([kernel edgeMode] == MPSImageEdgeModeZero);
  if (w.transposed()) {
    CHECK([kernel isMemberOfClass:[MPSCNNConvolutionTranspose class]]);
    MPSCNNConvolutionTranspose *t = (MPSCNNConvolutionTranspose *)kernel;
    CHECK(SameOffset([t offset], 0, 0));
    CHECK([t kernelOffsetX] == w.mps_offset_x() && [t kernelOffsetY] == w.mps_offset_y());
    CHECK([t stubKernelWeightsDataTypeAtInit] == want_kernel_type);
    CHECK([t accumulatorPrecisionOption] == want_acc);
    CHECK([t inputFeatureChannels] == w.input_feature_channels() &&
          [t outputFeatureChannels] == w.output_feature_channels() && [t groups] == w.groups());
    CHECK([[t dataSource] isKindOfClass:[MPSBConvolutionDataSource class]]);
  } else {
    const bool linear = layer.kind() == mpsb::LayerKind::kLinear;
    CHECK(
        [kernel isMemberOfClass:linear ? [MPSCNNFullyConnected class] : [MPSCNNConvolution class]]);
    MPSCNNConvolution *c = (MPSCNNConvolution *)kernel;
    CHECK(SameOffset([c offset], w.mps_offset_x(), w.mps_offset_y()));
    CHECK([c stubKernelWeightsDataTypeAtInit] == want_kernel_type);
    CHECK([c accumulatorPrecisionOption] == want_acc);
    const bool depthwise = layer.kind() == mpsb::LayerKind::kConv2d && w.groups() > 1 &&
                           w.groups() == w.input_feature_channels();
    CHECK([c stubDepthwise] == (depthwise ? YES : NO));
    CHECK([c groups] == (depthwise ? 1u : w.groups()));
    CHECK([c kernelWidth] == w.kernel_width() && [c kernelHeight] == w.kernel_height());
    CHECK([c strideInPixelsX] == w.stride_x() && [c strideInPixelsY] == w.stride_y());
    CHECK([c dilationRateX] == w.dilation_x() && [c dilationRateY] == w.dilation_y());
    CHECK([c inputFeatureChannels] == w.input_feature_channels() &&
          [c outputFeatureChannels] == w.output_feature_channels());
    CheckNeuronDescriptor([c fusedNeuronDescriptor], bundle, layer, ctx + " fused");
  }
  CheckPadding(bundle, w, kernel, ctx);

  // The typed factory for the kind, and the wrong ones.
  NSString *name = NS(layer.name());
  error = nil;
  switch (layer.kind()) {
    case mpsb::LayerKind::kConv2d:
      CHECK([bundle convolutionKernelForLayer:name device:nil error:NULL] != nil);
      CHECK([bundle convolutionTransposeKernelForLayer:name device:nil error:&error] == nil);
      break;
    case mpsb::LayerKind::kConvTranspose2d:
      CHECK([bundle convolutionTransposeKernelForLayer:name device:nil error:NULL] != nil);
      CHECK([bundle fullyConnectedKernelForLayer:name device:nil error:&error] == nil);
      break;
    default:
      CHECK([bundle fullyConnectedKernelForLayer:name device:nil error:NULL] != nil);
      CHECK([bundle convolutionKernelForLayer:name device:nil error:&error] == nil);
      break;
  }
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK(error != nil &&
        Str([error localizedDescription]).find(std::string(layer.name())) != std::string::npos);

  // The graph node: the same data source, precision and padding policy.
  MPSNNFilterNode *node = [bundle nodeForLayer:name
                                        source:[MPSNNImageNode nodeWithHandle:nil]
                                         error:&error];
  CHECK(node != nil);
  Class want_node = w.transposed() ? [MPSCNNConvolutionTransposeNode class]
                    : layer.kind() == mpsb::LayerKind::kLinear ? [MPSCNNFullyConnectedNode class]
                                                               : [MPSCNNConvolutionNode class];
  CHECK([node isMemberOfClass:want_node]);
  CHECK(Str([node label]) == std::string(layer.name()));
  CHECK([(id)[node paddingPolicy] isKindOfClass:[MPSBPadding class]] &&
        Str([(MPSBPadding *)[node paddingPolicy] layerName]) == std::string(layer.name()));
  id weights = [node stubParameters];
  CHECK([weights isKindOfClass:[MPSBConvolutionDataSource class]] &&
        [weights kernelWeightsDataType] == want_kernel_type);
}

// Normalization and prelu kernels and nodes.
void CheckOtherKernel(MPSBBundle *bundle, const mpsb::Layer &layer) {
  const std::string ctx = "kernel " + std::string(layer.name());
  NSString *name = NS(layer.name());
  NSError *error = nil;
  MPSCNNKernel *kernel = [bundle kernelForLayer:name device:nil error:&error];
  CHECK(kernel != nil && error == nil);
  MPSNNFilterNode *node = [bundle nodeForLayer:name
                                        source:[MPSNNImageNode nodeWithHandle:nil]
                                         error:&error];
  CHECK(node != nil && error == nil && Str([node label]) == std::string(layer.name()));
  if (kernel == nil || node == nil) return;
  switch (layer.kind()) {
    case mpsb::LayerKind::kBatchNorm2d: {
      CHECK([kernel isMemberOfClass:[MPSCNNBatchNormalization class]]);
      MPSCNNBatchNormalization *k = (MPSCNNBatchNormalization *)kernel;
      CHECK([k epsilon] == layer.norm().eps &&
            [k numberOfFeatureChannels] == layer.norm().num_features);
      CHECK([node isMemberOfClass:[MPSCNNBatchNormalizationNode class]]);
      CHECK([[node stubParameters] isKindOfClass:[MPSBBatchNormalizationDataSource class]]);
      break;
    }
    case mpsb::LayerKind::kInstanceNorm2d:
      CHECK([kernel isMemberOfClass:[MPSCNNInstanceNormalization class]]);
      CHECK([(MPSCNNInstanceNormalization *)kernel epsilon] == layer.norm().eps);
      CHECK([node isMemberOfClass:[MPSCNNInstanceNormalizationNode class]]);
      break;
    case mpsb::LayerKind::kGroupNorm:
      CHECK([kernel isMemberOfClass:[MPSCNNGroupNormalization class]]);
      CHECK([(MPSCNNGroupNormalization *)kernel epsilon] == layer.norm().eps);
      CHECK([node isMemberOfClass:[MPSCNNGroupNormalizationNode class]]);
      break;
    case mpsb::LayerKind::kPReLU: {
      CHECK([kernel isMemberOfClass:[MPSCNNNeuron class]]);
      MPSCNNNeuron *n = (MPSCNNNeuron *)kernel;
      const auto slopes = layer.find(mpsb::TensorRole::kWeight);
      CHECK([n neuronType] == MPSCNNNeuronTypePReLU && slopes.has_value());
      CHECK(slopes && SameTensor([[n data] bytes], slopes, bundle));
      CHECK([node isMemberOfClass:[MPSCNNNeuronPReLUNode class]]);
      NSData *a = [node stubParameters];
      CHECK(slopes && [a length] == slopes->size() && SameTensor([a bytes], slopes, bundle));
      break;
    }
    default:
      CHECK(false);
  }
  error = nil;
  CHECK([bundle paddingForLayer:name error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  if (layer.kind() != mpsb::LayerKind::kPReLU) {
    error = nil;
    CHECK([bundle preluKernelForLayer:name device:nil error:&error] == nil);
    CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  }
}

}  // namespace

// An archive that claims to be an MPSBPadding of a batch norm: secure
// decoding refuses it.
@interface MPSBTestForgedPadding : NSObject <NSCoding>
@end
@implementation MPSBTestForgedPadding
- (void)encodeWithCoder:(NSCoder *)coder {
  [coder encodeInt64:static_cast<int64_t>(mpsb::LayerKind::kBatchNorm2d) forKey:@"mpsb.kind"];
  [coder encodeInt64:3 forKey:@"mpsb.kernel_h"];
  [coder encodeInt64:3 forKey:@"mpsb.kernel_w"];
  [coder encodeInt64:4 forKey:@"mpsb.out_channels"];
}
- (id)initWithCoder:(NSCoder *)coder {
  (void)coder;
  return [super init];
}
@end

namespace {

void CheckForgedPaddingArchive() {
  const std::string ctx = "padding archive";
  MPSBTestForgedPadding *forged = [[[MPSBTestForgedPadding alloc] init] autorelease];
  NSData *archive = [NSKeyedArchiver archivedDataWithRootObject:forged];
  NSKeyedUnarchiver *u = [[[NSKeyedUnarchiver alloc] initForReadingWithData:archive] autorelease];
  [u setClass:[MPSBPadding class] forClassName:@"MPSBTestForgedPadding"];
  id decoded = [u decodeObjectForKey:@"root"];
  CHECK(decoded == nil);
}

void CheckBundle(NSString *path, const std::vector<uint8_t> &bytes) {
  const std::string ctx = "bundle";
  mpsb::Result<mpsb::Bundle> ref_result = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  CHECK(ref_result.ok());
  if (!ref_result.ok()) return;
  const mpsb::Bundle &ref = *ref_result;

  NSError *error = nil;
  MPSBBundle *bundle = [MPSBBundle bundleWithPath:path verifyChecksums:YES error:&error];
  CHECK(bundle != nil && error == nil);
  if (bundle == nil) return;
  CHECK(Str([bundle name]) == "apple");
  NSArray *names = [bundle layerNames];
  CHECK([names count] == ref.layer_count());
  for (size_t i = 0; i < ref.layer_count() && i < [names count]; ++i) {
    CHECK(Str([names objectAtIndex:i]) == std::string(ref.layer_in_network_order(i).name()));
  }
  CHECK([bundle segmentLength] == ref.segment().size());
  CHECK(reinterpret_cast<uintptr_t>([bundle segmentBytes]) % ref.segment_alignment() == 0);
  CHECK(std::memcmp([bundle segmentBytes], ref.segment().data(), ref.segment().size()) == 0);

  for (size_t i = 0; i < ref.layer_count(); ++i) {
    const mpsb::Layer layer = ref.layer_in_network_order(i);
    switch (layer.kind()) {
      case mpsb::LayerKind::kConv2d:
      case mpsb::LayerKind::kConvTranspose2d:
      case mpsb::LayerKind::kLinear:
        CheckConvolution(bundle, ref, layer);
        CheckConvolutionKernel(bundle, ref, layer);
        break;
      case mpsb::LayerKind::kBatchNorm2d:
        CheckBatchNorm(bundle, ref, layer);
        CheckOtherKernel(bundle, layer);
        break;
      case mpsb::LayerKind::kGroupNorm:
        CheckGroupNorm(bundle, ref, layer);
        CheckOtherKernel(bundle, layer);
        break;
      case mpsb::LayerKind::kPReLU:
        CheckPReLULayer(bundle, layer);
        CheckOtherKernel(bundle, layer);
        break;
      case mpsb::LayerKind::kInstanceNorm2d:
        CheckInstanceNorm(bundle, ref, layer);
        CheckOtherKernel(bundle, layer);
        break;
      case mpsb::LayerKind::kProbe:
        CHECK(!"a model bundle holds no probe layers");
        break;
    }
  }

  // What the compiler recorded: the folded batch norm ("" when none) and the
  // manifest's groups of a conv stored dense (0 when not legalized).
  error = nil;
  CHECK(Str([bundle foldedBatchNormalizationForLayer:@"conv1" error:&error]) == "bn_folded");
  CHECK(Str([bundle foldedBatchNormalizationForLayer:@"legal" error:&error]) == "");
  CHECK(Str([bundle foldedBatchNormalizationForLayer:@"bn" error:&error]) == "");
  CHECK([bundle legalizedGroupsForLayer:@"legal" error:&error] == 4);
  CHECK([bundle legalizedGroupsForLayer:@"grouped" error:&error] == 0);
  CHECK([bundle legalizedGroupsForLayer:@"conv1" error:&error] == 0);
  CHECK(error == nil);
  MPSBConvolutionDataSource *legal = [bundle convolutionDataSourceForLayer:@"legal" error:&error];
  CHECK(legal != nil && [[legal descriptor] groups] == 1);
  CHECK([bundle foldedBatchNormalizationForLayer:@"nope" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
  error = nil;
  CHECK([bundle legalizedGroupsForLayer:@"nope" error:&error] == 0);
  CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
  CHECK([bundle legalizedGroupsForLayer:@"nope" error:NULL] == 0);

  // Errors: unknown layer, wrong kind.
  error = nil;
  CHECK([bundle convolutionDataSourceForLayer:@"nope" error:&error] == nil);
  CHECK(error != nil && [[error domain] isEqualToString:MPSBErrorDomain] &&
        [error code] == MPSB_ERROR_NOT_FOUND);
  CHECK(Str([error localizedDescription]).find("nope") != std::string::npos);
  error = nil;
  CHECK([bundle convolutionDataSourceForLayer:@"bn" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  error = nil;
  CHECK([bundle batchNormalizationDataSourceForLayer:@"in" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  error = nil;
  CHECK([bundle instanceNormalizationDataSourceForLayer:@"conv1" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK([bundle convolutionDataSourceForLayer:@"nope" error:NULL] == nil);  // NULL error is fine
  error = nil;
  CHECK([bundle groupNormalizationDataSourceForLayer:@"in" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  error = nil;
  CHECK([bundle instanceNormalizationDataSourceForLayer:@"gn" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  error = nil;
  CHECK([bundle convolutionDataSourceForLayer:@"prelu1" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  error = nil;
  CHECK([bundle neuronDescriptorForLayer:@"gn" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK(error != nil && Str([error localizedDescription]).find("'gn'") != std::string::npos);
  error = nil;
  CHECK([bundle neuronDescriptorForLayer:@"nope" error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
  error = nil;
  CHECK([bundle kernelForLayer:@"nope" device:nil error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
  error = nil;
  CHECK([bundle nodeForLayer:@"nope" source:[MPSNNImageNode nodeWithHandle:nil]
                       error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
  CheckForgedPaddingArchive();
}

// The mapping lives exactly as long as the last object that shares it.
void CheckLifetime(NSString *path, const std::vector<uint8_t> &bytes) {
  const std::string ctx = "lifetime";
  mpsb::Result<mpsb::Bundle> ref_result = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  if (!ref_result.ok()) return;
  const mpsb::Bundle &ref = *ref_result;
  const mpsb::Layer conv1 = *ref.find("conv1");
  const mpsb::Tensor want_w = *conv1.find(mpsb::TensorRole::kWeight);
  const mpsb::Tensor want_b = *conv1.find(mpsb::TensorRole::kBias);
  const mpsb::Tensor want_gamma = *ref.find("gn")->find(mpsb::TensorRole::kWeight);
  const mpsb::Tensor want_prelu = *ref.find("prelu8")->find(mpsb::TensorRole::kWeight);
  const mpsb::Tensor want_fused =
      *ref.find("conv_prelu")->find(mpsb::TensorRole::kActivationWeight);
  const std::string file = Str(path);

  // On Linux /proc/self/maps shows whether the file is mapped; the checks
  // below prove the last owner, and only the last, unmaps it.
  const int before = MappingsOf(file);
#ifdef __linux__
  CHECK(before == 0);
#endif
  MPSBConvolutionDataSource *conv_copy = nil;
  MPSBBatchNormalizationDataSource *bn = nil;
  MPSBInstanceNormalizationDataSource *in_copy = nil;
  MPSBGroupNormalizationDataSource *gn = nil;
  MPSNNNeuronDescriptor *prelu = nil;
  NSData *fused_slopes = nil;
  MPSCNNConvolution *kernel = nil;
  {
    NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
    MPSBBundle *bundle = [MPSBBundle bundleWithPath:path error:NULL];
    CHECK(bundle != nil);
    if (before == 0) CHECK(MappingsOf(file) >= 1);
    MPSBConvolutionDataSource *conv = [bundle convolutionDataSourceForLayer:@"conv1" error:NULL];
    conv_copy = [conv copyWithZone:NULL];  // +1, outlives conv and bundle
    bn = [[bundle batchNormalizationDataSourceForLayer:@"bn" error:NULL] retain];
    in_copy = [[bundle instanceNormalizationDataSourceForLayer:@"in" error:NULL] copy];
    gn = [[bundle groupNormalizationDataSourceForLayer:@"gn" error:NULL] retain];
    prelu = [[bundle neuronDescriptorForLayer:@"prelu8" error:NULL] retain];
    // Only the slopes' NSData of a fused PReLU: its data source, descriptor
    // and neuron descriptor all go with the pool.
    MPSBConvolutionDataSource *fused = [bundle convolutionDataSourceForLayer:@"conv_prelu"
                                                                       error:NULL];
    fused_slopes = [[[[fused descriptor] fusedNeuronDescriptor] data] retain];
    kernel = [[bundle convolutionKernelForLayer:@"conv1" device:nil error:NULL] retain];
    [pool drain];  // releases bundle, conv and fused
  }
  // A kernel keeps its data source and so the mapping.
  CHECK(kernel != nil &&
        std::memcmp([[kernel dataSource] weights], want_w.data(), want_w.size()) == 0);
  [kernel release];
  CHECK(gn != nil && prelu != nil && fused_slopes != nil);
  if (gn == nil || prelu == nil || fused_slopes == nil) return;
  CHECK(std::memcmp([gn gamma], want_gamma.data(), want_gamma.size()) == 0);
  CHECK([gn numberOfGroups] == 4 && [gn epsilon] == 1e-3f);
  CHECK([[prelu data] length] == want_prelu.size() &&
        std::memcmp([[prelu data] bytes], want_prelu.data(), want_prelu.size()) == 0);
  CHECK([fused_slopes length] == want_fused.size() &&
        std::memcmp([fused_slopes bytes], want_fused.data(), want_fused.size()) == 0);
  [gn release];
  [prelu release];
  if (before == 0) CHECK(MappingsOf(file) >= 1);  // the slopes' NSData holds it
  // A copy of the NSData shares the owner too.
  NSData *slopes_copy = [fused_slopes copy];
  [fused_slopes release];
  CHECK(std::memcmp([slopes_copy bytes], want_fused.data(), want_fused.size()) == 0);
  [slopes_copy release];
  CHECK(conv_copy != nil && bn != nil && in_copy != nil);
  if (conv_copy == nil || bn == nil || in_copy == nil) return;
  if (before == 0) CHECK(MappingsOf(file) >= 1);
  // Every byte is still readable and right after the bundle is gone.
  CHECK(std::memcmp([conv_copy weights], want_w.data(), want_w.size()) == 0);
  CHECK(std::memcmp([conv_copy biasTerms], want_b.data(), want_b.size()) == 0);
  CHECK([[conv_copy descriptor] outputFeatureChannels] == 8);
  CHECK([conv_copy load] == YES);
  [conv_copy purge];
  CHECK(std::memcmp([conv_copy weights], want_w.data(), want_w.size()) ==
        0);  // re-read after purge
  // A copy of a copy, made after the bundle is gone.
  MPSBConvolutionDataSource *copy2 = [conv_copy copy];
  [conv_copy release];
  CHECK(std::memcmp([copy2 weights], want_w.data(), want_w.size()) == 0);
  CHECK([bn numberOfFeatureChannels] == 8 && [bn mean] != nullptr);
  CHECK([in_copy numberOfFeatureChannels] == 8 && [in_copy gamma] != nullptr);
  [copy2 release];
  [bn release];
  if (before == 0) CHECK(MappingsOf(file) >= 1);  // in_copy still holds it
  [in_copy release];
  if (before == 0) CHECK(MappingsOf(file) == 0);  // last owner gone: unmapped
}

// No-copy buffers (MPSBBuffers.h) on the stub device, which refuses what
// Metal refuses: every tensor comes back as (buffer, offset) over its own
// bytes, and the mapping lives until the last buffer is gone, after the
// MPSBBundle and the MPSBBufferSet.
void CheckBuffers(NSString *path, const std::vector<uint8_t> &bytes) {
  const std::string ctx = "buffers";
  mpsb::Result<mpsb::Bundle> ref_result = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  if (!ref_result.ok()) return;
  const mpsb::Bundle &ref = *ref_result;
  const std::string file = Str(path);
  const NSUInteger page = static_cast<NSUInteger>(getpagesize());
  const NSUInteger limit = 2 * page;
  // The segment must need more than one window for the split to be tested.
  CHECK(ref.segment().size() > limit);
  const int before = MappingsOf(file);
#ifdef __linux__
  CHECK(before == 0);
#endif
  MTLStubDevice *device = [[MTLStubDevice alloc] initWithMaxBufferLength:limit pageSize:page];
  id<MTLBuffer> last = nil;
  NSArray *buffers = nil;
  const mpsb::Tensor want_w = *ref.find("conv1")->find(mpsb::TensorRole::kWeight);
  {
    NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
    MPSBBundle *bundle = [MPSBBundle bundleWithPath:path error:NULL];
    CHECK(bundle != nil);
    NSError *error = nil;
    MPSBBufferSet *set = [MPSBBufferSet bufferSetWithBundle:bundle device:device error:&error];
    CHECK(set != nil && error == nil);
    if (set == nil) {
      [pool drain];
      [device release];
      return;
    }
    CHECK([set pageSize] == page);
    const NSUInteger count = [[set buffers] count];
    CHECK(count >= 2);
    CHECK([device liveBuffers] == count);
    for (size_t i = 0; i < ref.layer_count(); ++i) {
      const mpsb::Layer l = ref.layer(i);
      NSString *name = NS(l.name());
      for (size_t j = 0; j < l.tensor_count(); ++j) {
        const mpsb::Tensor t = l.tensor(j);
        NSUInteger offset = 0;
        id<MTLBuffer> b = [set bufferForLayer:name tensorIndex:j offset:&offset error:&error];
        CHECK(b != nil);
        if (b == nil) continue;
        CHECK([b length] <= limit && [b length] % page == 0);
        CHECK(reinterpret_cast<uintptr_t>([b contents]) % page == 0);
        CHECK(offset + t.size() <= [b length]);
        CHECK(std::memcmp(static_cast<const uint8_t *>([b contents]) + offset, t.data(),
                          t.size()) == 0);
        const NSUInteger k = [[set buffers] indexOfObject:b];
        CHECK(k != NSNotFound && [set segmentOffsetOfBuffer:k] + offset == t.offset());
        NSUInteger by_role = 0;
        CHECK([set bufferForLayer:name
                             role:static_cast<NSUInteger>(t.role())
                           offset:&by_role
                            error:NULL] == b &&
              by_role == offset);
      }
    }
    error = nil;
    CHECK([set bufferForLayer:@"nope" tensorIndex:0 offset:NULL error:&error] == nil);
    CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
    error = nil;
    CHECK([set bufferForLayer:@"conv1" tensorIndex:2 offset:NULL error:&error] == nil);
    CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);
    error = nil;
    CHECK([set bufferForLayer:@"conv1" role:MPSB_ROLE_RUNNING_MEAN offset:NULL
                        error:&error] == nil);
    CHECK(error != nil && [error code] == MPSB_ERROR_NOT_FOUND);

    // A limit of one page: refused exactly when some tensor's pages, found
    // here from the C++ view, are more than one page.
    bool crosses = false;
    for (size_t i = 0; i < ref.layer_count(); ++i) {
      const mpsb::Layer l = ref.layer(i);
      for (size_t j = 0; j < l.tensor_count(); ++j) {
        const uint64_t first = l.tensor(j).offset() / page;
        const uint64_t last_byte = (l.tensor(j).offset() + l.tensor(j).size() - 1) / page;
        crosses = crosses || first != last_byte;
      }
    }
    CHECK(crosses);  // the bundle has such a tensor, so the refusal is tested
    error = nil;
    CHECK([MPSBBufferSet bufferSetWithBundle:bundle
                                      device:device
                             maxBufferLength:page
                                       error:&error] == nil);
    CHECK(error != nil && [error code] == MPSB_ERROR_TOO_LARGE);
    CHECK(error != nil &&
          Str([error localizedDescription])
                  .find("more than the buffer limit " + std::to_string(page)) != std::string::npos);
    CHECK([device liveBuffers] == count);  // a refused plan makes no buffer

    NSUInteger weight_offset = 0;
    last = [[set bufferForLayer:@"conv1" tensorIndex:0 offset:&weight_offset error:NULL] retain];
    buffers = [[set buffers] retain];
    [pool drain];  // releases the bundle and the set
    CHECK(std::memcmp(static_cast<const uint8_t *>([last contents]) + weight_offset, want_w.data(),
                      want_w.size()) == 0);
  }
  if (before == 0) CHECK(MappingsOf(file) >= 1);  // the buffers hold the mapping
  CHECK([device deallocatorCalls] == 0);
  const NSUInteger count = [buffers count];
  [buffers release];  // every buffer but `last` goes, each calling its deallocator
  CHECK([device liveBuffers] == 1 && [device deallocatorCalls] == count - 1);
  if (before == 0) CHECK(MappingsOf(file) >= 1);  // `last` alone keeps it
  [last release];
  CHECK([device liveBuffers] == 0 && [device deallocatorCalls] == count);
  if (before == 0) CHECK(MappingsOf(file) == 0);  // the last buffer unmapped it
  [device release];
}

// A bundle whose segment alignment is below the page size cannot be
// wrapped: its segment need not start on a page.
void CheckBufferRefusals(const std::string &dir) {
  const std::string ctx = "buffer refusals";
  const NSUInteger page = static_cast<NSUInteger>(getpagesize());
  BundleSpec spec;
  spec.segment_alignment = 1024;  // below every page size Apple uses
  spec.layers.push_back(mpsb::testing::conv_layer("conv", 4, 8, 3));
  const std::string path = dir + "/segment_1024.mpsb";
  const std::vector<uint8_t> bytes = mpsb::testing::build_bundle(spec);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
  MTLStubDevice *device = [[MTLStubDevice alloc] initWithMaxBufferLength:1u << 30 pageSize:page];
  MPSBBundle *bundle = [MPSBBundle bundleWithPath:NS(path) error:NULL];
  CHECK(bundle != nil);
  NSError *error = nil;
  CHECK([MPSBBufferSet bufferSetWithBundle:bundle device:device error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_MISALIGNED);
  CHECK(error != nil && Str([error localizedDescription])
                                .find("segment alignment 1024 is not a multiple of the page "
                                      "size " +
                                      std::to_string(page)) != std::string::npos);
  CHECK([device liveBuffers] == 0);
  [device release];
  [pool drain];
  std::remove(path.c_str());
}

void CheckOpenErrors(const std::string &dir) {
  const std::string ctx = "open errors";
  // Missing file: same code and message as the C++ API.
  const std::string missing = dir + "/does-not-exist.mpsb";
  mpsb::Result<mpsb::Bundle> want = mpsb::Bundle::open(missing);
  NSError *error = nil;
  MPSBBundle *b = [MPSBBundle bundleWithPath:NS(missing) error:&error];
  CHECK(b == nil && error != nil);
  CHECK(!want.ok());
  if (error == nil) return;
  CHECK([[error domain] isEqualToString:MPSBErrorDomain]);
  CHECK([error code] == static_cast<NSInteger>(want.error()));
  CHECK(Str([error localizedDescription]) == want.message());

  // Not a bundle.
  const std::string junk = dir + "/junk.mpsb";
  {
    std::ofstream out(junk, std::ios::binary);
    out << "this is not an mpsb bundle, just text long enough to have a header";
  }
  mpsb::Result<mpsb::Bundle> want_junk = mpsb::Bundle::open(junk);
  error = nil;
  CHECK([MPSBBundle bundleWithPath:NS(junk) error:&error] == nil);
  CHECK(error != nil && [error code] == static_cast<NSInteger>(want_junk.error()));
  CHECK(error != nil && Str([error localizedDescription]) == want_junk.message());
  std::remove(junk.c_str());

  CHECK([MPSBBundle bundleWithPath:NS(missing) error:NULL] == nil);  // NULL error is fine

  // A norm gamma stored as float16 [C] (docs/SECURITY.md): -gamma would
  // hand MPS C floats where 2C bytes exist, so the bundle never opens.
  const std::string f16 = dir + "/f16_gamma.mpsb";
  BundleSpec spec;
  spec.layers.push_back(mpsb::testing::batch_norm_layer("bn", 8));
  spec.layers[0].tensors[0].dtype = mpsb::DType::kFloat16;
  const std::vector<uint8_t> bytes = mpsb::testing::build_bundle(spec);
  {
    std::ofstream out(f16, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  mpsb::Result<mpsb::Bundle> want_f16 = mpsb::Bundle::open(f16);
  CHECK(!want_f16.ok() && want_f16.error() == mpsb::Error::kSizeMismatch);
  error = nil;
  CHECK([MPSBBundle bundleWithPath:NS(f16) error:&error] == nil);
  CHECK(error != nil && [error code] == MPSB_ERROR_SIZE_MISMATCH);
  CHECK(error != nil && Str([error localizedDescription]) == want_f16.message());
  std::remove(f16.c_str());
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: mpsb_apple_adapter_test BUNDLE_PATH\n");
    return 2;
  }
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // failures show even if a later check crashes
  NSAutoreleasePool *pool = [[NSAutoreleasePool alloc] init];
  const std::string file = argv[1];
  const std::vector<uint8_t> bytes = mpsb::testing::build_bundle(MakeSpec());
  {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char *>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  NSString *path = NS(file);
  {
    NSAutoreleasePool *inner = [[NSAutoreleasePool alloc] init];
    CheckBundle(path, bytes);
    [inner drain];
  }
  CheckLifetime(path, bytes);
  CheckBuffers(path, bytes);
  const size_t slash = file.find_last_of('/');
  CheckOpenErrors(slash == std::string::npos ? std::string(".") : file.substr(0, slash));
  CheckBufferRefusals(slash == std::string::npos ? std::string(".") : file.substr(0, slash));
  [pool drain];
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
