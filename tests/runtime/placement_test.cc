// place_kernel (mpsb/placement.h) on bundle layers and on hand-worked
// cases. The sweep against PyTorch's own shapes and refusals, and against
// Apple's documented placement, is tests/pytorch/placement_test.py; these
// tests pin what that sweep cannot reach: linear layers, the error paths'
// messages, the bundle overload's layer names, and values worked out by
// hand from Apple's and PyTorch's definitions.

#include "mpsb/placement.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/sources.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

ConvParams conv(uint32_t k, uint32_t s, uint32_t p, uint32_t d = 1) {
  ConvParams c;
  c.in_channels = 4;
  c.out_channels = 8;
  c.kernel_h = c.kernel_w = k;
  c.stride_h = c.stride_w = s;
  c.padding_h = c.padding_w = p;
  c.dilation_h = c.dilation_w = d;
  return c;
}

TEST(PlaceKernel, StrideTwoThreeByThreePaddingOneIsCentredAndHalvesOddSizes) {
  // PyTorch: floor((7 + 2 - 2 - 1) / 2) + 1 = 4. Apple: the window of output
  // x starts at 2x + offset - 1, PyTorch's at 2x - 1, so offset 0.
  const auto r = place_kernel(LayerKind::kConv2d, conv(3, 2, 1), 7, 7);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->destination_width, 4u);
  EXPECT_EQ(r->destination_height, 4u);
  EXPECT_EQ(r->destination_feature_channels, 8u);
  EXPECT_EQ(r->offset_x, 0);
  EXPECT_EQ(r->offset_y, 0);
  EXPECT_EQ(r->kernel_offset_x, 0);
}

TEST(PlaceKernel, EvenKernelStrideTwoStartsOnePixelLeftOfCentre) {
  // 4x4, stride 2, padding 1 on 8: floor((8 + 2 - 3 - 1) / 2) + 1 = 4.
  // MPS centres an even kernel at kW >> 1 = 2: offset 2 - 1 = 1.
  const auto r = place_kernel(LayerKind::kConv2d, conv(4, 2, 1), 8, 8);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->destination_width, 4u);
  EXPECT_EQ(r->offset_x, 1);
}

TEST(PlaceKernel, DilationCentresTheDilatedKernel) {
  // 3x3 dilation 2 padding 2: dilated size 5, centre 2, offset 0; same size.
  const auto r = place_kernel(LayerKind::kConv2d, conv(3, 1, 2, 2), 9, 6);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->destination_width, 9u);
  EXPECT_EQ(r->destination_height, 6u);
  EXPECT_EQ(r->offset_x, 0);
}

TEST(PlaceKernel, TransposedMovesTheKernelNotTheOffset) {
  ConvParams c = conv(3, 2, 1);
  c.output_padding_h = 1;
  // (5 - 1)·2 - 2 + 2 + op + 1: 9 wide, 10 high.
  const auto r = place_kernel(LayerKind::kConvTranspose2d, c, 5, 5);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->destination_width, 9u);
  EXPECT_EQ(r->destination_height, 10u);
  EXPECT_EQ(r->offset_x, 0);
  EXPECT_EQ(r->offset_y, 0);
  // centre 1 - (2 - 1) = 0.
  EXPECT_EQ(r->kernel_offset_x, 0);
  c.padding_w = 0;  // centre 1 - 2 = -1
  EXPECT_EQ(place_kernel(LayerKind::kConvTranspose2d, c, 5, 5)->kernel_offset_x, -1);
}

