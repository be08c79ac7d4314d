// Declaration stub of Apple's MetalPerformanceShaders for the GNUstep check
// build of runtime/apple.
//
// Written from Apple's documented interface (developer.apple.com/
// documentation/metalperformanceshaders and the SDK headers
// MPSCoreTypes.h, MPSImage.h, MPSKernel.h, MPSCNNKernel.h,
// MPSNeuralNetworkTypes.h, MPSCNNNeuronType.h, MPSCNNNeuron.h,
// MPSCNNConvolution.h, MPSCNNBatchNormalization.h,
// MPSCNNInstanceNormalization.h, MPSCNNGroupNormalization.h,
// MPSNNGraphNodes.h): the enum values are Apple's, the protocols keep
// Apple's @required / @optional split, nullability and availability
// (API_AVAILABLE, see Metal.h: attributes under clang, nothing under GCC),
// properties are properties where Apple has properties, so the compiler
// checks that the adapters implement every required method with the right
// types. Only what the adapters and tools/device_check use is declared. The
// classes have tiny implementations in tests/apple/stubs.m that store what
// they are given (and, like MPS, read a data source once, at init); nothing
// here computes anything.
#ifndef MPSB_TESTS_APPLE_STUBS_MPS_H_
#define MPSB_TESTS_APPLE_STUBS_MPS_H_

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdint.h>

#define MPS_NULLABLE MPSB_STUB_NULLABLE
#define MPS_NONNULL MPSB_STUB_NONNULL

// <simd/simd.h>: vector_float2 is two floats, 8 bytes, 8-byte aligned
// (clang's ext_vector_type(2); GCC's vector_size gives the same layout).
typedef float vector_float2 __attribute__((__vector_size__(8)));

// --- MPSCoreTypes.h ---------------------------------------------------------
typedef NS_ENUM(uint32_t, MPSDataType) {
  MPSDataTypeInvalid = 0,
  MPSDataTypeFloatBit = 0x10000000,
  MPSDataTypeFloat32 = 0x10000000 | 32,
  MPSDataTypeFloat16 = 0x10000000 | 16,
  MPSDataTypeSignedBit = 0x20000000,
  MPSDataTypeInt8 = 0x20000000 | 8,
  MPSDataTypeInt16 = 0x20000000 | 16,
  MPSDataTypeUInt8 = 8,
  MPSDataTypeUInt16 = 16,
  MPSDataTypeUInt32 = 32,
  MPSDataTypeNormalizedBit = 0x40000000,
  MPSDataTypeUnorm1 = 0x40000000 | 1,
  MPSDataTypeUnorm8 = 0x40000000 | 8,
};

// --- MPSCNNNeuronType.h (NS_ENUM(int32_t)) -----------------------------------
typedef NS_ENUM(int32_t, MPSCNNNeuronType) {
  MPSCNNNeuronTypeNone = 0,     // f(x) = x
  MPSCNNNeuronTypeReLU,         // f(x) = x >= 0 ? x : a * x
  MPSCNNNeuronTypeLinear,       // f(x) = a * x + b
  MPSCNNNeuronTypeSigmoid,      // f(x) = 1 / (1 + e^-x)
  MPSCNNNeuronTypeHardSigmoid,  // f(x) = clamp((x * a) + b, 0, 1)
  MPSCNNNeuronTypeTanH,         // f(x) = a * tanh(b * x)
  MPSCNNNeuronTypeAbsolute,     // f(x) = fabs(x)
  MPSCNNNeuronTypeSoftPlus,     // f(x) = a * log(1 + e^(b * x))
  MPSCNNNeuronTypeSoftSign,     // f(x) = x / (1 + abs(x))
  MPSCNNNeuronTypeELU,          // f(x) = x >= 0 ? x : a * (exp(x) - 1)
  MPSCNNNeuronTypePReLU,        // ReLU with a per channel
  MPSCNNNeuronTypeReLUN,        // f(x) = min((x >= 0 ? x : a * x), b)
  MPSCNNNeuronTypePower,        // f(x) = (a * x + b) ^ c
  MPSCNNNeuronTypeExponential,  // f(x) = c ^ (a * x + b)
  MPSCNNNeuronTypeLogarithm,    // f(x) = log_c(a * x + b)
  // Apple's current header has GeLU = 15, then the count (16); older SDKs
  // end at Logarithm with Count = 15.
  MPSCNNNeuronTypeGeLU = 15,  // f(x) = (1.0 + erf(x * sqrt(0.5))) * 0.5 * x
  MPSCNNNeuronTypeCount,
};

