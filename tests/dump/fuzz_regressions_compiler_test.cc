// Regression tests for what the compiler-side fuzz targets report in code
// outside the runtime. First, docs/SECURITY.md's --check finding (issue 13,
// item 2):
// a conv with padding [1073774592, 2147418112] wrapped the CPU reference's
// output size and wrote past it, padding 2^31 - 1 wrote through NULL, and
// padding 10^6 threw a bad_alloc nothing caught, both from `mpsbc compile
// --check` on a manifest and from `mpsb-dump B --check M` on a bundle that
// passes open and verify. fuzz_compile and fuzz_dump_check report all three
// from their seeds (crafted_cases.h, the same inputs as here).
//
// The fix is bounds in the manifest parser and checked arithmetic in the
// reference (item 2), and NaN handling defined before the uint8 conversion
// (item 7, FuzzRegressionNonFinite below).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <string>

#include "dump.h"
#include "fuzz/crafted_cases.h"
#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

void write_folder(const testing::TempDir& dir, const std::vector<fuzz::FuzzFile>& files) {
  for (const auto& f : files) testing::write_file(dir / f.name, f.bytes.data(), f.bytes.size());
}

TEST(FuzzRegressionCheckBounds, CompileCheckRefusesHugePaddingInTheManifest) {
  for (const auto& p : crafted::kPaddings) {
    testing::TempDir dir;
    write_folder(
        dir,
        crafted::manifest_folder(
            crafted::manifest(nlohmann::json::array({crafted::conv_manifest_layer(p.h, p.w)})), 0));
    mpsbc::CompileOptions o;
    o.manifest_path = (dir / "manifest.json").string();
    o.output_path = (dir / "out.mpsb").string();
    o.check = true;
    const mpsbc::CompileReport r = mpsbc::compile(o);
    EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput) << p.name;
    bool names_padding = false;
    for (const auto& d : r.diagnostics) {
      names_padding = names_padding || d.pointer.rfind("/layers/0/padding", 0) == 0;
    }
    EXPECT_TRUE(names_padding) << p.name << ": " << mpsbc::report_to_json(r);
    EXPECT_FALSE(std::filesystem::exists(dir / "out.mpsb")) << p.name;
  }
}

TEST(FuzzRegressionCheckBounds, DumpCheckFailsCleanlyOnHugePaddingInTheBundle) {
  for (const auto& p : crafted::kPaddings) {
    testing::TempDir dir;
    write_folder(
        dir,
        crafted::manifest_folder(
            crafted::manifest(nlohmann::json::array({crafted::conv_manifest_layer(1, 1)})), 0));
    const auto bundle = testing::build_bundle(crafted::conv_with_padding(p.h, p.w));
    testing::write_file(dir / "model.mpsb", bundle.data(), bundle.size());
    dump::Options o;
    o.bundle_path = (dir / "model.mpsb").string();
    o.manifest = (dir / "manifest.json").string();
    o.mode = dump::Mode::kCheck;
    std::ostringstream out, err;
    EXPECT_EQ(dump::run(o, out, err), dump::kExitFailure) << p.name;
    EXPECT_NE(err.str().find("padding"), std::string::npos) << p.name << ": " << err.str();
  }
}

// fuzz_compile, first minute of its first long run: --allow-non-finite with
// --precision uint8-linear converted a NaN weight to uint8 (undefined
// behaviour; UBSan stops here in scripts/sanitize.sh). Whatever the defined
// handling is, the compile must end in a report, and a bundle it writes
// must open and verify.
TEST(FuzzRegressionNonFinite, NaNWeightAtUInt8LinearIsDefined) {
  testing::TempDir dir;
  write_folder(dir, crafted::nan_weight_uint8_linear_folder());
  mpsbc::CompileOptions o;
  o.manifest_path = (dir / "manifest.json").string();
  o.output_path = (dir / "out.mpsb").string();
  o.allow_non_finite = true;
  o.precision = mpsbc::Precision::kUInt8Linear;
  const mpsbc::CompileReport r = mpsbc::compile(o);
  if (r.ok()) {
    EXPECT_TRUE(Bundle::open(o.output_path, {.verify_checksums = true}).ok());
  } else {
    EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput) << mpsbc::report_to_json(r);
    EXPECT_FALSE(std::filesystem::exists(dir / "out.mpsb"));
  }
}

}  // namespace
}  // namespace mpsb
