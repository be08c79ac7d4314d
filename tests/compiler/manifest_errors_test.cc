// Every class of manifest and .bin error: the message names the manifest and
// the exact JSON pointer, the compile fails, no output appears, and an older
// bundle at the output path stays byte-identical.

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"

namespace {

using mpsb::testing::errors_of;
using mpsb::testing::list_dir;
using mpsb::testing::ModelBuilder;
using mpsb::testing::read_file;
using mpsb::testing::write_file;
using nlohmann::json;

class ManifestErrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // conv1: 32x3x3x3, the example of the size message.
    model_.add_conv("conv1", 3, 32, 3, 3);
    model_.add_conv("conv2", 32, 16, 1, 1);
    auto first = model_.compile("old.mpsb");
    ASSERT_TRUE(first.ok()) << (first.diagnostics.empty() ? "" : first.diagnostics[0].message);
    old_bytes_ = read_file(model_.path("old.mpsb"));
  }

  // Applies `edit`, compiles over the old bundle and into a fresh path, and
  // checks both fail with an error at `pointer` containing `phrase`.
  void expect_rejected(const std::function<void(ModelBuilder&)>& edit, const std::string& pointer,
                       const std::string& phrase,
                       mpsbc::ExitCode code = mpsbc::ExitCode::kBadInput) {
    edit(model_);
    const auto files_before = list_dir(model_.dir());
    model_.write_manifest();
    for (const char* output : {"old.mpsb", "new.mpsb"}) {
      SCOPED_TRACE(output);
      const auto report = mpsbc::compile(model_.options(output));
      EXPECT_EQ(report.exit_code, code);
      const auto errors = errors_of(report);
      ASSERT_FALSE(errors.empty());
      bool found = false;
      for (const auto& e : errors) {
        if (e.pointer == pointer && e.message.find(phrase) != std::string::npos) found = true;
      }
      std::string all;
      for (const auto& e : errors) all += e.message + "\n";
      EXPECT_TRUE(found) << "want " << pointer << " with \"" << phrase << "\", got:\n" << all;
      // Each message names the manifest first, then the pointer.
      const std::string manifest = model_.options().manifest_path;
      for (const auto& e : errors) {
        if (!e.pointer.empty()) {
          EXPECT_EQ(e.message.rfind(manifest + ": " + e.pointer + ": ", 0), 0u) << e.message;
        }
      }
      EXPECT_EQ(read_file(model_.path("old.mpsb")), old_bytes_);
      EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));
    }
    // No temporary file was left behind (or created at all).
    auto files_after = list_dir(model_.dir());
    std::erase(files_after, "manifest.json");
    auto expected = files_before;
    std::erase(expected, "manifest.json");
    EXPECT_EQ(files_after, expected);
  }

  ModelBuilder model_;
  std::vector<uint8_t> old_bytes_;
};

TEST_F(ManifestErrorTest, InvalidJsonGivesLineAndColumn) {
  // The builder always writes valid JSON: write broken text directly.
  write_file(model_.path("manifest.json"),
             "{\n  \"format\": \"mpsb.manifest/1\",\n  \"layers\": [,]\n}");
  for (const char* output : {"old.mpsb", "new.mpsb"}) {
    const auto report = mpsbc::compile(model_.options(output));
    EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
    const auto errors = errors_of(report);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].pointer, "");
    EXPECT_EQ(errors[0].message.rfind(
                  model_.options().manifest_path + ": invalid JSON: line 3, column 14: ", 0),
              0u)
        << errors[0].message;
  }
  EXPECT_EQ(read_file(model_.path("old.mpsb")), old_bytes_);
  EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));
}

TEST_F(ManifestErrorTest, TopLevelNotAnObject) {
  expect_rejected([](ModelBuilder& m) { m.manifest() = json::array(); }, "",
                  "expected a JSON object");
}

TEST_F(ManifestErrorTest, MissingFormat) {
  expect_rejected([](ModelBuilder& m) { m.manifest().erase("format"); }, "/format", "missing");
}

TEST_F(ManifestErrorTest, WrongFormat) {
  expect_rejected([](ModelBuilder& m) { m.manifest()["format"] = "mpsb.manifest/2"; }, "/format",
                  "expected \"mpsb.manifest/1\"");
}