// --- MPSCoreTypes.h / MPSImage.h --------------------------------------------
typedef struct {
  NSInteger x, y, z;
} MPSOffset;

typedef NS_ENUM(NSUInteger, MPSImageEdgeMode) {
  MPSImageEdgeModeZero = 0,
  MPSImageEdgeModeClamp = 1,
};

typedef NS_ENUM(NSUInteger, MPSImageFeatureChannelFormat) {
  MPSImageFeatureChannelFormatNone = 0,
  MPSImageFeatureChannelFormatUnorm8 = 1,
  MPSImageFeatureChannelFormatUnorm16 = 2,
  MPSImageFeatureChannelFormatFloat16 = 3,
  MPSImageFeatureChannelFormatFloat32 = 4,
};

// MPSImage.h: the order of -readBytes / -writeBytes buffers.
typedef NS_ENUM(NSUInteger, MPSDataLayout) {
  MPSDataLayoutHeightxWidthxFeatureChannels = 0,
  MPSDataLayoutFeatureChannelsxHeightxWidth = 1,
};

API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSImageDescriptor : NSObject <NSCopying> {
  MPSImageFeatureChannelFormat _channelFormat;
  NSUInteger _width, _height, _featureChannels, _numberOfImages;
  MTLTextureUsage _usage;
}
@property(readwrite, nonatomic) MPSImageFeatureChannelFormat channelFormat;
@property(readwrite, nonatomic) NSUInteger width;
@property(readwrite, nonatomic) NSUInteger height;
@property(readwrite, nonatomic) NSUInteger featureChannels;
@property(readwrite, nonatomic) NSUInteger numberOfImages;
@property(readwrite, nonatomic) MTLTextureUsage usage;
+ (MPSImageDescriptor *MPS_NONNULL)imageDescriptorWithChannelFormat:
                                       (MPSImageFeatureChannelFormat)channelFormat
                                                              width:(NSUInteger)width
                                                             height:(NSUInteger)height
                                                    featureChannels:(NSUInteger)featureChannels;
@end

@class MPSImage;
// MPSImage.h: what makes the images the image-returning encodes return.
@protocol MPSImageAllocator <NSObject, NSSecureCoding>
@required
- (MPSImage *MPS_NONNULL)imageForCommandBuffer:(id<MTLCommandBuffer> MPS_NONNULL)cmdBuf
                               imageDescriptor:(MPSImageDescriptor *MPS_NONNULL)inputDescriptor
                                        kernel:(id MPS_NONNULL)kernel;
@end

// The stub keeps the pixels in memory ([image][H][W][C] floats) so that
// -writeBytes / -readBytes round-trip; a real MPSImage is a texture.
API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSImage : NSObject {
  NSUInteger _width, _height, _featureChannels, _numberOfImages;
  MPSImageFeatureChannelFormat _featureChannelFormat;
  NSMutableData *_pixels;
  NSString *_label;
}
@property(readonly, nonatomic) NSUInteger width;
@property(readonly, nonatomic) NSUInteger height;
@property(readonly, nonatomic) NSUInteger featureChannels;
@property(readonly, nonatomic) NSUInteger numberOfImages;
@property(readonly, nonatomic) MPSImageFeatureChannelFormat featureChannelFormat;
@property(nullable, copy, atomic) NSString *label;
// Makes ordinary (not temporary) images (MPSImage.h, macOS 10.13 / iOS 11).
+ (id<MPSImageAllocator> MPS_NONNULL)defaultAllocator API_AVAILABLE(macos(10.13), ios(11.0));
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                           imageDescriptor:(const MPSImageDescriptor *MPS_NONNULL)imageDescriptor;
// float32 bytes only in the stub (MPS converts from the channel format).
- (void)readBytes:(void *MPS_NONNULL)dataBytes
       dataLayout:(MPSDataLayout)dataLayout
       imageIndex:(NSUInteger)imageIndex API_AVAILABLE(macos(10.13), ios(11.0));
