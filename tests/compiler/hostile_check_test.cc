// --check on hostile layers (docs/SECURITY.md): a bundle that passes open
// and verify but whose conv parameters would make the CPU reference's output
// size wrap, write through NULL or allocate without bound. Each must be an
// error naming the layer, never a crash or an exception out of
// mpsbc::check_bundle (what `mpsb-dump B --check M` runs) or run_reference.
// Run under ASan + UBSan by scripts/sanitize.sh.

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"
#include "mpsbc/reference.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#define MPSB_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MPSB_TEST_ASAN 1
#endif
#endif

namespace {

using mpsb::testing::ModelBuilder;

struct Padding {
  const char* name;
  uint32_t h, w;
};

// The cases the adversarial run found: the product n·oh·ow·cout
// wrapping to 4 floats (a heap overflow WRITE), a padding whose output size
// made the allocation fail and write through NULL, and one whose allocation
// threw std::bad_alloc.
const Padding kHostile[] = {{"Wraps", 1073774592u, 2147418112u},
                            {"IntMax", 2147483647u, 2147483647u},
                            {"Million", 1000000u, 1000000u}};

// A bundle with one conv2d "c" (2 -> 4 channels, 3x3) whose padding is `p`,
// built from the schema (the compiler would refuse to write it).
std::vector<uint8_t> hostile_bundle(uint32_t ph, uint32_t pw) {
  mpsb::testing::BundleSpec spec;
  auto layer = mpsb::testing::conv_layer("c", 2, 4, 3);
  layer.conv.padding_h = ph;
  layer.conv.padding_w = pw;
  spec.layers.push_back(layer);
  return mpsb::testing::build_bundle(spec);
}

// The matching manifest, with a valid padding and a probe [1, 2, 4, 4] ->
// [1, 4, 4, 4].
void write_probed_manifest(ModelBuilder& m) {
  m.add_conv("c", 2, 4, 3, 3)["padding"] = 1;
  m.write_floats("in.bin", 2 * 4 * 4);
  m.write_floats("out.bin", 4 * 4 * 4);
  m.layer(0)["probe"] = {{"input", "in.bin"},
                         {"input_shape", {1, 2, 4, 4}},
                         {"output", "out.bin"},
                         {"output_shape", {1, 4, 4, 4}}};
  m.write_manifest();
}

class HostilePadding : public ::testing::TestWithParam<Padding> {};

TEST_P(HostilePadding, CheckBundleReportsTheLayer) {
  ModelBuilder m;
  write_probed_manifest(m);
  const auto bytes = hostile_bundle(GetParam().h, GetParam().w);
  const auto path = m.path("hostile.mpsb");
  mpsb::testing::write_file(path, bytes.data(), bytes.size());
  // Passes open and verify: only --check looks at what padding implies.
  ASSERT_TRUE(mpsb::Bundle::open(path.string(), {.verify_checksums = true}).ok());

  const mpsbc::CompileReport r = mpsbc::check_bundle(path.string(), m.options());
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kCheckFailed);
  const auto errors = mpsb::testing::errors_of(r);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].pointer, "/layers/0/probe");
  EXPECT_EQ(errors[0].text, "--check: layer 'c': padding [" + std::to_string(GetParam().h) + ", " +
                                std::to_string(GetParam().w) +
                                "] exceeds dilation × (kernel_size − 1) = [2, 2]");
}

TEST_P(HostilePadding, RunReferenceReportsTheLayer) {
  const auto bytes = hostile_bundle(GetParam().h, GetParam().w);
  auto bundle = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(bundle.ok()) << bundle.message();
  const auto layer = bundle->find("c");
  ASSERT_TRUE(layer);
  mpsbc::FeatureMap input{{1, 2, 4, 4}, std::vector<float>(32, 1.0f)};
  const auto out = mpsbc::run_reference(*layer, input);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error(), mpsb::Error::kInvalidArgument);
  EXPECT_NE(out.message().find("layer 'c': padding ["), std::string::npos) << out.message();
}

INSTANTIATE_TEST_SUITE_P(Paddings, HostilePadding, ::testing::ValuesIn(kHostile),
                         [](const auto& p) { return std::string(p.param.name); });

