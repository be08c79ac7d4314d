// Kernel factories and MPSBPadding (MPSBKernels.h) over the C++ runtime:
// mpsb::place_kernel (mpsb/placement.h) computes every size and offset; the
// code here passes them to MPS.
//
// Memory model as in MPSBBundle.mm: manual retain/release through the
// MPSB_* macros, which vanish under ARC; C++ state behind one raw pointer.
//
// Apple's text cited below is from MPSNeuralNetworkTypes.h (MPSNNPadding,
// MPSNNPaddingMethod), MPSCNNKernel.h, MPSCNNConvolution.h
// (MPSCNNConvolutionDataSource, MPSCNNConvolutionTranspose) and
// MPSCNNNeuron.h of the macOS 10.14 / 10.15 SDKs.

#import "MPSBKernels.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#import "MPSBInternal.h"
#include "mpsb/bundle.h"
#include "mpsb/placement.h"
#include "mpsb/sources.h"
#include "mpsb/types.h"

using mpsb_apple::SetError;
using mpsb_apple::StringFromNSString;
using mpsb_apple::StringFromView;

// The layer geometry a padding policy needs; all the policy archives.
struct MPSBPaddingState {
  mpsb::LayerKind kind;
  mpsb::ConvParams params;
  std::string layer;
};

@interface MPSBPlacement ()
- (instancetype)initWithPlacement:(const mpsb::KernelPlacement &)p;
@end

@implementation MPSBPlacement

MPSB_UNAVAILABLE_INIT

- (instancetype)initWithPlacement:(const mpsb::KernelPlacement &)p {
  self = [super init];
  if (self != nil) {
    _destinationWidth = static_cast<NSUInteger>(p.destination_width);
    _destinationHeight = static_cast<NSUInteger>(p.destination_height);
    _destinationFeatureChannels = p.destination_feature_channels;
    _offset.x = static_cast<NSInteger>(p.offset_x);
    _offset.y = static_cast<NSInteger>(p.offset_y);
    _offset.z = 0;
    _kernelOffsetX = static_cast<NSInteger>(p.kernel_offset_x);
    _kernelOffsetY = static_cast<NSInteger>(p.kernel_offset_y);
  }
  return self;
}

- (NSUInteger)destinationWidth {
  return _destinationWidth;
}
- (NSUInteger)destinationHeight {
  return _destinationHeight;
}
- (NSUInteger)destinationFeatureChannels {
  return _destinationFeatureChannels;
}
- (MPSOffset)offset {
  return _offset;
}
- (NSInteger)kernelOffsetX {
  return _kernelOffsetX;
}
- (NSInteger)kernelOffsetY {
  return _kernelOffsetY;
}

@end

namespace {

// NSCoder keys of MPSBPadding, one per ConvParams field.
NSString *const kKindKey = @"mpsb.kind";
NSString *const kLayerKey = @"mpsb.layer";
struct ParamKey {
  NSString *key;
  uint32_t mpsb::ConvParams::*field;
};
const ParamKey kParamKeys[] = {
    {@"mpsb.in_channels", &mpsb::ConvParams::in_channels},
    {@"mpsb.out_channels", &mpsb::ConvParams::out_channels},
    {@"mpsb.kernel_h", &mpsb::ConvParams::kernel_h},
    {@"mpsb.kernel_w", &mpsb::ConvParams::kernel_w},
    {@"mpsb.stride_h", &mpsb::ConvParams::stride_h},
    {@"mpsb.stride_w", &mpsb::ConvParams::stride_w},
    {@"mpsb.padding_h", &mpsb::ConvParams::padding_h},
    {@"mpsb.padding_w", &mpsb::ConvParams::padding_w},
    {@"mpsb.dilation_h", &mpsb::ConvParams::dilation_h},
    {@"mpsb.dilation_w", &mpsb::ConvParams::dilation_w},
    {@"mpsb.groups", &mpsb::ConvParams::groups},
    {@"mpsb.output_padding_h", &mpsb::ConvParams::output_padding_h},
    {@"mpsb.output_padding_w", &mpsb::ConvParams::output_padding_w},
};

bool HasPlacement(mpsb::LayerKind k) {
  return k == mpsb::LayerKind::kConv2d || k == mpsb::LayerKind::kConvTranspose2d ||
         k == mpsb::LayerKind::kLinear;
}

}  // namespace

