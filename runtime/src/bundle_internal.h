// Private to the runtime: the mapping behind a Bundle, and access to it
// for the C API.
#ifndef MPSB_RUNTIME_BUNDLE_INTERNAL_H_
#define MPSB_RUNTIME_BUNDLE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"

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

// `s` with every byte outside printable ASCII, and the quote and backslash,
// written as \xNN: names from a bundle are attacker-controlled.
inline std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out += char(c);
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// Bytes hashed by verify() and verify_layer() in this process so far, all
// bundles and threads together: lets tests count the work a check does.
uint64_t bytes_hashed();

struct Access {
  static const Mapping& mapping(const Bundle& b) { return *b.m_; }
};

}  // namespace mpsb::internal

#endif  // MPSB_RUNTIME_BUNDLE_INTERNAL_H_
