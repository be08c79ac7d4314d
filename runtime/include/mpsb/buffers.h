// BufferPlan: the data segment cut into page-aligned windows that each fit
// one Metal buffer, so that every tensor lies whole inside one of them.
//
// -[MTLDevice newBufferWithBytesNoCopy:length:options:deallocator:] wraps
// memory without copying it only when the pointer is page-aligned and the
// length gives a page-aligned region, and no buffer may be longer than the
// device's maxBufferLength (at least 256 MB; docs/APPLE.md, "Buffers within
// Metal's limits", quotes Apple's text). One buffer over the whole segment
// fails on a device whose limit is below the segment size, so the plan
// gives several windows instead, each a no-copy buffer, and for each tensor
// the window that holds it and its offset there.
//
// Windows are chosen greedily: tensors are taken in segment order and each
// window grows until the next tensor would take it past the limit. Since
// tensors never share bytes (docs/FORMAT.md §5), a window that holds two
// tensors holds every tensor between them, so some plan with the fewest
// windows uses runs of consecutive tensors, and the greedy runs are as long
// as any: no plan has fewer windows. Consecutive windows overlap by at most
// the one page where a tensor ends and the next one starts.
//
// A BufferPlan is a value: it holds offsets only, no pointer into the
// mapping, and is safe to read from any number of threads.

#ifndef MPSB_BUFFERS_H_
#define MPSB_BUFFERS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/result.h"

namespace mpsb {

// A stretch of the data segment for one no-copy buffer. `offset` (from the
// start of the segment) and `length` are multiples of the page size,
// `length` is at most the usable limit and `offset + length` at most the
// segment size: a window never reaches past the end of the file.
struct BufferWindow {
  uint64_t offset = 0;
  uint64_t length = 0;
};

// Where one tensor is: window `window`, `offset` bytes from its start.
struct TensorPlacement {
  uint32_t window = 0;
  uint64_t offset = 0;
};

class BufferPlan {
 public:
  // Plans windows of at most `max_buffer_length` bytes (the device's
  // maxBufferLength; rounded down to whole pages) over `bundle`'s segment.
  // Refused with kInvalidArgument when `page_size` is not a power of two or
  // the limit is below one page; with kMisaligned when the bundle's segment
  // alignment is not a multiple of `page_size` (its segment would not start
  // on a page boundary); with kTooLarge, naming the tensor and the sizes,
  // when a tensor's pages alone are longer than the limit.
  [[nodiscard]] static Result<BufferPlan> make(const Bundle& bundle, uint64_t max_buffer_length,
                                               uint64_t page_size);

  uint64_t page_size() const { return page_size_; }
  // `max_buffer_length` rounded down to a multiple of page_size().
  uint64_t usable_length() const { return usable_length_; }

  // In segment order; empty when the bundle has no tensor.
  std::span<const BufferWindow> windows() const { return windows_; }

  // The window of tensor `tensor` of layer `layer` (Bundle::layer order).
  // REQUIRES: layer < bundle.layer_count(),
  //           tensor < bundle.layer(layer).tensor_count()
  TensorPlacement placement(size_t layer, size_t tensor) const {
    return placements_[first_[layer] + tensor];
  }

 private:
  BufferPlan() = default;
  uint64_t page_size_ = 0;
  uint64_t usable_length_ = 0;
  std::vector<BufferWindow> windows_;
  std::vector<TensorPlacement> placements_;  // layer by layer, tensor by tensor
  std::vector<size_t> first_;                // first_[layer]: its first placement
};

}  // namespace mpsb

#endif  // MPSB_BUFFERS_H_