TEST_F(ManifestErrorTest, MissingLayers) {
  expect_rejected([](ModelBuilder& m) { m.manifest().erase("layers"); }, "/layers", "missing");
}

TEST_F(ManifestErrorTest, EmptyLayerList) {
  expect_rejected([](ModelBuilder& m) { m.manifest()["layers"] = json::array(); }, "/layers",
                  "at least one layer");
}

TEST_F(ManifestErrorTest, LayerNotAnObject) {
  expect_rejected([](ModelBuilder& m) { m.manifest()["layers"].push_back(3); }, "/layers/2",
                  "expected a layer object");
}

TEST_F(ManifestErrorTest, MissingRequiredField) {
  expect_rejected([](ModelBuilder& m) { m.layer(1).erase("in_channels"); }, "/layers/1/in_channels",
                  "missing");
}

TEST_F(ManifestErrorTest, MissingWeight) {
  expect_rejected([](ModelBuilder& m) { m.layer(0).erase("weight"); }, "/layers/0/weight",
                  "missing");
}

TEST_F(ManifestErrorTest, WrongTypeForInteger) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["out_channels"] = "16"; },
                  "/layers/1/out_channels", "expected an integer >= 1, found string \"16\"");
}

TEST_F(ManifestErrorTest, FloatForInteger) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["groups"] = 1.5; }, "/layers/1/groups",
                  "expected an integer >= 1, found 1.5");
}

TEST_F(ManifestErrorTest, WrongTypeForPair) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["kernel_size"] = json::object(); },
                  "/layers/0/kernel_size", "expected an integer or [h, w]");
}

TEST_F(ManifestErrorTest, PairWithThreeElements) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["stride"] = {1, 1, 1};
      },
      "/layers/0/stride", "expected [h, w] with 2 integers");
}

TEST_F(ManifestErrorTest, StringPaddingNotSupported) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["padding"] = "same"; }, "/layers/0/padding",
                  "give the numbers");
}

TEST_F(ManifestErrorTest, ZeroStride) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["stride"] = 0; }, "/layers/0/stride",
                  "expected an integer >= 1, found 0");
}

TEST_F(ManifestErrorTest, NegativePaddingElement) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["padding"] = {1, -1};
      },
      "/layers/0/padding/1", "expected an integer >= 0, found -1");
}

TEST_F(ManifestErrorTest, ChannelsBeyond32Bits) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["out_channels"] = 4294967296ull; },
                  "/layers/0/out_channels", "<= 4294967295");
}

TEST_F(ManifestErrorTest, ShapeProductOverflows64Bits) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["in_channels"] = 4294967295u;
        m.layer(0)["out_channels"] = 4294967295u;
        m.layer(0)["kernel_size"] = 4294967295u;
      },
      "/layers/0/weight", "overflows a 64-bit byte size");
}

TEST_F(ManifestErrorTest, InChannelsNotDivisibleByGroups) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["groups"] = 3; }, "/layers/1/groups",
                  "in_channels 32 is not divisible by groups 3");
}

TEST_F(ManifestErrorTest, OutChannelsNotDivisibleByGroups) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["groups"] = 32; }, "/layers/1/groups",
                  "out_channels 16 is not divisible by groups 32");
}

// Convs MPS refuses at kernel creation are errors that name the layer,
// Apple's rule and --legalize; with --legalize they compile (stored dense).
TEST_F(ManifestErrorTest, DepthwiseChannelMultiplierIsAnErrorUnlessLegalized) {
  // 16 -> 32 channels in 16 groups: a depthwise conv with multiplier 2.
  model_.add_conv("dw", 16, 32, 3, 3, 16);
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  auto report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
  ASSERT_EQ(report.diagnostics.size(), 1u);
  EXPECT_EQ(report.diagnostics[0].severity, mpsbc::Diagnostic::Severity::kError);
  EXPECT_EQ(report.diagnostics[0].pointer, "/layers/2/out_channels");
  const std::string& text = report.diagnostics[0].text;
  EXPECT_NE(text.find("layer 'dw'"), std::string::npos) << text;
  EXPECT_NE(text.find("channel multiplier 1"), std::string::npos) << text;
  EXPECT_NE(text.find("--legalize"), std::string::npos) << text;
  EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));

  options.legalize = true;
  report = mpsbc::compile(options);
  ASSERT_TRUE(report.ok());
  EXPECT_TRUE(report.diagnostics.empty());
  ASSERT_EQ(report.layers.size(), 3u);
  EXPECT_EQ(report.layers[2].legalized_groups, 16u);
  // [32][3][3][16] float32 stored instead of [32][1][3][3]: 15 zeros per
  // output channel and kernel position.
  EXPECT_EQ(report.layers[2].extra_weight_bytes, 32u * 9 * 15 * 4);
  EXPECT_EQ(report.layers[2].extra_macs_per_position, 32u * 9 * 15);
  EXPECT_TRUE(std::filesystem::exists(model_.path("new.mpsb")));
}

