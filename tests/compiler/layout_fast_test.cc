// The blocked, vectorised transforms of compiler/src/layout.cc against the
// plain nested loops that docs/FORMAT.md §3 defines them by, over many random
// shapes (odd sizes, every remainder of the 4x4 blocks, groups) and every
// element size, in both directions.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "mpsbc/layout.h"
#include "naive_reorder.h"

namespace {

template <typename T>
void expect_fast_equals_naive(const mpsbc::TensorPlan& plan, std::mt19937& rng) {
  const uint64_t n = plan.element_count();
  std::vector<T> src(n), fast(n), naive(n), back(n);
  for (auto& v : src) v = static_cast<T>(rng());
  // Poison the outputs so an element a path forgets to write shows up.
  std::memset(fast.data(), 0xA5, n * sizeof(T));
  std::memset(naive.data(), 0x5A, n * sizeof(T));
  std::memset(back.data(), 0xC3, n * sizeof(T));
  mpsbc::apply(plan, src.data(), fast.data(), sizeof(T));
  mpsb::bench::naive_reorder(plan, src.data(), naive.data());
  ASSERT_EQ(0, std::memcmp(fast.data(), naive.data(), n * sizeof(T)));
  mpsbc::invert(plan, fast.data(), back.data(), sizeof(T));
  ASSERT_EQ(0, std::memcmp(back.data(), src.data(), n * sizeof(T)));
}

void expect_all_sizes(const mpsbc::TensorPlan& plan, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "transform " << int(plan.transform) << " source "
                                    << ::testing::PrintToString(plan.source_shape));
  expect_fast_equals_naive<uint8_t>(plan, rng);
  expect_fast_equals_naive<uint16_t>(plan, rng);
  expect_fast_equals_naive<uint32_t>(plan, rng);
}

TEST(LayoutFastTest, MatchesNaiveReorderOnRandomShapes) {
  std::mt19937 rng(20240605);
  auto r = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  for (int n = 0; n < 300; ++n) {
    // Channel counts up to 37 cover every remainder of 4-wide and 16-wide
    // blocks; kernels up to 7x7 cover 1x1 (a copy) and odd spatial sizes.
    const uint64_t g = r(1, 4), ig = r(1, 37), og = r(1, 37), kh = r(1, 7), kw = r(1, 7);
    expect_all_sizes(mpsbc::plan_conv_weight(g * og, g * ig, g, kh, kw), rng);
    expect_all_sizes(mpsbc::plan_conv_transpose_weight(g * ig, g * og, g, kh, kw), rng);
    const uint64_t c = r(1, 40), h = r(1, 7), w = r(1, 7);
    expect_all_sizes(mpsbc::plan_linear_weight(r(1, 9), c * h * w, std::vector<uint64_t>{c, h, w}),
                     rng);
    expect_all_sizes(mpsbc::plan_linear_weight(r(1, 9), r(1, 70), {}), rng);
    expect_all_sizes(mpsbc::plan_vector(r(1, 100)), rng);
    if (::testing::Test::HasFatalFailure()) return;
  }
}

TEST(LayoutFastTest, MatchesNaiveReorderOnNetworkShapes) {
  std::mt19937 rng(7);
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
  for (const auto& plan : plans) expect_all_sizes(plan, rng);
}

}  // namespace
