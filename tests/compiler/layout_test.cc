// The layout transforms against hand-written expectations derived from
// their definitions in docs/FORMAT.md §3, plus round trips on random shapes.

#include "mpsbc/layout.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace {

using mpsb::TensorLayout;
using mpsb::Transform;

// 0, 1, 2, ... so every stored element names the source index it came from.
std::vector<uint32_t> iota_vec(uint64_t n) {
  std::vector<uint32_t> v(n);
  std::iota(v.begin(), v.end(), 0u);
  return v;
}

std::vector<uint32_t> apply_u32(const mpsbc::TensorPlan& plan) {
  const auto src = iota_vec(plan.element_count());
  std::vector<uint32_t> dst(src.size(), 0xffffffffu);
  mpsbc::apply(plan, src.data(), dst.data(), sizeof(uint32_t));
  return dst;
}

TEST(LayoutTest, ConvPermutesOIHWToOHWI) {
  // O=2, I=3, kH=2, kW=2. src[o][i][h][w] = ((o*3 + i)*2 + h)*2 + w.
  const auto plan = mpsbc::plan_conv_weight(2, 3, 1, 2, 2);
  EXPECT_EQ(plan.transform, Transform::kConvOIHWToOHWI);
  EXPECT_EQ(plan.source_layout, TensorLayout::kOIHW);
  EXPECT_EQ(plan.stored_layout, TensorLayout::kOHWI);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{2, 3, 2, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{2, 2, 2, 3}));
  // dst[o][h][w][i], i fastest.
  const std::vector<uint32_t> expected = {
      0,  4,  8,  1,  5,  9,  2,  6,  10, 3,  7,  11,  // o = 0
      12, 16, 20, 13, 17, 21, 14, 18, 22, 15, 19, 23,  // o = 1
  };
  EXPECT_EQ(apply_u32(plan), expected);
}

TEST(LayoutTest, GroupedConvKeepsOutputChannelsOutermost) {
  // O=4, I=4, groups=2 (I/g=2), kH=1, kW=2. src[o][i][0][w] = o*4 + i*2 + w.
  const auto plan = mpsbc::plan_conv_weight(4, 4, 2, 1, 2);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{4, 2, 1, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{4, 1, 2, 2}));
  const std::vector<uint32_t> expected = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
  EXPECT_EQ(apply_u32(plan), expected);
}

TEST(LayoutTest, DepthwiseConvKeepsBytes) {
  // groups == in == out: I/g == 1, so OHWI [C][kH][kW][1] is the OIHW order.
  const auto plan = mpsbc::plan_conv_weight(3, 3, 3, 2, 2);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{3, 1, 2, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{3, 2, 2, 1}));
  EXPECT_EQ(apply_u32(plan), iota_vec(12));
}

TEST(LayoutTest, ConvTransposeSwapsInOutAndRotatesKernel) {
  // I=2, O=3, groups=1, 1x1: src[i][o] = i*3 + o; dst[o][0][0][i].
  EXPECT_EQ(apply_u32(mpsbc::plan_conv_transpose_weight(2, 3, 1, 1, 1)),
            (std::vector<uint32_t>{0, 3, 1, 4, 2, 5}));
}

TEST(LayoutTest, ConvTransposeRotatesKernel180) {
  // I=2, O=2, groups=2 (Ig=Og=1), 2x2: src[g][0][h][w] = g*4 + h*2 + w;
  // dst[g][h][w][0] = src[g][0][1-h][1-w].
  const auto plan = mpsbc::plan_conv_transpose_weight(2, 2, 2, 2, 2);
  EXPECT_EQ(plan.transform, Transform::kConvTransposeToOHWIRotated);
  EXPECT_EQ(plan.source_layout, TensorLayout::kIOHW);
  EXPECT_EQ(plan.stored_layout, TensorLayout::kOHWIRotated);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{2, 1, 2, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{2, 2, 2, 1}));
  EXPECT_EQ(apply_u32(plan), (std::vector<uint32_t>{3, 2, 1, 0, 7, 6, 5, 4}));
}

