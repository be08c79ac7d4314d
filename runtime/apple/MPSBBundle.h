// Objective-C adapters: an .mpsb bundle as Metal Performance Shaders data
// sources.
//
// MPSBBundle opens a bundle (mmap, checked as mpsb::Bundle::open checks it)
// and hands out, by layer name, objects that conform to MPS's data-source
// protocols:
//
//   conv2d, conv_transpose2d, linear -> MPSBConvolutionDataSource
//                                       <MPSCNNConvolutionDataSource>
//   batch_norm2d                     -> MPSBBatchNormalizationDataSource
//                                       <MPSCNNBatchNormalizationDataSource>
//   instance_norm2d                  -> MPSBInstanceNormalizationDataSource
//                                       <MPSCNNInstanceNormalizationDataSource>
//   group_norm                       -> MPSBGroupNormalizationDataSource
//                                       <MPSCNNGroupNormalizationDataSource>
//   prelu (and a fused activation)   -> MPSNNNeuronDescriptor
//
// A conv's fused activation is its descriptor's fusedNeuronDescriptor; a
// PReLU's slopes (fused or a prelu layer) reach MPS as an NSData over the
// mapping that keeps the mapping alive itself.
//
// Ownership: the mapping is held by a reference-counted owner that the
// MPSBBundle and every data source (and every copy of one) share. Weights,
// biases and statistics the sources return point into the mapping and stay
// valid as long as the object that returned them lives, even after the
// MPSBBundle itself is released. The mapping is read-only: MPS only reads
// through these pointers; writing through them faults.
//
// Threading: all objects are immutable after creation (except the opt-in
// kernelWeightsDataType setting), so MPS may call them from any thread and
// reentrantly, as Apple's MPSCNNConvolutionDataSource documentation allows.
//
// Memory model: the implementation (MPSBBundle.mm) is written for manual
// retain/release and compiles unchanged under ARC (retain/release calls are
// macros that vanish under ARC). The interface below is plain Objective-C
// with no C++, so Swift imports it through a bridging header or module.
//
// Requires MetalPerformanceShaders from macOS 10.14 / iOS 12 / tvOS 12
// (MPSNNNeuronDescriptor for the fused activation); group_norm needs
// macOS 10.15 / iOS 13 (MPSCNNGroupNormalization), the gelu activation an
// SDK whose MPSCNNNeuronType.h has MPSCNNNeuronTypeGeLU (= 15).

#ifndef MPSB_APPLE_MPSBBUNDLE_H_
#define MPSB_APPLE_MPSBBUNDLE_H_

#import <Foundation/Foundation.h>
#import <MetalPerformanceShaders/MetalPerformanceShaders.h>

// Nullability and generics where the compiler has them (Apple clang); empty
// under GCC's Objective-C (the GNUstep check build).
#if defined(__has_feature) && __has_feature(nullability)
#define MPSB_NULLABLE _Nullable
#define MPSB_NONNULL _Nonnull
#else
#define MPSB_NULLABLE
#define MPSB_NONNULL
#endif
#if defined(__has_feature) && __has_feature(objc_generics)
#define MPSB_STRING_ARRAY NSArray<NSString *>
#else
#define MPSB_STRING_ARRAY NSArray
#endif
#ifndef NS_SWIFT_NAME
#define NS_SWIFT_NAME(name)
#endif
// Apple's SDK defines it (<os/availability.h>); GNUstep does not.
#ifndef API_AVAILABLE
#define API_AVAILABLE(...)
#endif

NS_ASSUME_NONNULL_BEGIN

#ifdef __cplusplus
extern "C" {
#endif
// Error domain of every NSError these classes return. The code is the
// mpsb::Error / mpsb_status value (MPSB_ERROR_NOT_FOUND = 2, ...), the
// localizedDescription the runtime's message, which names the file and place.
extern NSString *const MPSBErrorDomain;
#ifdef __cplusplus
}
#endif

@class MPSBConvolutionDataSource;
@class MPSBBatchNormalizationDataSource;
@class MPSBInstanceNormalizationDataSource;
@class MPSBGroupNormalizationDataSource;

// Private C++ state of each class, defined in MPSBBundle.mm. The instance
// variables are declared here, not in the @implementation, because GCC's
// Objective-C (the GNUstep check build) accepts them only in the @interface.
struct MPSBBundleState;
struct MPSBConvolutionState;
struct MPSBBatchNormState;
struct MPSBInstanceNormState;
struct MPSBGroupNormState;

// An opened bundle. Immutable; safe to use from many threads.
@interface MPSBBundle : NSObject {
 @private
  struct MPSBBundleState *_state;
  NSString *_name;
  NSArray *_layerNames;
}

