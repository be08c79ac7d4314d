// What MPSBBundle.mm shares with the other Objective-C++ files of
// runtime/apple (MPSBKernels.mm, MPSBBuffers.mm). Not part of the public interface: it
// needs C++ and the runtime's headers.

#ifndef MPSB_APPLE_MPSBINTERNAL_H_
#define MPSB_APPLE_MPSBINTERNAL_H_

#import "MPSBBundle.h"

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "mpsb/bundle.h"
#include "mpsb/result.h"

// Memory management that reads the same under ARC and manual retain/release.
#if defined(__has_feature) && __has_feature(objc_arc)
#define MPSB_RETAIN(x) (x)
#define MPSB_RELEASE(x) ((void)0)
#define MPSB_AUTORELEASE(x) (x)
#define MPSB_SUPER_DEALLOC() ((void)0)
#else
#define MPSB_RETAIN(x) [(x) retain]
#define MPSB_RELEASE(x) [(x) release]
#define MPSB_AUTORELEASE(x) [(x) autorelease]
#define MPSB_SUPER_DEALLOC() [super dealloc]
#endif

namespace mpsb_apple {

using SharedBundle = std::shared_ptr<const mpsb::Bundle>;

// *error = an NSError in MPSBErrorDomain with `code` and `message`; nothing
// when error is NULL.
void SetError(NSError **error, mpsb::Error code, const std::string &message);
// An autoreleased NSString of the bytes (UTF-8, else Latin-1 so no byte is
// lost).
NSString *StringFromView(std::string_view s);
std::string StringFromNSString(NSString *s);
// The layer named `name`, or nullopt with *error set (InvalidArgument for
// nil, NotFound for a name the bundle does not have).
std::optional<mpsb::Layer> FindLayer(const SharedBundle &bundle, NSString *name, NSError **error);

}  // namespace mpsb_apple

// -init is unavailable (NS_UNAVAILABLE in the header; GNUstep defines that
// macro as nothing, so GCC wants a definition): objects come from MPSBBundle.
#define MPSB_UNAVAILABLE_INIT             \
  -(instancetype)init {                   \
    [self doesNotRecognizeSelector:_cmd]; \
    MPSB_RELEASE(self);                   \
    return nil;                           \
  }

@interface MPSBBundle (MPSBInternal)
// The mapping's owner that the bundle and its data sources share. Points
// into this MPSBBundle; copy it to keep the mapping beyond it.
- (const mpsb_apple::SharedBundle *)sharedBundle;
@end

#endif  // MPSB_APPLE_MPSBINTERNAL_H_
