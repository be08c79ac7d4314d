// MPSBBufferSet (MPSBBuffers.h): no-copy Metal buffers over the windows of
// mpsb::BufferPlan.
//
// Apple's contract (MTLDevice.h, "Create a buffer by wrapping an existing
// part of the address space"; the method's documentation): the pointer is
// page-aligned, the length gives a page-aligned region, the memory lies in
// one VM region (one mmap here), and the memory must stay valid until the
// deallocator runs. The plan gives page-aligned offsets and lengths; the
// pointer is checked here too, since a bundle opened from memory elsewhere
// would not be page-aligned.
//
// Memory model: manual retain/release through the MPSB_* macros, as in
// MPSBBundle.mm, so the file also compiles under ARC.

#import "MPSBBuffers.h"
#import "MPSBInternal.h"

#include <unistd.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "mpsb/buffers.h"
#include "mpsb/bundle.h"
#include "mpsb/result.h"

using mpsb_apple::SetError;
using mpsb_apple::StringFromNSString;
using mpsb_apple::SharedBundle;

struct MPSBBufferSetState {
  SharedBundle bundle;
  mpsb::BufferPlan plan;
};

namespace {

#if defined(__has_feature) && __has_feature(blocks)
// A deallocator block that owns one share of the mapping and drops it when
// Metal calls it, after the buffer is gone. The block captures only a
// pointer, so it behaves the same under ARC and manual retain/release.
typedef void (^MPSBDeallocator)(void *pointer, NSUInteger length);

MPSBDeallocator NewDeallocator(const SharedBundle &bundle) {
  SharedBundle *share = new SharedBundle(bundle);
  return MPSB_AUTORELEASE([^(void *pointer, NSUInteger length) {
    (void)pointer;
    (void)length;
    delete share;
  } copy]);
}
#else
// GCC's Objective-C (the GNUstep check build) has no blocks. The stubs then
// declare the deallocator as GNUstep's stand-in (GSBlocks.h: a pointer to
// the block ABI's isa, flags, reserved and invoke fields); this record
// starts with those fields and frees itself, with its share, when invoked.
struct DeallocatorRecord {
  void *isa;
  int flags;
  int reserved;
  void (*invoke)(void *, void *, NSUInteger);
  SharedBundle *share;
};

void InvokeDeallocator(void *self, void *pointer, NSUInteger length) {
  (void)pointer;
  (void)length;
  DeallocatorRecord *record = static_cast<DeallocatorRecord *>(self);
  delete record->share;
  delete record;
}

MTLStubDeallocator NewDeallocator(const SharedBundle &bundle) {
  DeallocatorRecord *record =
      new DeallocatorRecord{nullptr, 0, 0, &InvokeDeallocator, new SharedBundle(bundle)};
  return reinterpret_cast<MTLStubDeallocator>(record);
}
#endif

NSUInteger SystemPageSize() {
  // vm_page_size on Apple platforms; getpagesize() returns it.
  return static_cast<NSUInteger>(getpagesize());
}

}  // namespace

@interface MPSBBufferSet ()
- (instancetype)initWithState:(MPSBBufferSetState *)state buffers:(NSArray *)buffers;
@end

@implementation MPSBBufferSet

MPSB_UNAVAILABLE_INIT

+ (instancetype)bufferSetWithBundle:(MPSBBundle *)bundle
                             device:(id<MTLDevice>)device
                              error:(NSError **)error {
  return [self bufferSetWithBundle:bundle
                            device:device
                   maxBufferLength:[device maxBufferLength]
                             error:error];
}