TEST_F(ManifestErrorTest, GroupedConvOffFourIsAnErrorUnlessLegalized) {
  // 6 channels in 2 groups: 3 per group.
  model_.add_conv("g3", 16, 6, 1, 1, 1);
  model_.add_conv("grouped", 6, 6, 3, 3, 2);
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  auto report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
  ASSERT_EQ(report.diagnostics.size(), 1u);
  EXPECT_EQ(report.diagnostics[0].pointer, "/layers/3/groups");
  const std::string& text = report.diagnostics[0].text;
  EXPECT_NE(text.find("layer 'grouped'"), std::string::npos) << text;
  EXPECT_NE(text.find("multiple of 4 channels per group"), std::string::npos) << text;
  EXPECT_NE(text.find("--legalize"), std::string::npos) << text;
  options.legalize = true;
  report = mpsbc::compile(options);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report.layers[3].legalized_groups, 2u);
  EXPECT_EQ(report.layers[3].extra_weight_bytes, 6u * 9 * 3 * 4);
}

// MPSCNNConvolutionTranspose takes groups from the same descriptor, so the
// rule holds; with --legalize a transposed conv is stored dense too
// (groups 1, ConvTransposeGroupedToDenseRotated).
TEST_F(ManifestErrorTest, GroupedTransposedConvOffFourIsAnErrorUnlessLegalized) {
  model_.add_conv_transpose("up", 8, 4, 3, 2);  // 4 in, 2 out per group
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  auto report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
  ASSERT_EQ(report.diagnostics.size(), 1u);
  EXPECT_NE(report.diagnostics[0].text.find("layer 'up'"), std::string::npos);
  EXPECT_NE(report.diagnostics[0].text.find("--legalize"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));
  options.legalize = true;
  report = mpsbc::compile(options);
  ASSERT_EQ(report.exit_code, mpsbc::ExitCode::kOk) << report.diagnostics.size();
  EXPECT_TRUE(std::filesystem::exists(model_.path("new.mpsb")));
  const auto& up = report.layers.back();
  EXPECT_EQ(up.name, "up");
  EXPECT_EQ(up.legalized_groups, 2u);
  // Dense [4][3][3][8] against grouped [8][2][3][3]: 144 zeros of float32.
  EXPECT_EQ(up.extra_weight_bytes, (4u * 3 * 3 * 8 - 8u * 2 * 3 * 3) * 4);
  EXPECT_EQ(up.extra_macs_per_position, 4u * 3 * 3 * 8 - 8u * 2 * 3 * 3);
}

TEST_F(ManifestErrorTest, DuplicateLayerName) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["name"] = "conv1"; }, "/layers/1/name",
                  "duplicate layer name \"conv1\" (first used at /layers/0)");
}

TEST_F(ManifestErrorTest, EmptyLayerName) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["name"] = ""; }, "/layers/1/name",
                  "non-empty string");
}

TEST_F(ManifestErrorTest, UnknownLayerType) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["type"] = "conv3d"; }, "/layers/1/type",
                  "unknown layer type \"conv3d\"");
}

TEST_F(ManifestErrorTest, UnknownActivation) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["activation"] = "hardswish"; },
                  "/layers/0/activation", "found string \"hardswish\"");
}