- (void)writeBytes:(const void *MPS_NONNULL)dataBytes
        dataLayout:(MPSDataLayout)dataLayout
        imageIndex:(NSUInteger)imageIndex API_AVAILABLE(macos(10.13), ios(11.0));
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSState : NSObject
@end

// --- MPSKernel.h / MPSCNNKernel.h --------------------------------------------
API_AVAILABLE(macos(10.13), ios(9.0))
@interface MPSKernel : NSObject <NSCopying> {
  id<MTLDevice> _device;
  NSString *_label;
}
@property(readonly, retain, nonatomic, nonnull) id<MTLDevice> device;
@property(copy, atomic, nullable) NSString *label;
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device;
- (instancetype MPS_NONNULL)copyWithZone:(NSZone *MPS_NULLABLE)zone
                                  device:(id<MTLDevice> MPS_NULLABLE)device;
@end

// --- MPSNeuralNetworkTypes.h ---------------------------------------------------
// NS_OPTIONS(NSUInteger): alignment bits 0-1, remainder bits 2-3, size bits
// 4-5, the custom flags 13 and 14.
typedef NS_OPTIONS(NSUInteger, MPSNNPaddingMethod) {
  MPSNNPaddingMethodAlignCentered = 0,
  MPSNNPaddingMethodAlignTopLeft = 1,
  MPSNNPaddingMethodAlignBottomRight = 2,
  MPSNNPaddingMethodAlign_reserved = 3,
  MPSNNPaddingMethodAlignMask = 3,
  MPSNNPaddingMethodAddRemainderToTopLeft = 0UL << 2,
  MPSNNPaddingMethodAddRemainderToTopRight = 1UL << 2,
  MPSNNPaddingMethodAddRemainderToBottomLeft = 2UL << 2,
  MPSNNPaddingMethodAddRemainderToBottomRight = 3UL << 2,
  MPSNNPaddingMethodAddRemainderToMask = 3UL << 2,
  MPSNNPaddingMethodSizeValidOnly = 0,
  MPSNNPaddingMethodSizeSame = 1UL << 4,
  MPSNNPaddingMethodSizeFull = 2UL << 4,
  MPSNNPaddingMethodSize_reserved = 3UL << 4,
  MPSNNPaddingMethodCustomWhitelistForNodeFusion = (1UL << 13),
  MPSNNPaddingMethodCustom = (1UL << 14),
  MPSNNPaddingMethodSizeMask = 0x7f0,
  MPSNNPaddingMethodExcludeEdges = (1UL << 15),
};

// "A method to describe how MPSCNNKernels should pad images when data
// outside the image is needed"; NSSecureCoding is part of the protocol.
@protocol MPSNNPadding <NSObject, NSSecureCoding>
@required
- (MPSNNPaddingMethod)paddingMethod;
@optional
- (NSString *MPS_NONNULL)label;
// Required when paddingMethod has MPSNNPaddingMethodCustom: "must both
// return a valid MPSImageDescriptor and set the MPSKernel.offset".
- (MPSImageDescriptor *MPS_NONNULL)
    destinationImageDescriptorForSourceImages:(NSArray *MPS_NONNULL)sourceImages
                                 sourceStates:(NSArray *MPS_NULLABLE)sourceStates
                                    forKernel:(MPSKernel *MPS_NONNULL)kernel
                          suggestedDescriptor:(MPSImageDescriptor *MPS_NONNULL)inDescriptor;
- (instancetype MPS_NULLABLE)inverse API_AVAILABLE(macos(10.13.4), ios(11.3));
@end

API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSNNDefaultPadding : NSObject <MPSNNPadding> {
  MPSNNPaddingMethod _method;
}
+ (instancetype MPS_NONNULL)paddingWithMethod:(MPSNNPaddingMethod)method;
@end

