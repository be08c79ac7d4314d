// Regression tests for docs/SECURITY.md's first finding of the second round
// (issue 13, item 1): a batch or instance norm whose gamma is stored as
// float16 [C], or as uint8 [C] with a lookup table, passed open and verify,
// and gamma() (C++ and C API) promised C floats over 2C or C bytes; the
// structure-aware fuzz target (fuzz_bundle_fields) reports it within
// seconds. The inputs are crafted_cases.h's, also fuzz seeds.
//
// The fix is the runtime checker's exact dtype and count per role; until it
// is merged these tests fail, so tests/runtime/CMakeLists.txt registers them
// DISABLED (remove that property when the checker refuses these files).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "fuzz/crafted_cases.h"
#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

void expect_refused_everywhere(const std::vector<uint8_t>& bytes) {
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok()) << "a norm vector that is not float32 was accepted";
  EXPECT_TRUE(r.error() == Error::kSizeMismatch || r.error() == Error::kBadField)
      << to_string(r.error());
  EXPECT_EQ(r.message().rfind("<memory>: layer 'norm'", 0), 0u) << r.message();
  EXPECT_NE(r.message().find("float32"), std::string::npos) << r.message();

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
      testing::build_bundle(crafted::norm_gamma_float16(LayerKind::kBatchNorm2d)));
}

TEST(FuzzRegressionNormDtype, OpenRejectsInstanceNormGammaStoredAsFloat16) {
  expect_refused_everywhere(
      testing::build_bundle(crafted::norm_gamma_float16(LayerKind::kInstanceNorm2d)));
}

TEST(FuzzRegressionNormDtype, OpenRejectsBatchNormGammaStoredAsUInt8WithLookupTable) {
  expect_refused_everywhere(testing::build_bundle(crafted::norm_gamma_uint8_lut()));
}

}  // namespace
}  // namespace mpsb
