// Declaration stub of Apple's Metal framework for the GNUstep check build.
//
// Only what MetalPerformanceShaders' declarations below, the adapters and
// tools/device_check refer to. Written from Apple's documented interface
// (developer.apple.com/documentation/metal, MTLDevice.h, MTLCommandQueue.h,
// MTLCommandBuffer.h, MTLTypes.h, MTLResource.h, MTLTexture.h); nothing
// here runs on a GPU. Not for use outside tests/apple.
#ifndef MPSB_TESTS_APPLE_STUBS_METAL_H_
#define MPSB_TESTS_APPLE_STUBS_METAL_H_

#import <Foundation/Foundation.h>

// Apple's SDK has these from <os/availability.h> and Foundation; under
// clang they expand to the availability attributes Apple's headers carry,
// so -Wunguarded-availability flags an iOS 13/14-only member used without a
// check, under GCC (which has no availability attribute) to nothing.
#ifndef API_AVAILABLE
#if defined(__clang__)
#define MPSB_STUB_AV_macos(v) __attribute__((availability(macos, introduced = v)))
#define MPSB_STUB_AV_ios(v) __attribute__((availability(ios, introduced = v)))
#define MPSB_STUB_AV_tvos(v) __attribute__((availability(tvos, introduced = v)))
#define MPSB_STUB_AV_macCatalyst(v) __attribute__((availability(macCatalyst, introduced = v)))
#define MPSB_STUB_AV1(a) MPSB_STUB_AV_##a
#define MPSB_STUB_AV2(a, b) MPSB_STUB_AV_##a MPSB_STUB_AV_##b
#define MPSB_STUB_AV3(a, b, c) MPSB_STUB_AV_##a MPSB_STUB_AV_##b MPSB_STUB_AV_##c
#define MPSB_STUB_AV4(a, b, c, d) \
  MPSB_STUB_AV_##a MPSB_STUB_AV_##b MPSB_STUB_AV_##c MPSB_STUB_AV_##d
#define MPSB_STUB_AV_PICK(_1, _2, _3, _4, name, ...) name
#define API_AVAILABLE(...)                                                                   \
  MPSB_STUB_AV_PICK(__VA_ARGS__, MPSB_STUB_AV4, MPSB_STUB_AV3, MPSB_STUB_AV2, MPSB_STUB_AV1, \
                    unused)                                                                  \
  (__VA_ARGS__)
#else
#define API_AVAILABLE(...)
#endif
#endif
// Nullability qualifiers (clang has them, GCC does not; GCC does accept the
// nullable / nonnull property attributes, which the stubs use as Apple does).
#if defined(__has_feature) && __has_feature(nullability)
#define MPSB_STUB_NULLABLE _Nullable
#define MPSB_STUB_NONNULL _Nonnull
#else
#define MPSB_STUB_NULLABLE
#define MPSB_STUB_NONNULL
#endif

// MTLResourceOptions (MTLResource.h): NS_OPTIONS(NSUInteger); values as
// documented.
typedef NS_OPTIONS(NSUInteger, MTLResourceOptions) {
  MTLResourceCPUCacheModeDefaultCache = 0,
  MTLResourceStorageModeShared = 0 << 4,
};

// MTLTextureUsage (MTLTexture.h).
typedef NS_OPTIONS(NSUInteger, MTLTextureUsage) {
  MTLTextureUsageUnknown = 0x0000,
  MTLTextureUsageShaderRead = 0x0001,
  MTLTextureUsageShaderWrite = 0x0002,
};

// MTLTypes.h.
typedef struct {
  NSUInteger x, y, z;
} MTLOrigin;
typedef struct {
  NSUInteger width, height, depth;
} MTLSize;
typedef struct {
  MTLOrigin origin;
  MTLSize size;
} MTLRegion;

@protocol MTLBuffer <NSObject>
- (void *)contents;
- (NSUInteger)length;
@end

@protocol MTLCommandBuffer <NSObject>
- (void)commit;
- (void)waitUntilCompleted;
@property(nullable, readonly) NSError *error;
@end

@protocol MTLCommandQueue <NSObject>
- (id<MTLCommandBuffer> MPSB_STUB_NULLABLE)commandBuffer;
@end

// --- No-copy buffers (MPSBBufferSet, runtime/apple) -------------------------
// Apple's MTLDevice.h declares the deallocator as a block,
// void (^)(void *pointer, NSUInteger length). GCC's Objective-C has no
// blocks; GNUstep's GSBlocks.h then defines the type as a pointer to the
// block ABI's leading fields (isa, flags, reserved, invoke), which is what
// the adapters build by hand in that case.
DEFINE_BLOCK_TYPE(MTLStubDeallocator, void, void *, NSUInteger);

// The real protocol has hundreds of methods; these are the ones used here.
@protocol MTLDevice <NSObject>
@property(nonnull, readonly) NSString *name;
- (id<MTLCommandQueue> MPSB_STUB_NULLABLE)newCommandQueue;
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

#ifdef __cplusplus
extern "C" {
#endif
// MTLDevice.h: the default GPU, or nil where there is none (always here).
id<MTLDevice> MPSB_STUB_NULLABLE MTLCreateSystemDefaultDevice(void)
    API_AVAILABLE(macos(10.11), ios(8.0));
#ifdef __cplusplus
}
#endif

#endif  // MPSB_TESTS_APPLE_STUBS_METAL_H_
