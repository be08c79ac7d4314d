// Tiny implementations of the stub MPS classes (see
// stubs/MetalPerformanceShaders/MetalPerformanceShaders.h): they store what
// they are given, with Apple's documented defaults, and the kernels read
// their data source once, at init, as MPS does. Manual retain/release.
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

#include <string.h>

// No GPU here: the stubs never make a device.
id<MTLDevice> MTLCreateSystemDefaultDevice(void) { return nil; }

@implementation MPSNNNeuronDescriptor
@synthesize neuronType = _neuronType;
@synthesize a = _a;
@synthesize b = _b;
@synthesize c = _c;
@synthesize data = _data;

// NS_UNAVAILABLE to users (GNUstep defines the macro as nothing, so GCC
// wants a definition); the class methods below use it.
- (instancetype)init {
  return [super init];
}

+ (MPSNNNeuronDescriptor *)cnnNeuronPReLUDescriptorWithData:(NSData *)data noCopy:(bool)noCopy {
  MPSNNNeuronDescriptor *d = [self cnnNeuronDescriptorWithType:MPSCNNNeuronTypePReLU];
  d->_data = noCopy ? [data retain] : [data copy];
  return d;
}

- (void)dealloc {
  [_data release];
  [super dealloc];
}

+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType {
  return [self cnnNeuronDescriptorWithType:neuronType a:0.0f b:0.0f];
}

+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType a:(float)a {
  return [self cnnNeuronDescriptorWithType:neuronType a:a b:0.0f];
}

+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                     a:(float)a
                                                     b:(float)b {
  return [self cnnNeuronDescriptorWithType:neuronType a:a b:b c:1.0f];
}

+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                     a:(float)a
                                                     b:(float)b
                                                     c:(float)c {
  MPSNNNeuronDescriptor *d = [[[self alloc] init] autorelease];
  d->_neuronType = neuronType;
  d->_a = a;
  d->_b = b;
  d->_c = c;
  return d;
}

- (id)copyWithZone:(NSZone *)zone {
  MPSNNNeuronDescriptor *d = [[[self class] allocWithZone:zone] init];
  d->_neuronType = _neuronType;
  d->_a = _a;
  d->_b = _b;
  d->_c = _c;
  d->_data = [_data retain];
  return d;
}
@end

@implementation MPSCNNConvolutionDescriptor
@synthesize kernelWidth = _kernelWidth;
@synthesize kernelHeight = _kernelHeight;
@synthesize inputFeatureChannels = _inputFeatureChannels;
@synthesize outputFeatureChannels = _outputFeatureChannels;
@synthesize strideInPixelsX = _strideInPixelsX;
@synthesize strideInPixelsY = _strideInPixelsY;
@synthesize groups = _groups;
@synthesize dilationRateX = _dilationRateX;
@synthesize dilationRateY = _dilationRateY;
@synthesize fusedNeuronDescriptor = _fusedNeuronDescriptor;

- (id)init {
  self = [super init];
  if (self != nil) {
    _kernelWidth = _kernelHeight = 3;
    _strideInPixelsX = _strideInPixelsY = 1;
    _groups = 1;
    _dilationRateX = _dilationRateY = 1;
    _fusedNeuronDescriptor =
        [[MPSNNNeuronDescriptor cnnNeuronDescriptorWithType:MPSCNNNeuronTypeNone] retain];
  }
  return self;
}

- (void)dealloc {
  [_fusedNeuronDescriptor release];
  [super dealloc];
}

+ (instancetype)cnnConvolutionDescriptorWithKernelWidth:(NSUInteger)kernelWidth
                                           kernelHeight:(NSUInteger)kernelHeight
                                   inputFeatureChannels:(NSUInteger)inputFeatureChannels
                                  outputFeatureChannels:(NSUInteger)outputFeatureChannels {
  MPSCNNConvolutionDescriptor *d = [[[self alloc] init] autorelease];
  d->_kernelWidth = kernelWidth;
  d->_kernelHeight = kernelHeight;
  d->_inputFeatureChannels = inputFeatureChannels;
  d->_outputFeatureChannels = outputFeatureChannels;
  return d;
}