TEST_F(ManifestErrorTest, PaddingModeOtherThanZeros) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["padding_mode"] = "reflect"; },
                  "/layers/0/padding_mode", "expected \"zeros\"");
}

TEST_F(ManifestErrorTest, BinMissing) {
  expect_rejected([](ModelBuilder& m) { m.layer(1)["bias"] = "nowhere.bin"; }, "/layers/1/bias",
                  "cannot open \"nowhere.bin\"");
}

TEST_F(ManifestErrorTest, BinIsADirectory) {
  expect_rejected(
      [](ModelBuilder& m) {
        std::filesystem::create_directory(m.path("folder.bin"));
        m.layer(1)["weight"] = "folder.bin";
      },
      "/layers/1/weight", "is not a regular file");
}

TEST_F(ManifestErrorTest, BinSizeDoesNotMatchShape) {
  expect_rejected(
      [](ModelBuilder& m) { std::filesystem::resize_file(m.path("conv1.weight.bin"), 3452); },
      "/layers/0/weight", "expected 3456 bytes (32×3×3×3 float32), found 3452");
}

TEST_F(ManifestErrorTest, BinSizeCountsDtype) {
  // The same file read as float16 holds twice the elements it should.
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["weight"] = {{"path", "conv1.weight.bin"}, {"dtype", "float16"}};
      },
      "/layers/0/weight", "expected 1728 bytes (32×3×3×3 float16), found 3456");
}

TEST_F(ManifestErrorTest, UnknownDtype) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["weight"] = {{"path", "conv1.weight.bin"}, {"dtype", "int8"}};
      },
      "/layers/0/weight/dtype", "expected \"float32\", \"float16\" or \"bfloat16\"");
}

TEST_F(ManifestErrorTest, TensorObjectWithoutPath) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["weight"] = {{"dtype", "float32"}};
      },
      "/layers/0/weight", "missing \"path\"");
}

TEST_F(ManifestErrorTest, TensorNotAPath) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["weight"] = 12; }, "/layers/0/weight",
                  "expected a path string");
}

// MPS takes biases as float*: a float16 or bfloat16 bias is widened exactly.
TEST_F(ManifestErrorTest, HalfPrecisionBiasIsWidenedToFloat32) {
  std::vector<uint16_t> half(32);
  for (size_t i = 0; i < half.size(); ++i) half[i] = uint16_t(0x3c00 + i);  // 1.0, 1.000977, ...
  mpsb::testing::write_file(model_.path("half.bin"), half.data(), half.size() * 2);
  model_.layer(0)["bias"] = {{"path", "half.bin"}, {"dtype", "float16"}};
  model_.write_manifest();
  const auto report = mpsbc::compile(model_.options("new.mpsb"));
  ASSERT_TRUE(report.ok()) << report.diagnostics[0].message;
  auto b = mpsb::Bundle::open(model_.path("new.mpsb").string(), {.verify_checksums = true});
  ASSERT_TRUE(b.ok()) << b.message();
  const auto bias = b->find("conv1")->find(mpsb::TensorRole::kBias);
  ASSERT_TRUE(bias.has_value());
  EXPECT_EQ(bias->dtype(), mpsb::DType::kFloat32);
  EXPECT_EQ(bias->source_dtype(), mpsb::DType::kFloat16);
  const auto* f = static_cast<const float*>(bias->data());
  for (size_t i = 0; i < half.size(); ++i) EXPECT_EQ(f[i], 1.0f + float(i) / 1024.0f) << i;
}

TEST_F(ManifestErrorTest, MetadataValueNotAString) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.manifest()["metadata"] = {{"epochs", 3}};
      },
      "/metadata/epochs", "expected a string value");
}

TEST_F(ManifestErrorTest, ConvTransposeOutputPaddingTooLarge) {
  expect_rejected(
      [](ModelBuilder& m) { m.add_conv_transpose("up", 16, 8, 3)["output_padding"] = 2; },
      "/layers/2/output_padding", "smaller than stride or dilation");
}

TEST_F(ManifestErrorTest, LinearInputShapeDoesNotMatchFeatures) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.add_linear("fc", 12, 2, {3, 2, 3});
      },
      "/layers/2/input_shape", "must equal in_features 12");
}

