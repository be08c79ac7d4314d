// Where everything goes in the bundle, decided before any byte is written:
// the order of the layers in the metadata and every tensor's offset in the
// data segment. Because the plan depends on the manifest alone, the output
// is the same whatever the number of threads that fill it.

#ifndef MPSBC_BUNDLE_PLAN_H_
#define MPSBC_BUNDLE_PLAN_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "diagnostics.h"
#include "manifest.h"
#include "mpsb_text.h"

namespace mpsbc {

struct PlannedTensor {
  size_t layer = 0;     // index into Manifest::layers (manifest order)
  size_t tensor = 0;    // index into ManifestLayer::tensors (role order)
  uint64_t offset = 0;  // from the start of the data segment
  uint64_t size = 0;
};

struct BundlePlan {
  uint64_t segment_alignment = 0;
  uint64_t tensor_alignment = 0;
  // Indices into Manifest::layers, sorted by name with FlatBuffers' key
  // order (byte-wise, as strcmp).
  std::vector<size_t> sorted_layers;
  // Manifest order of layers, then role order: the order of the segment.
  std::vector<PlannedTensor> tensors;
  // Multiple of segment_alignment.
  uint64_t segment_size = 0;
  // Sum of the tensor sizes, without padding.
  uint64_t tensor_bytes = 0;
  uint64_t largest_tensor = 0;
};

// Largest segment alignment accepted: larger pages do not exist, and the
// padding it costs would dwarf small models.
inline constexpr uint64_t kMaxSegmentAlignment = uint64_t{1} << 30;
// Smallest tensor alignment accepted: every dtype's element and 16-byte
// vector loads stay aligned.
using mpsb::text::kMinTensorAlignment;

// Checks the alignments: powers of two, kMinTensorAlignment <= tensor <=
// segment <= kMaxSegmentAlignment. Reports to `diag` under the option names.
bool check_alignments(uint64_t segment_alignment, uint64_t tensor_alignment, Diagnostics& diag);

// REQUIRES: check_alignments() passed and `manifest` validated without
// errors. Reports a segment that would not fit 64 bits.
bool plan_bundle(const Manifest& manifest, uint64_t segment_alignment, uint64_t tensor_alignment,
                 BundlePlan* plan, Diagnostics& diag);

}  // namespace mpsbc

#endif  // MPSBC_BUNDLE_PLAN_H_
