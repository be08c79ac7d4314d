// Private to the runtime: the mapping behind a Bundle, and access to it
// for the C API.
#ifndef MPSB_RUNTIME_BUNDLE_INTERNAL_H_
#define MPSB_RUNTIME_BUNDLE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsb_text.h"

namespace mpsb::internal {

struct Mapping {
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  const std::byte* data = nullptr;
  uint64_t size = 0;
  bool owned = false;  // munmap on destruction (file mappings only)
  std::string path;    // for messages
  const fb::Bundle* root = nullptr;
  const std::byte* segment = nullptr;
  // network_order[manifest index] = position in the sorted layer vector.
  std::vector<uint32_t> network_order;
};

// Checks a bundle's bytes in the documented order (checker.cc). On success
// sets *root and *network_order (network_order[manifest index] = position
// in the sorted layer vector). `where` names the file in messages.
Status check_bundle_bytes(const std::byte* data, uint64_t size, const std::string& where,
                          const fb::Bundle** root, std::vector<uint32_t>* network_order);

inline bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

// Names and bytes from the file, escaped for messages (mpsb_text.h: control
// characters, bytes that are not UTF-8, bidi and zero-width characters).
inline std::string printable(std::string_view s) { return text::escape(s); }

inline std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

// "[2, 3, 4]".
inline std::string shape_text(std::span<const uint64_t> shape) {
  return "[" + text::shape_text(shape, ", ") + "]";
}

// madvise(WILLNEED) (load) or madvise(DONTNEED) over a tensor's or a
// layer's pages; a no-op for bundles held in memory. Data sources call these
// with the Mapping, whose address does not change when its Bundle is moved.
void advise(const Mapping& m, const Tensor& t, bool load);
void advise(const Mapping& m, const Layer& l, bool load);

// Bytes hashed by verify() and verify_layer() in this process so far, all
// bundles and threads together: lets tests count the work a check does.
uint64_t bytes_hashed();

struct Access {
  static const Mapping& mapping(const Bundle& b) { return *b.m_; }
};

}  // namespace mpsb::internal

#endif  // MPSB_RUNTIME_BUNDLE_INTERNAL_H_
