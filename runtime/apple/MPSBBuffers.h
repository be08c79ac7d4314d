// MPSBBufferSet: a bundle's data segment as Metal buffers that wrap the
// mapping without copying it, each within the device's maxBufferLength.
//
// One -[MTLDevice newBufferWithBytesNoCopy:length:options:deallocator:] over
// the whole segment fails when the segment is longer than the device's
// maxBufferLength (at least 256 MB; docs/APPLE.md, "Buffers within Metal's
// limits"). MPSBBufferSet makes one no-copy buffer per window of
// mpsb::BufferPlan (mpsb/buffers.h): page-aligned stretches of the segment,
// each at most maxBufferLength long, with every tensor whole inside one, so
// a tensor is always (buffer, offset) for -setBuffer:offset:atIndex:.
//
// The buffers use MTLResourceStorageModeShared with the default CPU cache
// mode. Each buffer's deallocator holds a share of the mapping: the file
// stays mapped until the last buffer is released, whether or not the
// MPSBBundle or this set still exist. The memory is the read-only mapping:
// the GPU may read the buffers, never write them.
//
// Threading: immutable after creation; use from any thread.
// Memory model: as MPSBBundle.h (manual retain/release or ARC).

#ifndef MPSB_APPLE_MPSBBUFFERS_H_
#define MPSB_APPLE_MPSBBUFFERS_H_

#import <Foundation/Foundation.h>
#import <Metal/Metal.h>

#import "MPSBBundle.h"

NS_ASSUME_NONNULL_BEGIN

struct MPSBBufferSetState;

@interface MPSBBufferSet : NSObject {
 @private
  struct MPSBBufferSetState *_state;
  NSArray *_buffers;
}

// Buffers of at most device.maxBufferLength bytes over `bundle`'s segment,
// with the system page size (getpagesize(), vm_page_size on Apple: 16384 on
// Apple silicon, 4096 on Intel Macs). Returns nil and sets *error when the
// bundle's segment alignment is not a multiple of the page size
// (MPSB_ERROR_MISALIGNED: recompile with mpsbc --segment-alignment), when
// a tensor alone is longer than the limit (MPSB_ERROR_TOO_LARGE, naming it)
// or when the device makes no buffer (MPSB_ERROR_MAP_FAILED).
+ (instancetype MPSB_NULLABLE)bufferSetWithBundle:(MPSBBundle *)bundle
                                           device:(id<MTLDevice>)device
                                            error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
// As above with a limit below device.maxBufferLength (buffers count
// against the app's memory budget however small the limit).
+ (instancetype MPSB_NULLABLE)bufferSetWithBundle:(MPSBBundle *)bundle
                                           device:(id<MTLDevice>)device
                                  maxBufferLength:(NSUInteger)maxBufferLength
                                            error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

- (instancetype)init NS_UNAVAILABLE;

// One id<MTLBuffer> per window, in segment order.
@property(nonatomic, readonly, copy) NSArray *buffers;
// The page size the windows are aligned to.
@property(nonatomic, readonly) NSUInteger pageSize;
// Window i's offset from the start of the segment.
// REQUIRES: i < buffers.count
- (NSUInteger)segmentOffsetOfBuffer:(NSUInteger)i;

// The buffer holding tensor `tensorIndex` of the layer (in the order of
// mpsb_layer_tensor) and, in *offset (when not NULL), where the tensor
// starts in it. nil and *error set (MPSB_ERROR_NOT_FOUND) when there is no
// such layer or tensor.
- (id<MTLBuffer> MPSB_NULLABLE)bufferForLayer:(NSString *)layerName
                                  tensorIndex:(NSUInteger)tensorIndex
                                       offset:(NSUInteger *MPSB_NULLABLE)offset
                                        error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;
// The same for the layer's tensor of `role`, an mpsb_tensor_role value
// (MPSB_ROLE_WEIGHT 0, MPSB_ROLE_BIAS 1, ...).
- (id<MTLBuffer> MPSB_NULLABLE)bufferForLayer:(NSString *)layerName
                                         role:(NSUInteger)role
                                       offset:(NSUInteger *MPSB_NULLABLE)offset
                                        error:(NSError *MPSB_NULLABLE *MPSB_NULLABLE)error;

@end

NS_ASSUME_NONNULL_END

#endif  // MPSB_APPLE_MPSBBUFFERS_H_
