#include "tensor_ranges.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "bundle_internal.h"
#include "mpsb/types.h"

namespace mpsb::internal {
namespace {

struct Range {
  uint64_t begin, end;  // [begin, end), end <= segment size
  uint32_t layer, tensor;
};

std::string describe(const fb::Bundle& root, const Range& r) {
  const fb::Layer* l = root.layers()->Get(r.layer);
  const fb::Tensor* t = l->tensors()->Get(r.tensor);
  return "layer '" + printable(view(l->name())) + "' tensor " + std::to_string(r.tensor) + " (" +
         std::string(to_string(static_cast<TensorRole>(t->role()))) + ") [" +
         std::to_string(r.begin) + ", " + std::to_string(r.end) + ")";
}

}  // namespace

Status check_tensor_ranges(const fb::Bundle& root, const std::string& where) {
  std::vector<Range> ranges;
  const auto& layers = *root.layers();
  for (uint32_t i = 0; i < layers.size(); ++i) {
    const auto& tensors = *layers.Get(i)->tensors();
    for (uint32_t j = 0; j < tensors.size(); ++j) {
      const fb::Tensor* t = tensors.Get(j);
      // The Checker has bounded offset + size by the segment size.
      ranges.push_back({t->offset(), t->offset() + t->size(), i, j});
    }
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  // Sorted by start, a range overlaps an earlier one exactly when it starts
  // before the end of its predecessor; the predecessor is the earlier range
  // with the largest end as long as every earlier pair was disjoint.
  for (size_t k = 1; k < ranges.size(); ++k) {
    const Range& prev = ranges[k - 1];
    const Range& cur = ranges[k];
    if (cur.begin < prev.end) {
      return {Error::kTensorOutOfRange, where + ": " + describe(root, cur) + " overlaps " +
                                            describe(root, prev) +
                                            " (tensors may not share bytes)"};
    }
  }
  return Ok{};
}

}  // namespace mpsb::internal
