// Objective-C adapters over the C++ views (mpsb/bundle.h, mpsb/sources.h).
//
// Memory model: manual retain/release. Every retain, release and autorelease
// goes through the MPSB_* macros below, which vanish under ARC, so the same
// file is correct compiled with -fno-objc-arc (the Apple build; GNUstep's GCC
// has no ARC) and with -fobjc-arc.
//
// C++ state lives behind one raw pointer per object, created in the
// initializer and deleted in -dealloc. GCC's Objective-C++ runs no C++
// constructors or destructors for instance variables (clang does), so a
// std::shared_ptr ivar would silently never be destroyed there; a pointer to a
// heap struct behaves the same under both compilers.
//
// Lifetime: every object holds a std::shared_ptr<const mpsb::Bundle>. The
// mapping is unmapped when the last MPSBBundle or data source (or copy) that
// shares it is deallocated.
//
// Method contracts cited below are from Apple's MetalPerformanceShaders
// headers (MPSCNNConvolution.h, MPSCNNBatchNormalization.h,
// MPSCNNInstanceNormalization.h, MPSCNNGroupNormalization.h,
// MPSCNNNeuron.h, MPSCNNNeuronType.h) as documented at
// developer.apple.com/documentation/metalperformanceshaders.

#import "MPSBBundle.h"
#import "MPSBInternal.h"

#import <objc/runtime.h>

#include <cstddef>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/kinds.h"
#include "mpsb/result.h"
#include "mpsb/sources.h"
#include "mpsb/types.h"

NSString *const MPSBErrorDomain = @"MPSBErrorDomain";

namespace mpsb_apple {

NSString *StringFromView(std::string_view s) {
  NSString *r = [[NSString alloc] initWithBytes:s.data()
                                         length:s.size()
                                       encoding:NSUTF8StringEncoding];
  if (r == nil) {
    // Not UTF-8 (a host path in an error message, say): keep every byte.
    r = [[NSString alloc] initWithBytes:s.data()
                                 length:s.size()
                               encoding:NSISOLatin1StringEncoding];
  }
  return MPSB_AUTORELEASE(r);
}

std::string StringFromNSString(NSString *s) {
  const char *utf8 = [s UTF8String];
  return utf8 ? std::string(utf8) : std::string();
}

void SetError(NSError **error, mpsb::Error code, const std::string &message) {
  if (error == NULL) return;
  NSDictionary *info = [NSDictionary dictionaryWithObject:StringFromView(message)
                                                   forKey:NSLocalizedDescriptionKey];
  *error = [NSError errorWithDomain:MPSBErrorDomain
                               code:static_cast<NSInteger>(code)
                           userInfo:info];
}

std::optional<mpsb::Layer> FindLayer(const SharedBundle &bundle, NSString *name, NSError **error) {
  if (name == nil) {
    SetError(error, mpsb::Error::kInvalidArgument, "layer name is nil");
    return std::nullopt;
  }
  const std::string key = StringFromNSString(name);
  std::optional<mpsb::Layer> layer = bundle->find(key);
  if (!layer) {
    SetError(error, mpsb::Error::kNotFound, "no layer named '" + key + "' in the bundle");
  }
  return layer;
}

}  // namespace mpsb_apple