TEST(LayoutTest, GroupedConvTransposeSwapsWithinEachGroup) {
  // I=4, O=2, groups=2 (Ig=2, Og=1), 1x2: src[g*2+i][0][0][w] = (g*2+i)*2 + w;
  // dst[g][0][w][i] = src[g*2+i][0][0][1-w].
  const auto plan = mpsbc::plan_conv_transpose_weight(4, 2, 2, 1, 2);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{4, 1, 1, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{2, 1, 2, 2}));
  EXPECT_EQ(apply_u32(plan), (std::vector<uint32_t>{1, 3, 0, 2, 5, 7, 4, 6}));
}

TEST(LayoutTest, GroupedConvToDenseIsBlockDiagonal) {
  // O=4, I=6 in 2 groups (Ig=3), 1x2 kernel: source [4][3][1][2].
  const auto plan = mpsbc::plan_conv_weight_dense(4, 6, 2, 1, 2);
  EXPECT_EQ(plan.transform, Transform::kConvGroupedToDense);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{4, 3, 1, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{4, 1, 2, 6}));
  EXPECT_EQ(plan.source_element_count(), 24u);
  EXPECT_EQ(plan.element_count(), 48u);
  std::vector<uint32_t> src(24);
  std::iota(src.begin(), src.end(), 1u);  // 0 is the filler
  std::vector<uint32_t> dst(48, 0xffffffffu);
  mpsbc::apply(plan, src.data(), dst.data(), sizeof(uint32_t));
  // dst[o][0][w][i]: outputs 0, 1 (group 0) use inputs 0..2, outputs 2, 3
  // (group 1) inputs 3..5; src[o][i][0][w] = o*6 + i*2 + w + 1.
  const std::vector<uint32_t> want = {
      1, 3, 5,  0,  0,  0,  2, 4,  6,  0,  0,  0,   // o0: w0, w1
      7, 9, 11, 0,  0,  0,  8, 10, 12, 0,  0,  0,   // o1
      0, 0, 0,  13, 15, 17, 0, 0,  0,  14, 16, 18,  // o2
      0, 0, 0,  19, 21, 23, 0, 0,  0,  20, 22, 24,  // o3
  };
  EXPECT_EQ(dst, want);
  for (uint64_t i = 0; i < dst.size(); ++i) {
    const uint64_t k = mpsbc::source_index(plan, i);
    EXPECT_EQ(dst[i], k == mpsbc::kNoSourceElement ? 0u : src[k]) << "stored index " << i;
  }
  // The inverse takes the diagonal blocks back, for every element size.
  for (size_t elem : {1u, 2u, 4u}) {
    std::vector<uint8_t> in(24 * elem), stored(48 * elem, 0xee), back(24 * elem);
    for (size_t i = 0; i < in.size(); ++i) in[i] = uint8_t(i * 7 + 1);
    mpsbc::apply(plan, in.data(), stored.data(), elem);
    mpsbc::invert(plan, stored.data(), back.data(), elem);
    EXPECT_EQ(back, in) << "element size " << elem;
  }
  // Depthwise with channel multiplier 2: 2 channels -> 4, groups 2, Ig 1.
  const auto dw = mpsbc::plan_conv_weight_dense(4, 2, 2, 1, 1);
  std::vector<uint32_t> dws = {1, 2, 3, 4}, dwd(8, 0xffffffffu);
  mpsbc::apply(dw, dws.data(), dwd.data(), sizeof(uint32_t));
  EXPECT_EQ(dwd, (std::vector<uint32_t>{1, 0, 2, 0, 0, 3, 0, 4}));
}

TEST(LayoutTest, PlanFromStoredChecksTheDenseShapes) {
  const std::vector<uint64_t> src = {4, 3, 1, 2}, dst = {4, 1, 2, 6};
  std::string why;
  EXPECT_TRUE(mpsbc::plan_from_stored(Transform::kConvGroupedToDense, TensorLayout::kOIHW, src,
                                      TensorLayout::kOHWI, dst, &why))
      << why;
  const std::vector<std::vector<uint64_t>> bad_stored = {
      {4, 1, 2, 3},  // one group: no zeros, not a dense form
      {4, 1, 2, 7},  // not a multiple of I/g
      {4, 2, 1, 6},  // kernel swapped
      {2, 1, 2, 6},  // other output channels
  };
  for (const auto& d : bad_stored) {
    EXPECT_FALSE(mpsbc::plan_from_stored(Transform::kConvGroupedToDense, TensorLayout::kOIHW, src,
                                         TensorLayout::kOHWI, d, &why));
  }
  // 3 output channels cannot split into 2 groups.
  EXPECT_FALSE(mpsbc::plan_from_stored(Transform::kConvGroupedToDense, TensorLayout::kOIHW,
                                       std::vector<uint64_t>{3, 3, 1, 2}, TensorLayout::kOHWI,
                                       std::vector<uint64_t>{3, 1, 2, 6}, &why));
  EXPECT_FALSE(mpsbc::plan_from_stored(Transform::kConvGroupedToDense, TensorLayout::kIOHW, src,
                                       TensorLayout::kOHWI, dst, &why));
}

