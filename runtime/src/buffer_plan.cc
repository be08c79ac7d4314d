#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bundle_internal.h"
#include "mpsb/buffers.h"

namespace mpsb {
namespace {

struct Span {
  uint64_t begin, end;  // the tensor's bytes [begin, end) in the segment
  uint32_t layer, tensor;
};

uint64_t page_floor(uint64_t v, uint64_t page) { return v & ~(page - 1); }
// REQUIRES: v <= the segment size, which is a multiple of `page`, so the
// result cannot overflow.
uint64_t page_ceil(uint64_t v, uint64_t page) { return (v + page - 1) & ~(page - 1); }

}  // namespace

Result<BufferPlan> BufferPlan::make(const Bundle& bundle, uint64_t max_buffer_length,
                                    uint64_t page_size) {
  const std::string& where = internal::Access::mapping(bundle).path;
  if (!internal::is_pow2(page_size)) {
    return {Error::kInvalidArgument,
            "page size " + std::to_string(page_size) + " is not a power of two"};
  }
  if (max_buffer_length < page_size) {
    return {Error::kInvalidArgument, "buffer limit " + std::to_string(max_buffer_length) +
                                         " is less than one page (" + std::to_string(page_size) +
                                         " bytes)"};
  }
  if (bundle.segment_alignment() % page_size != 0) {
    return {Error::kMisaligned,
            where + ": segment alignment " + std::to_string(bundle.segment_alignment()) +
                " is not a multiple of the page size " + std::to_string(page_size) +
                ", so the segment may not start on a page (recompile with mpsbc "
                "--segment-alignment " +
                std::to_string(page_size) + ")"};
  }

  BufferPlan plan;
  plan.page_size_ = page_size;
  plan.usable_length_ = page_floor(max_buffer_length, page_size);
  const uint64_t segment_size = bundle.segment().size();

  std::vector<Span> spans;
  plan.first_.reserve(bundle.layer_count());
  for (size_t i = 0; i < bundle.layer_count(); ++i) {
    const Layer l = bundle.layer(i);
    plan.first_.push_back(spans.size());
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      const Tensor t = l.tensor(j);
      // A valid bundle has no empty tensor (each has its layer's non-zero
      // shape); should one appear, it is placed as its first byte would be.
      const uint64_t begin = std::min(t.offset(), segment_size == 0 ? 0 : segment_size - 1);
      const uint64_t end = std::max(begin + 1, t.offset() + t.size());
      spans.push_back(
          {begin, std::min(end, segment_size), static_cast<uint32_t>(i), static_cast<uint32_t>(j)});
    }
  }
  plan.placements_.resize(spans.size());
  std::sort(spans.begin(), spans.end(),
            [](const Span& a, const Span& b) { return a.begin < b.begin; });

  bool open = false;
  BufferWindow current;
  for (const Span& s : spans) {
    const uint64_t first_page = page_floor(s.begin, page_size);
    const uint64_t end_page = page_ceil(s.end, page_size);
    if (end_page - first_page > plan.usable_length_) {
      const Layer l = bundle.layer(s.layer);
      return {Error::kTooLarge,
              where + ": layer '" + internal::printable(l.name()) + "' tensor " +
                  std::to_string(s.tensor) + " (" +
                  std::string(to_string(l.tensor(s.tensor).role())) + ", " +
                  std::to_string(s.end - s.begin) + " bytes at segment offset " +
                  std::to_string(s.begin) + ") spans " + std::to_string(end_page - first_page) +
                  " bytes of whole " + std::to_string(page_size) +
                  "-byte pages, more than the buffer limit " + std::to_string(max_buffer_length) +
                  " (" + std::to_string(plan.usable_length_) + " in whole pages)"};
    }
    if (open && end_page - current.offset <= plan.usable_length_) {
      current.length = std::max(current.length, end_page - current.offset);
    } else {
      if (open) plan.windows_.push_back(current);
      current = {first_page, end_page - first_page};
      open = true;
    }
    plan.placements_[plan.first_[s.layer] + s.tensor] = {
        static_cast<uint32_t>(plan.windows_.size()), s.begin - current.offset};
  }
  if (open) plan.windows_.push_back(current);
  return plan;
}

}  // namespace mpsb
