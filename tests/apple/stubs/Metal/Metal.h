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

// The real protocol has hundreds of methods; the adapters use none of them.
@protocol MTLDevice <NSObject>
@end

@protocol MTLCommandBuffer <NSObject>
@end

#endif  // MPSB_TESTS_APPLE_STUBS_METAL_H_
