// Tiny implementations of the stub MPS classes (see
// stubs/MetalPerformanceShaders/MetalPerformanceShaders.h): they store what
// they are given, with Apple's documented defaults. Manual retain/release.
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

@implementation MPSNNNeuronDescriptor
@synthesize neuronType = _neuronType;
@synthesize a = _a;
@synthesize b = _b;
@synthesize c = _c;
@synthesize data = _data;

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
  MPSNNNeuronDescriptor *d = [[[self alloc] init] autorelease];
  d->_neuronType = neuronType;
  d->_a = a;
  d->_b = b;
  d->_c = 1.0f;
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
