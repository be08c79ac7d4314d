// Objective-C kernel factories: a fully configured MPS kernel (or MPSNNGraph
// node) per bundle layer from one call, and MPSBPadding, the MPSNNPadding
// policy that gives PyTorch's output size and offsets.
//
//   conv2d            -> MPSCNNConvolution (depthwise descriptor where
//                        groups == in_channels > 1)
//   conv_transpose2d  -> MPSCNNConvolutionTranspose
//   linear            -> MPSCNNFullyConnected
//   batch_norm2d      -> MPSCNNBatchNormalization
//   instance_norm2d   -> MPSCNNInstanceNormalization
//   group_norm        -> MPSCNNGroupNormalization (macOS 10.15 / iOS 13)
//   prelu             -> MPSCNNNeuron with a PReLU MPSNNNeuronDescriptor
//
// Every kernel comes from the layer's data source (MPSBBundle.h), so the
// descriptor carries kernel size, channels, strides, dilation, groups and
// the fused neuron; the factory then sets what MPS reads from the kernel
// object: for float32 weights kernelWeightsDataType Float32 on the source
// *before* the kernel is made (MPS reads the data source at init) and
// accumulatorPrecisionOption Float; the offset (convolution) or
// kernelOffsetX/Y (transposed convolution) that reproduces PyTorch's
// padding; edgeMode Zero; and `padding`, an MPSBPadding. Every number comes
// from the C++ runtime (mpsb/placement.h, mpsb/sources.h); this file only
// passes them on.
//
// Two ways to encode, as Apple's MPSNeuralNetworkTypes.h describes them:
// the -encodeToCommandBuffer:sourceImage:destinationImage: encode "does not
// use the padding policy" and reads `offset` as set, so the destination must
// be PyTorch's size (MPSBPadding's -placementForSourceWidth:height:error:
// gives it); the encodes that return an image, and MPSNNGraph, ask the
// kernel's padding policy, which here sets the size and offsets itself.
//
// Not run on a device: there is no Mac here (docs/APPLE.md, "What was
// checked here, and what was not"; scripts/device-check.sh runs it on one).
//
// Threading: the factories may be called from any thread. A kernel is an
// MPS object with MPS's rules (one encoding thread at a time). MPSBPadding
// and MPSBPlacement are immutable.

#ifndef MPSB_APPLE_MPSBKERNELS_H_
#define MPSB_APPLE_MPSBKERNELS_H_

#import "MPSBBundle.h"

NS_ASSUME_NONNULL_BEGIN

struct MPSBPaddingState;

// Where one layer's kernel reads and what it writes for one source size
// (mpsb::KernelPlacement).
@interface MPSBPlacement : NSObject {
 @private
  NSUInteger _destinationWidth, _destinationHeight, _destinationFeatureChannels;
  MPSOffset _offset;
  NSInteger _kernelOffsetX, _kernelOffsetY;
}
- (instancetype)init NS_UNAVAILABLE;
// PyTorch's output size for the source size, and the layer's output
// channels: the MPSImageDescriptor of the destination.
@property(nonatomic, readonly) NSUInteger destinationWidth;
@property(nonatomic, readonly) NSUInteger destinationHeight;
@property(nonatomic, readonly) NSUInteger destinationFeatureChannels;
// MPSCNNKernel.offset (z 0): set for a convolution, {0, 0, 0} otherwise.
@property(nonatomic, readonly) MPSOffset offset;
// MPSCNNConvolutionTranspose.kernelOffsetX/Y; 0 for the other kernels.
@property(nonatomic, readonly) NSInteger kernelOffsetX;
@property(nonatomic, readonly) NSInteger kernelOffsetY;
@end

// The padding policy of one conv2d, conv_transpose2d or linear layer.
// paddingMethod is MPSNNPaddingMethodCustom, so MPS calls
// -destinationImageDescriptorForSourceImages:sourceStates:forKernel:
// suggestedDescriptor:, which sets the descriptor's width, height and
// featureChannels to PyTorch's and the kernel's offset (kernelOffsetX/Y for
// a transposed convolution, whose offset it sets to 0) and edgeMode Zero.
// NSSecureCoding, as the protocol requires (MPSNNGraph archives its nodes'
// policies): it encodes the layer's geometry, not the bundle.
@interface MPSBPadding : NSObject <MPSNNPadding> {
 @private
  struct MPSBPaddingState *_state;
}
- (instancetype)init NS_UNAVAILABLE;
+ (BOOL)supportsSecureCoding;
- (instancetype MPSB_NULLABLE)initWithCoder:(NSCoder *)coder;
- (void)encodeWithCoder:(NSCoder *)coder;