// Maps `path` read-only and checks it (size, identifier, FlatBuffers
// verifier, semantic checks); opening touches no weight page. Returns nil and
// sets *error on failure.
+ (instancetype MPSB_NULLABLE)bundleWithPath:(NSString *)path
                                       error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
// As above; with verifyChecksums also checks every tensor checksum and the
// digests, which reads the whole file.
+ (instancetype MPSB_NULLABLE)bundleWithPath:(NSString *)path
                             verifyChecksums:(BOOL)verifyChecksums
                                       error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

- (instancetype)init NS_UNAVAILABLE;

// Bundle name from the manifest ("" when none).
@property(nonatomic, readonly, copy) NSString *name;
// Layer names in network (manifest) order.
@property(nonatomic, readonly, copy) MPSB_STRING_ARRAY *layerNames;

// The whole data segment, for one -[MTLDevice newBufferWithBytesNoCopy:
// length:options:deallocator:]: page-aligned (when the bundle's segment
// alignment is at least the page size, 16384 by default) and segmentLength is
// a multiple of the segment alignment. Read-only memory in the mapping; valid
// while this MPSBBundle lives (keep it alive for as long as the MTLBuffer).
// A segment longer than the device's maxBufferLength needs several buffers:
// MPSBBufferSet (MPSBBuffers.h) makes them and keeps the mapping alive.
@property(nonatomic, readonly) const void *segmentBytes;
@property(nonatomic, readonly) NSUInteger segmentLength;

// Data sources by layer name. Each returns nil and sets *error with code
// MPSB_ERROR_NOT_FOUND (2) when there is no such layer and
// MPSB_ERROR_WRONG_LAYER_KIND (3) when the layer has another kind.
// The returned object keeps the mapping alive on its own.

// conv2d, conv_transpose2d, or linear (MPSCNNFullyConnected takes a
// convolution data source whose kernel spans the whole input).
- (MPSBConvolutionDataSource *MPSB_NULLABLE)
    convolutionDataSourceForLayer:(NSString *)layerName
                            error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSBBatchNormalizationDataSource *MPSB_NULLABLE)
    batchNormalizationDataSourceForLayer:(NSString *)layerName
                                   error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSBInstanceNormalizationDataSource *MPSB_NULLABLE)
    instanceNormalizationDataSourceForLayer:(NSString *)layerName
                                      error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSBGroupNormalizationDataSource *MPSB_NULLABLE)
    groupNormalizationDataSourceForLayer:(NSString *)layerName
                                   error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

// The MPS neuron of a prelu layer, for -[MPSCNNNeuronPReLU
// initWithDevice:neuronDescriptor:] or an MPSNNGraph neuron node: made with
// +[MPSNNNeuronDescriptor cnnNeuronPReLUDescriptorWithData:noCopy:] over
// one slope per feature channel in the mapping (noCopy YES); the NSData
// keeps the mapping alive as long as it lives. For a conv2d,
// conv_transpose2d or linear layer, the neuron of its fused activation (the
// descriptor's fusedNeuronDescriptor; type None when it has none); for a
// batch_norm2d layer, the neuron to run after it (MPSCNNBatchNormalization
// fuses none; type None when it has none). MPSB_ERROR_WRONG_LAYER_KIND for
// instance and group norm layers.
- (MPSNNNeuronDescriptor *MPSB_NULLABLE)
    neuronDescriptorForLayer:(NSString *)layerName
                       error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

// What the compiler changed about a layer. Both set *error with
// MPSB_ERROR_NOT_FOUND (2) when there is no such layer (then nil and 0).
//
// The name of the manifest's batch_norm2d that mpsbc --fold-batchnorm folded
// into this conv (docs/FORMAT.md, Layer.folded_batchnorm), or "" when none
// was. The conv's weight and bias are then not PyTorch's (W·s and
// b·s + (β − μ·s)) and the batch norm is not in the bundle: run no
// MPSCNNBatchNormalization for it.
- (NSString *MPSB_NULLABLE)foldedBatchNormalizationForLayer:(NSString *)layerName
                                                      error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)
                                                                error;
// A conv MPS refuses stored as the equivalent dense one (mpsbc --legalize,
// Layer.legalized_groups): the manifest's groups, while the data source's
// descriptor has groups 1. 0 for every other layer.
- (NSUInteger)legalizedGroupsForLayer:(NSString *)layerName
                                error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

@end