@interface MPSBPadding ()
- (instancetype)initWithState:(MPSBPaddingState *)state;
@end

@implementation MPSBPadding

MPSB_UNAVAILABLE_INIT

// Takes ownership of `state`.
- (instancetype)initWithState:(MPSBPaddingState *)state {
  self = [super init];
  if (self == nil) {
    delete state;
    return nil;
  }
  _state = state;
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_SUPER_DEALLOC();
}

+ (BOOL)supportsSecureCoding {
  return YES;
}

- (void)encodeWithCoder:(NSCoder *)coder {
  [coder encodeInt64:static_cast<int64_t>(_state->kind) forKey:kKindKey];
  [coder encodeObject:StringFromView(_state->layer) forKey:kLayerKey];
  for (const ParamKey &k : kParamKeys) {
    [coder encodeInt64:static_cast<int64_t>(_state->params.*k.field) forKey:k.key];
  }
}

// Secure decoding: every value is range-checked, and a kind without a
// placement or values place_kernel would refuse for every size give nil.
- (instancetype)initWithCoder:(NSCoder *)coder {
  auto *state = new MPSBPaddingState{};
  const int64_t kind = [coder decodeInt64ForKey:kKindKey];
  bool ok = kind >= 0 && kind < static_cast<int64_t>(mpsb::kLayerKindCount) &&
            HasPlacement(static_cast<mpsb::LayerKind>(kind));
  state->kind = static_cast<mpsb::LayerKind>(ok ? kind : 0);
  for (const ParamKey &k : kParamKeys) {
    const int64_t v = [coder decodeInt64ForKey:k.key];
    ok = ok && v >= 0 && v <= INT64_C(0xFFFFFFFF);
    state->params.*k.field = ok ? static_cast<uint32_t>(v) : 0;
  }
  id layer = [coder decodeObjectOfClass:[NSString class] forKey:kLayerKey];
  state->layer = [layer isKindOfClass:[NSString class]] ? StringFromNSString(layer) : "";
  // A geometry that no input size can satisfy was not written by mpsb.
  ok = ok && state->params.kernel_h > 0 && state->params.kernel_w > 0 &&
       state->params.out_channels > 0;
  if (!ok) {
    delete state;
    MPSB_RELEASE(self);
    return nil;
  }
  return [self initWithState:state];
}

// "Get the preferred padding method": custom, so MPS asks
// -destinationImageDescriptorForSourceImages:... The size bits are left
// ValidOnly (0): they only shape MPS's first guess, which is replaced.
- (MPSNNPaddingMethod)paddingMethod {
  static_assert(mpsb::kMPSNNPaddingMethodCustom == MPSNNPaddingMethodCustom,
                "MPSNNPaddingMethodCustom");
  return MPSNNPaddingMethodCustom;
}

- (NSString *)label {
  return [NSString stringWithFormat:@"mpsb PyTorch padding for %@", StringFromView(_state->layer)];
}

- (NSString *)layerName {
  return StringFromView(_state->layer);
}

- (MPSBPlacement *)placementForSourceWidth:(NSUInteger)width
                                    height:(NSUInteger)height
                                     error:(NSError **)error {
  mpsb::Result<mpsb::KernelPlacement> r =
      mpsb::place_kernel(_state->kind, _state->params, width, height);
  if (!r) {
    SetError(error, r.error(), "layer '" + _state->layer + "': " + r.message());
    return nil;
  }
  return MPSB_AUTORELEASE([[MPSBPlacement alloc] initWithPlacement:*r]);
}

