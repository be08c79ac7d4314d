// Declaration stub of Apple's MetalPerformanceShaders for the GNUstep check
// build of runtime/apple.
//
// Written from Apple's documented interface (developer.apple.com/
// documentation/metalperformanceshaders and the SDK headers
// MPSCoreTypes.h, MPSCNNNeuronType.h, MPSCNNNeuron.h, MPSCNNConvolution.h,
// MPSCNNBatchNormalization.h, MPSCNNInstanceNormalization.h,
// MPSCNNGroupNormalization.h): the enum
// values are Apple's, the protocols keep Apple's @required / @optional split,
// so the compiler checks that the adapters implement every required method
// with the right types. Only what the adapters use is declared. The few
// classes have tiny implementations in tests/apple/stubs.m that store what
// they are given; nothing here computes anything.
#ifndef MPSB_TESTS_APPLE_STUBS_MPS_H_
#define MPSB_TESTS_APPLE_STUBS_MPS_H_

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#include <stdint.h>

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

// --- MPSCNNConvolution.h ----------------------------------------------------
typedef NS_ENUM(uint32_t, MPSCNNWeightsQuantizationType) {
  MPSCNNWeightsQuantizationTypeNone = 0,
  MPSCNNWeightsQuantizationTypeLinear = 1,
  MPSCNNWeightsQuantizationTypeLookupTable = 2,
};

typedef NS_ENUM(uint32_t, MPSCNNConvolutionWeightsLayout) {
  MPSCNNConvolutionWeightsLayoutOHWI = 0,
};

typedef NS_ENUM(NSUInteger, MPSNNConvolutionAccumulatorPrecisionOption) {
  MPSNNConvolutionAccumulatorPrecisionOptionHalf = 0,
  MPSNNConvolutionAccumulatorPrecisionOptionFloat = 1,
};

// MPSCNNNeuron.h: a neuron type and its scalar parameters, and for PReLU
// the per-feature-channel a values as `data` (macOS 10.14 / iOS 12).
@interface MPSNNNeuronDescriptor : NSObject <NSCopying> {
  MPSCNNNeuronType _neuronType;
  float _a, _b, _c;
  NSData *_data;
}
@property(readwrite, nonatomic) MPSCNNNeuronType neuronType;
@property(readwrite, nonatomic) float a;
@property(readwrite, nonatomic) float b;
@property(readwrite, nonatomic) float c;
@property(readwrite, nonatomic, retain) NSData *data;
// data: an NSData of floats, the PReLU a of each feature channel; with
// noCopy YES the bytes are not copied and the caller keeps them alive.
+ (MPSNNNeuronDescriptor *)cnnNeuronPReLUDescriptorWithData:(NSData *)data noCopy:(bool)noCopy;
+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType;
+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType a:(float)a;
+ (MPSNNNeuronDescriptor *)cnnNeuronDescriptorWithType:(MPSCNNNeuronType)neuronType
                                                     a:(float)a
                                                     b:(float)b;
@end

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
@property(readwrite, nonatomic) NSUInteger groups;           // default 1
@property(readwrite, nonatomic) NSUInteger dilationRateX;    // default 1
@property(readwrite, nonatomic) NSUInteger dilationRateY;    // default 1
// Default: a descriptor with MPSCNNNeuronTypeNone.
@property(readwrite, nonatomic, retain) MPSNNNeuronDescriptor *fusedNeuronDescriptor;
+ (instancetype)cnnConvolutionDescriptorWithKernelWidth:(NSUInteger)kernelWidth
                                           kernelHeight:(NSUInteger)kernelHeight
                                   inputFeatureChannels:(NSUInteger)inputFeatureChannels
                                  outputFeatureChannels:(NSUInteger)outputFeatureChannels;
// Deprecated by Apple since macOS 10.13.4 / iOS 11.3 in favour of
// fusedNeuronDescriptor; declared so tests can see it is not needed.
- (void)setNeuronType:(MPSCNNNeuronType)neuronType
           parameterA:(float)parameterA
           parameterB:(float)parameterB;
@end

// Depthwise: "group must be 1", weights [outputFeatureChannels][kH][kW].
@interface MPSCNNDepthWiseConvolutionDescriptor : MPSCNNConvolutionDescriptor
// outputFeatureChannels / inputFeatureChannels.
@property(readonly, nonatomic) NSUInteger channelMultiplier;
@end

@protocol MPSCNNConvolutionDataSource <NSCopying, NSObject>
@required
- (MPSDataType)dataType;
- (MPSCNNConvolutionDescriptor *)descriptor;
- (void *)weights;
- (float *)biasTerms;
- (BOOL)load;
- (void)purge;
- (NSString *)label;
@optional
- (vector_float2 *)rangesForUInt8Kernel;
- (float *)lookupTableForUInt8Kernel;
- (MPSCNNWeightsQuantizationType)weightsQuantizationType;
- (MPSCNNConvolutionWeightsLayout)weightsLayout;
- (MPSDataType)kernelWeightsDataType;
- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device;
@end

// --- MPSCNNBatchNormalization.h ---------------------------------------------
@protocol MPSCNNBatchNormalizationDataSource <NSObject, NSCopying>
@required
- (NSUInteger)numberOfFeatureChannels;
- (float *)gamma;
- (float *)beta;
- (float *)mean;
- (float *)variance;
- (BOOL)load;
- (void)purge;
- (NSString *)label;
@optional
- (float)epsilon;
- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device;
@end

// --- MPSCNNInstanceNormalization.h ------------------------------------------
@protocol MPSCNNInstanceNormalizationDataSource <NSObject, NSCopying>
@required
- (float *)gamma;
- (float *)beta;
// A readonly property in Apple's header.
- (NSUInteger)numberOfFeatureChannels;
- (NSString *)label;
@optional
- (float)epsilon;
- (BOOL)load;
- (void)purge;
- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device;
@end

// --- MPSCNNGroupNormalization.h (macOS 10.15 / iOS 13) -----------------------
@protocol MPSCNNGroupNormalizationDataSource <NSObject, NSCopying>
@required
- (float *)gamma;
- (float *)beta;
// Properties in Apple's header: numberOfFeatureChannels readonly,
// numberOfGroups readwrite (it must divide the feature channels).
- (NSUInteger)numberOfFeatureChannels;
- (NSUInteger)numberOfGroups;
- (void)setNumberOfGroups:(NSUInteger)numberOfGroups;
- (NSString *)label;
@optional
- (float)epsilon;
- (instancetype)copyWithZone:(NSZone *)zone device:(id<MTLDevice>)device;
@end

#endif  // MPSB_TESTS_APPLE_STUBS_MPS_H_