// A bundle layer whose output differs from the probe's is reported before
// anything is computed, so the reference never allocates more than the
// probe's own output file holds.
TEST(HostileCheck, OutputShapeIsComparedBeforeRunning) {
  ModelBuilder m;
  write_probed_manifest(m);
  mpsb::testing::BundleSpec spec;
  auto layer = mpsb::testing::conv_layer("c", 2, 4, 3);
  layer.conv.padding_h = layer.conv.padding_w = 0;  // 4x4 -> 2x2, not 4x4
  spec.layers.push_back(layer);
  const auto bytes = mpsb::testing::build_bundle(spec);
  const auto path = m.path("smaller.mpsb");
  mpsb::testing::write_file(path, bytes.data(), bytes.size());
  const mpsbc::CompileReport r = mpsbc::check_bundle(path.string(), m.options());
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kCheckFailed);
  const auto errors = mpsb::testing::errors_of(r);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].text,
            "--check: layer c computes shape [1x4x2x2] but PyTorch's output is [1x4x4x4]");
  ASSERT_EQ(r.checks.size(), 1u);
  EXPECT_FALSE(r.checks[0].passed);
}

// Within the bounds but with an output no machine can hold (a transposed
// conv with stride 2^24 on a 2x2 input: about 2^50 floats): out of memory is
// an error naming the layer, not std::bad_alloc.
TEST(HostileCheck, OutOfMemoryIsAnError) {
#ifdef MPSB_TEST_ASAN
  // ASan's operator new reports a failed allocation and aborts instead of
  // throwing std::bad_alloc, whatever allocator_may_return_null says.
  GTEST_SKIP() << "needs std::bad_alloc, which ASan's operator new never throws";
#endif
  mpsb::testing::BundleSpec spec;
  spec.layers.push_back(mpsb::testing::conv_transpose_layer("up", 2, 4, 3, 1u << 24));
  spec.layers[0].conv.output_padding_h = spec.layers[0].conv.output_padding_w = 0;
  const auto bytes = mpsb::testing::build_bundle(spec);
  auto bundle = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(bundle.ok()) << bundle.message();
  const auto layer = bundle->find("up");
  ASSERT_TRUE(layer);
  mpsbc::FeatureMap input{{1, 2, 2, 2}, std::vector<float>(8, 1.0f)};
  const auto shape = mpsbc::reference_output_shape(*layer, input.shape);
  ASSERT_TRUE(shape.ok()) << shape.message();
  ASSERT_GT((*shape)[2] * (*shape)[3], uint64_t(1) << 47);
  const auto out = mpsbc::run_reference(*layer, input);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.message(), "layer 'up': out of memory for the CPU reference");
}

// Outputs that would be empty, and ones beyond 2^64 elements, are refused
// from the shapes alone.
TEST(HostileCheck, EmptyAndUnrepresentableOutputsAreRefused) {
  mpsb::testing::BundleSpec spec;
  auto conv = mpsb::testing::conv_layer("c", 2, 4, 3);
  conv.conv.padding_h = conv.conv.padding_w = 0;
  spec.layers.push_back(conv);
  spec.layers.push_back(mpsb::testing::conv_transpose_layer("up", 2, 4, 3, 2147483647u));
  spec.layers[1].conv.output_padding_h = spec.layers[1].conv.output_padding_w = 0;
  const auto bytes = mpsb::testing::build_bundle(spec);
  auto bundle = mpsb::Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(bundle.ok()) << bundle.message();

  const auto empty = mpsbc::reference_output_shape(*bundle->find("c"), {1, 2, 2, 2});
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.message(),
            "layer 'c': probe input [1, 2, 2, 2] gives an empty or unrepresentable output");

  // (2^32 − 1)·(2^31 − 1) rows and as many columns, times 4 channels.
  const auto huge = mpsbc::reference_output_shape(*bundle->find("up"), {1, 2, 4294967296u, 4});
  ASSERT_FALSE(huge.ok());
  EXPECT_NE(huge.message().find("has more than 2^64 elements"), std::string::npos)
      << huge.message();
}

}  // namespace