API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSCNNKernel : MPSKernel {
  MPSOffset _offset;
  MTLRegion _clipRect;
  NSUInteger _destinationFeatureChannelOffset;
  MPSImageEdgeMode _edgeMode;
  id<MPSNNPadding> _padding;
  id<MPSImageAllocator> _destinationImageAllocator;
}
@property(readwrite, nonatomic) MPSOffset offset;
@property(readwrite, nonatomic) MTLRegion clipRect;
@property(readwrite, nonatomic) NSUInteger destinationFeatureChannelOffset;
@property(readwrite, nonatomic) MPSImageEdgeMode edgeMode;
// The policy the image-returning encodes (and MPSNNGraph) size the result
// and set `offset` with; the destinationImage: encode does not use it.
@property(readwrite, nonatomic, retain, nonnull) id<MPSNNPadding> padding API_AVAILABLE(
    macos(10.13), ios(11.0));
// What the image-returning encodes allocate the result with; MPS's default
// makes MPSTemporaryImages, which cannot be read back after the command
// buffer completes.
@property(readwrite, nonatomic, retain, nonnull) id<MPSImageAllocator> destinationImageAllocator
    API_AVAILABLE(macos(10.13), ios(11.0));
- (void)encodeToCommandBuffer:(id<MTLCommandBuffer> MPS_NONNULL)commandBuffer
                  sourceImage:(MPSImage *MPS_NONNULL)sourceImage
             destinationImage:(MPSImage *MPS_NONNULL)destinationImage;
- (MPSImage *MPS_NONNULL)encodeToCommandBuffer:(id<MTLCommandBuffer> MPS_NONNULL)commandBuffer
                                   sourceImage:(MPSImage *MPS_NONNULL)sourceImage
    API_AVAILABLE(macos(10.13), ios(11.0));
// What the image-returning encode allocates: MPS's guess from the padding
// method, then, with MPSNNPaddingMethodCustom, the policy's answer. (The
// stub's guess is the source size; MPS's depends on the kernel.)
- (MPSImageDescriptor *MPS_NONNULL)
    destinationImageDescriptorForSourceImages:(NSArray *MPS_NONNULL)sourceImages
                                 sourceStates:(NSArray *MPS_NULLABLE)sourceStates
    API_AVAILABLE(macos(10.13.4), ios(11.3));
@end

// --- MPSCNNConvolution.h ----------------------------------------------------
typedef NS_ENUM(uint32_t, MPSCNNWeightsQuantizationType) {
  MPSCNNWeightsQuantizationTypeNone = 0,
  MPSCNNWeightsQuantizationTypeLinear = 1,
  MPSCNNWeightsQuantizationTypeLookupTable = 2,
};

typedef NS_ENUM(uint32_t, MPSCNNConvolutionWeightsLayout) {
  MPSCNNConvolutionWeightsLayoutOHWI = 0,
};

// NS_OPTIONS in Apple's header.
typedef NS_OPTIONS(NSUInteger, MPSNNConvolutionAccumulatorPrecisionOption) {
  MPSNNConvolutionAccumulatorPrecisionOptionHalf = 0,
  MPSNNConvolutionAccumulatorPrecisionOptionFloat = 1 << 0,
};

// MPSCNNNeuron.h: a neuron type and its scalar parameters, and for PReLU
// the per-feature-channel a values as `data` ("data is retained, not
// copied"). Made only by the class methods: -init is unavailable.
API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSNNNeuronDescriptor : NSObject <NSCopying> {
  MPSCNNNeuronType _neuronType;
  float _a, _b, _c;
  NSData *_data;
}
@property(readwrite, nonatomic) MPSCNNNeuronType neuronType;
@property(readwrite, nonatomic) float a;
@property(readwrite, nonatomic) float b;
@property(readwrite, nonatomic) float c;
@property(readwrite, nonatomic, nullable, retain) NSData *data;
- (instancetype MPS_NONNULL)init NS_UNAVAILABLE;
+ (MPSNNNeuronDescriptor *MPS_NONNULL)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType;
+ (MPSNNNeuronDescriptor *MPS_NONNULL)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                                a:(float)a;
+ (MPSNNNeuronDescriptor *MPS_NONNULL)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                                a:(float)a
                                                                b:(float)b;
+ (MPSNNNeuronDescriptor *MPS_NONNULL)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                                a:(float)a
                                                                b:(float)b
                                                                c:(float)c;
// noCopy: "whether the NSData allocation is suitable for use directly with
// no copying"; the descriptor retains the NSData.
+ (MPSNNNeuronDescriptor *MPS_NONNULL)cnnNeuronPReLUDescriptorWithData:(NSData *MPS_NONNULL)data
                                                                noCopy:(bool)noCopy;