namespace {

using mpsb_apple::SharedBundle;

// The MPSDataType and MPSCNN* enum values are Apple's; the runtime's mirror
// enums must agree with the ones the SDK (or the stubs) declare.
static_assert(static_cast<uint32_t>(mpsb::MPSDataType::kFloat32) ==
                  static_cast<uint32_t>(MPSDataTypeFloat32),
              "MPSDataTypeFloat32");
static_assert(static_cast<uint32_t>(mpsb::MPSDataType::kFloat16) ==
                  static_cast<uint32_t>(MPSDataTypeFloat16),
              "MPSDataTypeFloat16");
static_assert(static_cast<uint32_t>(mpsb::MPSDataType::kUInt8) ==
                  static_cast<uint32_t>(MPSDataTypeUInt8),
              "MPSDataTypeUInt8");
static_assert(static_cast<uint32_t>(mpsb::MPSWeightsLayout::kOHWI) ==
                  static_cast<uint32_t>(MPSCNNConvolutionWeightsLayoutOHWI),
              "MPSCNNConvolutionWeightsLayoutOHWI");

// The neuron types kinds.h gives each activation are MPSCNNNeuronType
// values; each must be the SDK's (or the stubs') value of that name.
constexpr int32_t NeuronTypeOf(mpsb::Activation a) {
  return mpsb::activation_spec(a).mps_neuron_type;
}
static_assert(NeuronTypeOf(mpsb::Activation::kNone) == MPSCNNNeuronTypeNone, "None");
static_assert(NeuronTypeOf(mpsb::Activation::kReLU) == MPSCNNNeuronTypeReLU, "ReLU");
static_assert(NeuronTypeOf(mpsb::Activation::kReLU6) == MPSCNNNeuronTypeReLUN, "ReLUN");
static_assert(NeuronTypeOf(mpsb::Activation::kLeakyReLU) == MPSCNNNeuronTypeReLU, "ReLU");
static_assert(NeuronTypeOf(mpsb::Activation::kSigmoid) == MPSCNNNeuronTypeSigmoid, "Sigmoid");
static_assert(NeuronTypeOf(mpsb::Activation::kTanh) == MPSCNNNeuronTypeTanH, "TanH");
static_assert(NeuronTypeOf(mpsb::Activation::kELU) == MPSCNNNeuronTypeELU, "ELU");
static_assert(NeuronTypeOf(mpsb::Activation::kHardSigmoid) == MPSCNNNeuronTypeHardSigmoid,
              "HardSigmoid");
static_assert(NeuronTypeOf(mpsb::Activation::kSoftplus) == MPSCNNNeuronTypeSoftPlus, "SoftPlus");
static_assert(NeuronTypeOf(mpsb::Activation::kGELU) == MPSCNNNeuronTypeGeLU, "GeLU");
static_assert(NeuronTypeOf(mpsb::Activation::kPReLU) == MPSCNNNeuronTypePReLU, "PReLU");
static_assert(mpsb::kActivationCount == 11, "a new activation needs its static_assert above");

using mpsb_apple::SetError;
using mpsb_apple::StringFromNSString;
using mpsb_apple::FindLayer;
using mpsb_apple::StringFromView;

// The data source of the named layer, or nullopt with *error set when there
// is no such layer or it is of another kind.
template <typename Source>
std::optional<Source> SourceForLayer(const SharedBundle &bundle, NSString *name, NSError **error) {
  std::optional<mpsb::Layer> layer = FindLayer(bundle, name, error);
  if (!layer) return std::nullopt;
  mpsb::Result<Source> source = Source::from(*bundle, *layer);
  if (!source) {
    SetError(error, source.error(), source.message());
    return std::nullopt;
  }
  return std::move(source).value();
}

}  // namespace

// An NSData over bytes in the mapping that holds the mapping's owner, so
// MPS (or the app) may keep it as long as it likes. NSData is a class
// cluster: a subclass provides -bytes and -length (Foundation's NSData
// documentation, "Subclassing Notes").
@interface MPSBMappedData : NSData {
 @private
  SharedBundle *_owner;
  const void *_bytes;
  NSUInteger _length;
}
- (instancetype)initWithOwner:(const SharedBundle &)owner
                        bytes:(const void *)bytes
                       length:(NSUInteger)length;
@end

@implementation MPSBMappedData

- (instancetype)initWithOwner:(const SharedBundle &)owner
                        bytes:(const void *)bytes
                       length:(NSUInteger)length {
  self = [super init];
  if (self != nil) {
    _owner = new SharedBundle(owner);
    _bytes = bytes;
    _length = length;
  }
  return self;
}

