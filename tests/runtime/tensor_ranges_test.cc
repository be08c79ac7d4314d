// Overlapping tensor ranges are refused at open (docs/FORMAT.md §5), which
// bounds what verify() and everything else that visits every tensor can
// cost by the file size. Work is counted (bytes hashed), never timed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bundle_internal.h"
#include "mpsb/bundle.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

using testing::build_bundle;
using testing::BundleSpec;
using testing::conv_layer;

std::string layer_name(size_t i) {
  std::string n = std::to_string(i);
  return "conv" + std::string(6 - n.size(), '0') + n;
}

// `n` conv layers of 8 -> 8 channels, 3x3 (2,304 weight bytes each); with
// `alias`, every weight claims the first layer's bytes.
BundleSpec many_convs(size_t n, bool alias) {
  BundleSpec spec;
  spec.segment_alignment = 64;
  spec.tensor_alignment = 16;
  for (size_t i = 0; i < n; ++i) {
    spec.layers.push_back(conv_layer(layer_name(i), 8, 8, 3, 1, /*bias=*/false));
    if (alias) spec.layers.back().tensors[0].offset = 0;
  }
  return spec;
}

Result<Bundle> open_bytes(const std::vector<uint8_t>& b, bool verify = false) {
  return Bundle::from_memory(b.data(), b.size(), {.verify_checksums = verify});
}

TEST(TensorRanges, OpenRejectsTwoTensorsSharingBytes) {
  BundleSpec spec;
  spec.segment_alignment = 64;
  spec.tensor_alignment = 16;
  spec.layers.push_back(conv_layer("a", 1, 4, 1));  // weight [0, 16), bias [16, 32)
  spec.layers.push_back(conv_layer("b", 1, 4, 1));  // weight [32, 48), bias [48, 64)
  spec.layers[1].tensors[0].offset = 16;            // b's weight onto a's bias
  auto r = open_bytes(build_bundle(spec));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTensorOutOfRange);
  EXPECT_EQ(r.message(),
            "<memory>: layer 'b' tensor 0 (weight) [16, 32) overlaps layer 'a' tensor 1 (bias) "
            "[16, 32) (tensors may not share bytes)");
}

TEST(TensorRanges, OpenRejectsPartialOverlapAndNestedRange) {
  BundleSpec spec;
  spec.segment_alignment = 64;
  spec.tensor_alignment = 16;
  spec.layers.push_back(conv_layer("big", 4, 4, 1, 1, false));  // weight [0, 64)
  spec.layers.push_back(conv_layer("small", 1, 4, 1, 1, false));
  spec.layers[1].tensors[0].offset = 32;  // [32, 48) inside [0, 64)
  auto r = open_bytes(build_bundle(spec));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTensorOutOfRange);
  EXPECT_EQ(r.message(),
            "<memory>: layer 'small' tensor 0 (weight) [32, 48) overlaps layer 'big' tensor 0 "
            "(weight) [0, 64) (tensors may not share bytes)");

  // The same range twice within one layer.
  spec = BundleSpec{};
  spec.segment_alignment = 64;
  spec.tensor_alignment = 16;
  spec.layers.push_back(conv_layer("one", 1, 4, 1));
  spec.layers[0].tensors[1].offset = 0;
  r = open_bytes(build_bundle(spec));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTensorOutOfRange);
  EXPECT_NE(r.message().find("layer 'one' tensor 1 (bias) [0, 16) overlaps layer 'one' tensor 0"),
            std::string::npos)
      << r.message();
}

TEST(TensorRanges, AdjacentRangesAreAccepted) {
  BundleSpec spec;
  spec.segment_alignment = 16;
  spec.tensor_alignment = 16;
  for (size_t i = 0; i < 5; ++i) spec.layers.push_back(conv_layer(layer_name(i), 1, 4, 1));
  const std::vector<uint8_t> bytes = build_bundle(spec);  // the Bundle views it
  auto r = open_bytes(bytes, /*verify=*/true);
  ASSERT_TRUE(r.ok()) << r.message();
  // Back to back, no gap: each range ends where the next begins.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (size_t i = 0; i < r->layer_count(); ++i) {
    for (size_t j = 0; j < r->layer(i).tensor_count(); ++j) {
      const Tensor t = r->layer(i).tensor(j);
      ranges.emplace_back(t.offset(), t.offset() + t.size());
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 1; k < ranges.size(); ++k) EXPECT_EQ(ranges[k].first, ranges[k - 1].second);
}

// 10,000 layers whose weights all alias one range: before this check, open
// accepted the file and verify() hashed the range once per layer.
TEST(TensorRanges, ManyAliasingLayersAreRefusedBeforeAnyHashing) {
  const auto bytes = build_bundle(many_convs(10000, /*alias=*/true));
  const uint64_t before = internal::bytes_hashed();
  auto r = open_bytes(bytes, /*verify=*/true);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTensorOutOfRange);
  EXPECT_NE(r.message().find(") overlaps layer 'conv"), std::string::npos) << r.message();
  EXPECT_EQ(internal::bytes_hashed(), before) << "refused at open, so nothing was hashed";
}

// What verify() hashes: the metadata once, every tensor once, the segment
// once, so at most twice the file, for 10 layers and for 10,000 alike.
TEST(TensorRanges, VerifyHashesAtMostTwiceTheFile) {
  for (size_t n : {10u, 10000u}) {
    const auto bytes = build_bundle(many_convs(n, /*alias=*/false));
    auto r = open_bytes(bytes);
    ASSERT_TRUE(r.ok()) << r.message();
    uint64_t tensor_bytes = 0;
    for (size_t i = 0; i < r->layer_count(); ++i) {
      for (size_t j = 0; j < r->layer(i).tensor_count(); ++j) {
        tensor_bytes += r->layer(i).tensor(j).size();
      }
    }
    EXPECT_LE(tensor_bytes, r->segment().size()) << n;
    const uint64_t before = internal::bytes_hashed();
    ASSERT_TRUE(r->verify().ok());
    const uint64_t hashed = internal::bytes_hashed() - before;
    EXPECT_EQ(hashed, r->metadata_bytes().size() + tensor_bytes + r->segment().size()) << n;
    EXPECT_LE(hashed, 2 * bytes.size()) << n;
  }
}

}  // namespace
}  // namespace mpsb