@end

API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSCNNConvolutionDescriptor : NSObject <NSCopying> {
  NSUInteger _kernelWidth, _kernelHeight;
  NSUInteger _inputFeatureChannels, _outputFeatureChannels;
  NSUInteger _strideInPixelsX, _strideInPixelsY;
  NSUInteger _groups;
  NSUInteger _dilationRateX, _dilationRateY;
  MPSNNNeuronDescriptor *_fusedNeuronDescriptor;
}
@property(readwrite, nonatomic) NSUInteger kernelWidth;
@property(readwrite, nonatomic) NSUInteger kernelHeight;
@property(readwrite, nonatomic) NSUInteger inputFeatureChannels;
@property(readwrite, nonatomic) NSUInteger outputFeatureChannels;
@property(readwrite, nonatomic) NSUInteger strideInPixelsX;  // default 1
@property(readwrite, nonatomic) NSUInteger strideInPixelsY;  // default 1
@property(readwrite, nonatomic) NSUInteger groups API_AVAILABLE(macos(10.13), ios(11.0));
@property(readwrite, nonatomic) NSUInteger dilationRateX API_AVAILABLE(macos(10.13), ios(11.0));
@property(readwrite, nonatomic) NSUInteger dilationRateY API_AVAILABLE(macos(10.13), ios(11.0));
// Default: a descriptor with MPSCNNNeuronTypeNone.
@property(readwrite, nonatomic, retain, nullable)
    MPSNNNeuronDescriptor *fusedNeuronDescriptor API_AVAILABLE(macos(10.13.4), ios(11.3));
+ (instancetype MPS_NONNULL)cnnConvolutionDescriptorWithKernelWidth:(NSUInteger)kernelWidth
                                                       kernelHeight:(NSUInteger)kernelHeight
                                               inputFeatureChannels:(NSUInteger)inputFeatureChannels
                                              outputFeatureChannels:
                                                  (NSUInteger)outputFeatureChannels;
// Deprecated by Apple since macOS 10.13.4 / iOS 11.3 in favour of
// fusedNeuronDescriptor; declared so tests can see it is not needed.
- (void)setNeuronType:(MPSCNNNeuronType)neuronType
           parameterA:(float)parameterA
           parameterB:(float)parameterB;
@end

// Depthwise: "group must be 1", weights [outputFeatureChannels][kH][kW].
API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSCNNDepthWiseConvolutionDescriptor : MPSCNNConvolutionDescriptor
// outputFeatureChannels / inputFeatureChannels.
@property(readonly, nonatomic) NSUInteger channelMultiplier;
@end

// Apple: "MPSDataTypeUInt8 weight containers must implement one of the
// following optional methods" (ranges for linear, the table for a lookup
// table), both declared __nonnull.
@protocol MPSCNNConvolutionDataSource <NSCopying, NSObject>
@required
- (MPSDataType)dataType;
- (MPSCNNConvolutionDescriptor *MPS_NONNULL)descriptor;
- (void *MPS_NONNULL)weights;
- (float *MPS_NULLABLE)biasTerms;
- (BOOL)load;
- (void)purge;
- (NSString *MPS_NULLABLE)label;
@optional
- (vector_float2 *MPS_NONNULL)rangesForUInt8Kernel API_AVAILABLE(macos(10.13), ios(11.0));
- (float *MPS_NONNULL)lookupTableForUInt8Kernel API_AVAILABLE(macos(10.13), ios(11.0));
- (MPSCNNWeightsQuantizationType)weightsQuantizationType API_AVAILABLE(macos(10.14), ios(12.0));
- (MPSCNNConvolutionWeightsLayout)weightsLayout API_AVAILABLE(macos(10.15), ios(13.0));
- (MPSDataType)kernelWeightsDataType API_AVAILABLE(macos(11.0), ios(14.0));
// "When copyWithZone:device on convolution is called, data source
// copyWithZone:device will be called if data source object responds to this
// selector. If not, copyWithZone: will be called ... Otherwise, it is simply
// retained."
- (instancetype MPS_NONNULL)copyWithZone:(NSZone *MPS_NULLABLE)zone
                                  device:(id<MTLDevice> MPS_NULLABLE)device
    API_AVAILABLE(macos(10.14), ios(12.0));