- (void)setNeuronType:(MPSCNNNeuronType)neuronType
           parameterA:(float)parameterA
           parameterB:(float)parameterB {
  [self setFusedNeuronDescriptor:[MPSNNNeuronDescriptor cnnNeuronDescriptorWithType:neuronType
                                                                                  a:parameterA
                                                                                  b:parameterB]];
}

- (id)copyWithZone:(NSZone *)zone {
  MPSCNNConvolutionDescriptor *d = [[[self class] allocWithZone:zone] init];
  d->_kernelWidth = _kernelWidth;
  d->_kernelHeight = _kernelHeight;
  d->_inputFeatureChannels = _inputFeatureChannels;
  d->_outputFeatureChannels = _outputFeatureChannels;
  d->_strideInPixelsX = _strideInPixelsX;
  d->_strideInPixelsY = _strideInPixelsY;
  d->_groups = _groups;
  d->_dilationRateX = _dilationRateX;
  d->_dilationRateY = _dilationRateY;
  [d setFusedNeuronDescriptor:_fusedNeuronDescriptor];
  return d;
}
@end

@implementation MPSCNNDepthWiseConvolutionDescriptor
- (NSUInteger)channelMultiplier {
  NSUInteger in = [self inputFeatureChannels];
  return in == 0 ? 0 : [self outputFeatureChannels] / in;
}
@end

@implementation MPSImageDescriptor
@synthesize channelFormat = _channelFormat;
@synthesize width = _width;
@synthesize height = _height;
@synthesize featureChannels = _featureChannels;
@synthesize numberOfImages = _numberOfImages;
@synthesize usage = _usage;

+ (MPSImageDescriptor *)imageDescriptorWithChannelFormat:(MPSImageFeatureChannelFormat)channelFormat
                                                   width:(NSUInteger)width
                                                  height:(NSUInteger)height
                                         featureChannels:(NSUInteger)featureChannels {
  MPSImageDescriptor *d = [[[self alloc] init] autorelease];
  d->_channelFormat = channelFormat;
  d->_width = width;
  d->_height = height;
  d->_featureChannels = featureChannels;
  d->_numberOfImages = 1;
  d->_usage = MTLTextureUsageShaderRead | MTLTextureUsageShaderWrite;
  return d;
}

- (id)copyWithZone:(NSZone *)zone {
  MPSImageDescriptor *d = [[[self class] allocWithZone:zone] init];
  d->_channelFormat = _channelFormat;
  d->_width = _width;
  d->_height = _height;
  d->_featureChannels = _featureChannels;
  d->_numberOfImages = _numberOfImages;
  d->_usage = _usage;
  return d;
}
@end

// The stub's one allocator: ordinary images.
@interface MPSBStubImageAllocator : NSObject <MPSImageAllocator>
@end

@implementation MPSBStubImageAllocator
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (id)initWithCoder:(NSCoder *)coder {
  return [super init];
}
- (void)encodeWithCoder:(NSCoder *)coder {
}
- (MPSImage *)imageForCommandBuffer:(id<MTLCommandBuffer>)cmdBuf
                    imageDescriptor:(MPSImageDescriptor *)inputDescriptor
                             kernel:(id)kernel {
  return [[[MPSImage alloc] initWithDevice:nil imageDescriptor:inputDescriptor] autorelease];
}
@end

@implementation MPSImage

+ (id<MPSImageAllocator>)defaultAllocator {
  static MPSBStubImageAllocator *allocator = nil;
  if (allocator == nil) allocator = [[MPSBStubImageAllocator alloc] init];
  return allocator;
}
@synthesize width = _width;
@synthesize height = _height;
@synthesize featureChannels = _featureChannels;
@synthesize numberOfImages = _numberOfImages;
@synthesize featureChannelFormat = _featureChannelFormat;
@synthesize label = _label;

- (instancetype)initWithDevice:(id<MTLDevice>)device
               imageDescriptor:(const MPSImageDescriptor *)imageDescriptor {
  self = [super init];
  if (self != nil) {
    MPSImageDescriptor *d = (MPSImageDescriptor *)imageDescriptor;
    _width = [d width];
    _height = [d height];
    _featureChannels = [d featureChannels];
    _numberOfImages = [d numberOfImages] == 0 ? 1 : [d numberOfImages];
    _featureChannelFormat = [d channelFormat];
    _pixels = [[NSMutableData alloc]
        initWithLength:_numberOfImages * _width * _height * _featureChannels * sizeof(float)];
  }
  return self;
}