// GNUstep's -[NSData init] forwards here (with no bytes), and NSData's own
// version refuses subclasses; Apple's -init never calls it.
- (instancetype)initWithBytesNoCopy:(void *)bytes
                             length:(NSUInteger)length
                       freeWhenDone:(BOOL)free {
  (void)free;
  _bytes = bytes;
  _length = length;
  return self;
}

- (void)dealloc {
  delete _owner;
  MPSB_SUPER_DEALLOC();
}

- (const void *)bytes {
  return _bytes;
}

- (NSUInteger)length {
  return _length;
}

// Immutable and owning nothing but a share of the mapping: a copy is
// this object.
- (id)copyWithZone:(NSZone *)zone {
  (void)zone;
  return MPSB_RETAIN(self);
}

@end

namespace {

// The MPS neuron of the layer's fused activation or of a prelu layer;
// mpsb::neuron computes the type and its a, b, c (MPSCNNNeuronType.h). A
// PReLU's slopes go to +[MPSNNNeuronDescriptor
// cnnNeuronPReLUDescriptorWithData:noCopy:] as an MPSBMappedData with noCopy
// YES: MPS then does not copy the bytes, so the NSData must keep them alive,
// which MPSBMappedData does. nil and *error set for other kinds.
MPSNNNeuronDescriptor *NeuronFor(const SharedBundle &bundle, const mpsb::Layer &layer,
                                 NSError **error) {
  const auto n = mpsb::neuron(layer);
  if (!n.ok()) {
    SetError(error, n.error(), n.message());
    return nil;
  }
  if (n->activation == mpsb::Activation::kPReLU) {
    MPSBMappedData *data =
        [[MPSBMappedData alloc] initWithOwner:bundle
                                        bytes:n->data
                                       length:static_cast<NSUInteger>(n->count * sizeof(float))];
    MPSNNNeuronDescriptor *d = [MPSNNNeuronDescriptor cnnNeuronPReLUDescriptorWithData:data
                                                                                noCopy:true];
    MPSB_RELEASE(data);
    return d;
  }
  MPSNNNeuronDescriptor *d = [MPSNNNeuronDescriptor
      cnnNeuronDescriptorWithType:static_cast<MPSCNNNeuronType>(n->mps_neuron_type)
                                a:n->a
                                b:n->b];
  [d setC:n->c];
  return d;
}

bool IsDepthwise(const mpsb::ConvolutionSource &s) {
  return s.kind() == mpsb::LayerKind::kConv2d && s.groups() > 1 &&
         s.groups() == s.input_feature_channels();
}

// A +1 descriptor. Apple: "MPS will not modify this object other than
// perhaps to retain it", so one per data source is built up front and
// returned on every -descriptor call.
MPSCNNConvolutionDescriptor *NewDescriptor(const SharedBundle &bundle,
                                           const mpsb::ConvolutionSource &s) {
  const bool depthwise = IsDepthwise(s);
  // MPSCNNDepthWiseConvolutionDescriptor: "group must be 1", weights
  // [outputFeatureChannels][kH][kW], which is OHWI with in/groups = 1.
  Class cls = depthwise ? [MPSCNNDepthWiseConvolutionDescriptor class]
                        : [MPSCNNConvolutionDescriptor class];
  MPSCNNConvolutionDescriptor *d =
      [cls cnnConvolutionDescriptorWithKernelWidth:s.kernel_width()
                                      kernelHeight:s.kernel_height()
                              inputFeatureChannels:s.input_feature_channels()
                             outputFeatureChannels:s.output_feature_channels()];
  d.strideInPixelsX = s.stride_x();
  d.strideInPixelsY = s.stride_y();
  d.dilationRateX = s.dilation_x();
  d.dilationRateY = s.dilation_y();
  d.groups = depthwise ? 1 : s.groups();
  // fusedNeuronDescriptor replaces -setNeuronType:parameterA:parameterB:,
  // deprecated since macOS 10.13.4 / iOS 11.3.
  // No activation keeps the descriptor's default, MPSCNNNeuronTypeNone.
  if (s.activation() != mpsb::Activation::kNone) {
    MPSNNNeuronDescriptor *neuron = NeuronFor(bundle, s.layer(), NULL);
    if (neuron != nil) d.fusedNeuronDescriptor = neuron;
  }
  return MPSB_RETAIN(d);
}

// Gamma 1 and beta 0 for layers without affine parameters: MPS reads
// numberOfFeatureChannels floats from both on some paths, so they are never
// NULL.
struct AffineDefaults {
  std::vector<float> ones, zeros;
  explicit AffineDefaults(uint32_t n) : ones(n, 1.0f), zeros(n, 0.0f) {}
  // The protocols' -gamma / -beta return float *; MPS only reads them.
  float *gamma_or_ones(const float *gamma) const {
    return const_cast<float *>(gamma ? gamma : ones.data());
  }
  float *beta_or_zeros(const float *beta) const {
    return const_cast<float *>(beta ? beta : zeros.data());
  }
};

}  // namespace