@end

// The kernels read everything from the data source once, in
// -initWithDevice:weights: (the stub copies what MPS would read); what is
// set on the data source afterwards has no effect.
API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSCNNConvolution : MPSCNNKernel {
  id<MPSCNNConvolutionDataSource> _dataSource;
  NSUInteger _inputFeatureChannels, _outputFeatureChannels, _groups;
  NSUInteger _kernelWidth, _kernelHeight, _strideInPixelsX, _strideInPixelsY;
  NSUInteger _dilationRateX, _dilationRateY;
  MPSNNNeuronDescriptor *_fusedNeuronDescriptor;
  MPSNNConvolutionAccumulatorPrecisionOption _accumulatorPrecisionOption;
  MPSDataType _kernelWeightsDataTypeAtInit;
  BOOL _depthwise;
}
@property(readonly, nonatomic) NSUInteger inputFeatureChannels;
@property(readonly, nonatomic) NSUInteger outputFeatureChannels;
@property(readonly, nonatomic) NSUInteger groups API_AVAILABLE(macos(10.13), ios(11.0));
@property(readonly, nonatomic) NSUInteger kernelWidth;
@property(readonly, nonatomic) NSUInteger kernelHeight;
@property(readonly, nonatomic) NSUInteger strideInPixelsX;
@property(readonly, nonatomic) NSUInteger strideInPixelsY;
@property(readonly, nonatomic) NSUInteger dilationRateX API_AVAILABLE(macos(10.13), ios(11.0));
@property(readonly, nonatomic) NSUInteger dilationRateY API_AVAILABLE(macos(10.13), ios(11.0));
@property(readonly, retain, nonatomic, nonnull) id<MPSCNNConvolutionDataSource> dataSource
    API_AVAILABLE(macos(10.13.4), ios(11.3));
@property(readonly, nonatomic, nullable)
    MPSNNNeuronDescriptor *fusedNeuronDescriptor API_AVAILABLE(macos(10.14), ios(12.0));
@property(readwrite, nonatomic)
    MPSNNConvolutionAccumulatorPrecisionOption accumulatorPrecisionOption API_AVAILABLE(
        macos(10.13.4), ios(11.3));
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                                   weights:(id<MPSCNNConvolutionDataSource> MPS_NONNULL)weights
    API_AVAILABLE(macos(10.13), ios(11.0));
@end

// Stub-only accessors of what a kernel read from its data source at init,
// for tests (not in Apple's SDK).
@interface MPSCNNConvolution (MPSBStubInspection)
- (MPSDataType)stubKernelWeightsDataTypeAtInit;
- (BOOL)stubDepthwise;
@end

API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSCNNFullyConnected : MPSCNNConvolution
@end

API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSCNNConvolutionTranspose : MPSCNNKernel {
  id<MPSCNNConvolutionDataSource> _dataSource;
  NSUInteger _inputFeatureChannels, _outputFeatureChannels, _groups;
  NSInteger _kernelOffsetX, _kernelOffsetY;
  MPSNNConvolutionAccumulatorPrecisionOption _accumulatorPrecisionOption;
  MPSDataType _kernelWeightsDataTypeAtInit;
}
@property(readonly, nonatomic) NSUInteger inputFeatureChannels;
@property(readonly, nonatomic) NSUInteger outputFeatureChannels;
@property(readonly, nonatomic) NSUInteger groups;
// "Offset in X from which the kernel starts sliding"; totalOffset =
// offset·stride + kernelOffset.
@property(readwrite, nonatomic) NSInteger kernelOffsetX;
@property(readwrite, nonatomic) NSInteger kernelOffsetY;
@property(readonly, retain, nonatomic, nonnull) id<MPSCNNConvolutionDataSource> dataSource
    API_AVAILABLE(macos(10.13.4), ios(11.3));
@property(readwrite, nonatomic)
    MPSNNConvolutionAccumulatorPrecisionOption accumulatorPrecisionOption API_AVAILABLE(
        macos(10.13.4), ios(11.3));
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                                   weights:(id<MPSCNNConvolutionDataSource> MPS_NONNULL)weights
    API_AVAILABLE(macos(10.13), ios(11.0));