TEST(LayoutTest, GroupedConvTransposeToDenseIsBlockDiagonalAndRotated) {
  // I=4, O=6 in 2 groups (Ig=2, Og=3), 1x2 kernel: source [4][3][1][2],
  // src[i][o][0][w] = i*6 + o*2 + w + 1 (0 is the filler).
  const auto plan = mpsbc::plan_conv_transpose_weight_dense(4, 6, 2, 1, 2);
  EXPECT_EQ(plan.transform, Transform::kConvTransposeGroupedToDenseRotated);
  EXPECT_EQ(plan.source_layout, TensorLayout::kIOHW);
  EXPECT_EQ(plan.stored_layout, TensorLayout::kOHWIRotated);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{4, 3, 1, 2}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{6, 1, 2, 4}));
  EXPECT_EQ(plan.source_element_count(), 24u);
  EXPECT_EQ(plan.element_count(), 48u);
  std::vector<uint32_t> src(24);
  std::iota(src.begin(), src.end(), 1u);
  std::vector<uint32_t> dst(48, 0xffffffffu);
  mpsbc::apply(plan, src.data(), dst.data(), sizeof(uint32_t));
  // dst[o][0][w][i] = src[i][o % 3][0][1 - w] when i / 2 == o / 3: outputs
  // 0..2 (group 0) use inputs 0, 1; outputs 3..5 (group 1) inputs 2, 3.
  const std::vector<uint32_t> want = {
      2, 8,  0,  0,  1, 7,  0,  0,   // o0: w0, w1
      4, 10, 0,  0,  3, 9,  0,  0,   // o1
      6, 12, 0,  0,  5, 11, 0,  0,   // o2
      0, 0,  14, 20, 0, 0,  13, 19,  // o3
      0, 0,  16, 22, 0, 0,  15, 21,  // o4
      0, 0,  18, 24, 0, 0,  17, 23,  // o5
  };
  EXPECT_EQ(dst, want);
  for (uint64_t i = 0; i < dst.size(); ++i) {
    const uint64_t k = mpsbc::source_index(plan, i);
    EXPECT_EQ(dst[i], k == mpsbc::kNoSourceElement ? 0u : src[k]) << "stored index " << i;
  }
  // Groups 1 of the same weights is Transform 2's layout: the dense form's
  // diagonal blocks are what ConvTransposeToOHWIRotated stores per group.
  const auto grouped = mpsbc::plan_conv_transpose_weight(4, 6, 2, 1, 2);
  std::vector<uint32_t> per_group(24);
  mpsbc::apply(grouped, src.data(), per_group.data(), sizeof(uint32_t));
  for (uint64_t o = 0; o < 6; ++o) {
    for (uint64_t w = 0; w < 2; ++w) {
      for (uint64_t i = 0; i < 2; ++i) {
        EXPECT_EQ(dst[(o * 2 + w) * 4 + o / 3 * 2 + i], per_group[(o * 2 + w) * 2 + i]);
      }
    }
  }
  // The inverse takes the diagonal blocks back, for every element size.
  for (size_t elem : {1u, 2u, 4u}) {
    std::vector<uint8_t> in(24 * elem), stored(48 * elem, 0xee), back(24 * elem);
    for (size_t i = 0; i < in.size(); ++i) in[i] = uint8_t(i * 7 + 1);
    mpsbc::apply(plan, in.data(), stored.data(), elem);
    mpsbc::invert(plan, stored.data(), back.data(), elem);
    EXPECT_EQ(back, in) << "element size " << elem;
  }
}