// The private state behind each class's one pointer ivar (see the header).
struct MPSBBundleState {
  SharedBundle bundle;
};

struct MPSBConvolutionState {
  SharedBundle bundle;
  mpsb::ConvolutionSource source;  // points into *bundle, which never moves
};

struct MPSBBatchNormState {
  SharedBundle bundle;
  mpsb::BatchNormSource source;
  AffineDefaults defaults;
};

struct MPSBInstanceNormState {
  SharedBundle bundle;
  mpsb::InstanceNormSource source;
  AffineDefaults defaults;
};

struct MPSBGroupNormState {
  SharedBundle bundle;
  mpsb::GroupNormSource source;
  AffineDefaults defaults;
};

// ---------------------------------------------------------------------------

@interface MPSBBundle ()
- (instancetype)initPrivate;
@end

@interface MPSBConvolutionDataSource ()
- (instancetype)initWithConvolutionState:(MPSBConvolutionState *)state
                   kernelWeightsDataType:(MPSDataType)kernelType;
@end

@interface MPSBBatchNormalizationDataSource ()
- (instancetype)initWithBatchNormState:(MPSBBatchNormState *)state;
@end

@interface MPSBInstanceNormalizationDataSource ()
- (instancetype)initWithInstanceNormState:(MPSBInstanceNormState *)state;
@end

@interface MPSBGroupNormalizationDataSource ()
- (instancetype)initWithGroupNormState:(MPSBGroupNormState *)state;
@end

// ---------------------------------------------------------------------------

@implementation MPSBBundle

MPSB_UNAVAILABLE_INIT

+ (instancetype)bundleWithPath:(NSString *)path error:(NSError **)error {
  return [self bundleWithPath:path verifyChecksums:NO error:error];
}

+ (instancetype)bundleWithPath:(NSString *)path
               verifyChecksums:(BOOL)verifyChecksums
                         error:(NSError **)error {
  if (path == nil) {
    SetError(error, mpsb::Error::kInvalidArgument, "bundle path is nil");
    return nil;
  }
  mpsb::OpenOptions options;
  options.verify_checksums = verifyChecksums ? true : false;
  mpsb::Result<mpsb::Bundle> opened =
      mpsb::Bundle::open(StringFromNSString([path stringByStandardizingPath]), options);
  if (!opened) {
    SetError(error, opened.error(), opened.message());
    return nil;
  }
  MPSBBundle *bundle = [[self alloc] initPrivate];
  bundle->_state =
      new MPSBBundleState{std::make_shared<const mpsb::Bundle>(std::move(opened).value())};
  const mpsb::Bundle &b = *bundle->_state->bundle;
  bundle->_name = MPSB_RETAIN(StringFromView(b.name()));
  NSMutableArray *names = [NSMutableArray arrayWithCapacity:b.layer_count()];
  for (size_t i = 0; i < b.layer_count(); ++i) {
    [names addObject:StringFromView(b.layer_in_network_order(i).name())];
  }
  bundle->_layerNames = [names copy];
  return MPSB_AUTORELEASE(bundle);
}

