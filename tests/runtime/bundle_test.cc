#include "mpsb/bundle.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <thread>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/sources.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

using testing::build_bundle;
using testing::BundleSpec;
using testing::conv_layer;

BundleSpec two_convs() {
  BundleSpec s;
  s.metadata = {{"license", "MIT"}, {"trained_on", "coco"}};
  s.layers.push_back(conv_layer("conv_b", 8, 16, 3));
  s.layers.push_back(conv_layer("conv_a", 16, 16, 1, 4, /*bias=*/false));
  s.layers.push_back(testing::batch_norm_layer("bn", 16));
  return s;
}

Result<Bundle> open_bytes(const std::vector<uint8_t>& b, bool verify = false) {
  OpenOptions o;
  o.verify_checksums = verify;
  return Bundle::from_memory(b.data(), b.size(), o);
}

void expect_refused(const std::vector<uint8_t>& bytes, Error want, const char* phrase) {
  auto r = open_bytes(bytes);
  ASSERT_FALSE(r.ok()) << "accepted a bundle that should fail with " << to_string(want);
  EXPECT_EQ(r.error(), want) << r.message();
  EXPECT_NE(r.message().find(phrase), std::string::npos) << r.message();
  EXPECT_EQ(r.message().rfind("<memory>: ", 0), 0u) << r.message();
}

TEST(BundleOpen, AcceptsWellFormedBundleAndServesViews) {
  const auto bytes = build_bundle(two_convs());
  auto r = open_bytes(bytes, /*verify=*/true);
  ASSERT_TRUE(r.ok()) << r.message();
  const Bundle& b = *r;
  EXPECT_EQ(b.format_version(), 1u);
  EXPECT_EQ(b.name(), "test");
  ASSERT_EQ(b.metadata_count(), 2u);
  EXPECT_EQ(b.metadata(0).first, "license");
  ASSERT_EQ(b.layer_count(), 3u);
  // Sorted by name; network order kept.
  EXPECT_EQ(b.layer(0).name(), "bn");
  EXPECT_EQ(b.layer(1).name(), "conv_a");
  EXPECT_EQ(b.layer_in_network_order(0).name(), "conv_b");
  EXPECT_EQ(b.layer_in_network_order(2).name(), "bn");
  EXPECT_FALSE(b.find("conv").has_value());
  EXPECT_FALSE(b.find("zzz").has_value());
  auto conv = b.find("conv_b");
  ASSERT_TRUE(conv.has_value());
  EXPECT_EQ(conv->kind(), LayerKind::kConv2d);
  EXPECT_EQ(conv->index(), 0u);
  auto w = conv->find(TensorRole::kWeight);
  ASSERT_TRUE(w.has_value());
  EXPECT_EQ(std::vector<uint64_t>(w->shape().begin(), w->shape().end()),
            (std::vector<uint64_t>{16, 3, 3, 8}));
  EXPECT_EQ(w->size(), 16u * 3 * 3 * 8 * 4);
  EXPECT_EQ(w->layout(), TensorLayout::kOHWI);
  EXPECT_EQ(w->source_layout(), TensorLayout::kOIHW);
  EXPECT_EQ(w->offset() % b.tensor_alignment(), 0u);
  const auto* p = static_cast<const std::byte*>(w->data());
  EXPECT_GE(p, b.segment().data());
  EXPECT_LE(p + w->size(), b.segment().data() + b.segment().size());
  EXPECT_EQ(b.segment_offset() % b.segment_alignment(), 0u);
  EXPECT_EQ(b.segment().size() % b.segment_alignment(), 0u);
}

