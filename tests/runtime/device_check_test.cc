// The non-Metal parts of mpsb-device-check (tools/device_check/
// probe_compare.h): whether a probe file is the model's, a linear layer's flattened probe input
// back to the H x W x C image MPSCNNFullyConnected reads, the error measure, and the tolerances.
// The GPU part runs only on a Mac (scripts/device-check.sh).

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "device_check/probe_compare.h"

namespace mpsb::device_check {
namespace {

TEST(DeviceCheck, UnflattenUndoesTorchFlattenOfANonSquareMap) {
  // torch.flatten of [C=8][H=3][W=5]: index (c*H + h)*W + w. Each value
  // names its position, so any mix-up of H and W shows.
  const uint64_t C = 8, H = 3, W = 5;
  FeatureMap flat;
  flat.height = flat.width = 1;
  flat.channels = C * H * W;
  for (uint64_t c = 0; c < C; ++c) {
    for (uint64_t h = 0; h < H; ++h) {
      for (uint64_t w = 0; w < W; ++w) flat.values.push_back(float(c * 100 + h * 10 + w));
    }
  }
  const FeatureMap image = unflatten(flat, C, H, W);
  EXPECT_EQ(image.height, H);
  EXPECT_EQ(image.width, W);
  EXPECT_EQ(image.channels, C);
  for (uint64_t h = 0; h < H; ++h) {
    for (uint64_t w = 0; w < W; ++w) {
      for (uint64_t c = 0; c < C; ++c) {
        ASSERT_EQ(image.values[(h * W + w) * C + c], float(c * 100 + h * 10 + w))
            << "h " << h << " w " << w << " c " << c;
      }
    }
  }
}

TEST(DeviceCheck, ProbeFileMustNameTheModelsSegmentChecksum) {
  EXPECT_EQ(probe_file_mismatch("00000000deadbeef", "m.mpsb", 0xdeadbeefull), "");
  EXPECT_EQ(probe_file_mismatch("0123456789abcdef", "m.mpsb", 0x0123456789abcdefull), "");
  // One hex digit off, and a value written as upper case, are another bundle.
  EXPECT_EQ(probe_file_mismatch("0123456789abcdee", "m.mpsb", 0x0123456789abcdefull),
            "the probe file of another bundle: it names segment checksum 0123456789abcdee, "
            "m.mpsb has 0123456789abcdef (compile with --probes-out again)");
  EXPECT_NE(probe_file_mismatch("0123456789ABCDEF", "m.mpsb", 0x0123456789abcdefull), "");
  EXPECT_EQ(probe_file_mismatch("", "m.mpsb", 0), "not a probe file (no metadata mpsb.probes_for)");
}

TEST(DeviceCheck, SplitImagesCutsTheBatch) {
  const std::vector<uint64_t> shape = {2, 1, 2, 3};
  std::vector<float> v(12);
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(i);
  const auto maps = split_images(shape, v);
  ASSERT_EQ(maps.size(), 2u);
  EXPECT_EQ(maps[1].width, 2u);
  EXPECT_EQ(maps[1].channels, 3u);
  EXPECT_EQ(maps[1].values.front(), 6.0f);
  EXPECT_EQ(maps[1].values.back(), 11.0f);
}

TEST(DeviceCheck, RelativeErrorIsScaledByTheLargestWantedValue) {
  const std::vector<float> want = {0.0f, -4.0f, 2.0f};
  EXPECT_DOUBLE_EQ(max_relative_error(want, want), 0.0);
  EXPECT_DOUBLE_EQ(max_relative_error(std::vector<float>{0.01f, -4.0f, 2.0f}, want),
                   double(0.01f) / 4.0);
  EXPECT_TRUE(std::isinf(max_relative_error(std::vector<float>{0.0f, -4.0f}, want)));
  EXPECT_TRUE(std::isinf(max_relative_error(std::vector<float>{NAN, -4.0f, 2.0f}, want)));
}

TEST(DeviceCheck, ToleranceGrowsAsWeightPrecisionFalls) {
  EXPECT_LT(tolerance_for(DType::kFloat32), tolerance_for(DType::kFloat16));
  EXPECT_LT(tolerance_for(DType::kFloat16), tolerance_for(DType::kUInt8));
}

}  // namespace
}  // namespace mpsb::device_check