- (instancetype)initPrivate {
  return [super init];
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_name);
  MPSB_RELEASE(_layerNames);
  MPSB_SUPER_DEALLOC();
}

- (NSString *)name {
  return _name;
}

- (NSArray *)layerNames {
  return _layerNames;
}

- (const void *)segmentBytes {
  return _state->bundle->segment().data();
}

- (NSUInteger)segmentLength {
  return static_cast<NSUInteger>(_state->bundle->segment().size());
}

- (MPSBConvolutionDataSource *)convolutionDataSourceForLayer:(NSString *)layerName
                                                       error:(NSError **)error {
  auto source = SourceForLayer<mpsb::ConvolutionSource>(_state->bundle, layerName, error);
  if (!source) return nil;
  MPSBConvolutionState *state = new MPSBConvolutionState{_state->bundle, *source};
  return MPSB_AUTORELEASE([[MPSBConvolutionDataSource alloc]
      initWithConvolutionState:state
         kernelWeightsDataType:MPSDataTypeFloat16]);
}

- (MPSBBatchNormalizationDataSource *)batchNormalizationDataSourceForLayer:(NSString *)layerName
                                                                     error:(NSError **)error {
  auto source = SourceForLayer<mpsb::BatchNormSource>(_state->bundle, layerName, error);
  if (!source) return nil;
  MPSBBatchNormState *state = new MPSBBatchNormState{
      _state->bundle, *source, AffineDefaults(source->number_of_feature_channels())};
  return MPSB_AUTORELEASE([[MPSBBatchNormalizationDataSource alloc] initWithBatchNormState:state]);
}

- (MPSBInstanceNormalizationDataSource *)instanceNormalizationDataSourceForLayer:
                                             (NSString *)layerName
                                                                           error:(NSError **)error {
  auto source = SourceForLayer<mpsb::InstanceNormSource>(_state->bundle, layerName, error);
  if (!source) return nil;
  MPSBInstanceNormState *state = new MPSBInstanceNormState{
      _state->bundle, *source, AffineDefaults(source->number_of_feature_channels())};
  return MPSB_AUTORELEASE(
      [[MPSBInstanceNormalizationDataSource alloc] initWithInstanceNormState:state]);
}

- (MPSBGroupNormalizationDataSource *)groupNormalizationDataSourceForLayer:(NSString *)layerName
                                                                     error:(NSError **)error {
  auto source = SourceForLayer<mpsb::GroupNormSource>(_state->bundle, layerName, error);
  if (!source) return nil;
  MPSBGroupNormState *state = new MPSBGroupNormState{
      _state->bundle, *source, AffineDefaults(source->number_of_feature_channels())};
  return MPSB_AUTORELEASE([[MPSBGroupNormalizationDataSource alloc] initWithGroupNormState:state]);
}

- (MPSNNNeuronDescriptor *)neuronDescriptorForLayer:(NSString *)layerName error:(NSError **)error {
  std::optional<mpsb::Layer> layer = FindLayer(_state->bundle, layerName, error);
  if (!layer) return nil;
  return NeuronFor(_state->bundle, *layer, error);
}

- (NSString *)foldedBatchNormalizationForLayer:(NSString *)layerName error:(NSError **)error {
  std::optional<mpsb::Layer> layer = FindLayer(_state->bundle, layerName, error);
  if (!layer) return nil;
  return StringFromView(layer->folded_batchnorm());
}

- (NSUInteger)legalizedGroupsForLayer:(NSString *)layerName error:(NSError **)error {
  std::optional<mpsb::Layer> layer = FindLayer(_state->bundle, layerName, error);
  return layer ? static_cast<NSUInteger>(layer->legalized_groups()) : 0;
}

- (const mpsb_apple::SharedBundle *)sharedBundle {
  return &_state->bundle;
}

- (NSString *)description {
  return [NSString stringWithFormat:@"<MPSBBundle '%@': %lu layers, segment %lu bytes>", _name,
                                    (unsigned long)[_layerNames count],
                                    (unsigned long)[self segmentLength]];
}