TEST_F(ManifestErrorTest, BatchNormNeedsRunningStats) {
  expect_rejected([](ModelBuilder& m) { m.add_batch_norm("bn", 16).erase("running_var"); },
                  "/layers/2/running_var", "missing");
}

TEST_F(ManifestErrorTest, NonPositiveEps) {
  expect_rejected([](ModelBuilder& m) { m.add_batch_norm("bn", 16)["eps"] = 0; }, "/layers/2/eps",
                  "expected a number > 0");
}

TEST_F(ManifestErrorTest, BadAlignmentOptionIsAUsageError) {
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  options.tensor_alignment = 100;
  auto report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kUsage);
  options.tensor_alignment = 256;
  options.segment_alignment = 128;  // below the tensor alignment
  report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kUsage);
  options.segment_alignment = uint64_t{1} << 31;  // above 1 GiB
  report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kUsage);
  EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));
}

TEST_F(ManifestErrorTest, OutputThatIsAnInputIsRefused) {
  model_.write_manifest();
  const auto before = read_file(model_.path("conv1.weight.bin"));
  const auto report = mpsbc::compile(model_.options("conv1.weight.bin"));
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kUsage);
  EXPECT_EQ(read_file(model_.path("conv1.weight.bin")), before);
  const auto manifest = read_file(model_.path("manifest.json"));
  EXPECT_FALSE(mpsbc::compile(model_.options("manifest.json")).ok());
  EXPECT_EQ(read_file(model_.path("manifest.json")), manifest);
}

TEST_F(ManifestErrorTest, OutputFolderMissingIsAnIoError) {
  model_.write_manifest();
  const auto report = mpsbc::compile(model_.options("no/such/folder/out.mpsb"));
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kIo);
  ASSERT_FALSE(errors_of(report).empty());
  EXPECT_NE(errors_of(report)[0].message.find("cannot create a temporary file"), std::string::npos);
}

TEST_F(ManifestErrorTest, ManifestMissingIsAnIoError) {
  auto options = model_.options("new.mpsb");
  options.manifest_path = model_.path("absent.json").string();
  const auto report = mpsbc::compile(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kIo);
  EXPECT_FALSE(std::filesystem::exists(model_.path("new.mpsb")));
}

TEST_F(ManifestErrorTest, AllErrorsAreReportedInOneRun) {
  model_.layer(0)["stride"] = 0;
  model_.layer(1)["groups"] = 3;
  std::filesystem::resize_file(model_.path("conv2.bias.bin"), 4);
  model_.write_manifest();
  const auto report = mpsbc::compile(model_.options("new.mpsb"));
  std::vector<std::string> pointers;
  for (const auto& e : errors_of(report)) pointers.push_back(e.pointer);
  // groups 3 divides neither 32 in nor 16 out channels: two errors.
  EXPECT_EQ(pointers,
            (std::vector<std::string>{"/layers/0/stride", "/layers/1/groups", "/layers/1/groups"}));
  // conv2 failed its own checks, so its files were not checked; fix it and
  // the bias size error appears.
  model_.layer(1)["groups"] = 1;
  model_.write_manifest();
  pointers.clear();
  for (const auto& e : errors_of(mpsbc::compile(model_.options("new.mpsb")))) {
    pointers.push_back(e.pointer);
  }
  EXPECT_EQ(pointers, (std::vector<std::string>{"/layers/0/stride", "/layers/1/bias"}));
}

TEST_F(ManifestErrorTest, CheckManifestWritesNothing) {
  model_.layer(0)["stride"] = 0;
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  auto report = mpsbc::check_manifest(options);
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
  model_.layer(0)["stride"] = 1;
  model_.write_manifest();
  const auto before = list_dir(model_.dir());
  report = mpsbc::check_manifest(options);
  EXPECT_TRUE(report.ok());
  EXPECT_GT(report.file_size, 0u);
  EXPECT_EQ(list_dir(model_.dir()), before);
}