TEST(BundleOpen, DigestsAreXxh3OfSegmentAndOfMetadataWithItsFieldZeroed) {
  const auto bytes = build_bundle(two_convs());
  auto r = open_bytes(bytes, /*verify=*/true);
  ASSERT_TRUE(r.ok()) << r.message();
  const Bundle& b = *r;
  const auto seg = b.segment();
  EXPECT_EQ(b.segment_checksum(), XXH3_64bits(seg.data(), seg.size()));
  std::vector<uint8_t> meta(
      reinterpret_cast<const uint8_t*>(b.metadata_bytes().data()),
      reinterpret_cast<const uint8_t*>(b.metadata_bytes().data()) + b.metadata_bytes().size());
  ASSERT_TRUE(fb::GetMutableSizePrefixedBundle(meta.data())->mutate_metadata_checksum(0));
  EXPECT_EQ(b.metadata_checksum(), XXH3_64bits(meta.data(), meta.size()));
  EXPECT_NE(b.segment_checksum(), b.metadata_checksum());
}

TEST(BundleOpen, DigestsAreTheStoredValuesNotRecomputed) {
  // A cheap open does not hash: the accessors give what the file says, and
  // verify() is what finds that it is wrong.
  BundleSpec spec = two_convs();
  spec.segment_checksum = 0x0123456789abcdefull;
  spec.metadata_checksum = 0xfedcba9876543210ull;
  const auto bytes = build_bundle(spec);
  auto r = open_bytes(bytes);
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->segment_checksum(), 0x0123456789abcdefull);
  EXPECT_EQ(r->metadata_checksum(), 0xfedcba9876543210ull);
  EXPECT_FALSE(r->verify().ok());
}

TEST(BundleOpen, ConvolutionSourceMirrorsDescriptor) {
  const auto bytes = build_bundle(two_convs());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  auto src = ConvolutionSource::from(*b, *b->find("conv_a"));
  ASSERT_TRUE(src.ok()) << src.message();
  EXPECT_EQ(src->label(), "conv_a");
  EXPECT_EQ(src->data_type(), MPSDataType::kFloat32);
  EXPECT_EQ(src->kernel_width(), 1u);
  EXPECT_EQ(src->input_feature_channels(), 16u);
  EXPECT_EQ(src->output_feature_channels(), 16u);
  EXPECT_EQ(src->groups(), 4u);
  EXPECT_EQ(src->bias_terms(), nullptr);
  EXPECT_TRUE(src->load());
  src->purge();

  auto with_bias = ConvolutionSource::from(*b, *b->find("conv_b"));
  ASSERT_TRUE(with_bias.ok());
  ASSERT_NE(with_bias->bias_terms(), nullptr);
  EXPECT_EQ(with_bias->weights(), b->find("conv_b")->find(TensorRole::kWeight)->data());

  auto wrong = ConvolutionSource::from(*b, *b->find("bn"));
  EXPECT_EQ(wrong.error(), Error::kWrongLayerKind);
  auto bn = BatchNormSource::from(*b, *b->find("bn"));
  ASSERT_TRUE(bn.ok());
  EXPECT_EQ(bn->number_of_feature_channels(), 16u);
  EXPECT_FLOAT_EQ(bn->epsilon(), 1e-5f);
  EXPECT_NE(bn->variance(), nullptr);
}

TEST(BundleOpen, OpensFromFileAndLoadsPages) {
  testing::TempDir dir;
  const auto bytes = build_bundle(two_convs());
  testing::write_file(dir / "m.mpsb", bytes.data(), bytes.size());
  auto b = Bundle::open((dir / "m.mpsb").string(), {.verify_checksums = true});
  ASSERT_TRUE(b.ok()) << b.message();
  EXPECT_EQ(b->file().size(), bytes.size());
  const auto t = *b->find("conv_b")->find(TensorRole::kWeight);
  b->load(t);
  b->purge(t);
  EXPECT_EQ(std::memcmp(t.data(), bytes.data() + b->segment_offset() + t.offset(), t.size()), 0);
}

TEST(BundleOpen, ReportsMissingFileWithPath) {
  auto b = Bundle::open("/nonexistent/dir/x.mpsb");
  EXPECT_EQ(b.error(), Error::kIo);
  EXPECT_NE(b.message().find("/nonexistent/dir/x.mpsb"), std::string::npos);
}

TEST(BundleOpen, RejectsDirectory) {
  testing::TempDir dir;
  EXPECT_EQ(Bundle::open(dir.path().string()).error(), Error::kIo);
}