@end

// ---------------------------------------------------------------------------

@implementation MPSBConvolutionDataSource

MPSB_UNAVAILABLE_INIT

// Takes ownership of `state`.
- (instancetype)initWithConvolutionState:(MPSBConvolutionState *)state
                   kernelWeightsDataType:(MPSDataType)kernelType {
  self = [super init];
  if (self == nil) {
    delete state;
    return nil;
  }
  _state = state;
  _descriptor = NewDescriptor(state->bundle, state->source);
  _label = MPSB_RETAIN(StringFromView(state->source.label()));
  _kernelWeightsDataType = MPSDataTypeFloat16;
  [self setKernelWeightsDataType:kernelType];
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_descriptor);
  MPSB_RELEASE(_label);
  MPSB_SUPER_DEALLOC();
}

// NSCopying (required by MPSCNNConvolutionDataSource; MPS copies data
// sources when it copies a kernel or graph). The copy is a new object over
// the same layer that shares the mapping owner, so it outlives the original
// and the MPSBBundle.
- (id)copyWithZone:(NSZone *)zone {
  return
      [[[self class] allocWithZone:zone] initWithConvolutionState:new MPSBConvolutionState(*_state)
                                            kernelWeightsDataType:_kernelWeightsDataType];
}

// -copyWithZone:device: (optional, macOS 10.14 / iOS 12): MPS calls it in
// preference to -copyWithZone: when it copies a kernel to a device.
- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device {
  (void)device;
  return [self copyWithZone:zone];
}

// Only the uint8 side table the layer has: see the header.
- (BOOL)respondsToSelector:(SEL)selector {
  if (sel_isEqual(selector, @selector(rangesForUInt8Kernel))) {
    return [self weightsQuantizationType] == MPSCNNWeightsQuantizationTypeLinear;
  }
  if (sel_isEqual(selector, @selector(lookupTableForUInt8Kernel))) {
    return [self weightsQuantizationType] == MPSCNNWeightsQuantizationTypeLookupTable;
  }
  return [super respondsToSelector:selector];
}

// -dataType: "what sort of weights are provided by the object";
// MPSCNNConvolution supports UInt8, Float16 and Float32.
- (MPSDataType)dataType {
  return static_cast<MPSDataType>(_state->source.data_type());
}

// -descriptor: "a MPSCNNConvolutionDescriptor that describes the kernel
// housed by this object".
- (MPSCNNConvolutionDescriptor *)descriptor {
  return _descriptor;
}

// -weights: "weight[outputChannels][kernelHeight][kernelWidth]
// [inputChannels/groups]", entries of type -dataType. MPS only reads them.
- (void *)weights {
  return const_cast<void *>(_state->source.weights());
}

// -biasTerms: outputFeatureChannels floats, "always float, even when the
// weights are not"; may be nil.
- (float *)biasTerms {
  return const_cast<float *>(_state->source.bias_terms());
}

// -load: "the data will be needed soon"; YES on success.
- (BOOL)load {
  return _state->source.load() ? YES : NO;
}

// -purge: "the data is no longer needed".
- (void)purge {
  _state->source.purge();
}

// -label: "transferred to the convolution at init time".
- (NSString *)label {
  return _label;
}

// -weightsLayout (optional): "Currently only OHWI layout is supported".
- (MPSCNNConvolutionWeightsLayout)weightsLayout {
  return MPSCNNConvolutionWeightsLayoutOHWI;
}

// -weightsQuantizationType (optional): Linear requires rangesForUInt8Kernel,
// LookupTable requires lookupTableForUInt8Kernel. None unless the weights are
// uint8.
- (MPSCNNWeightsQuantizationType)weightsQuantizationType {
  if (_state->source.weight_dtype() != mpsb::DType::kUInt8) {
    return MPSCNNWeightsQuantizationTypeNone;
  }
  switch (_state->source.quantization()) {
    case mpsb::Quantization::kLinear:
      return MPSCNNWeightsQuantizationTypeLinear;
    case mpsb::Quantization::kLookupTable:
      return MPSCNNWeightsQuantizationTypeLookupTable;
    case mpsb::Quantization::kNone:
      break;
  }
  return MPSCNNWeightsQuantizationTypeNone;
}