- (void)dealloc {
  [_pixels release];
  [_label release];
  [super dealloc];
}

- (NSUInteger)stubImageFloats {
  return _width * _height * _featureChannels;
}

// Layout HeightxWidthxFeatureChannels only (the one tools/device_check uses).
- (void)readBytes:(void *)dataBytes
       dataLayout:(MPSDataLayout)dataLayout
       imageIndex:(NSUInteger)imageIndex {
  const NSUInteger n = [self stubImageFloats] * sizeof(float);
  memcpy(dataBytes, (const char *)[_pixels bytes] + imageIndex * n, n);
}

- (void)writeBytes:(const void *)dataBytes
        dataLayout:(MPSDataLayout)dataLayout
        imageIndex:(NSUInteger)imageIndex {
  const NSUInteger n = [self stubImageFloats] * sizeof(float);
  memcpy((char *)[_pixels mutableBytes] + imageIndex * n, dataBytes, n);
}
@end

@implementation MPSState
@end

@implementation MPSKernel
@synthesize device = _device;
@synthesize label = _label;

- (instancetype)initWithDevice:(id<MTLDevice>)device {
  self = [super init];
  if (self != nil) _device = [device retain];
  return self;
}

- (void)dealloc {
  [_device release];
  [_label release];
  [super dealloc];
}

- (id)copyWithZone:(NSZone *)zone {
  return [self copyWithZone:zone device:_device];
}

- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device {
  return [self retain];  // the stub kernels are not copied
}
@end

@implementation MPSNNDefaultPadding
+ (instancetype)paddingWithMethod:(MPSNNPaddingMethod)method {
  MPSNNDefaultPadding *p = [[[self alloc] init] autorelease];
  p->_method = method;
  return p;
}
+ (BOOL)supportsSecureCoding {
  return YES;
}
- (id)initWithCoder:(NSCoder *)coder {
  return [super init];
}
- (void)encodeWithCoder:(NSCoder *)coder {
}
- (MPSNNPaddingMethod)paddingMethod {
  return _method;
}
- (NSString *)label {
  return @"default";
}
@end

@implementation MPSCNNKernel
@synthesize offset = _offset;
@synthesize clipRect = _clipRect;
@synthesize destinationFeatureChannelOffset = _destinationFeatureChannelOffset;
@synthesize edgeMode = _edgeMode;
@synthesize padding = _padding;
@synthesize destinationImageAllocator = _destinationImageAllocator;

- (instancetype)initWithDevice:(id<MTLDevice>)device {
  self = [super initWithDevice:device];
  if (self != nil) {
    _edgeMode = MPSImageEdgeModeZero;
    _padding = [[MPSNNDefaultPadding
        paddingWithMethod:MPSNNPaddingMethodAlignCentered | MPSNNPaddingMethodSizeSame] retain];
  }
  return self;
}

- (void)dealloc {
  [_padding release];
  [_destinationImageAllocator release];
  [super dealloc];
}

- (void)encodeToCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                  sourceImage:(MPSImage *)sourceImage
             destinationImage:(MPSImage *)destinationImage {
}

- (MPSImageDescriptor *)destinationImageDescriptorForSourceImages:(NSArray *)sourceImages
                                                     sourceStates:(NSArray *)sourceStates {
  MPSImage *src = [sourceImages objectAtIndex:0];
  MPSImageDescriptor *guess =
      [MPSImageDescriptor imageDescriptorWithChannelFormat:[src featureChannelFormat]
                                                     width:[src width]
                                                    height:[src height]
                                           featureChannels:[src featureChannels]];
  if (([_padding paddingMethod] & MPSNNPaddingMethodCustom) != 0) {
    return [_padding destinationImageDescriptorForSourceImages:sourceImages
                                                  sourceStates:sourceStates
                                                     forKernel:self
                                           suggestedDescriptor:guess];
  }
  return guess;
}

