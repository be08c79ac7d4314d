// Regression tests for docs/SECURITY.md's first finding of the second round
// (issue 13, item 1): a batch or instance norm whose gamma is stored as
// float16 [C], or as uint8 [C] with a lookup table, passed open and verify,
// and gamma() (C++ and C API) promised C floats over 2C or C bytes; the
// structure-aware fuzz target (fuzz_bundle_fields) reports it within
// seconds. The inputs are crafted_cases.h's, also fuzz seeds.
//
// Fixed by the runtime checker's exact dtype and count per role, from the
// layer-kind table (mpsb/kinds.h).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fuzz/crafted_cases.h"
#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

// `phrase`: what the message must say the layer breaks.
void expect_refused_everywhere(const std::vector<uint8_t>& bytes, const std::string& phrase) {
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok()) << "a norm vector that is not float32 was accepted";
  EXPECT_TRUE(r.error() == Error::kSizeMismatch || r.error() == Error::kBadField)
      << to_string(r.error());
  EXPECT_EQ(r.message().rfind("<memory>: layer 'norm'", 0), 0u) << r.message();
  EXPECT_NE(r.message().find(phrase), std::string::npos) << r.message();

  testing::TempDir dir;
  const std::string path = (dir / "norm.mpsb").string();
  testing::write_file(path, bytes.data(), bytes.size());
  mpsb_bundle* b = nullptr;
  char message[512];
  EXPECT_EQ(static_cast<int>(mpsb_bundle_open(path.c_str(), 0, &b, message, sizeof message)),
            static_cast<int>(r.error()));
  EXPECT_EQ(b, nullptr);
  mpsb_bundle_free(b);
}

TEST(FuzzRegressionNormDtype, OpenRejectsBatchNormGammaStoredAsFloat16) {
  expect_refused_everywhere(
      testing::build_bundle(crafted::norm_gamma_float16(LayerKind::kBatchNorm2d)), "float32");
}

TEST(FuzzRegressionNormDtype, OpenRejectsInstanceNormGammaStoredAsFloat16) {
  expect_refused_everywhere(
      testing::build_bundle(crafted::norm_gamma_float16(LayerKind::kInstanceNorm2d)), "float32");
}

TEST(FuzzRegressionNormDtype, OpenRejectsBatchNormGammaStoredAsUInt8WithLookupTable) {
  // Refused for the table first: a batch norm has no quantization tables.
  expect_refused_everywhere(testing::build_bundle(crafted::norm_gamma_uint8_lut()),
                            "has no quant_lookup_table tensor");
}

}  // namespace
}  // namespace mpsb
