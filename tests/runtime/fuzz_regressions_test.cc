// Regression tests for what the fuzz targets found in the loader (see
// tests/fuzz and docs/SECURITY.md). Each input is built by code from a valid
// bundle, so the test states exactly which bytes make it hostile.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "fuzz/crafted_cases.h"
#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

using testing::build_bundle;
using testing::BundleSpec;

// fuzz_bundle_open, first minute: a shape vector moved by 4 bytes passes the
// FlatBuffers Verifier (it checks the 4-byte length prefix only) but puts
// the uint64 elements at 4 mod 8; Tensor::shape() then handed out a
// misaligned span (UBSan: "load of misaligned address ... for type 'const
// unsigned long'"). The fuzzer's input was the dtypes seed with byte 0x448,
// the tensor's shape offset, changed from 0x34 to 0x38.
TEST(FuzzRegression, OpenRejectsMisalignedShapeVector) {
  BundleSpec spec;
  // out_channels 2: once shifted, the vector's "length" is the low half of
  // the first dimension, 2, so it stays inside the metadata.
  spec.layers.push_back(testing::conv_layer("c", 4, 2, 3));
  std::vector<uint8_t> bytes = build_bundle(spec);
  ASSERT_TRUE(Bundle::from_memory(bytes.data(), bytes.size()).ok());

  const fb::Tensor* t =
      fb::GetSizePrefixedBundle(bytes.data())->layers()->Get(0)->tensors()->Get(0);
  const auto* table = reinterpret_cast<const flatbuffers::Table*>(t);
  const uint8_t* field = table->GetAddressOf(fb::Tensor::VT_SHAPE);
  ASSERT_NE(field, nullptr);
  const size_t at = static_cast<size_t>(field - bytes.data());
  uint32_t offset;
  std::memcpy(&offset, bytes.data() + at, 4);
  offset += 4;
  std::memcpy(bytes.data() + at, &offset, 4);

  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kMisaligned) << r.message();
  EXPECT_EQ(r.message(), "<memory>: layer 'c' tensor 0: shape vector is not 8-byte aligned");
}

// Found by reading the data sources as MPS does (float loads): with a
// tensor alignment below 4, bias_terms() and the norm vectors could be
// misaligned float pointers. open() now requires what mpsbc always writes:
// a tensor alignment of at least 16.
TEST(FuzzRegression, OpenRejectsTensorAlignmentBelow16) {
  for (uint64_t alignment : {1u, 2u, 4u, 8u}) {
    BundleSpec spec;
    spec.segment_alignment = 64;
    spec.tensor_alignment = alignment;
    spec.layers.push_back(testing::conv_layer("c", 1, 3, 1));
    const auto bytes = build_bundle(spec);
    auto r = Bundle::from_memory(bytes.data(), bytes.size());
    ASSERT_FALSE(r.ok()) << alignment;
    EXPECT_EQ(r.error(), Error::kBadField);
    EXPECT_EQ(r.message(), "<memory>: tensor_alignment " + std::to_string(alignment) +
                               " is not a power of two from 16 up to segment_alignment");
  }
  BundleSpec spec;
  spec.segment_alignment = 16;
  spec.tensor_alignment = 16;
  spec.layers.push_back(testing::conv_layer("c", 1, 3, 1));
  const auto bytes = build_bundle(spec);
  EXPECT_TRUE(Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true}).ok());
}

// docs/SECURITY.md, bounded work: 64 conv layers whose weights all claim the
// same 2,304 bytes (crafted::aliasing_convs, also a fuzz seed) opened, and
// verify() hashed the range once per layer; at 10,000 layers an 18.6 MB
// file took 14 s. Now refused at open, naming two of the layers.
TEST(FuzzRegression, OpenRejectsLayersAliasingOneRange) {
  const auto bytes = build_bundle(crafted::aliasing_convs(64));
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTensorOutOfRange);
  EXPECT_EQ(r.message().rfind("<memory>: layer 'conv1", 0), 0u) << r.message();
  EXPECT_NE(r.message().find(" (weight) [0, 2304) overlaps layer 'conv1"), std::string::npos)
      << r.message();
}

}  // namespace
}  // namespace mpsb