- (MPSImage *)encodeToCommandBuffer:(id<MTLCommandBuffer>)commandBuffer
                        sourceImage:(MPSImage *)sourceImage {
  MPSImageDescriptor *d =
      [self destinationImageDescriptorForSourceImages:[NSArray arrayWithObject:sourceImage]
                                         sourceStates:nil];
  MPSImage *out = [[MPSImage defaultAllocator] imageForCommandBuffer:commandBuffer
                                                     imageDescriptor:d
                                                              kernel:self];
  [self encodeToCommandBuffer:commandBuffer sourceImage:sourceImage destinationImage:out];
  return out;
}
@end

// What MPS reads from a convolution data source at init.
static MPSDataType KernelTypeOf(id<MPSCNNConvolutionDataSource> source) {
  return [source respondsToSelector:@selector(kernelWeightsDataType)]
             ? [source kernelWeightsDataType]
             : MPSDataTypeFloat16;
}

@implementation MPSCNNConvolution
@synthesize inputFeatureChannels = _inputFeatureChannels;
@synthesize outputFeatureChannels = _outputFeatureChannels;
@synthesize groups = _groups;
@synthesize kernelWidth = _kernelWidth;
@synthesize kernelHeight = _kernelHeight;
@synthesize strideInPixelsX = _strideInPixelsX;
@synthesize strideInPixelsY = _strideInPixelsY;
@synthesize dilationRateX = _dilationRateX;
@synthesize dilationRateY = _dilationRateY;
@synthesize dataSource = _dataSource;
@synthesize fusedNeuronDescriptor = _fusedNeuronDescriptor;
@synthesize accumulatorPrecisionOption = _accumulatorPrecisionOption;

- (instancetype)initWithDevice:(id<MTLDevice>)device
                       weights:(id<MPSCNNConvolutionDataSource>)weights {
  self = [super initWithDevice:device];
  if (self != nil) {
    [weights load];
    MPSCNNConvolutionDescriptor *d = [weights descriptor];
    _dataSource = [weights retain];
    _inputFeatureChannels = [d inputFeatureChannels];
    _outputFeatureChannels = [d outputFeatureChannels];
    _groups = [d groups];
    _kernelWidth = [d kernelWidth];
    _kernelHeight = [d kernelHeight];
    _strideInPixelsX = [d strideInPixelsX];
    _strideInPixelsY = [d strideInPixelsY];
    _dilationRateX = [d dilationRateX];
    _dilationRateY = [d dilationRateY];
    _fusedNeuronDescriptor = [[d fusedNeuronDescriptor] retain];
    _depthwise = [d isKindOfClass:[MPSCNNDepthWiseConvolutionDescriptor class]];
    _kernelWeightsDataTypeAtInit = KernelTypeOf(weights);
    [self setLabel:[weights label]];
    [weights purge];
  }
  return self;
}

- (void)dealloc {
  [_dataSource release];
  [_fusedNeuronDescriptor release];
  [super dealloc];
}

- (MPSDataType)stubKernelWeightsDataTypeAtInit {
  return _kernelWeightsDataTypeAtInit;
}

- (BOOL)stubDepthwise {
  return _depthwise;
}
@end

@implementation MPSCNNFullyConnected
@end

@implementation MPSCNNConvolutionTranspose
@synthesize inputFeatureChannels = _inputFeatureChannels;
@synthesize outputFeatureChannels = _outputFeatureChannels;
@synthesize groups = _groups;
@synthesize kernelOffsetX = _kernelOffsetX;
@synthesize kernelOffsetY = _kernelOffsetY;
@synthesize dataSource = _dataSource;
@synthesize accumulatorPrecisionOption = _accumulatorPrecisionOption;

- (instancetype)initWithDevice:(id<MTLDevice>)device
                       weights:(id<MPSCNNConvolutionDataSource>)weights {
  self = [super initWithDevice:device];
  if (self != nil) {
    [weights load];
    MPSCNNConvolutionDescriptor *d = [weights descriptor];
    _dataSource = [weights retain];
    _inputFeatureChannels = [d inputFeatureChannels];
    _outputFeatureChannels = [d outputFeatureChannels];
    _groups = [d groups];
    _kernelWeightsDataTypeAtInit = KernelTypeOf(weights);
    [self setLabel:[weights label]];
    [weights purge];
  }
  return self;
}

- (void)dealloc {
  [_dataSource release];
  [super dealloc];
}