+ (instancetype)bufferSetWithBundle:(MPSBBundle *)bundle
                             device:(id<MTLDevice>)device
                    maxBufferLength:(NSUInteger)maxBufferLength
                              error:(NSError **)error {
  if (bundle == nil || device == nil) {
    SetError(error, mpsb::Error::kInvalidArgument, "bundle and device must not be nil");
    return nil;
  }
  const SharedBundle &shared = *[bundle sharedBundle];
  const NSUInteger page = SystemPageSize();
  mpsb::Result<mpsb::BufferPlan> plan = mpsb::BufferPlan::make(*shared, maxBufferLength, page);
  if (!plan) {
    SetError(error, plan.error(), plan.message());
    return nil;
  }
  const std::byte *segment = shared->segment().data();
  if (reinterpret_cast<uintptr_t>(segment) % page != 0) {
    SetError(error, mpsb::Error::kMisaligned,
             "the bundle's segment is not page-aligned in memory (page size " +
                 std::to_string(page) + ")");
    return nil;
  }
  NSMutableArray *buffers = [NSMutableArray arrayWithCapacity:plan->windows().size()];
  for (const mpsb::BufferWindow &w : plan->windows()) {
    // Metal only reads the bytes: the pointer is the read-only mapping.
    void *bytes = const_cast<std::byte *>(segment + w.offset);
    id<MTLBuffer> buffer = [device
        newBufferWithBytesNoCopy:bytes
                          length:static_cast<NSUInteger>(w.length)
                         options:MTLResourceStorageModeShared | MTLResourceCPUCacheModeDefaultCache
                     deallocator:NewDeallocator(shared)];
    if (buffer == nil) {
      // Whether Metal drops a refused buffer's deallocator without calling
      // it is not documented; its share of the mapping is then kept (a
      // mapping that stays is safe, one freed twice is not).
      SetError(error, mpsb::Error::kMapFailed,
               "newBufferWithBytesNoCopy refused the window at segment offset " +
                   std::to_string(w.offset) + ", " + std::to_string(w.length) + " bytes");
      return nil;
    }
    [buffers addObject:buffer];
    MPSB_RELEASE(buffer);  // new...: +1, now held by the array
  }
  MPSBBufferSetState *state = new MPSBBufferSetState{shared, std::move(plan).value()};
  return MPSB_AUTORELEASE([[self alloc] initWithState:state buffers:buffers]);
}

- (instancetype)initWithState:(MPSBBufferSetState *)state buffers:(NSArray *)buffers {
  self = [super init];
  if (self != nil) {
    _state = state;
    _buffers = [buffers copy];
  } else {
    delete state;
  }
  return self;
}

- (void)dealloc {
  delete _state;
  MPSB_RELEASE(_buffers);
  MPSB_SUPER_DEALLOC();
}

- (NSArray *)buffers {
  return _buffers;
}

- (NSUInteger)pageSize {
  return static_cast<NSUInteger>(_state->plan.page_size());
}

- (NSUInteger)segmentOffsetOfBuffer:(NSUInteger)i {
  return static_cast<NSUInteger>(_state->plan.windows()[i].offset);
}

- (id<MTLBuffer>)bufferForLayer:(NSString *)layerName
                    tensorIndex:(NSUInteger)tensorIndex
                         offset:(NSUInteger *)offset
                          error:(NSError **)error {
  const std::string key = layerName ? StringFromNSString(layerName) : std::string();
  const mpsb::Bundle &b = *_state->bundle;
  const std::optional<size_t> i = layerName ? b.find_index(key) : std::nullopt;
  if (!i) {
    SetError(error, mpsb::Error::kNotFound, "no layer named '" + key + "' in the bundle");
    return nil;
  }
  const mpsb::Layer layer = b.layer(*i);
  if (tensorIndex >= layer.tensor_count()) {
    SetError(error, mpsb::Error::kNotFound,
             "layer '" + key + "' has " + std::to_string(layer.tensor_count()) +
                 " tensors, no tensor " + std::to_string(tensorIndex));
    return nil;
  }
  const mpsb::TensorPlacement p = _state->plan.placement(*i, tensorIndex);
  if (offset != NULL) *offset = static_cast<NSUInteger>(p.offset);
  return [_buffers objectAtIndex:p.window];
}

- (id<MTLBuffer>)bufferForLayer:(NSString *)layerName
                           role:(NSUInteger)role
                         offset:(NSUInteger *)offset
                          error:(NSError **)error {
  const std::string key = layerName ? StringFromNSString(layerName) : std::string();
  const std::optional<mpsb::Layer> layer = layerName ? _state->bundle->find(key) : std::nullopt;
  if (layer) {
    for (size_t j = 0; j < layer->tensor_count(); ++j) {
      if (static_cast<NSUInteger>(layer->tensor(j).role()) == role) {
        return [self bufferForLayer:layerName tensorIndex:j offset:offset error:error];
      }
    }
    SetError(error, mpsb::Error::kNotFound,
             "layer '" + key + "' has no tensor of role " + std::to_string(role));
    return nil;
  }
  SetError(error, mpsb::Error::kNotFound, "no layer named '" + key + "' in the bundle");
  return nil;
}

@end