// -rangesForUInt8Kernel (optional): vector_float2[outputChannels] {min, max};
// weight = uint8 / 255 * (max - min) + min.
- (vector_float2 *)rangesForUInt8Kernel {
  return reinterpret_cast<vector_float2 *>(
      const_cast<float *>(_state->source.ranges_for_uint8_kernel()));
}

// -lookupTableForUInt8Kernel (optional): "a 256 entry lookup table".
- (float *)lookupTableForUInt8Kernel {
  return const_cast<float *>(_state->source.lookup_table_for_uint8_kernel());
}

// -kernelWeightsDataType (optional): see the header.
- (MPSDataType)kernelWeightsDataType {
  return _kernelWeightsDataType;
}

- (void)setKernelWeightsDataType:(MPSDataType)type {
  const bool float32_ok = [self dataType] == MPSDataTypeFloat32 && type == MPSDataTypeFloat32;
  _kernelWeightsDataType = float32_ok ? MPSDataTypeFloat32 : MPSDataTypeFloat16;
}

- (BOOL)isTransposed {
  return _state->source.transposed() ? YES : NO;
}

- (BOOL)isFullyConnected {
  return _state->source.kind() == mpsb::LayerKind::kLinear ? YES : NO;
}

- (BOOL)isDepthwise {
  return IsDepthwise(_state->source) ? YES : NO;
}

- (NSUInteger)paddingX {
  return _state->source.params().padding_w;
}

- (NSUInteger)paddingY {
  return _state->source.params().padding_h;
}

- (NSInteger)mpsOffsetX {
  return static_cast<NSInteger>(_state->source.mps_offset_x());
}

- (NSInteger)mpsOffsetY {
  return static_cast<NSInteger>(_state->source.mps_offset_y());
}

- (NSUInteger)outputPaddingX {
  return _state->source.params().output_padding_w;
}

- (NSUInteger)outputPaddingY {
  return _state->source.params().output_padding_h;
}

- (NSUInteger)weightsLength {
  return static_cast<NSUInteger>(_state->source.weights_tensor().size());
}

- (NSString *)description {
  return [NSString stringWithFormat:@"<MPSBConvolutionDataSource '%@' %lux%lu %lu->%lu>", _label,
                                    (unsigned long)_descriptor.kernelWidth,
                                    (unsigned long)_descriptor.kernelHeight,
                                    (unsigned long)_descriptor.inputFeatureChannels,
                                    (unsigned long)_descriptor.outputFeatureChannels];
}

@end

// ---------------------------------------------------------------------------

@implementation MPSBBatchNormalizationDataSource

MPSB_UNAVAILABLE_INIT

// Takes ownership of `state`.
- (instancetype)initWithBatchNormState:(MPSBBatchNormState *)state {
  self = [super init];
  if (self == nil) {
    delete state;
    return nil;
  }
  _state = state;
  _label = MPSB_RETAIN(StringFromView(state->source.label()));
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_label);
  MPSB_SUPER_DEALLOC();
}

// NSCopying: a new object sharing the mapping owner.
- (id)copyWithZone:(NSZone *)zone {
  return [[[self class] allocWithZone:zone] initWithBatchNormState:new MPSBBatchNormState(*_state)];
}

// -numberOfFeatureChannels: "the number of feature channels within images to
// be normalized using the supplied parameters".
- (NSUInteger)numberOfFeatureChannels {
  return _state->source.number_of_feature_channels();
}

// -gamma: "the scale factors".
- (float *)gamma {
  return _state->defaults.gamma_or_ones(_state->source.gamma());
}

// -beta: "the bias terms ... If NULL then no bias is to be applied".
- (float *)beta {
  return _state->defaults.beta_or_zeros(_state->source.beta());
}