// Apple: "A MPSNNPaddingMethod must both return a valid MPSImageDescriptor
// and set the MPSKernel.offset to the correct value"; the suggested
// descriptor "MPS will prepare ... You should adjust the offset and image
// size accordingly". The kernel's other properties are left as they are,
// which keeps repeated calls (MPSNNGraph runs them on every encode)
// consistent.
- (MPSImageDescriptor *)destinationImageDescriptorForSourceImages:(NSArray *)sourceImages
                                                     sourceStates:(NSArray *)sourceStates
                                                        forKernel:(MPSKernel *)kernel
                                              suggestedDescriptor:
                                                  (MPSImageDescriptor *)inDescriptor {
  (void)sourceStates;
  if ([sourceImages count] == 0) return inDescriptor;
  MPSImage *source = [sourceImages objectAtIndex:0];
  NSError *error = nil;
  MPSBPlacement *p = [self placementForSourceWidth:[source width]
                                            height:[source height]
                                             error:&error];
  if (p == nil) {
    NSLog(@"%@; keeping MPS's suggested destination", [error localizedDescription]);
    return inDescriptor;
  }
  [inDescriptor setWidth:[p destinationWidth]];
  [inDescriptor setHeight:[p destinationHeight]];
  [inDescriptor setFeatureChannels:[p destinationFeatureChannels]];
  if ([kernel isKindOfClass:[MPSCNNConvolutionTranspose class]]) {
    // totalOffset = offset·stride + kernelOffset: the offset stays 0.
    MPSCNNConvolutionTranspose *t = (MPSCNNConvolutionTranspose *)kernel;
    MPSOffset zero = {0, 0, 0};
    [t setOffset:zero];
    [t setKernelOffsetX:[p kernelOffsetX]];
    [t setKernelOffsetY:[p kernelOffsetY]];
    [t setEdgeMode:MPSImageEdgeModeZero];
  } else if ([kernel isKindOfClass:[MPSCNNKernel class]]) {
    MPSCNNKernel *k = (MPSCNNKernel *)kernel;
    [k setOffset:[p offset]];
    [k setEdgeMode:MPSImageEdgeModeZero];
  }
  return inDescriptor;
}

- (NSString *)description {
  return [self label];
}

@end

// ---------------------------------------------------------------------------

namespace {

std::optional<mpsb::Layer> LayerNamed(MPSBBundle *bundle, NSString *name, NSError **error) {
  return mpsb_apple::FindLayer(*[bundle sharedBundle], name, error);
}

// The layer, when it exists and is a `want`; otherwise nullopt and *error
// (saying which factory takes it).
std::optional<mpsb::Layer> LayerOfKind(MPSBBundle *bundle, NSString *name, mpsb::LayerKind want,
                                       NSError **error) {
  std::optional<mpsb::Layer> layer = LayerNamed(bundle, name, error);
  if (!layer) return std::nullopt;
  if (layer->kind() != want) {
    SetError(error, mpsb::Error::kWrongLayerKind,
             "layer '" + std::string(layer->name()) + "' is a " +
                 std::string(mpsb::to_string(layer->kind())) + ", not a " +
                 std::string(mpsb::to_string(want)) + " (kernelForLayer: takes any kind)");
    return std::nullopt;
  }
  return layer;
}

// Float32 weights compute at float32: kernelWeightsDataType is read from
// the data source when the kernel is made (so it is set first), and Apple
// requires Float32 kernel weights to accumulate in float.
bool UseFloat32(MPSBConvolutionDataSource *source) {
  if ([source dataType] != MPSDataTypeFloat32) return false;
  [source setKernelWeightsDataType:MPSDataTypeFloat32];
  return true;
}

MPSBPadding *NewPadding(const mpsb::Layer &layer) {
  mpsb::ConvParams p;
  if (layer.kind() == mpsb::LayerKind::kLinear) {
    // The kernel MPSCNNFullyConnected is given: the flattened input map.
    const mpsb::LinearParams l = layer.linear();
    p.out_channels = l.out_features;
    p.in_channels = l.flattened() ? l.input_c : l.in_features;
    p.kernel_h = l.flattened() ? l.input_h : 1;
    p.kernel_w = l.flattened() ? l.input_w : 1;
  } else {
    p = layer.conv();
  }
  return [[MPSBPadding alloc]
      initWithState:new MPSBPaddingState{layer.kind(), p, std::string(layer.name())}];
}

}  // namespace