TEST(BundleOpen, RejectsTinyFile) { expect_refused({1, 2, 3}, Error::kTruncated, "too small"); }

TEST(BundleOpen, RejectsWrongIdentifier) {
  auto bytes = build_bundle(two_convs());
  std::memcpy(bytes.data() + 8, "TFL3", 4);
  expect_refused(bytes, Error::kBadIdentifier, "identifier is 'TFL3', want 'MPSB'");
}

TEST(BundleOpen, RejectsTruncatedMetadata) {
  auto bytes = build_bundle(two_convs());
  uint32_t meta = 0;
  std::memcpy(&meta, bytes.data(), 4);
  bytes.resize(meta / 2);
  expect_refused(bytes, Error::kTruncated, "metadata needs");
}

TEST(BundleOpen, RejectsMetadataOver2GiB) {
  auto bytes = build_bundle(two_convs());
  const uint32_t huge = 0x90000000u;
  std::memcpy(bytes.data(), &huge, 4);
  expect_refused(bytes, Error::kTooLarge, "2 GiB");
}

TEST(BundleOpen, RejectsMetadataFailingVerifier) {
  auto bytes = build_bundle(two_convs());
  // Root offset pointing far past the metadata.
  const uint32_t bad_root = 0x00fffff0u;
  std::memcpy(bytes.data() + 4, &bad_root, 4);
  expect_refused(bytes, Error::kVerifierFailed, "verification");
}

TEST(BundleOpen, RejectsTruncatedSegment) {
  auto bytes = build_bundle(two_convs());
  bytes.resize(bytes.size() - 100);
  expect_refused(bytes, Error::kTruncated, "ends past the end of the file");
}

TEST(BundleOpen, RejectsTrailingBytes) {
  auto bytes = build_bundle(two_convs());
  bytes.push_back(0);
  expect_refused(bytes, Error::kBadSegment, "1 bytes after the data segment");
}

TEST(BundleOpen, RejectsNewerFormatVersion) {
  auto spec = two_convs();
  spec.format_version = 2;
  expect_refused(build_bundle(spec), Error::kUnsupportedVersion, "format version 2");
}

TEST(BundleOpen, RejectsSegmentOverlappingMetadata) {
  auto spec = two_convs();
  spec.segment_offset = 0;
  expect_refused(build_bundle(spec), Error::kBadSegment, "overlaps the metadata");
}

TEST(BundleOpen, RejectsBadAlignments) {
  auto spec = two_convs();
  spec.tensor_alignment = 8192;  // > segment alignment
  expect_refused(build_bundle(spec), Error::kBadField, "tensor_alignment");
  spec = two_convs();
  spec.segment_alignment = 3000;
  expect_refused(build_bundle(spec), Error::kBadField, "segment_alignment");
}

TEST(BundleOpen, RejectsTensorPastEndOfSegment) {
  auto spec = two_convs();
  spec.layers[0].tensors[0].offset = 4096 * 16;
  expect_refused(build_bundle(spec), Error::kTensorOutOfRange, "outside the data segment");
}

TEST(BundleOpen, RejectsTensorRangeThatWouldOverflow) {
  auto spec = two_convs();
  spec.layers[0].tensors[0].offset = UINT64_MAX - 255;
  expect_refused(build_bundle(spec), Error::kTensorOutOfRange, "outside the data segment");
}

TEST(BundleOpen, RejectsSizeNotMatchingShapeTimesDtype) {
  auto spec = two_convs();
  spec.layers[0].tensors[0].size = 100;
  expect_refused(build_bundle(spec), Error::kSizeMismatch, "is not shape x dtype");
}

TEST(BundleOpen, RejectsWeightShapeNotMatchingLayer) {
  auto spec = two_convs();
  auto& w = spec.layers[0].tensors[0];
  w.shape = {16, 3, 3, 4};  // in_channels is 8
  w.source_shape = {16, 4, 3, 3};
  expect_refused(build_bundle(spec), Error::kSizeMismatch, "weight shape does not match");
}

