#include "mpsbc/precision.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

namespace mpsbc {
namespace {

uint32_t bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

TEST(HalfTest, RoundsToNearestEven) {
  // 1 + 2^-11 lies halfway between 1 and the next half (1 + 2^-10): ties go
  // to the even mantissa (1.0); 1 + 3·2^-11 goes up to 1 + 2^-9.
  EXPECT_EQ(float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_half(65519.0f), 0x7bff);               // below the halfway point to 2^16
  EXPECT_EQ(float_to_half(65520.0f), 0x7c00);               // rounds to infinity
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_half(std::ldexp(1.0f, -25)), 0x0000);  // tie to even: zero
  EXPECT_EQ(float_to_half(-0.0f), 0x8000);
  EXPECT_EQ(float_to_half(-2.0f), 0xc000);
}

TEST(HalfTest, WidensExactly) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float f = half_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_half(f), h) << std::hex << h;
  }
}

TEST(HalfTest, CountsOverflowFlushAndSubnormals) {
  const std::vector<float> in = {1.0f, 70000.0f, -1e6f, 1e-9f, std::ldexp(1.0f, -20), 0.0f};
  std::vector<uint16_t> out(in.size());
  auto r = floats_to_half(in.data(), out.data(), in.size(), /*clamp_overflow=*/false);
  EXPECT_EQ(r.overflow, 2u);
  EXPECT_EQ(r.flushed_to_zero, 1u);
  EXPECT_EQ(r.subnormal, 1u);
  EXPECT_EQ(out[1], 0x7c00);
  EXPECT_EQ(out[2], 0xfc00);
  r = floats_to_half(in.data(), out.data(), in.size(), /*clamp_overflow=*/true);
  EXPECT_EQ(r.overflow, 2u);
  EXPECT_EQ(out[1], 0x7bff);
  EXPECT_EQ(out[2], 0xfbff);
}

TEST(BFloat16Test, WidensByShifting) {
  EXPECT_EQ(bits(bfloat16_to_float(0x3f80)), 0x3f800000u);
  EXPECT_EQ(bfloat16_to_float(0xc040), -3.0f);
}

TEST(QuantizeLinearTest, RowEndpointsAreExactAndErrorBounded) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 0.1f);
  const size_t rows = 8, per = 300;
  std::vector<float> w(rows * per);
  for (auto& x : w) x = dist(rng);
  w[5] = 3.0f;  // an outlier widens only row 0's range
  std::vector<uint8_t> q(w.size());
  std::vector<float> ranges(rows * 2), back(w.size());
  quantize_linear(w.data(), rows, per, q.data(), ranges.data());
  dequantize_linear(q.data(), ranges.data(), rows, per, back.data());
  for (size_t r = 0; r < rows; ++r) {
    const float lo = ranges[2 * r], hi = ranges[2 * r + 1];
    const float step = (hi - lo) / 255.0f;
    for (size_t i = 0; i < per; ++i) {
      EXPECT_LE(std::fabs(back[r * per + i] - w[r * per + i]), step / 2 * 1.0001f);
      EXPECT_GE(w[r * per + i], lo);
      EXPECT_LE(w[r * per + i], hi);
    }
  }
  EXPECT_EQ(ranges[1], 3.0f);
  EXPECT_LT(ranges[3], 1.0f);
}

TEST(QuantizeLinearTest, ConstantRowIsExact) {
  const std::vector<float> w(16, 0.25f);
  std::vector<uint8_t> q(16);
  float ranges[2];
  std::vector<float> back(16);
  quantize_linear(w.data(), 1, 16, q.data(), ranges);
  dequantize_linear(q.data(), ranges, 1, 16, back.data());
  EXPECT_EQ(back, w);
}

TEST(QuantizeLutTest, FewDistinctValuesAreExact) {
  std::vector<float> w;
  for (int i = 0; i < 1000; ++i) w.push_back(float(i % 7) * 0.5f - 1.0f);
  std::vector<uint8_t> q(w.size());
  std::vector<float> table(256), back(w.size());
  quantize_lut(w.data(), w.size(), q.data(), table.data());
  dequantize_lut(q.data(), table.data(), w.size(), back.data());
  EXPECT_EQ(back, w);
  EXPECT_TRUE(std::is_sorted(table.begin(), table.end()));
}