// MPSCNNConvolutionDataSource over one conv2d, conv_transpose2d or linear
// layer. Use it with -[MPSCNNConvolution initWithDevice:weights:],
// -[MPSCNNConvolutionTranspose initWithDevice:weights:] (isTransposed) or
// -[MPSCNNFullyConnected initWithDevice:weights:] (isFullyConnected).
@interface MPSBConvolutionDataSource : NSObject <MPSCNNConvolutionDataSource> {
 @private
  struct MPSBConvolutionState *_state;
  MPSCNNConvolutionDescriptor *_descriptor;
  NSString *_label;
  MPSDataType _kernelWeightsDataType;
}

- (instancetype)init NS_UNAVAILABLE;

// --- MPSCNNConvolutionDataSource, required ---
// Element type of -weights: MPSDataTypeFloat32, Float16 or UInt8
// (MPSDataTypeInvalid for bfloat16, which MPS cannot take).
- (MPSDataType)dataType;
// Kernel size, total input/output feature channels, strides, dilation,
// groups and the fused activation (fusedNeuronDescriptor). A depthwise conv2d
// (groups == input channels > 1) gets an MPSCNNDepthWiseConvolutionDescriptor
// with groups 1, the form Apple documents for depthwise weights
// [outputChannels][kH][kW]. The same object is returned on every call; MPS
// does not modify it.
- (MPSCNNConvolutionDescriptor *)descriptor;
// OHWI weights [out][kH][kW][in/groups] in the mapping (for a transposed
// conv already rotated 180 degrees by the compiler, since MPS uses them
// as-is).
- (void *)weights;
// outputFeatureChannels floats in the mapping, or NULL when the layer has no
// bias.
- (float *MPSB_NULLABLE)biasTerms;
// madvise(WILLNEED) over the weights and bias; always YES (the bytes are
// already mapped and checked).
- (BOOL)load;
// madvise(DONTNEED): the pages are file-backed, so they are dropped and read
// again from the file on the next access.
- (void)purge;
// The layer name.
- (NSString *MPSB_NULLABLE)label;

// --- MPSCNNConvolutionDataSource, optional ---
// MPSCNNConvolutionWeightsLayoutOHWI, the only layout Apple defines
// (asked from macOS 10.15 / iOS 13).
- (MPSCNNConvolutionWeightsLayout)weightsLayout API_AVAILABLE(macos(10.15), ios(13.0), tvos(13.0));
// None for float weights; Linear or LookupTable for uint8 weights, as the
// compiler quantized them (asked from macOS 10.14 / iOS 12).
- (MPSCNNWeightsQuantizationType)weightsQuantizationType API_AVAILABLE(macos(10.14), ios(12.0),
                                                                       tvos(12.0));
// Apple: "MPSDataTypeUInt8 weight containers must implement one of the
// following optional methods", both declared __nonnull; before
// weightsQuantizationType (macOS 10.14 / iOS 12) MPS could tell the two
// only by which one the source implements. So the source responds to
// exactly the one its layer has (-respondsToSelector: says NO to the other,
// and to both for float weights).
// uint8 + Linear: outputFeatureChannels {min, max} pairs in the mapping.
- (vector_float2 *)rangesForUInt8Kernel;
// uint8 + LookupTable: 256 floats in the mapping.
- (float *)lookupTableForUInt8Kernel;

// Precision MPS converts the weights to for the kernel. Apple: uint8 and
// float16 weights must use MPSDataTypeFloat16; float32 weights may use
// Float16 or Float32, and Float32 requires the convolution's
// accumulatorPrecisionOption to be MPSNNConvolutionAccumulatorPrecisionOptionFloat.
// Default MPSDataTypeFloat16 (what MPS does when the method is absent).
// Setting Float32 on non-float32 weights is ignored. MPS reads it once,
// when the kernel is made: set it before -[MPSCNNConvolution
// initWithDevice:weights:] (the factories in MPSBKernels.h do). MPS asks
// for it from macOS 11 / iOS 14 on; earlier systems compute with float16.
- (MPSDataType)kernelWeightsDataType API_AVAILABLE(macos(11.0), ios(14.0), tvos(14.0));
- (void)setKernelWeightsDataType:(MPSDataType)kernelWeightsDataType;

// NSCopying, and (macOS 10.14 / iOS 12) the copy MPS makes when it copies a
// kernel to a device: "data source copyWithZone:device will be called if
// data source object responds to this selector. If not, copyWithZone:".
// Both give a new object over the same layer sharing the mapping; the
// weights are CPU memory, so the device changes nothing.
- (id)copyWithZone:(NSZone *MPSB_NULLABLE)zone;
- (instancetype)copyWithZone:(NSZone *MPSB_NULLABLE)zone
                      device:(id<MTLDevice> MPSB_NULLABLE)device
    API_AVAILABLE(macos(10.14), ios(12.0), tvos(12.0));