TEST(BundleOpen, RejectsMisalignedOffset) {
  auto spec = two_convs();
  spec.layers[0].tensors[1].offset = 4;
  expect_refused(build_bundle(spec), Error::kMisaligned, "not a multiple of the tensor alignment");
}

TEST(BundleOpen, RejectsDuplicateNames) {
  auto spec = two_convs();
  spec.layers[1].name = "conv_b";
  expect_refused(build_bundle(spec), Error::kDuplicateName, "'conv_b' appears twice");
}

TEST(BundleOpen, RejectsUnsortedNames) {
  auto spec = two_convs();
  spec.sort_layers = false;
  expect_refused(build_bundle(spec), Error::kUnsortedNames, "out of order");
}

TEST(BundleOpen, RejectsRepeatedNetworkIndex) {
  auto spec = two_convs();
  spec.layers[1].index = 0;
  expect_refused(build_bundle(spec), Error::kBadField, "out of range or repeated");
}

TEST(BundleOpen, RejectsConvWithoutParameters) {
  auto spec = two_convs();
  spec.layers[0].omit_params = true;
  expect_refused(build_bundle(spec), Error::kBadField, "conv parameters missing");
}

TEST(BundleOpen, RejectsConvWithoutWeight) {
  auto spec = two_convs();
  spec.layers[0].tensors.erase(spec.layers[0].tensors.begin());
  expect_refused(build_bundle(spec), Error::kBadField, "has no weight tensor");
}

TEST(BundleOpen, RejectsZeroDimension) {
  auto spec = two_convs();
  spec.layers[0].tensors[1].shape = {0};
  spec.layers[0].tensors[1].bytes = {0};
  expect_refused(build_bundle(spec), Error::kBadField, "has a zero");
}

TEST(BundleVerify, DetectsFlippedTensorByte) {
  auto bytes = build_bundle(two_convs());
  auto good = open_bytes(bytes);
  ASSERT_TRUE(good.ok());
  const auto t = *good->find("conv_b")->find(TensorRole::kWeight);
  const uint64_t at = good->segment_offset() + t.offset() + 5;
  bytes[at] ^= 0x01;
  auto b = open_bytes(bytes);  // Cheap open does not read weights.
  ASSERT_TRUE(b.ok()) << b.message();
  const Status s = b->verify();
  EXPECT_EQ(s.error(), Error::kChecksumMismatch);
  EXPECT_NE(s.message().find("conv_b"), std::string::npos) << s.message();
  EXPECT_EQ(b->verify_layer(*b->find("conv_a")).error(), Error::kOk);
  EXPECT_EQ(open_bytes(bytes, /*verify=*/true).error(), Error::kChecksumMismatch);
}

TEST(BundleVerify, DetectsFlippedPaddingByte) {
  auto bytes = build_bundle(two_convs());
  auto good = open_bytes(bytes);
  ASSERT_TRUE(good.ok());
  // Between the metadata and the segment.
  bytes[good->metadata_bytes().size() + 1] = 0x7f;
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->verify().error(), Error::kNonZeroPadding);
  // Inside the segment, after the last tensor.
  bytes = build_bundle(two_convs());
  bytes[bytes.size() - 1] = 1;
  auto c = open_bytes(bytes);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verify().error(), Error::kChecksumMismatch);
}

TEST(BundleVerify, DetectsChangedMetadataString) {
  auto bytes = build_bundle(two_convs());
  const std::string needle = "trained_on";
  auto it = std::search(bytes.begin(), bytes.end(), needle.begin(), needle.end());
  ASSERT_NE(it, bytes.end());
  *(it + 9) = 'x';  // "trained_ox": still sorted, still verifies structurally
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  const Status s = b->verify();
  EXPECT_EQ(s.error(), Error::kChecksumMismatch);
  EXPECT_NE(s.message().find("metadata checksum"), std::string::npos);
}