- (MPSDataType)stubKernelWeightsDataTypeAtInit {
  return _kernelWeightsDataTypeAtInit;
}
@end

@implementation MPSCNNNeuron
- (instancetype)initWithDevice:(id<MTLDevice>)device
              neuronDescriptor:(MPSNNNeuronDescriptor *)neuronDescriptor {
  self = [super initWithDevice:device];
  if (self != nil) _descriptor = [neuronDescriptor copy];
  return self;
}
- (void)dealloc {
  [_descriptor release];
  [super dealloc];
}
- (MPSCNNNeuronType)neuronType {
  return [_descriptor neuronType];
}
- (float)a {
  return [_descriptor a];
}
- (float)b {
  return [_descriptor b];
}
- (float)c {
  return [_descriptor c];
}
- (NSData *)data {
  return [_descriptor data];
}
@end

@implementation MPSCNNBatchNormalization
@synthesize numberOfFeatureChannels = _numberOfFeatureChannels;
@synthesize epsilon = _epsilon;
@synthesize dataSource = _dataSource;
- (instancetype)initWithDevice:(id<MTLDevice>)device
                    dataSource:(id<MPSCNNBatchNormalizationDataSource>)dataSource {
  self = [super initWithDevice:device];
  if (self != nil) {
    _dataSource = [dataSource retain];
    _numberOfFeatureChannels = [dataSource numberOfFeatureChannels];
    _epsilon = [dataSource respondsToSelector:@selector(epsilon)] ? [dataSource epsilon] : 0.001f;
  }
  return self;
}
- (void)dealloc {
  [_dataSource release];
  [super dealloc];
}
@end

@implementation MPSCNNInstanceNormalization
@synthesize epsilon = _epsilon;
@synthesize dataSource = _dataSource;
- (instancetype)initWithDevice:(id<MTLDevice>)device
                    dataSource:(id<MPSCNNInstanceNormalizationDataSource>)dataSource {
  self = [super initWithDevice:device];
  if (self != nil) {
    _dataSource = [dataSource retain];
    _epsilon = [dataSource respondsToSelector:@selector(epsilon)] ? [dataSource epsilon] : 1e-38f;
  }
  return self;
}
- (void)dealloc {
  [_dataSource release];
  [super dealloc];
}
@end

@implementation MPSCNNGroupNormalization
@synthesize epsilon = _epsilon;
@synthesize dataSource = _dataSource;
- (instancetype)initWithDevice:(id<MTLDevice>)device
                    dataSource:(id<MPSCNNGroupNormalizationDataSource>)dataSource {
  self = [super initWithDevice:device];
  if (self != nil) {
    _dataSource = [dataSource retain];
    _epsilon = [dataSource respondsToSelector:@selector(epsilon)] ? [dataSource epsilon] : 1e-38f;
  }
  return self;
}
- (void)dealloc {
  [_dataSource release];
  [super dealloc];
}
@end

@implementation MPSNNImageNode
+ (instancetype)nodeWithHandle:(id)handle {
  return [[[self alloc] init] autorelease];
}
@end

@implementation MPSCNNConvolutionGradientStateNode
@end

@implementation MPSNNFilterNode
@synthesize resultImage = _resultImage;
@synthesize paddingPolicy = _paddingPolicy;
@synthesize label = _label;

- (instancetype)initWithSource:(id)source parameters:(id)parameters {
  self = [super init];
  if (self != nil) {
    _source = [source retain];
    _parameters = [parameters retain];
    _resultImage = [[MPSNNImageNode alloc] init];
    _paddingPolicy = [[MPSNNDefaultPadding
        paddingWithMethod:MPSNNPaddingMethodAlignCentered | MPSNNPaddingMethodSizeSame] retain];
  }
  return self;
}

- (void)dealloc {
  [_source release];
  [_parameters release];
  [_resultImage release];
  [_paddingPolicy release];
  [_label release];
  [super dealloc];
}

- (id)stubParameters {
  return _parameters;
}
@end

@implementation MPSCNNConvolutionNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)sourceNode
                       weights:(id<MPSCNNConvolutionDataSource>)weights {
  return [[[self alloc] initWithSource:sourceNode parameters:weights] autorelease];
}
@end

@implementation MPSCNNFullyConnectedNode
@end

@implementation MPSCNNConvolutionTransposeNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)sourceNode
      convolutionGradientState:(MPSCNNConvolutionGradientStateNode *)convolutionGradientState
                       weights:(id<MPSCNNConvolutionDataSource>)weights {
  return [[[self alloc] initWithSource:sourceNode parameters:weights] autorelease];
}
@end

@implementation MPSCNNBatchNormalizationNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)source
                    dataSource:(id<MPSCNNBatchNormalizationDataSource>)dataSource {
  return [[[self alloc] initWithSource:source parameters:dataSource] autorelease];
}
@end

@implementation MPSCNNInstanceNormalizationNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)source
                    dataSource:(id<MPSCNNInstanceNormalizationDataSource>)dataSource {
  return [[[self alloc] initWithSource:source parameters:dataSource] autorelease];
}
@end

@implementation MPSCNNGroupNormalizationNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)source
                    dataSource:(id<MPSCNNGroupNormalizationDataSource>)dataSource {
  return [[[self alloc] initWithSource:source parameters:dataSource] autorelease];
}
@end

@implementation MPSCNNNeuronPReLUNode
+ (instancetype)nodeWithSource:(MPSNNImageNode *)sourceNode aData:(NSData *)aData {
  return [[[self alloc] initWithSource:sourceNode parameters:aData] autorelease];
}
@end

// --- No-copy buffers (MTLStubDevice, stubs/Metal/Metal.h) -------------------

@interface MTLStubBuffer : NSObject <MTLBuffer> {
 @private
  MTLStubDevice *_device;
  void *_contents;
  NSUInteger _length;
  MTLStubDeallocator _deallocator;
}
- (instancetype)initWithDevice:(MTLStubDevice *)device
                      contents:(void *)contents
                        length:(NSUInteger)length
                   deallocator:(MTLStubDeallocator)deallocator;
@end

@interface MTLStubDevice ()
- (void)bufferWentAway:(BOOL)calledDeallocator;
@end

@implementation MTLStubBuffer
- (instancetype)initWithDevice:(MTLStubDevice *)device
                      contents:(void *)contents
                        length:(NSUInteger)length
                   deallocator:(MTLStubDeallocator)deallocator {
  self = [super init];
  if (self != nil) {
    _device = [device retain];
    _contents = contents;
    _length = length;
    _deallocator = deallocator;
  }
  return self;
}

- (void)dealloc {
  // GCC has no blocks: the deallocator is the hand-built record, whose
  // invoke function frees it (GSBlocks.h's CALL_BLOCK).
  if (_deallocator != NULL) CALL_BLOCK(_deallocator, _contents, _length);
  [_device bufferWentAway:_deallocator != NULL];
  [_device release];
  [super dealloc];
}

- (void *)contents {
  return _contents;
}

- (NSUInteger)length {
  return _length;
}
@end

@implementation MTLStubDevice
@synthesize liveBuffers = _liveBuffers;
@synthesize deallocatorCalls = _deallocatorCalls;

- (instancetype)initWithMaxBufferLength:(NSUInteger)maxBufferLength pageSize:(NSUInteger)pageSize {
  self = [super init];
  if (self != nil) {
    _maxBufferLength = maxBufferLength;
    _pageSize = pageSize;
  }
  return self;
}

- (NSString *)name {
  return @"MTLStubDevice";
}

- (id<MTLCommandQueue>)newCommandQueue {
  return nil;  // no GPU here
}

- (NSUInteger)maxBufferLength {
  return _maxBufferLength;
}

- (id<MTLBuffer>)newBufferWithBytesNoCopy:(void *)pointer
                                   length:(NSUInteger)length
                                  options:(MTLResourceOptions)options
                              deallocator:(MTLStubDeallocator)deallocator {
  (void)options;
  if (pointer == NULL || length == 0 || length > _maxBufferLength ||
      (NSUInteger)pointer % _pageSize != 0 || length % _pageSize != 0) {
    return nil;
  }
  ++_liveBuffers;
  return [[MTLStubBuffer alloc] initWithDevice:self
                                      contents:pointer
                                        length:length
                                   deallocator:deallocator];
}

- (void)bufferWentAway:(BOOL)calledDeallocator {
  --_liveBuffers;
  if (calledDeallocator) ++_deallocatorCalls;
}
@end