@end

@interface MPSCNNConvolutionTranspose (MPSBStubInspection)
- (MPSDataType)stubKernelWeightsDataTypeAtInit;
@end

// MPSCNNNeuron.h: "You must use initWithDevice:neuronDescriptor"; the PReLU
// neuron retains the descriptor's NSData.
API_AVAILABLE(macos(10.13), ios(10.0))
@interface MPSCNNNeuron : MPSCNNKernel {
  MPSNNNeuronDescriptor *_descriptor;
}
@property(readonly, nonatomic) MPSCNNNeuronType neuronType API_AVAILABLE(macos(10.13), ios(11.0));
@property(readonly, nonatomic) float a;
@property(readonly, nonatomic) float b;
@property(readonly, nonatomic) float c;
@property(readonly, nonatomic, retain, nullable) NSData *data API_AVAILABLE(macos(10.13), ios(11.0))
    ;
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                          neuronDescriptor:(MPSNNNeuronDescriptor *MPS_NONNULL)neuronDescriptor
    API_AVAILABLE(macos(10.13.4), ios(11.3));
@end

// --- MPSCNNBatchNormalization.h ---------------------------------------------
API_AVAILABLE(macos(10.13.4), ios(11.3))
@protocol MPSCNNBatchNormalizationDataSource <NSObject, NSCopying>
@required
- (NSUInteger)numberOfFeatureChannels;
- (float *MPS_NULLABLE)gamma;
- (float *MPS_NULLABLE)beta;
- (float *MPS_NULLABLE)mean;
- (float *MPS_NULLABLE)variance;
- (BOOL)load;
- (void)purge;
- (NSString *MPS_NULLABLE)label;
@optional
- (float)epsilon;
- (instancetype MPS_NONNULL)copyWithZone:(NSZone *MPS_NULLABLE)zone
                                  device:(id<MTLDevice> MPS_NULLABLE)device
    API_AVAILABLE(macos(10.14), ios(12.0));
@end

// Reads numberOfFeatureChannels and epsilon from the data source at init.
API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNBatchNormalization : MPSCNNKernel {
  id<MPSCNNBatchNormalizationDataSource> _dataSource;
  NSUInteger _numberOfFeatureChannels;
  float _epsilon;
}
@property(readonly, nonatomic) NSUInteger numberOfFeatureChannels;
@property(readwrite, nonatomic) float epsilon;
@property(readonly, nonatomic, nonnull, retain) id<MPSCNNBatchNormalizationDataSource> dataSource;
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                                dataSource:
                                    (id<MPSCNNBatchNormalizationDataSource> MPS_NONNULL)dataSource;
@end

// --- MPSCNNInstanceNormalization.h ------------------------------------------
API_AVAILABLE(macos(10.13.4), ios(11.3))
@protocol MPSCNNInstanceNormalizationDataSource <NSObject, NSCopying>
@required
- (float *MPS_NULLABLE)gamma;
- (float *MPS_NULLABLE)beta;
@property(readonly, nonatomic) NSUInteger numberOfFeatureChannels;
- (NSString *MPS_NULLABLE)label;
@optional
- (float)epsilon;
- (BOOL)load API_AVAILABLE(macos(10.14), ios(12.0));
- (void)purge API_AVAILABLE(macos(10.14), ios(12.0));
- (instancetype MPS_NONNULL)copyWithZone:(NSZone *MPS_NULLABLE)zone
                                  device:(id<MTLDevice> MPS_NULLABLE)device
    API_AVAILABLE(macos(10.14), ios(12.0));
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNInstanceNormalization : MPSCNNKernel {
  id<MPSCNNInstanceNormalizationDataSource> _dataSource;
  float _epsilon;
}
@property(readwrite, nonatomic) float epsilon;
@property(readonly, nonatomic, nonnull, retain) id<MPSCNNInstanceNormalizationDataSource>
    dataSource;
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                                dataSource:(id<MPSCNNInstanceNormalizationDataSource> MPS_NONNULL)
                                               dataSource;
@end