TEST(LayoutTest, PlanFromStoredChecksTheTransposedDenseShapes) {
  const std::vector<uint64_t> src = {4, 3, 1, 2}, dst = {6, 1, 2, 4};
  const auto t = Transform::kConvTransposeGroupedToDenseRotated;
  std::string why;
  EXPECT_TRUE(
      mpsbc::plan_from_stored(t, TensorLayout::kIOHW, src, TensorLayout::kOHWIRotated, dst, &why))
      << why;
  const std::vector<std::vector<uint64_t>> bad_stored = {
      {3, 1, 2, 4},  // one group: no zeros, not a dense form
      {7, 1, 2, 4},  // not a multiple of O/g
      {6, 2, 1, 4},  // kernel swapped
      {6, 1, 2, 2},  // other input channels
  };
  for (const auto& d : bad_stored) {
    EXPECT_FALSE(
        mpsbc::plan_from_stored(t, TensorLayout::kIOHW, src, TensorLayout::kOHWIRotated, d, &why));
  }
  // 3 input channels cannot split into 2 groups.
  EXPECT_FALSE(mpsbc::plan_from_stored(t, TensorLayout::kIOHW, std::vector<uint64_t>{3, 3, 1, 2},
                                       TensorLayout::kOHWIRotated,
                                       std::vector<uint64_t>{6, 1, 2, 3}, &why));
  EXPECT_FALSE(
      mpsbc::plan_from_stored(t, TensorLayout::kOIHW, src, TensorLayout::kOHWIRotated, dst, &why));
}

TEST(LayoutTest, LinearAfterFlattenGoesToHWC) {
  // out=2, C=2, H=1, W=2: src[o][c*2 + w] = o*4 + c*2 + w; dst[o][0][w][c].
  const std::vector<uint64_t> chw = {2, 1, 2};
  const auto plan = mpsbc::plan_linear_weight(2, 4, chw);
  EXPECT_EQ(plan.transform, Transform::kLinearFlattenToOHWC);
  EXPECT_EQ(plan.source_shape, (std::vector<uint64_t>{2, 4}));
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{2, 1, 2, 2}));
  EXPECT_EQ(apply_u32(plan), (std::vector<uint32_t>{0, 2, 1, 3, 4, 6, 5, 7}));
}

TEST(LayoutTest, LinearOnVectorIsIdentityAsOneByOneKernel) {
  const auto plan = mpsbc::plan_linear_weight(3, 5, {});
  EXPECT_EQ(plan.transform, Transform::kIdentity);
  EXPECT_EQ(plan.source_layout, TensorLayout::kOI);
  EXPECT_EQ(plan.stored_layout, TensorLayout::kOHWI);
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{3, 1, 1, 5}));
  EXPECT_EQ(apply_u32(plan), iota_vec(15));
}

TEST(LayoutTest, VectorIsIdentity) {
  const auto plan = mpsbc::plan_vector(7);
  EXPECT_EQ(plan.stored_shape, (std::vector<uint64_t>{7}));
  EXPECT_EQ(apply_u32(plan), iota_vec(7));
}

std::vector<mpsbc::TensorPlan> random_plans(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  auto r = [&](uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
  };
  std::vector<mpsbc::TensorPlan> plans;
  for (int n = 0; n < count; ++n) {
    const uint64_t g = r(1, 4), ig = r(1, 5), og = r(1, 5), kh = r(1, 4), kw = r(1, 4);
    plans.push_back(mpsbc::plan_conv_weight(g * og, g * ig, g, kh, kw));
    plans.push_back(mpsbc::plan_conv_transpose_weight(g * ig, g * og, g, kh, kw));
    const std::vector<uint64_t> chw = {r(1, 6), r(1, 4), r(1, 4)};
    plans.push_back(mpsbc::plan_linear_weight(r(1, 6), chw[0] * chw[1] * chw[2], chw));
    plans.push_back(mpsbc::plan_linear_weight(r(1, 6), r(1, 9), {}));
    plans.push_back(mpsbc::plan_vector(r(1, 30)));
  }
  return plans;
}

