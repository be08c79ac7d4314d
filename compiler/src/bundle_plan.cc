#include "bundle_plan.h"

#include <algorithm>
#include <string>

#include "checked_math.h"

namespace mpsbc {

bool check_alignments(uint64_t segment_alignment, uint64_t tensor_alignment, Diagnostics& diag) {
  bool ok = true;
  auto bad = [&](const char* option, std::string text) {
    diag.error_in(option, text);
    ok = false;
  };
  if (!is_power_of_two(segment_alignment) || segment_alignment > kMaxSegmentAlignment) {
    bad("segment alignment", "expected a power of two <= " + std::to_string(kMaxSegmentAlignment) +
                                 ", found " + std::to_string(segment_alignment));
  }
  if (!is_power_of_two(tensor_alignment) || tensor_alignment < kMinTensorAlignment) {
    bad("tensor alignment", "expected a power of two >= " + std::to_string(kMinTensorAlignment) +
                                ", found " + std::to_string(tensor_alignment));
  }
  if (ok && tensor_alignment > segment_alignment) {
    // A tensor offset aligned within the segment is only aligned in the file
    // (and in a no-copy Metal buffer) if the segment is at least as aligned.
    bad("tensor alignment", "must not exceed the segment alignment " +
                                std::to_string(segment_alignment) + ", found " +
                                std::to_string(tensor_alignment));
  }
  return ok;
}

bool plan_bundle(const Manifest& manifest, uint64_t segment_alignment, uint64_t tensor_alignment,
                 BundlePlan* plan, Diagnostics& diag) {
  BundlePlan p;
  p.segment_alignment = segment_alignment;
  p.tensor_alignment = tensor_alignment;

  p.sorted_layers.resize(manifest.layers.size());
  for (size_t i = 0; i < p.sorted_layers.size(); ++i) p.sorted_layers[i] = i;
  // std::string compares with char_traits<char>, which orders bytes as
  // unsigned like memcmp, the order of FlatBuffers' string keys. Names are
  // unique, so the order is total.
  std::sort(p.sorted_layers.begin(), p.sorted_layers.end(),
            [&](size_t a, size_t b) { return manifest.layers[a].name < manifest.layers[b].name; });

  uint64_t end = 0;
  for (size_t li = 0; li < manifest.layers.size(); ++li) {
    const auto& layer = manifest.layers[li];
    for (size_t ti = 0; ti < layer.tensors.size(); ++ti) {
      const auto& t = layer.tensors[ti];
      auto offset = checked_align_up(end, tensor_alignment);
      auto next = offset ? checked_add(*offset, t.size) : std::nullopt;
      if (!next) {
        diag.error(t.pointer, "the data segment would exceed 2^64 bytes at this tensor");
        return false;
      }
      p.tensors.push_back({li, ti, *offset, t.size});
      p.tensor_bytes += t.size;
      p.largest_tensor = std::max(p.largest_tensor, t.size);
      end = *next;
    }
  }
  // FlatBuffers 2.0.8 cannot build a buffer over 2 GiB and only asserts in
  // debug builds; a generous per-entry bound keeps the metadata far below it.
  uint64_t metadata_bound = 4096;
  for (const auto& [key, value] : manifest.metadata)
    metadata_bound += key.size() + value.size() + 64;
  if (manifest.name) metadata_bound += manifest.name->size();
  for (const auto& layer : manifest.layers) {
    metadata_bound += layer.name.size() + 512 + 256 * layer.tensors.size();
  }
  if (metadata_bound > (uint64_t{1} << 30)) {
    diag.error("", "the bundle metadata would be too large for FlatBuffers (over 1 GiB)");
    return false;
  }

  auto size = checked_align_up(end, segment_alignment);
  if (!size) {
    diag.error("/layers", "the data segment would exceed 2^64 bytes");
    return false;
  }
  p.segment_size = *size;
  *plan = std::move(p);
  return true;
}

}  // namespace mpsbc