TEST(BundleOpen, ManyThreadsReadOneBundle) {
  const auto bytes = build_bundle(two_convs());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < 200; ++k) {
        if (!b->verify().ok() || !b->find("conv_a")) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(BundleOpen, MovedBundleKeepsViewsValid) {
  const auto bytes = build_bundle(two_convs());
  auto r = open_bytes(bytes);
  ASSERT_TRUE(r.ok());
  const auto layer = r->find("conv_a");
  Bundle moved = std::move(r).value();
  EXPECT_EQ(layer->name(), "conv_a");
  EXPECT_EQ(moved.layer_count(), 3u);
}

TEST(Types, NamesAreStable) {
  EXPECT_EQ(to_string(DType::kFloat16), "float16");
  EXPECT_EQ(to_string(LayerKind::kConvTranspose2d), "conv_transpose2d");
  EXPECT_EQ(to_string(TensorLayout::kOHWI), "ohwi");
  EXPECT_EQ(to_string(static_cast<DType>(99)), "unknown");
  EXPECT_EQ(to_string(Error::kTruncated), "truncated");
}

}  // namespace
}  // namespace mpsb

namespace mpsb {
namespace {

// Offsets that make MPS read what PyTorch's padding reads. For ordinary
// convolutions these are the values PyTorch's own Metal backend uses
// (computeMPSAlignOffset: 3x3 p1 -> 0, 3x3 p0 -> 1, 3x3 p2 -> -1), extended
// by Apple's rule that a dilated kernel is centred on its dilated width.
TEST(ConvolutionSourceOffsets, MatchPyTorchPadding) {
  struct Case {
    uint32_t k, pad, dilation;
    int64_t want;
  };
  for (const Case& c : {Case{3, 1, 1, 0}, Case{3, 0, 1, 1}, Case{3, 2, 1, -1}, Case{4, 1, 1, 1},
                        Case{1, 0, 1, 0}, Case{7, 3, 1, 0}, Case{3, 2, 2, 0}, Case{5, 0, 2, 4}}) {
    SCOPED_TRACE(::testing::Message() << "k" << c.k << " p" << c.pad << " d" << c.dilation);
    testing::BundleSpec spec;
    auto layer = testing::conv_layer("c", 8, 8, c.k);
    layer.conv.padding_h = layer.conv.padding_w = c.pad;
    layer.conv.dilation_h = layer.conv.dilation_w = c.dilation;
    spec.layers.push_back(layer);
    const auto bytes = testing::build_bundle(spec);
    auto b = Bundle::from_memory(bytes.data(), bytes.size());
    ASSERT_TRUE(b.ok()) << b.message();
    auto src = ConvolutionSource::from(*b, *b->find("c"));
    ASSERT_TRUE(src.ok());
    EXPECT_EQ(src->mps_offset_x(), c.want);
    EXPECT_EQ(src->mps_offset_y(), c.want);
    // PyTorch's output size: (in + 2p - d(k-1) - 1) / s + 1.
    EXPECT_EQ(src->output_width(32), 32u + 2 * c.pad - c.dilation * (c.k - 1));
  }
}

// Transposed: MPS zero-expands the input, then convolves; the equivalent
// convolution starts d(k-1) - p pixels before the expanded image, which the
// kernel offset must express relative to the kernel's centre.
TEST(ConvolutionSourceOffsets, TransposedConvolutionKernelOffset) {
  testing::BundleSpec spec;
  auto layer = testing::conv_transpose_layer("t", 8, 4, 4, 2);
  layer.conv.padding_h = layer.conv.padding_w = 1;
  layer.conv.output_padding_h = layer.conv.output_padding_w = 0;
  spec.layers.push_back(layer);
  const auto bytes = testing::build_bundle(spec);
  auto b = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(b.ok()) << b.message();
  auto src = ConvolutionSource::from(*b, *b->find("t"));
  ASSERT_TRUE(src.ok());
  ASSERT_TRUE(src->transposed());
  // k4 d1 p1: centre 2, lead 3 - 1 = 2 -> 0.
  EXPECT_EQ(src->mps_offset_x(), 0);
  // DCGAN's upsampling: (16 - 1) * 2 - 2 + 3 + 0 + 1 = 32.
  EXPECT_EQ(src->output_width(16), 32u);
}

}  // namespace
}  // namespace mpsb