TEST(QuantizeLutTest, BeatsLinearOnBellShapedWeightsAndIsDeterministic) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  std::vector<float> w(20000);
  for (auto& x : w) x = dist(rng);
  std::vector<uint8_t> q(w.size()), q2(w.size()), ql(w.size());
  std::vector<float> table(256), table2(256), back(w.size()), lin(w.size());
  float ranges[2];
  quantize_lut(w.data(), w.size(), q.data(), table.data());
  quantize_lut(w.data(), w.size(), q2.data(), table2.data());
  EXPECT_EQ(q, q2);
  EXPECT_EQ(table, table2);
  dequantize_lut(q.data(), table.data(), w.size(), back.data());
  quantize_linear(w.data(), 1, w.size(), ql.data(), ranges);
  dequantize_linear(ql.data(), ranges, 1, w.size(), lin.data());
  const auto lut_err = measure_error(w.data(), back.data(), w.size());
  const auto lin_err = measure_error(w.data(), lin.data(), w.size());
  EXPECT_GT(lut_err.sqnr_db, lin_err.sqnr_db);
  EXPECT_GT(lut_err.sqnr_db, 35.0);
}

// --allow-non-finite with a uint8 precision: the ranges and the table are
// taken over the finite values, and the codes of NaN and the infinities are
// chosen before any arithmetic (converting NaN to an integer is undefined;
// UBSan reports it when this runs under scripts/sanitize.sh).
TEST(QuantizeLinearTest, NonFiniteValuesGetDefinedCodes) {
  const float nan = std::nanf(""), inf = INFINITY;
  const std::vector<float> w = {nan, -1.0f, 3.0f, inf, -inf, 1.0f,  // row 0
                                nan, nan,   inf,  nan, -inf, nan};  // row 1: nothing finite
  std::vector<uint8_t> q(w.size());
  std::vector<float> ranges(4);
  quantize_linear(w.data(), 2, 6, q.data(), ranges.data());
  EXPECT_EQ(ranges, (std::vector<float>{-1.0f, 3.0f, 0.0f, 0.0f}));
  EXPECT_EQ(q, (std::vector<uint8_t>{0, 0, 255, 255, 0, 128,  // 1.0 is code 127.5 -> 128
                                     0, 0, 255, 0, 0, 0}));
}

TEST(QuantizeLutTest, NonFiniteValuesGetDefinedCodes) {
  const float nan = std::nanf(""), inf = INFINITY;
  const std::vector<float> w = {2.0f, nan, -inf, 0.5f, inf, nan, 2.0f, -3.0f};
  std::vector<uint8_t> q(w.size());
  std::vector<float> table(256);
  quantize_lut(w.data(), w.size(), q.data(), table.data());
  // The table holds the finite values exactly, then repeats the last.
  EXPECT_EQ(table[0], -3.0f);
  EXPECT_EQ(table[1], 0.5f);
  EXPECT_EQ(table[2], 2.0f);
  EXPECT_EQ(table[255], 2.0f);
  for (float t : table) EXPECT_TRUE(std::isfinite(t));
  // NaN and -infinity: code 0 (the smallest entry); +infinity: the largest.
  EXPECT_EQ(q, (std::vector<uint8_t>{2, 0, 0, 1, 2, 0, 2, 0}));

  const std::vector<float> none = {nan, inf};
  std::vector<uint8_t> q2(2);
  quantize_lut(none.data(), none.size(), q2.data(), table.data());
  EXPECT_EQ(table[0], 0.0f);
  EXPECT_EQ(q2, (std::vector<uint8_t>{0, 0}));
}

TEST(MeasureErrorTest, ExactIsInfiniteSqnr) {
  const std::vector<float> a = {1, 2, 3};
  auto e = measure_error(a.data(), a.data(), a.size());
  EXPECT_EQ(e.max_abs, 0.0);
  EXPECT_TRUE(std::isinf(e.sqnr_db));
  const std::vector<float> b = {1, 2, 3.5f};
  e = measure_error(a.data(), b.data(), a.size());
  EXPECT_DOUBLE_EQ(e.max_abs, 0.5);
  EXPECT_NEAR(e.sqnr_db, 10 * std::log10(14.0 / 0.25), 1e-9);
}

TEST(PrecisionNamesTest, RoundTrip) {
  for (auto p :
       {Precision::kFloat32, Precision::kFloat16, Precision::kUInt8Linear, Precision::kUInt8Lut}) {
    EXPECT_EQ(parse_precision(to_string(p)), p);
  }
  EXPECT_FALSE(parse_precision("int8"));
}

}  // namespace
}  // namespace mpsbc