// -mean / -variance: the running statistics used for inference.
- (float *)mean {
  return const_cast<float *>(_state->source.mean());
}

- (float *)variance {
  return const_cast<float *>(_state->source.variance());
}

// -epsilon (optional): PyTorch's eps.
- (float)epsilon {
  return _state->source.epsilon();
}

- (BOOL)load {
  return _state->source.load() ? YES : NO;
}

- (void)purge {
  _state->source.purge();
}

- (NSString *)label {
  return _label;
}

@end

// ---------------------------------------------------------------------------

@implementation MPSBInstanceNormalizationDataSource

MPSB_UNAVAILABLE_INIT

// Takes ownership of `state`.
- (instancetype)initWithInstanceNormState:(MPSBInstanceNormState *)state {
  self = [super init];
  if (self == nil) {
    delete state;
    return nil;
  }
  _state = state;
  _label = MPSB_RETAIN(StringFromView(state->source.label()));
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_label);
  MPSB_SUPER_DEALLOC();
}

- (id)copyWithZone:(NSZone *)zone {
  return [[[self class] allocWithZone:zone]
      initWithInstanceNormState:new MPSBInstanceNormState(*_state)];
}

// numberOfFeatureChannels: "the number of feature channels over which to
// normalize".
- (NSUInteger)numberOfFeatureChannels {
  return _state->source.number_of_feature_channels();
}

// -gamma / -beta: "a pointer to an array containing the gamma (beta) terms".
- (float *)gamma {
  return _state->defaults.gamma_or_ones(_state->source.gamma());
}

- (float *)beta {
  return _state->defaults.beta_or_zeros(_state->source.beta());
}

// -epsilon (optional): without it MPSCNNInstanceNormalization uses FLT_MIN,
// not PyTorch's 1e-5.
- (float)epsilon {
  return _state->source.epsilon();
}

- (NSString *)label {
  return _label;
}

// -load / -purge (optional in the protocol).
- (BOOL)load {
  return _state->source.load() ? YES : NO;
}

- (void)purge {
  _state->source.purge();
}

@end

// ---------------------------------------------------------------------------

@implementation MPSBGroupNormalizationDataSource

MPSB_UNAVAILABLE_INIT

// Takes ownership of `state`.
- (instancetype)initWithGroupNormState:(MPSBGroupNormState *)state {
  self = [super init];
  if (self == nil) {
    delete state;
    return nil;
  }
  _state = state;
  _label = MPSB_RETAIN(StringFromView(state->source.label()));
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_label);
  MPSB_SUPER_DEALLOC();
}

// NSCopying: a new object sharing the mapping owner.
- (id)copyWithZone:(NSZone *)zone {
  return [[[self class] allocWithZone:zone] initWithGroupNormState:new MPSBGroupNormState(*_state)];
}

// numberOfFeatureChannels: the channels normalized, PyTorch's num_channels.
- (NSUInteger)numberOfFeatureChannels {
  return _state->source.number_of_feature_channels();
}

// numberOfGroups: Apple requires it to divide numberOfFeatureChannels;
// Bundle::open has checked that it does.
- (NSUInteger)numberOfGroups {
  return _state->source.number_of_groups();
}

// The grouping is part of what was trained: a different value is ignored
// (see the header).
- (void)setNumberOfGroups:(NSUInteger)numberOfGroups {
  (void)numberOfGroups;
}

// -gamma / -beta: the scale and bias terms, numberOfFeatureChannels each.
- (float *)gamma {
  return _state->defaults.gamma_or_ones(_state->source.gamma());
}

- (float *)beta {
  return _state->defaults.beta_or_zeros(_state->source.beta());
}

// -epsilon (optional): PyTorch's eps.
- (float)epsilon {
  return _state->source.epsilon();
}

- (NSString *)label {
  return _label;
}

// Not in the protocol; madvise hints over the layer's tensors.
- (BOOL)load {
  return _state->source.load() ? YES : NO;
}

- (void)purge {
  _state->source.purge();
}

@end