TEST_F(ManifestErrorTest, WarningsDoNotFailTheCompile) {
  // 8 channels in 4 groups: 2 per group, not a multiple of 4, stored dense.
  model_.add_conv("grouped", 8, 8, 1, 1, 4);
  model_.layer(0)["padidng"] = 1;  // misspelt: reported and ignored, as allowed
  model_.layer(2)["padidng"] = 1;
  model_.write_manifest();
  auto options = model_.options("new.mpsb");
  options.allow_unknown_fields = true;
  options.legalize = true;
  const auto report = mpsbc::compile(options);
  ASSERT_TRUE(report.ok());
  std::vector<std::string> pointers;
  for (const auto& d : report.diagnostics) {
    EXPECT_EQ(d.severity, mpsbc::Diagnostic::Severity::kWarning);
    pointers.push_back(d.pointer);
  }
  EXPECT_EQ(pointers, (std::vector<std::string>{"/layers/0/padidng", "/layers/2/padidng"}));
  EXPECT_TRUE(std::filesystem::exists(model_.path("new.mpsb")));
}

}  // namespace

namespace {

// Every field of every layer kind replaced by values of every JSON type:
// the compiler must answer with errors (or accept), never crash, and never
// write a file when it reports an error.
TEST(ManifestRobustnessTest, OddValuesInEveryFieldNeverCrash) {
  const std::vector<json> odd = {nullptr,
                                 true,
                                 -1,
                                 0,
                                 1.5,
                                 1e300,
                                 18446744073709551615ull,
                                 "x",
                                 "",
                                 json::array(),
                                 {1, 2, 3},
                                 {-1, 1},
                                 json::object(),
                                 {{"path", 3}}};
  ModelBuilder base;
  base.add_conv("c", 8, 8, 3, 3, 2);
  base.add_conv_transpose("t", 8, 4, 3, 2);
  base.add_linear("l", 12, 4, {3, 2, 2});
  base.add_batch_norm("b", 4);
  const json pristine = base.manifest();
  size_t runs = 0;
  for (size_t li = 0; li < pristine["layers"].size(); ++li) {
    for (const auto& [key, unused] : pristine["layers"][li].items()) {
      for (const json& value : odd) {
        base.manifest() = pristine;
        base.layer(li)[key] = value;
        const auto report = base.compile("out.mpsb");
        ++runs;
        if (!report.ok()) {
          EXPECT_FALSE(errors_of(report).empty());
          EXPECT_FALSE(std::filesystem::exists(base.path("out.mpsb")))
              << "/layers/" << li << "/" << key << " = " << value.dump();
        }
        std::filesystem::remove(base.path("out.mpsb"));
      }
    }
  }
  EXPECT_GT(runs, 300u);
}

}  // namespace

// docs/LAYERS.md, "Limits on padding and dilation": the padding that once
// wrapped the --check reference's output size, and the dilation maximum.
TEST_F(ManifestErrorTest, PaddingBeyondTheKernel) {
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["padding"] = {1073774592u, 2147418112u};
      },
      "/layers/0/padding",
      "padding [1073774592, 2147418112] exceeds dilation × (kernel_size − 1) = [2, 2]");
}

TEST_F(ManifestErrorTest, PaddingOneBeyondTheKernel) {
  // 3x3 with dilation 2 takes padding 4, not 5.
  expect_rejected(
      [](ModelBuilder& m) {
        m.layer(0)["dilation"] = 2;
        m.layer(0)["padding"] = {4, 5};
      },
      "/layers/0/padding", "padding [4, 5] exceeds dilation × (kernel_size − 1) = [4, 4]");
}

TEST_F(ManifestErrorTest, DilationBeyondTheMaximum) {
  expect_rejected([](ModelBuilder& m) { m.layer(0)["dilation"] = 65536; }, "/layers/0/dilation",
                  "dilation [65536, 65536] exceeds the maximum 65535");
}

// The manifest's text with the JSON value `marker` of layer 0's "padding"
// replaced by `replacement`.
std::string manifest_text_with(ModelBuilder& m, const std::string& marker,
                               const std::string& replacement) {
  std::string text = m.manifest().dump(2);
  const size_t at = text.find(marker);
  EXPECT_NE(at, std::string::npos);
  text.replace(at, marker.size(), replacement);
  return text;
}

