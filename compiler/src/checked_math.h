// Overflow-checked unsigned arithmetic for sizes computed from untrusted
// manifests: a product that wraps would make a huge tensor look small.

#ifndef MPSBC_CHECKED_MATH_H_
#define MPSBC_CHECKED_MATH_H_

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>

namespace mpsbc {

inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

inline std::optional<uint64_t> checked_product(std::span<const uint64_t> dims) {
  uint64_t n = 1;
  for (uint64_t d : dims) {
    auto m = checked_mul(n, d);
    if (!m) return std::nullopt;
    n = *m;
  }
  return n;
}

// REQUIRES: alignment is a power of two.
inline std::optional<uint64_t> checked_align_up(uint64_t value, uint64_t alignment) {
  auto sum = checked_add(value, alignment - 1);
  if (!sum) return std::nullopt;
  return *sum & ~(alignment - 1);
}

constexpr bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace mpsbc

#endif  // MPSBC_CHECKED_MATH_H_