TEST(PlaceKernel, RefusesWhatPyTorchRefuses) {
  auto r = place_kernel(LayerKind::kConv2d, conv(5, 1, 0), 4, 9);
  EXPECT_EQ(r.error(), Error::kInvalidArgument);
  EXPECT_NE(r.message().find("smaller than the dilated kernel 5x5"), std::string::npos)
      << r.message();
  EXPECT_EQ(place_kernel(LayerKind::kConv2d, conv(3, 1, 1), 0, 4).error(), Error::kInvalidArgument);
  ConvParams t = conv(3, 2, 0);
  t.output_padding_w = 2;
  r = place_kernel(LayerKind::kConvTranspose2d, t, 4, 4);
  EXPECT_NE(r.message().find("must be smaller than stride"), std::string::npos) << r.message();
  // (1 - 1)·1 - 2·3 + 2 + 0 + 1 < 1.
  r = place_kernel(LayerKind::kConvTranspose2d, conv(3, 1, 3), 1, 1);
  EXPECT_NE(r.message().find("empty output"), std::string::npos) << r.message();
  ConvParams g = conv(3, 1, 1);
  g.groups = 3;
  EXPECT_NE(place_kernel(LayerKind::kConv2d, g, 4, 4).message().find("groups 3"),
            std::string::npos);
  EXPECT_EQ(place_kernel(LayerKind::kBatchNorm2d, conv(3, 1, 1), 4, 4).error(),
            Error::kWrongLayerKind);
}

class PlaceKernelOnBundle : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::BundleSpec spec;
    testing::LayerSpec c = testing::conv_layer("conv", 4, 8, 3);
    c.conv.stride_w = 2;
    c.conv.padding_h = c.conv.padding_w = 1;
    spec.layers.push_back(c);
    spec.layers.push_back(testing::conv_transpose_layer("up", 8, 4, 4, 2));
    spec.layers.push_back(testing::linear_layer("fc", 10, 8, 3, 5));
    spec.layers.push_back(testing::linear_layer("vec", 10, 16));
    bytes_ = testing::build_bundle(spec);
    auto b = Bundle::from_memory(bytes_.data(), bytes_.size());
    ASSERT_TRUE(b.ok()) << b.message();
    bundle_.emplace(std::move(b).value());
  }
  ConvolutionSource source(const char* name) {
    return ConvolutionSource::from(*bundle_, *bundle_->find(name)).value();
  }
  std::vector<uint8_t> bytes_;
  std::optional<Bundle> bundle_;
};

TEST_F(PlaceKernelOnBundle, AgreesWithTheSourcesOffsetsAndSizes) {
  for (const char* name : {"conv", "up"}) {
    const ConvolutionSource s = source(name);
    for (uint64_t w : {5u, 6u, 11u}) {
      const auto r = place_kernel(s, w, w + 1);
      ASSERT_TRUE(r.ok()) << r.message();
      EXPECT_EQ(r->destination_width, s.output_width(w)) << name;
      EXPECT_EQ(r->destination_height, s.output_height(w + 1)) << name;
      EXPECT_EQ(r->destination_feature_channels, s.output_feature_channels());
      const int64_t x = s.transposed() ? r->kernel_offset_x : r->offset_x;
      const int64_t y = s.transposed() ? r->kernel_offset_y : r->offset_y;
      EXPECT_EQ(x, s.mps_offset_x()) << name;
      EXPECT_EQ(y, s.mps_offset_y()) << name;
    }
  }
}

TEST_F(PlaceKernelOnBundle, LinearTakesExactlyItsFlattenedMap) {
  // nn.Linear after flatten of [8, 3, 5]: H 3, W 5 (a non-square map).
  auto r = place_kernel(source("fc"), 5, 3);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->destination_width, 1u);
  EXPECT_EQ(r->destination_height, 1u);
  EXPECT_EQ(r->destination_feature_channels, 10u);
  EXPECT_EQ(r->offset_x, 0);
  r = place_kernel(source("fc"), 3, 5);  // transposed map
  EXPECT_EQ(r.error(), Error::kInvalidArgument);
  EXPECT_NE(r.message().find("layer 'fc'"), std::string::npos) << r.message();
  EXPECT_NE(r.message().find("takes exactly a 3x5 input, not 5x3"), std::string::npos)
      << r.message();
  EXPECT_TRUE(place_kernel(source("vec"), 1, 1).ok());
  EXPECT_FALSE(place_kernel(source("vec"), 2, 1).ok());
}

TEST_F(PlaceKernelOnBundle, ErrorsNameTheLayer) {
  const auto r = place_kernel(source("conv"), 0, 3);
  EXPECT_EQ(r.error(), Error::kInvalidArgument);
  EXPECT_EQ(r.message().rfind("layer 'conv': ", 0), 0u) << r.message();
}

}  // namespace
}  // namespace mpsb