TEST_F(ManifestErrorTest, NegativeZeroIsZero) {
  for (const char* zero : {"-0", "[-0, 1]", "-0.0"}) {
    SCOPED_TRACE(zero);
    model_.layer(0)["padding"] = 12345;
    write_file(model_.path("manifest.json"), manifest_text_with(model_, "12345", zero));
    const auto report = mpsbc::compile(model_.options("zero.mpsb"));
    ASSERT_TRUE(report.ok()) << (report.diagnostics.empty() ? "" : report.diagnostics[0].message);
    auto b = mpsb::Bundle::open(model_.path("zero.mpsb").string());
    ASSERT_TRUE(b.ok()) << b.message();
    EXPECT_EQ(b->find("conv1")->conv().padding_h, 0u);
  }
}

TEST_F(ManifestErrorTest, DuplicateKeyNamesBoth) {
  model_.layer(0)["padding"] = 54321;
  size_t position = 0;
  for (auto it = model_.layer(0).begin(); it.key() != "padding"; ++it) ++position;
  write_file(model_.path("manifest.json"),
             manifest_text_with(model_, "54321", "1,\n      \"padding\": 0"));
  const auto report = mpsbc::compile(model_.options("dup.mpsb"));
  EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
  const auto errors = errors_of(report);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].pointer, "/layers/0/padding");
  EXPECT_EQ(errors[0].text, "duplicate key \"padding\": members " + std::to_string(position) +
                                " and " + std::to_string(position + 1) +
                                " of /layers/0 are both /layers/0/padding; a key may appear "
                                "once per object");
  EXPECT_FALSE(std::filesystem::exists(model_.path("dup.mpsb")));
}

TEST_F(ManifestErrorTest, DuplicateTopLevelKey) {
  std::string text = model_.manifest().dump(2);
  text.insert(text.rfind('}'), ",\n  \"format\": \"mpsb.manifest/1\"");
  write_file(model_.path("manifest.json"), text);
  const auto report = mpsbc::compile(model_.options("dup.mpsb"));
  const auto errors = errors_of(report);
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].pointer, "/format");
  EXPECT_NE(errors[0].text.find("of the manifest are both /format"), std::string::npos)
      << errors[0].text;
}

// Probe files follow the tensors' folder rule (docs/SECURITY.md), and no
// message tells anything about a file outside the folder.
TEST_F(ManifestErrorTest, ProbeOutsideTheFolderIsRefused) {
  // 1221 bytes: a size no message may mention.
  const auto secret = model_.dir().parent_path() / ("secret-" + model_.dir().filename().string());
  write_file(secret, std::string(1221, 'x'));
  model_.write_floats("out.bin", 32 * 2 * 2);
  for (const std::string& input :
       {"../" + secret.filename().string(), std::string("/etc/passwd")}) {
    SCOPED_TRACE(input);
    model_.layer(0)["probe"] = {{"input", input},
                                {"input_shape", {1, 3, 4, 4}},
                                {"output", "out.bin"},
                                {"output_shape", {1, 32, 2, 2}}};
    model_.write_manifest();
    auto options = model_.options("probe.mpsb");
    options.check = true;
    const auto report = mpsbc::compile(options);
    EXPECT_EQ(report.exit_code, mpsbc::ExitCode::kBadInput);
    const auto errors = errors_of(report);
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].pointer, "/layers/0/probe/input");
    EXPECT_EQ(errors[0].text, "\"" + input + "\" " +
                                  (input[0] == '/' ? "is an absolute path"
                                                   : "climbs out of the manifest's folder") +
                                  "; probe files must be inside the manifest's folder "
                                  "(--allow-outside accepts it)");
    for (const auto& d : report.diagnostics) {
      EXPECT_EQ(d.message.find("1221"), std::string::npos) << d.message;
      EXPECT_EQ(d.message.find("found"), std::string::npos) << d.message;
    }
    EXPECT_FALSE(std::filesystem::exists(model_.path("probe.mpsb")));
    // --allow-outside reads it, and then says what it found.
    options.allow_outside = true;
    const auto allowed = mpsbc::compile(options);
    ASSERT_FALSE(errors_of(allowed).empty());
    EXPECT_NE(errors_of(allowed)[0].text.find("expected 192 bytes"), std::string::npos)
        << errors_of(allowed)[0].text;
  }
  std::filesystem::remove(secret);
}