// A probe file's layers hold PyTorch's feature maps (docs/FORMAT.md §7),
// nothing MPS runs.
static std::string ProbeIsNoKernel(const mpsb::Layer &layer) {
  return "layer '" + std::string(layer.name()) +
         "' is a probe (a probe file holds PyTorch's input and output of a layer, not a layer "
         "to run)";
}

@implementation MPSBBundle (MPSBKernels)

- (MPSBPadding *)paddingForLayer:(NSString *)layerName error:(NSError **)error {
  std::optional<mpsb::Layer> layer = LayerNamed(self, layerName, error);
  if (!layer) return nil;
  if (!HasPlacement(layer->kind())) {
    SetError(error, mpsb::Error::kWrongLayerKind,
             "layer '" + std::string(layer->name()) + "' is a " +
                 std::string(mpsb::to_string(layer->kind())) +
                 ", which keeps its input size (no padding policy; want conv2d, "
                 "conv_transpose2d or linear)");
    return nil;
  }
  return MPSB_AUTORELEASE(NewPadding(*layer));
}

- (MPSCNNConvolution *)convolutionKernelForLayer:(NSString *)layerName
                                          device:(id<MTLDevice>)device
                                           error:(NSError **)error {
  if (!LayerOfKind(self, layerName, mpsb::LayerKind::kConv2d, error)) return nil;
  MPSBConvolutionDataSource *source = [self convolutionDataSourceForLayer:layerName error:error];
  if (source == nil) return nil;
  const bool f32 = UseFloat32(source);
  MPSCNNConvolution *k = [[MPSCNNConvolution alloc] initWithDevice:device weights:source];
  if (f32) [k setAccumulatorPrecisionOption:MPSNNConvolutionAccumulatorPrecisionOptionFloat];
  // The destinationImage: encode reads the offset as set (mpsOffsetX/Y).
  MPSOffset offset = {[source mpsOffsetX], [source mpsOffsetY], 0};
  [k setOffset:offset];
  [k setEdgeMode:MPSImageEdgeModeZero];
  MPSBPadding *padding = [self paddingForLayer:layerName error:error];
  if (padding != nil) [k setPadding:padding];
  return MPSB_AUTORELEASE(k);
}

- (MPSCNNConvolutionTranspose *)convolutionTransposeKernelForLayer:(NSString *)layerName
                                                            device:(id<MTLDevice>)device
                                                             error:(NSError **)error {
  if (!LayerOfKind(self, layerName, mpsb::LayerKind::kConvTranspose2d, error)) return nil;
  MPSBConvolutionDataSource *source = [self convolutionDataSourceForLayer:layerName error:error];
  if (source == nil) return nil;
  const bool f32 = UseFloat32(source);
  MPSCNNConvolutionTranspose *k = [[MPSCNNConvolutionTranspose alloc] initWithDevice:device
                                                                             weights:source];
  if (f32) [k setAccumulatorPrecisionOption:MPSNNConvolutionAccumulatorPrecisionOptionFloat];
  MPSOffset zero = {0, 0, 0};
  [k setOffset:zero];
  [k setKernelOffsetX:[source mpsOffsetX]];
  [k setKernelOffsetY:[source mpsOffsetY]];
  [k setEdgeMode:MPSImageEdgeModeZero];
  MPSBPadding *padding = [self paddingForLayer:layerName error:error];
  if (padding != nil) [k setPadding:padding];
  return MPSB_AUTORELEASE(k);
}

- (MPSCNNFullyConnected *)fullyConnectedKernelForLayer:(NSString *)layerName
                                                device:(id<MTLDevice>)device
                                                 error:(NSError **)error {
  if (!LayerOfKind(self, layerName, mpsb::LayerKind::kLinear, error)) return nil;
  MPSBConvolutionDataSource *source = [self convolutionDataSourceForLayer:layerName error:error];
  if (source == nil) return nil;
  const bool f32 = UseFloat32(source);
  MPSCNNFullyConnected *k = [[MPSCNNFullyConnected alloc] initWithDevice:device weights:source];
  if (f32) [k setAccumulatorPrecisionOption:MPSNNConvolutionAccumulatorPrecisionOptionFloat];
  [k setEdgeMode:MPSImageEdgeModeZero];
  MPSBPadding *padding = [self paddingForLayer:layerName error:error];
  if (padding != nil) [k setPadding:padding];
  return MPSB_AUTORELEASE(k);
}