template <typename T>
void expect_round_trip(const mpsbc::TensorPlan& plan) {
  const uint64_t n = plan.element_count();
  std::vector<T> src(n), stored(n), back(n);
  for (uint64_t i = 0; i < n; ++i) src[i] = static_cast<T>(i * 2654435761u + 7);
  mpsbc::apply(plan, src.data(), stored.data(), sizeof(T));
  mpsbc::invert(plan, stored.data(), back.data(), sizeof(T));
  EXPECT_EQ(back, src);
  // The stored tensor is a permutation of the source, and source_index()
  // names the same element apply() moved.
  for (uint64_t i = 0; i < n; ++i) {
    ASSERT_EQ(stored[i], src[mpsbc::source_index(plan, i)]) << "stored index " << i;
  }
}

TEST(LayoutTest, InvertUndoesApplyForRandomShapesAndElementSizes) {
  for (const auto& plan : random_plans(42, 40)) {
    SCOPED_TRACE(::testing::Message() << "transform " << int(plan.transform));
    expect_round_trip<uint8_t>(plan);
    expect_round_trip<uint16_t>(plan);
    expect_round_trip<uint32_t>(plan);
  }
}

TEST(LayoutTest, PlanFromStoredAcceptsWhatPlannersProduce) {
  for (const auto& plan : random_plans(7, 20)) {
    std::string why;
    auto rebuilt = mpsbc::plan_from_stored(plan.transform, plan.source_layout, plan.source_shape,
                                           plan.stored_layout, plan.stored_shape, &why);
    ASSERT_TRUE(rebuilt.has_value()) << why;
    EXPECT_EQ(rebuilt->source_shape, plan.source_shape);
    EXPECT_EQ(rebuilt->stored_shape, plan.stored_shape);
    EXPECT_EQ(rebuilt->transform, plan.transform);
  }
}

bool rejected(Transform t, TensorLayout sl, std::vector<uint64_t> src, TensorLayout dl,
              std::vector<uint64_t> dst) {
  std::string why;
  const bool ok = mpsbc::plan_from_stored(t, sl, src, dl, dst, &why).has_value();
  return !ok && !why.empty();
}

TEST(LayoutTest, PlanFromStoredRejectsMismatchedShapes) {
  using L = TensorLayout;
  using T = Transform;
  // Conv: stored is not the OHWI permute.
  EXPECT_TRUE(rejected(T::kConvOIHWToOHWI, L::kOIHW, {2, 3, 2, 2}, L::kOHWI, {2, 2, 3, 2}));
  EXPECT_TRUE(rejected(T::kConvOIHWToOHWI, L::kOIHW, {2, 3, 2}, L::kOHWI, {2, 2, 3}));
  // Conv with layouts that do not match the transform.
  EXPECT_TRUE(rejected(T::kConvOIHWToOHWI, L::kVector, {2, 3, 2, 2}, L::kOHWI, {2, 2, 2, 3}));
  // Transposed: O != Og * groups.
  EXPECT_TRUE(rejected(T::kConvTransposeToOHWIRotated, L::kIOHW, {4, 1, 2, 2}, L::kOHWIRotated,
                       {3, 2, 2, 2}));
  // Transposed: I not a multiple of I/g.
  EXPECT_TRUE(rejected(T::kConvTransposeToOHWIRotated, L::kIOHW, {5, 1, 2, 2}, L::kOHWIRotated,
                       {2, 2, 2, 2}));
  // Linear: H*W*C != in.
  EXPECT_TRUE(rejected(T::kLinearFlattenToOHWC, L::kOI, {2, 8}, L::kOHWI, {2, 1, 2, 3}));
  // Identity: different element counts.
  EXPECT_TRUE(rejected(T::kIdentity, L::kVector, {6}, L::kVector, {7}));
  // Zero dimension.
  EXPECT_TRUE(rejected(T::kIdentity, L::kVector, {0}, L::kVector, {0}));
  // Products that wrap around 2^64 must not look equal: (2^32+1)^2 wraps to
  // 2^33+1.
  const uint64_t big = (uint64_t{1} << 32) + 1, wrapped = (uint64_t{1} << 33) + 1;
  EXPECT_TRUE(rejected(T::kLinearFlattenToOHWC, L::kOI, {1, wrapped}, L::kOHWI, {1, big, big, 1}));
  EXPECT_TRUE(rejected(T::kIdentity, L::kVector, {wrapped}, L::kVector, {big, big}));
  // Unknown transform value.
  EXPECT_TRUE(rejected(static_cast<T>(9), L::kVector, {1}, L::kVector, {1}));
}

}  // namespace
