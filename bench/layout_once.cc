// One layout transform of one benchmark tensor (bench/layout_cases.h), for
// counting instructions and cache misses per byte under a simulator, where
// timing means nothing:
//   layout_once CASE [LEVEL] [fast|naive|memcpy|none] [L1_BYTES L1_WAYS LAST_BYTES]
//   valgrind --tool=callgrind --cache-sim=yes --D1=32768,8,64
//     --LL=524288,8,64 --toggle-collect='*layout_once_work*' layout_once ...
// (one line; --D1/--LL model the cache to study).
// Buffers are filled (and their pages faulted in) before the transform, so
// only the transform is in the counted function. Where no tool can collect
// one function (qemu-aarch64 counts a whole process), "none" runs the
// set-up alone: the difference is the transform's count.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "layout_cases.h"
#include "mpsbc/layout.h"
#include "naive_reorder.h"

namespace {

// Not inlined, so that callgrind can collect it alone.
__attribute__((noinline)) void layout_once_work(const mpsbc::TensorPlan& plan, std::string_view how,
                                                const uint32_t* src, uint32_t* dst) {
  if (how == "none") return;  // the set-up alone, to subtract
  if (how == "naive") {
    mpsb::bench::naive_reorder(plan, src, dst);
  } else if (how == "memcpy") {
    std::memcpy(dst, src, plan.element_count() * sizeof(uint32_t));
  } else {
    mpsbc::apply(plan, src, dst, sizeof(uint32_t));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: %s CASE [scalar|sse2|avx2|avx512|neon] [fast|naive|memcpy|none] "
                 "[L1_BYTES L1_WAYS LAST_LEVEL_BYTES [L2_BYTES]]\n",
                 argv[0]);
    return 2;
  }
  const std::string_view name = argv[1];
  const std::string_view level = argc > 2 ? argv[2] : "best";
  const std::string_view how = argc > 3 ? argv[3] : "fast";
  for (mpsbc::Isa isa : {mpsbc::Isa::kScalar, mpsbc::Isa::kSse2, mpsbc::Isa::kAvx2,
                         mpsbc::Isa::kAvx512, mpsbc::Isa::kNeon}) {
    if (level == mpsbc::isa_name(isa)) mpsbc::set_max_isa(isa);
  }
  // The caches to plan for, when not this machine's (to study another
  // CPU's under callgrind's simulation of them).
  if (argc > 6) {
    mpsbc::CacheGeometry g{std::strtoull(argv[4], nullptr, 10), std::strtoull(argv[5], nullptr, 10),
                           std::strtoull(argv[6], nullptr, 10)};
    if (argc > 7) g.l2_bytes = std::strtoull(argv[7], nullptr, 10);
    mpsbc::set_cache_geometry(g);
  }
  for (const auto& c : mpsb::bench::layout_cases()) {
    if (name != c.name) continue;
    const uint64_t n = c.plan.element_count();
    // 64-byte aligned, as the compiler's piece buffers are.
    auto* src = static_cast<uint32_t*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64));
    auto* dst = static_cast<uint32_t*>(std::aligned_alloc(64, (n * 4 + 63) / 64 * 64));
    for (uint64_t k = 0; k < n; ++k) src[k] = uint32_t(k * 2654435761u);
    std::memset(dst, 0, n * 4);
    layout_once_work(c.plan, how, src, dst);
    std::printf("%s %s %s: %llu bytes, level %s\n", c.name, std::string(level).c_str(),
                std::string(how).c_str(), static_cast<unsigned long long>(n * 4),
                mpsbc::isa_name(mpsbc::max_isa()));
    std::free(src);
    std::free(dst);
    return 0;
  }
  std::fprintf(stderr, "%s: no case named %s\n", argv[0], argv[1]);
  return 2;
}