// --- MPSCNNGroupNormalization.h (macOS 10.15 / iOS 13) -----------------------
API_AVAILABLE(macos(10.15), ios(13.0))
@protocol MPSCNNGroupNormalizationDataSource <NSObject, NSCopying>
@required
- (float *MPS_NULLABLE)gamma;
- (float *MPS_NULLABLE)beta;
@property(readonly, nonatomic) NSUInteger numberOfFeatureChannels;
// Must divide numberOfFeatureChannels.
@property(readwrite, nonatomic) NSUInteger numberOfGroups;
- (NSString *MPS_NULLABLE)label;
@optional
- (float)epsilon;
- (instancetype MPS_NONNULL)copyWithZone:(NSZone *MPS_NULLABLE)zone
                                  device:(id<MTLDevice> MPS_NULLABLE)device;
@end

API_AVAILABLE(macos(10.15), ios(13.0))
@interface MPSCNNGroupNormalization : MPSCNNKernel {
  id<MPSCNNGroupNormalizationDataSource> _dataSource;
  float _epsilon;
}
@property(readwrite, nonatomic) float epsilon;
@property(readonly, nonatomic, nonnull, retain) id<MPSCNNGroupNormalizationDataSource> dataSource;
- (instancetype MPS_NONNULL)initWithDevice:(id<MTLDevice> MPS_NONNULL)device
                                dataSource:
                                    (id<MPSCNNGroupNormalizationDataSource> MPS_NONNULL)dataSource;
@end

// --- MPSNNGraphNodes.h -------------------------------------------------------
API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSNNImageNode : NSObject
+ (instancetype MPS_NONNULL)nodeWithHandle:(id MPS_NULLABLE)handle;
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNConvolutionGradientStateNode : NSObject
@end

// "The padding method used for the filter node"; the graph asks it, as the
// image-returning encodes ask MPSCNNKernel.padding.
API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSNNFilterNode : NSObject {
  MPSNNImageNode *_resultImage;
  id<MPSNNPadding> _paddingPolicy;
  NSString *_label;
  id _source;
  id _parameters;  // what the node was made from (a data source, NSData)
}
@property(nonatomic, readonly, nonnull) MPSNNImageNode *resultImage;
@property(nonatomic, readwrite, retain, nonnull) id<MPSNNPadding> paddingPolicy;
@property(nullable, copy, atomic) NSString *label;
@end

@interface MPSNNFilterNode (MPSBStubInspection)
- (id MPS_NULLABLE)stubParameters;
@end

API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSCNNConvolutionNode : MPSNNFilterNode
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)sourceNode
                                   weights:(id<MPSCNNConvolutionDataSource> MPS_NONNULL)weights;
@end

API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSCNNFullyConnectedNode : MPSCNNConvolutionNode
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNConvolutionTransposeNode : MPSCNNConvolutionNode
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)sourceNode
                  convolutionGradientState:
                      (MPSCNNConvolutionGradientStateNode *MPS_NULLABLE)convolutionGradientState
                                   weights:(id<MPSCNNConvolutionDataSource> MPS_NONNULL)weights;
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNBatchNormalizationNode : MPSNNFilterNode
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)source
                                dataSource:
                                    (id<MPSCNNBatchNormalizationDataSource> MPS_NONNULL)dataSource;
@end

API_AVAILABLE(macos(10.13.4), ios(11.3))
@interface MPSCNNInstanceNormalizationNode : MPSNNFilterNode
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)source
                                dataSource:(id<MPSCNNInstanceNormalizationDataSource> MPS_NONNULL)
                                               dataSource;
@end

API_AVAILABLE(macos(10.15), ios(13.0))
@interface MPSCNNGroupNormalizationNode : MPSNNFilterNode
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)source
                                dataSource:
                                    (id<MPSCNNGroupNormalizationDataSource> MPS_NONNULL)dataSource;
@end

API_AVAILABLE(macos(10.13), ios(11.0))
@interface MPSCNNNeuronPReLUNode : MPSNNFilterNode
// aData: one float per feature channel.
+ (instancetype MPS_NONNULL)nodeWithSource:(MPSNNImageNode *MPS_NONNULL)sourceNode
                                     aData:(NSData *MPS_NONNULL)aData;
@end

#endif  // MPSB_TESTS_APPLE_STUBS_MPS_H_
