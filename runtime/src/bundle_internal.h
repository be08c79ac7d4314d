// Private to the runtime: the mapping behind a Bundle, and access to it
// for the C API.
#ifndef MPSB_RUNTIME_BUNDLE_INTERNAL_H_
#define MPSB_RUNTIME_BUNDLE_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <string>
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

struct Access {
  static const Mapping& mapping(const Bundle& b) { return *b.m_; }
};

}  // namespace mpsb::internal

#endif  // MPSB_RUNTIME_BUNDLE_INTERNAL_H_
