// Declaration stub of Apple's Metal framework for the GNUstep check build.
//
// Only what MetalPerformanceShaders' declarations below refer to. Written
// from Apple's documented interface (developer.apple.com/documentation/metal);
// nothing here runs on a GPU. Not for use outside tests/apple.
#ifndef MPSB_TESTS_APPLE_STUBS_METAL_H_
#define MPSB_TESTS_APPLE_STUBS_METAL_H_

#import <Foundation/Foundation.h>

// MTLResourceOptions (MTLResource.h); values as documented.
typedef NSUInteger MTLResourceOptions;
enum {
  MTLResourceCPUCacheModeDefaultCache = 0,
  MTLResourceStorageModeShared = 0 << 4,
};

@protocol MTLBuffer <NSObject>
- (void *)contents;
- (NSUInteger)length;
@end

// --- No-copy buffers (MPSBBufferSet, runtime/apple) -------------------------
// Apple's MTLDevice.h declares the deallocator as a block,
// void (^)(void *pointer, NSUInteger length). GCC's Objective-C has no
// blocks; GNUstep's GSBlocks.h then defines the type as a pointer to the
// block ABI's leading fields (isa, flags, reserved, invoke), which is what
// the adapters build by hand in that case.
DEFINE_BLOCK_TYPE(MTLStubDeallocator, void, void *, NSUInteger);

// The real protocol has hundreds of methods; the adapters use these.
@protocol MTLDevice <NSObject>
// MTLDevice.h: API_AVAILABLE(macos(10.14), ios(12.0)); at least 256 MB.
@property(readonly) NSUInteger maxBufferLength;
// MTLDevice.h: "Create a buffer by wrapping an existing part of the address
// space." Apple's documentation: a page-aligned pointer, a length that
// gives a page-aligned region, within a single VM region.
- (id<MTLBuffer>)newBufferWithBytesNoCopy:(void *)pointer
                                   length:(NSUInteger)length
                                  options:(MTLResourceOptions)options
                              deallocator:(MTLStubDeallocator)deallocator;
@end

// Not Apple's: a test double of a device (stubs.m). It refuses what Apple
// documents newBufferWithBytesNoCopy: must not get (a pointer or length that
// is not a multiple of its page size, a length above maxBufferLength) by
// returning nil, and its buffers call their deallocator once, when they are
// deallocated.
@interface MTLStubDevice : NSObject <MTLDevice> {
 @private
  NSUInteger _maxBufferLength;
  NSUInteger _pageSize;
  NSUInteger _liveBuffers;
  NSUInteger _deallocatorCalls;
}
- (instancetype)initWithMaxBufferLength:(NSUInteger)maxBufferLength pageSize:(NSUInteger)pageSize;
// Buffers made and not yet deallocated; deallocators run so far.
@property(readonly) NSUInteger liveBuffers;
@property(readonly) NSUInteger deallocatorCalls;
@end
// --- end of no-copy buffers -------------------------------------------------

@protocol MTLCommandBuffer <NSObject>
@end

#endif  // MPSB_TESTS_APPLE_STUBS_METAL_H_