- (MPSCNNBatchNormalization *)batchNormalizationKernelForLayer:(NSString *)layerName
                                                        device:(id<MTLDevice>)device
                                                         error:(NSError **)error {
  MPSBBatchNormalizationDataSource *source = [self batchNormalizationDataSourceForLayer:layerName
                                                                                  error:error];
  if (source == nil) return nil;
  MPSCNNBatchNormalization *k = [MPSCNNBatchNormalization alloc];  // see instance norm
  return MPSB_AUTORELEASE([k initWithDevice:device dataSource:source]);
}

- (MPSCNNInstanceNormalization *)instanceNormalizationKernelForLayer:(NSString *)layerName
                                                              device:(id<MTLDevice>)device
                                                               error:(NSError **)error {
  MPSBInstanceNormalizationDataSource *source =
      [self instanceNormalizationDataSourceForLayer:layerName error:error];
  if (source == nil) return nil;
  // GCC's +alloc returns id, and several classes declare
  // -initWithDevice:dataSource:; the typed variable picks this one.
  MPSCNNInstanceNormalization *k = [MPSCNNInstanceNormalization alloc];
  return MPSB_AUTORELEASE([k initWithDevice:device dataSource:source]);
}

- (MPSCNNGroupNormalization *)groupNormalizationKernelForLayer:(NSString *)layerName
                                                        device:(id<MTLDevice>)device
                                                         error:(NSError **)error {
  MPSBGroupNormalizationDataSource *source = [self groupNormalizationDataSourceForLayer:layerName
                                                                                  error:error];
  if (source == nil) return nil;
  MPSCNNGroupNormalization *k = [MPSCNNGroupNormalization alloc];  // see above
  return MPSB_AUTORELEASE([k initWithDevice:device dataSource:source]);
}

- (MPSCNNNeuron *)preluKernelForLayer:(NSString *)layerName
                               device:(id<MTLDevice>)device
                                error:(NSError **)error {
  if (!LayerOfKind(self, layerName, mpsb::LayerKind::kPReLU, error)) return nil;
  MPSNNNeuronDescriptor *d = [self neuronDescriptorForLayer:layerName error:error];
  if (d == nil) return nil;
  return MPSB_AUTORELEASE([[MPSCNNNeuron alloc] initWithDevice:device neuronDescriptor:d]);
}

// Group norm needs macOS 10.15 / iOS 13; the rest the adapters' minimum.
- (BOOL)mpsbHasGroupNormalization {
#if defined(__clang__)
  if (@available(macOS 10.15, iOS 13.0, tvOS 13.0, *)) return YES;
  return NO;
#else
  return YES;  // GCC (the GNUstep check build) has no @available
#endif
}

