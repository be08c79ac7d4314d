// The blocked, vectorised transforms of compiler/src/layout.cc against the
// plain nested loops that docs/FORMAT.md §3 defines them by, over many random
// shapes (odd sizes, every remainder of the 4x4, 8x8 and 16x16 blocks,
// groups) and every element size, in both directions, at every vector level
// this CPU has (scalar, SSE2, AVX2, AVX-512; scalar, NEON on arm64), under
// several cache geometries, with buffers at every 4-byte
// offset within a cache line and with tensors large enough for
// non-temporal stores.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <string_view>
#include <vector>

#include "mpsbc/layout.h"
#include "naive_reorder.h"

namespace {

using mpsbc::Isa;

// `src`, `fast` and `back` may point anywhere; `naive` is the reference.
template <typename T>
void expect_fast_equals_naive_at(const mpsbc::TensorPlan& plan, std::mt19937& rng, T* src, T* fast,
                                 T* back) {
  const uint64_t n = plan.element_count();
  std::vector<T> naive(n);
  for (uint64_t k = 0; k < n; ++k) src[k] = static_cast<T>(rng());
  // Poison the outputs so an element a path forgets to write shows up.
  std::memset(fast, 0xA5, n * sizeof(T));
  std::memset(naive.data(), 0x5A, n * sizeof(T));
  std::memset(back, 0xC3, n * sizeof(T));
  mpsbc::apply(plan, src, fast, sizeof(T));
  mpsb::bench::naive_reorder(plan, src, naive.data());
  ASSERT_EQ(0, std::memcmp(fast, naive.data(), n * sizeof(T)));
  mpsbc::invert(plan, fast, back, sizeof(T));
  ASSERT_EQ(0, std::memcmp(back, src, n * sizeof(T)));
}

template <typename T>
void expect_fast_equals_naive(const mpsbc::TensorPlan& plan, std::mt19937& rng) {
  const uint64_t n = plan.element_count();
  std::vector<T> src(n), fast(n), back(n);
  expect_fast_equals_naive_at(plan, rng, src.data(), fast.data(), back.data());
}

void expect_all_sizes(const mpsbc::TensorPlan& plan, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "transform " << int(plan.transform) << " source "
                                    << ::testing::PrintToString(plan.source_shape));
  expect_fast_equals_naive<uint8_t>(plan, rng);
  expect_fast_equals_naive<uint16_t>(plan, rng);
  expect_fast_equals_naive<uint32_t>(plan, rng);
}