// --- Extras for building the MPS kernel (not part of the protocol) ---
@property(nonatomic, readonly) BOOL isTransposed;      // conv_transpose2d
@property(nonatomic, readonly) BOOL isFullyConnected;  // linear
@property(nonatomic, readonly) BOOL isDepthwise;
// PyTorch padding and output_padding: MPS takes padding through where the
// kernel is placed, which the app sets on the kernel object.
@property(nonatomic, readonly) NSUInteger paddingX, paddingY;
@property(nonatomic, readonly) NSUInteger outputPaddingX, outputPaddingY;
// The placement that reproduces PyTorch's padding (docs/LAYERS.md, "MPS
// offsets"): for a convolution, the MPSCNNKernel offset
// (((k-1)*dilation + 1) >> 1) - padding; for a transposed convolution, its
// kernelOffsetX/Y with the MPSCNNKernel offset left at 0. 0 for linear.
@property(nonatomic, readonly) NSInteger mpsOffsetX, mpsOffsetY;
// Byte length of -weights.
@property(nonatomic, readonly) NSUInteger weightsLength;

@end

// MPSCNNBatchNormalizationDataSource over one batch_norm2d layer, for
// -[MPSCNNBatchNormalization initWithDevice:dataSource:].
@interface MPSBBatchNormalizationDataSource : NSObject <MPSCNNBatchNormalizationDataSource> {
 @private
  struct MPSBBatchNormState *_state;
  NSString *_label;
}

- (instancetype)init NS_UNAVAILABLE;

- (NSUInteger)numberOfFeatureChannels;
// numberOfFeatureChannels floats. In the mapping, or, when PyTorch had
// affine=False, owned arrays of ones (gamma) and zeros (beta).
- (float *MPSB_NULLABLE)gamma;
- (float *MPSB_NULLABLE)beta;
// Running statistics, in the mapping (the bundle always has them).
- (float *MPSB_NULLABLE)mean;
- (float *MPSB_NULLABLE)variance;
// PyTorch's eps (MPS's own default differs).
- (float)epsilon;
- (BOOL)load;
- (void)purge;
- (NSString *MPSB_NULLABLE)label;

@end

// MPSCNNInstanceNormalizationDataSource over one instance_norm2d layer, for
// -[MPSCNNInstanceNormalization initWithDevice:dataSource:].
@interface MPSBInstanceNormalizationDataSource : NSObject <MPSCNNInstanceNormalizationDataSource> {
 @private
  struct MPSBInstanceNormState *_state;
  NSString *_label;
}

- (instancetype)init NS_UNAVAILABLE;

// A readonly property in Apple's protocol.
@property(nonatomic, readonly) NSUInteger numberOfFeatureChannels;
// In the mapping, or owned ones / zeros when PyTorch had affine=False.
- (float *MPSB_NULLABLE)gamma;
- (float *MPSB_NULLABLE)beta;
// Always PyTorch's eps: MPS uses FLT_MIN when a source gives none.
- (float)epsilon;
- (NSString *MPSB_NULLABLE)label;
// Not in the protocol; madvise hints over the layer's tensors.
- (BOOL)load;
- (void)purge;

@end

// MPSCNNGroupNormalizationDataSource over one group_norm layer, for
// -[MPSCNNGroupNormalization initWithDevice:dataSource:].
@interface MPSBGroupNormalizationDataSource : NSObject <MPSCNNGroupNormalizationDataSource> {
 @private
  struct MPSBGroupNormState *_state;
  NSString *_label;
}

- (instancetype)init NS_UNAVAILABLE;

// Properties in Apple's protocol.
@property(nonatomic, readonly) NSUInteger numberOfFeatureChannels;
// PyTorch's num_groups. The protocol declares it readwrite; the bundle's γ
// and β were trained for this grouping, so setting it keeps it and ignores
// any other value.
@property(nonatomic) NSUInteger numberOfGroups;
// numberOfFeatureChannels floats: in the mapping, or owned ones / zeros
// when PyTorch had affine=False.
- (float *MPSB_NULLABLE)gamma;
- (float *MPSB_NULLABLE)beta;
// PyTorch's eps.
- (float)epsilon;
- (NSString *MPSB_NULLABLE)label;
// Not in the protocol; madvise hints over the layer's tensors.
- (BOOL)load;
- (void)purge;

@end

NS_ASSUME_NONNULL_END

#endif  // MPSB_APPLE_MPSBBUNDLE_H_