- (MPSCNNKernel *)kernelForLayer:(NSString *)layerName
                          device:(id<MTLDevice>)device
                           error:(NSError **)error {
  std::optional<mpsb::Layer> layer = LayerNamed(self, layerName, error);
  if (!layer) return nil;
  switch (layer->kind()) {
    case mpsb::LayerKind::kConv2d:
      return [self convolutionKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kConvTranspose2d:
      return [self convolutionTransposeKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kLinear:
      return [self fullyConnectedKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kBatchNorm2d:
      return [self batchNormalizationKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kInstanceNorm2d:
      return [self instanceNormalizationKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kGroupNorm:
#if defined(__clang__)
      if (@available(macOS 10.15, iOS 13.0, tvOS 13.0, *)) {
        return [self groupNormalizationKernelForLayer:layerName device:device error:error];
      }
      break;
#else
      return [self groupNormalizationKernelForLayer:layerName device:device error:error];
#endif
    case mpsb::LayerKind::kPReLU:
      return [self preluKernelForLayer:layerName device:device error:error];
    case mpsb::LayerKind::kProbe:
      SetError(error, mpsb::Error::kInvalidArgument, ProbeIsNoKernel(*layer));
      return nil;
  }
  SetError(error, mpsb::Error::kInvalidArgument,
           "layer '" + std::string(layer->name()) + "' is a " +
               std::string(mpsb::to_string(layer->kind())) +
               ", which this OS's Metal Performance Shaders cannot run");
  return nil;
}

- (MPSNNFilterNode *)nodeForLayer:(NSString *)layerName
                           source:(MPSNNImageNode *)sourceNode
                            error:(NSError **)error {
  std::optional<mpsb::Layer> layer = LayerNamed(self, layerName, error);
  if (!layer) return nil;
  MPSNNFilterNode *node = nil;
  switch (layer->kind()) {
    case mpsb::LayerKind::kConv2d:
    case mpsb::LayerKind::kConvTranspose2d:
    case mpsb::LayerKind::kLinear: {
      MPSBConvolutionDataSource *source = [self convolutionDataSourceForLayer:layerName
                                                                        error:error];
      if (source == nil) return nil;
      UseFloat32(source);
      if (layer->kind() == mpsb::LayerKind::kConv2d) {
        node = [MPSCNNConvolutionNode nodeWithSource:sourceNode weights:source];
      } else if (layer->kind() == mpsb::LayerKind::kLinear) {
        node = [MPSCNNFullyConnectedNode nodeWithSource:sourceNode weights:source];
      } else {
        node = [MPSCNNConvolutionTransposeNode nodeWithSource:sourceNode
                                     convolutionGradientState:nil
                                                      weights:source];
      }
      MPSBPadding *padding = NewPadding(*layer);
      [node setPaddingPolicy:padding];
      MPSB_RELEASE(padding);
      break;
    }
    case mpsb::LayerKind::kBatchNorm2d: {
      MPSBBatchNormalizationDataSource *source =
          [self batchNormalizationDataSourceForLayer:layerName error:error];
      if (source == nil) return nil;
      node = [MPSCNNBatchNormalizationNode nodeWithSource:sourceNode dataSource:source];
      break;
    }
    case mpsb::LayerKind::kInstanceNorm2d: {
      MPSBInstanceNormalizationDataSource *source =
          [self instanceNormalizationDataSourceForLayer:layerName error:error];
      if (source == nil) return nil;
      node = [MPSCNNInstanceNormalizationNode nodeWithSource:sourceNode dataSource:source];
      break;
    }
    case mpsb::LayerKind::kGroupNorm: {
      if (![self mpsbHasGroupNormalization]) break;
      MPSBGroupNormalizationDataSource *source =
          [self groupNormalizationDataSourceForLayer:layerName error:error];
      if (source == nil) return nil;
#if defined(__clang__)
      if (@available(macOS 10.15, iOS 13.0, tvOS 13.0, *)) {
        node = [MPSCNNGroupNormalizationNode nodeWithSource:sourceNode dataSource:source];
      }
#else
      node = [MPSCNNGroupNormalizationNode nodeWithSource:sourceNode dataSource:source];
#endif
      break;
    }
    case mpsb::LayerKind::kPReLU: {
      MPSNNNeuronDescriptor *d = [self neuronDescriptorForLayer:layerName error:error];
      if (d == nil) return nil;
      // The descriptor's NSData holds the mapping; the node retains it.
      node = [MPSCNNNeuronPReLUNode nodeWithSource:sourceNode aData:[d data]];
      break;
    }
    case mpsb::LayerKind::kProbe:
      SetError(error, mpsb::Error::kInvalidArgument, ProbeIsNoKernel(*layer));
      return nil;
  }
  if (node == nil) {
    SetError(error, mpsb::Error::kInvalidArgument,
             "layer '" + std::string(layer->name()) + "' is a " +
                 std::string(mpsb::to_string(layer->kind())) +
                 ", which this OS's Metal Performance Shaders cannot run");
    return nil;
  }
  [node setLabel:layerName];
  return node;
}

@end