// Runs the test body once per vector level up to the best this CPU has
// (on a CPU without AVX-512 the AVX-512 round is the AVX2 one again, and
// says so), and at each level once per cache geometry: this machine's, a
// 32 KiB 8-way L1 with a 256 KiB L2 and a 1 MiB last level (non-temporal
// stores from 1 MiB on, the AVX2 3x3 tiles between), and a 1 KiB 2-way L1
// under which almost every destination with
// rows a multiple of a line apart goes through the staging buffer. Then
// restores the best level and this machine's caches for the tests that
// follow.
class LayoutFastTest : public ::testing::Test {
 protected:
  template <typename Body>
  void for_each_level(Body body) {
    const std::vector<mpsbc::CacheGeometry> geometries = {
        machine_, {32 << 10, 8, 1 << 20, 256 << 10}, {1 << 10, 2, 64 << 10, 16 << 10}};
    for (Isa cap : {Isa::kScalar, Isa::kSse2, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
      const Isa level = mpsbc::set_max_isa(cap);
      SCOPED_TRACE(::testing::Message() << "vector level " << mpsbc::isa_name(level));
      if (level != cap) {
        std::printf("[   NOTE   ] this CPU has no %s; tested up to %s\n", mpsbc::isa_name(cap),
                    mpsbc::isa_name(level));
        continue;
      }
      for (const auto& g : geometries) {
        mpsbc::set_cache_geometry(g);
        SCOPED_TRACE(::testing::Message()
                     << "L1 " << g.l1_bytes << " B " << g.l1_ways << "-way, L2 " << g.l2_bytes
                     << " B, last level " << g.last_level_bytes << " B");
        body();
        if (HasFatalFailure()) return;
      }
    }
  }
  void TearDown() override {
    mpsbc::set_max_isa(best_);
    mpsbc::set_cache_geometry(machine_);
  }

 private:
  Isa best_ = mpsbc::max_isa();
  mpsbc::CacheGeometry machine_ = mpsbc::cache_geometry();
};

TEST_F(LayoutFastTest, MatchesNaiveReorderOnRandomShapes) {
  for_each_level([] {
    std::mt19937 rng(20240605);
    auto r = [&](uint64_t lo, uint64_t hi) {
      return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
    };
    for (int n = 0; n < 300; ++n) {
      // Channel counts up to 37 cover every remainder of 4-, 8- and 16-wide
      // blocks; kernels up to 7x7 cover 1x1 (a copy), 3x3 (its own AVX-512
      // path) and odd spatial sizes.
      const uint64_t g = r(1, 4), ig = r(1, 37), og = r(1, 37), kh = r(1, 7), kw = r(1, 7);
      expect_all_sizes(mpsbc::plan_conv_weight(g * og, g * ig, g, kh, kw), rng);
      expect_all_sizes(mpsbc::plan_conv_transpose_weight(g * ig, g * og, g, kh, kw), rng);
      const uint64_t c = r(1, 40), h = r(1, 7), w = r(1, 7);
      expect_all_sizes(
          mpsbc::plan_linear_weight(r(1, 9), c * h * w, std::vector<uint64_t>{c, h, w}), rng);
      expect_all_sizes(mpsbc::plan_linear_weight(r(1, 9), r(1, 70), {}), rng);
      expect_all_sizes(mpsbc::plan_vector(r(1, 100)), rng);
      // A probe file's feature maps: [N][C][H][W] -> [N][H][W][C].
      expect_all_sizes(mpsbc::plan_feature_map(std::vector<uint64_t>{r(1, 3), c, h, w}), rng);
      if (::testing::Test::HasFatalFailure()) return;
    }
  });
}

// The dense forms of grouped convs (--legalize) store zeros that have no
// source element: fewer source elements than stored ones.
template <typename T>
void expect_dense_equals_naive(const mpsbc::TensorPlan& plan, std::mt19937& rng) {
  const uint64_t n = plan.element_count(), m = plan.source_element_count();
  ASSERT_LT(m, n);
  std::vector<T> src(m), fast(n), naive(n), back(m);
  for (T& v : src) v = static_cast<T>(rng());
  std::memset(fast.data(), 0xA5, n * sizeof(T));
  std::memset(naive.data(), 0x5A, n * sizeof(T));
  std::memset(back.data(), 0xC3, m * sizeof(T));
  mpsbc::apply(plan, src.data(), fast.data(), sizeof(T));
  mpsb::bench::naive_reorder(plan, src.data(), naive.data());
  ASSERT_EQ(fast, naive);
  mpsbc::invert(plan, fast.data(), back.data(), sizeof(T));
  ASSERT_EQ(back, src);
}

TEST_F(LayoutFastTest, DenseFormsMatchNaiveReorderOnRandomShapes) {
  for_each_level([] {
    std::mt19937 rng(20261201);
    auto r = [&](uint64_t lo, uint64_t hi) {
      return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
    };
    for (int n = 0; n < 60; ++n) {
      const uint64_t g = r(2, 6), ig = r(1, 9), og = r(1, 9), kh = r(1, 5), kw = r(1, 5);
      for (const auto& plan :
           {mpsbc::plan_conv_weight_dense(g * og, g * ig, g, kh, kw),
            mpsbc::plan_conv_transpose_weight_dense(g * ig, g * og, g, kh, kw)}) {
        SCOPED_TRACE(::testing::Message() << "transform " << int(plan.transform) << " source "
                                          << ::testing::PrintToString(plan.source_shape));
        expect_dense_equals_naive<uint8_t>(plan, rng);
        expect_dense_equals_naive<uint16_t>(plan, rng);
        expect_dense_equals_naive<uint32_t>(plan, rng);
        if (::testing::Test::HasFatalFailure()) return;
      }
    }
  });
}

TEST_F(LayoutFastTest, MatchesNaiveReorderOnNetworkShapes) {
  const std::vector<mpsbc::TensorPlan> plans = {
      mpsbc::plan_conv_weight(64, 3, 1, 7, 7),     // ResNet stem
      mpsbc::plan_conv_weight(128, 128, 1, 3, 3),  // 3x3
      mpsbc::plan_conv_weight(96, 96, 96, 3, 3),   // depthwise
      mpsbc::plan_conv_weight(64, 128, 32, 3, 3),  // grouped, 4 per group
      mpsbc::plan_conv_weight(256, 64, 1, 1, 1),   // 1x1
      mpsbc::plan_conv_weight(5, 5, 1, 1, 3),      // 1xk
      mpsbc::plan_conv_transpose_weight(64, 32, 1, 4, 4),
      mpsbc::plan_conv_transpose_weight(48, 24, 4, 3, 3),
      mpsbc::plan_linear_weight(10, 256 * 6 * 6, std::vector<uint64_t>{256, 6, 6}),
      mpsbc::plan_linear_weight(3, 7 * 1 * 1, std::vector<uint64_t>{7, 1, 1}),
  };
  for_each_level([&] {
    std::mt19937 rng(7);
    for (const auto& plan : plans) expect_all_sizes(plan, rng);
  });
}

// The vector paths align their stores to the destination's cache lines and
// use aligned loads of their own tables: every placement of the three
// buffers within a line must give the same bytes.
TEST_F(LayoutFastTest, MatchesNaiveReorderAtEveryOffsetWithinACacheLine) {
  const std::vector<mpsbc::TensorPlan> plans = {
      mpsbc::plan_conv_weight(3, 40, 1, 3, 3),            // 3x3: 16-row blocks + 8
      mpsbc::plan_conv_weight(2, 64, 1, 3, 3),            // 3x3: whole blocks only
      mpsbc::plan_conv_transpose_weight(48, 3, 1, 4, 4),  // 16 columns
      mpsbc::plan_conv_transpose_weight(21, 2, 1, 5, 5),  // 25 columns
      mpsbc::plan_linear_weight(2, 35 * 36, std::vector<uint64_t>{35, 6, 6}),
      // Stored rows a multiple of a line apart: the staging buffer's cases.
      mpsbc::plan_conv_weight(2, 48, 1, 3, 3),
      mpsbc::plan_conv_transpose_weight(32, 2, 1, 3, 3),
      mpsbc::plan_linear_weight(2, 32 * 36, std::vector<uint64_t>{32, 6, 6}),
  };
  for_each_level([&] {
    std::mt19937 rng(11);
    for (const auto& plan : plans) {
      const uint64_t n = plan.element_count();
      std::vector<uint32_t> arena(3 * (n + 64));
      uint32_t* base = arena.data();
      while (reinterpret_cast<uintptr_t>(base) % 64 != 0) ++base;
      for (size_t a = 0; a < 16; ++a) {
        for (size_t b : {size_t{0}, size_t{1}, size_t{4}, size_t{15}}) {
          SCOPED_TRACE(::testing::Message()
                       << "source at +" << 4 * b << " B, stored at +" << 4 * a << " B");
          uint32_t* src = base + b;
          uint32_t* fast = base + (n + 64) + a;
          uint32_t* back = base + 2 * (n + 64) + (16 - a) % 16;
          expect_fast_equals_naive_at(plan, rng, src, fast, back);
          if (HasFatalFailure()) return;
        }
      }
    }
  });
}

// Past the last-level cache the vector paths switch to non-temporal
// stores; here at most 16 MiB of it, so that these 17.8 MB tensors stream
// at every geometry (for_each_level's 1 MiB one streams smaller tensors).
TEST_F(LayoutFastTest, MatchesNaiveReorderOnTensorsPastTheStreamingSize) {
  const std::vector<mpsbc::TensorPlan> plans = {
      mpsbc::plan_conv_weight(704, 704, 1, 3, 3),            // 17.8 MB
      mpsbc::plan_conv_transpose_weight(512, 544, 1, 4, 4),  // 17.8 MB
      mpsbc::plan_linear_weight(480, 256 * 36, std::vector<uint64_t>{256, 6, 6}),
  };
  for_each_level([&] {
    std::mt19937 rng(13);
    auto g = mpsbc::cache_geometry();
    g.last_level_bytes = std::min(g.last_level_bytes, uint64_t{16} << 20);
    mpsbc::set_cache_geometry(g);
    for (const auto& plan : plans) {
      ASSERT_GT(plan.element_count() * 4, mpsbc::cache_geometry().last_level_bytes);
      expect_fast_equals_naive<uint32_t>(plan, rng);
    }
  });
}

// MPSB_MAX_CPU_ISA caps the level at first use; ctest runs this test alone
// with the variable set (tests/compiler/CMakeLists.txt).
TEST(LayoutIsaTest, EnvironmentCapsTheLevel) {
  const char* env = std::getenv("MPSB_MAX_CPU_ISA");
  if (env == nullptr) GTEST_SKIP() << "runs under ctest with MPSB_MAX_CPU_ISA set";
  const Isa first = mpsbc::max_isa();
  std::optional<Isa> cap;
  for (Isa l : {Isa::kScalar, Isa::kSse2, Isa::kAvx2, Isa::kAvx512, Isa::kNeon}) {
    if (std::string_view(env) == mpsbc::isa_name(l)) cap = l;
  }
  ASSERT_TRUE(cap.has_value()) << "MPSB_MAX_CPU_ISA=" << env << " names no level";
  // The variable caps as set_max_isa() does.
  EXPECT_EQ(first, mpsbc::set_max_isa(*cap)) << "MPSB_MAX_CPU_ISA=" << env;
  mpsbc::set_max_isa(first);
}

}  // namespace