- (MPSNNPaddingMethod)paddingMethod;
// "mpsb PyTorch padding for <layer>".
- (NSString *)label;
- (MPSImageDescriptor *)
    destinationImageDescriptorForSourceImages:(NSArray *)sourceImages
                                 sourceStates:(NSArray *MPSB_NULLABLE)sourceStates
                                    forKernel:(MPSKernel *)kernel
                          suggestedDescriptor:(MPSImageDescriptor *)inDescriptor;

// The placement for a source image of this size; nil and *error (code
// MPSB_ERROR_INVALID_ARGUMENT, the message naming the layer and sizes) for a
// size PyTorch refuses. When MPS asks the policy about such a size, it logs
// the message and returns MPS's suggested descriptor unchanged.
- (MPSBPlacement *MPSB_NULLABLE)placementForSourceWidth:(NSUInteger)width
                                                 height:(NSUInteger)height
                                                  error:
                                                      (NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
// The layer the policy is for.
@property(nonatomic, readonly, copy) NSString *layerName;
@end

// Kernel and graph-node factories. Each returns nil and sets *error with
// MPSB_ERROR_NOT_FOUND (2) for an unknown layer and
// MPSB_ERROR_WRONG_LAYER_KIND (3) for a layer of another kind; the kernel
// keeps its data source, and with it the mapping, alive.
@interface MPSBBundle (MPSBKernels)

- (MPSCNNConvolution *MPSB_NULLABLE)
    convolutionKernelForLayer:(NSString *)layerName
                       device:(id<MTLDevice>)device
                        error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSCNNConvolutionTranspose *MPSB_NULLABLE)
    convolutionTransposeKernelForLayer:(NSString *)layerName
                                device:(id<MTLDevice>)device
                                 error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSCNNFullyConnected *MPSB_NULLABLE)
    fullyConnectedKernelForLayer:(NSString *)layerName
                          device:(id<MTLDevice>)device
                           error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSCNNBatchNormalization *MPSB_NULLABLE)
    batchNormalizationKernelForLayer:(NSString *)layerName
                              device:(id<MTLDevice>)device
                               error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSCNNInstanceNormalization *MPSB_NULLABLE)
    instanceNormalizationKernelForLayer:(NSString *)layerName
                                 device:(id<MTLDevice>)device
                                  error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
- (MPSCNNGroupNormalization *MPSB_NULLABLE)
    groupNormalizationKernelForLayer:(NSString *)layerName
                              device:(id<MTLDevice>)device
                               error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error
    API_AVAILABLE(macos(10.15), ios(13.0), tvos(13.0));
// A prelu layer: -[MPSCNNNeuron initWithDevice:neuronDescriptor:] with
// -neuronDescriptorForLayer:error: (MPSCNNNeuronPReLU's own initializer is
// deprecated since macOS 10.14 / iOS 12).
- (MPSCNNNeuron *MPSB_NULLABLE)preluKernelForLayer:(NSString *)layerName
                                            device:(id<MTLDevice>)device
                                             error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
// Whichever of the above the layer's kind takes. A group_norm layer on an
// OS without MPSCNNGroupNormalization gives MPSB_ERROR_INVALID_ARGUMENT.
- (MPSCNNKernel *MPSB_NULLABLE)kernelForLayer:(NSString *)layerName
                                       device:(id<MTLDevice>)device
                                        error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

// The padding policy of a conv2d, conv_transpose2d or linear layer (what
// the factories set as the kernel's `padding`).
- (MPSBPadding *MPSB_NULLABLE)paddingForLayer:(NSString *)layerName
                                        error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

// An MPSNNGraph node for the layer reading `source`: MPSCNNConvolutionNode,
// MPSCNNConvolutionTransposeNode (no gradient state),
// MPSCNNFullyConnectedNode (each with its MPSBPadding as paddingPolicy and,
// for float32 weights, kernelWeightsDataType Float32 on the source),
// MPSCNNBatchNormalizationNode, MPSCNNInstanceNormalizationNode,
// MPSCNNGroupNormalizationNode (macOS 10.15 / iOS 13), or
// MPSCNNNeuronPReLUNode for a prelu layer. The node's label is the layer
// name; its resultImage feeds the next node.
- (MPSNNFilterNode *MPSB_NULLABLE)nodeForLayer:(NSString *)layerName
                                        source:(MPSNNImageNode *)source
                                         error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

@end

NS_ASSUME_NONNULL_END

#endif  // MPSB_APPLE_MPSBKERNELS_H_
