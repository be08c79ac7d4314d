// The catalogue of bad manifests: one case per way a manifest, its tensor
// files or its own path can be wrong, each with the exact error mpsbc must
// give (JSON pointer and text, word for word), the exit code, and the proof
// that nothing was written. Every case is its own test
// (BadManifests/Catalogue.Rejects/<case>), so `ctest -N -R Catalogue`
// counts them; docs/SECURITY.md states the count.
//
// "{dir}" in an expected text stands for the model's folder.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "model_builder.h"
#include "mpsbc/compile.h"

namespace {

using mpsb::testing::errors_of;
using mpsb::testing::list_dir;
using mpsb::testing::ModelBuilder;
using mpsb::testing::write_file;
using mpsbc::ExitCode;
using nlohmann::json;

struct Case {
  std::string name;
  // Edits the model (two convs: conv1 3->32 3x3 and conv2 32->16 1x1, both
  // with bias). Returns the manifest text to write, or "" to write the
  // model's JSON.
  std::function<std::string(ModelBuilder&)> edit;
  std::string pointer;
  std::string text;
  ExitCode code = ExitCode::kBadInput;
  // chmod cannot take read access away from root.
  bool needs_non_root = false;
};

// gtest prints a parameter in failure messages and ctest listings.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) {
    s.replace(p, from.size(), to);
  }
  return s;
}

// The model's JSON with `token` (which must occur once) replaced by `raw`:
// for values a json object cannot hold, like 1e400.
std::string with_raw(ModelBuilder& m, const std::string& token, const std::string& raw) {
  std::string text = m.manifest().dump(2);
  const size_t at = text.find(token);
  EXPECT_NE(at, std::string::npos) << token;
  if (at != std::string::npos) text.replace(at, token.size(), raw);
  return text;
}

template <typename T>
void write_values(ModelBuilder& m, const std::string& file, std::vector<T> v) {
  mpsb::testing::write_vector(m.path(file), v);
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

std::vector<Case> catalogue() {
  const std::string kTypes =
      "expected one of conv2d, conv_transpose2d, linear, batch_norm2d, instance_norm2d, "
      "group_norm, "
      "prelu";
  std::vector<Case> c;
  auto add = [&](std::string name, std::function<std::string(ModelBuilder&)> edit,
                 std::string pointer, std::string text, ExitCode code = ExitCode::kBadInput) {
    c.push_back({std::move(name), std::move(edit), std::move(pointer), std::move(text), code});
  };
  auto edit = [](std::function<void(ModelBuilder&)> f) {
    return [f](ModelBuilder& m) {
      f(m);
      return std::string();
    };
  };

  // ---- The file itself and JSON syntax.
  add(
      "ManifestIsADirectory",
      [](ModelBuilder& m) {
        std::filesystem::create_directory(m.path("manifest.json"));
        return std::string("<no write>");
      },
      "", "cannot read the manifest: it is a directory", ExitCode::kIo);
  add(
      "ManifestMissing", [](ModelBuilder&) { return std::string("<no write>"); }, "",
      "cannot open the manifest: No such file or directory", ExitCode::kIo);
  c.push_back({"ManifestUnreadable",
               [](ModelBuilder& m) {
                 write_file(m.path("manifest.json"), m.manifest().dump());
                 ::chmod(m.path("manifest.json").c_str(), 0);
                 return std::string("<no write>");
               },
               "", "cannot open the manifest: Permission denied", ExitCode::kIo, true});
  add(
      "EmptyFile", [](ModelBuilder&) { return std::string(" "); }, "",
      "invalid JSON: line 1, column 2: syntax error while parsing value - unexpected end of "
      "input; expected '[', '{', or a literal");
  add(
      "InvalidJsonGivesLineAndColumn",
      [](ModelBuilder&) {
        return std::string("{\n  \"format\": \"mpsb.manifest/1\",\n  \"layers\": [,]\n}");
      },
      "",
      "invalid JSON: line 3, column 14: syntax error while parsing value - unexpected ','; "
      "expected '[', '{', or a literal");
  add(
      "TruncatedJson",
      [](ModelBuilder& m) {
        const std::string full = m.manifest().dump(2);
        return full.substr(0, full.size() / 2);
      },
      "", "");  // text filled in below: depends on where the cut falls
  c.back().text = "<starts with>invalid JSON: line ";
  add(
      "NumberTooLargeForADouble",
      [](ModelBuilder& m) { return with_raw(m, "\"groups\": 1", "\"groups\": 1e400"); }, "",
      "invalid JSON: line 6, column 17: number 1e400 is out of the range of a double");
  add(
      "AbsurdNesting",
      [](ModelBuilder&) {
        const size_t depth = 100000;
        return "{\"format\": \"mpsb.manifest/1\", \"layers\": [" + std::string(depth, '[') +
               std::string(depth, ']') + "]}";
      },
      "/layers/0", "expected a layer object, found an array of 1 elements");
  add(
      "TopLevelNotAnObject", [](ModelBuilder&) { return std::string("[1, 2]"); }, "",
      "expected a JSON object at the top level, found an array of 2 elements");

  // ---- Document fields.
  add("MissingFormat", edit([](ModelBuilder& m) { m.manifest().erase("format"); }), "/format",
      "missing; expected \"mpsb.manifest/1\"");
  add("WrongFormat", edit([](ModelBuilder& m) { m.manifest()["format"] = "mpsb.manifest/2"; }),
      "/format", "expected \"mpsb.manifest/1\", found string \"mpsb.manifest/2\"");
  add("FormatNotAString", edit([](ModelBuilder& m) { m.manifest()["format"] = 1; }), "/format",
      "expected \"mpsb.manifest/1\", found 1");
  add("NameNotAString", edit([](ModelBuilder& m) { m.manifest()["name"] = {1}; }), "/name",
      "expected a string, found an array of 1 elements");
  add("MetadataNotAnObject", edit([](ModelBuilder& m) { m.manifest()["metadata"] = "MIT"; }),
      "/metadata", "expected an object of string values, found string \"MIT\"");
  add("MetadataValueNotAString", edit([](ModelBuilder& m) {
        m.manifest()["metadata"] = {{"epochs", 3}};
      }),
      "/metadata/epochs", "expected a string value, found 3");
  add("MissingLayers", edit([](ModelBuilder& m) { m.manifest().erase("layers"); }), "/layers",
      "missing; expected an array of layers");
  add("LayersNotAnArray", edit([](ModelBuilder& m) { m.manifest()["layers"] = json::object(); }),
      "/layers", "expected an array of layers, found an object");
  add("EmptyLayerList", edit([](ModelBuilder& m) { m.manifest()["layers"] = json::array(); }),
      "/layers", "expected at least one layer, found an empty array");
  add("LayerNotAnObject", edit([](ModelBuilder& m) { m.manifest()["layers"].push_back("conv3"); }),
      "/layers/2", "expected a layer object, found string \"conv3\"");

  // ---- Layer identity.
  add("MissingLayerName", edit([](ModelBuilder& m) { m.layer(1).erase("name"); }), "/layers/1/name",
      "missing; every layer needs a unique name");
  add("LayerNameNotAString", edit([](ModelBuilder& m) { m.layer(1)["name"] = 2; }),
      "/layers/1/name", "expected a non-empty string without NUL characters, found 2");
  add("EmptyLayerName", edit([](ModelBuilder& m) { m.layer(1)["name"] = ""; }), "/layers/1/name",
      "expected a non-empty string without NUL characters, found string \"\"");
  add("DuplicateLayerName", edit([](ModelBuilder& m) { m.layer(1)["name"] = "conv1"; }),
      "/layers/1/name", "duplicate layer name \"conv1\" (first used at /layers/0)");
  add("MissingLayerType", edit([](ModelBuilder& m) { m.layer(1).erase("type"); }), "/layers/1/type",
      "missing; " + kTypes);
  add("UnknownLayerType", edit([](ModelBuilder& m) { m.layer(1)["type"] = "conv3d"; }),
      "/layers/1/type", "unknown layer type \"conv3d\"; " + kTypes);
  add("LayerTypeNotAString", edit([](ModelBuilder& m) { m.layer(1)["type"] = true; }),
      "/layers/1/type", "unknown layer type true; " + kTypes);

  // ---- Dimensions: missing, wrong type, zero, negative, huge.
  add("MissingInChannels", edit([](ModelBuilder& m) { m.layer(1).erase("in_channels"); }),
      "/layers/1/in_channels", "missing; conv2d needs an integer >= 1");
  add("ChannelsAsString", edit([](ModelBuilder& m) { m.layer(1)["out_channels"] = "16"; }),
      "/layers/1/out_channels", "expected an integer >= 1, found string \"16\"");
  add("ChannelsAsFloat", edit([](ModelBuilder& m) { m.layer(1)["groups"] = 1.5; }),
      "/layers/1/groups", "expected an integer >= 1, found 1.5");
  add("ZeroChannels", edit([](ModelBuilder& m) { m.layer(1)["in_channels"] = 0; }),
      "/layers/1/in_channels", "expected an integer >= 1, found 0");
  add("NegativeChannels", edit([](ModelBuilder& m) { m.layer(1)["out_channels"] = -16; }),
      "/layers/1/out_channels", "expected an integer >= 1, found -16");
  add("ChannelsBeyond32Bits",
      edit([](ModelBuilder& m) { m.layer(0)["out_channels"] = 4294967296ull; }),
      "/layers/0/out_channels", "expected an integer <= 4294967295, found 4294967296");
  add("ZeroKernelElement", edit([](ModelBuilder& m) {
        m.layer(0)["kernel_size"] = {3, 0};
      }),
      "/layers/0/kernel_size/1", "expected an integer >= 1, found 0");
  add("NegativePadding", edit([](ModelBuilder& m) { m.layer(0)["padding"] = -1; }),
      "/layers/0/padding", "expected an integer >= 0, found -1");
  add("PairWithThreeElements", edit([](ModelBuilder& m) {
        m.layer(0)["stride"] = {1, 1, 1};
      }),
      "/layers/0/stride", "expected [h, w] with 2 integers, found an array of 3 elements");
  add("PaddingAsString", edit([](ModelBuilder& m) { m.layer(0)["padding"] = "same"; }),
      "/layers/0/padding",
      "expected an integer or [h, w], found string \"same\" (string forms are not supported: "
      "give the numbers)");
  add("ShapeProductOverflows64Bits", edit([](ModelBuilder& m) {
        m.layer(0)["in_channels"] = 4294967295u;
        m.layer(0)["out_channels"] = 4294967295u;
        m.layer(0)["kernel_size"] = 4294967295u;
      }),
      "/layers/0/weight",
      "tensor shape 4294967295×4294967295×4294967295×4294967295 overflows a 64-bit byte size");
  add("LinearShapeProductOverflows64Bits", edit([](ModelBuilder& m) {
        m.add_linear("fc", 1, 1, {1, 1, 1});
        m.layer(2)["in_features"] = 4294967295u;
        m.layer(2)["input_shape"] = {4294967295u, 4294967295u, 4294967295u};
      }),
      "/layers/2/input_shape",
      "C×H×W = 4294967295×4294967295×4294967295 must equal in_features 4294967295");

  // ---- Channels and groups.
  add("InChannelsNotDivisibleByGroups", edit([](ModelBuilder& m) { m.layer(1)["groups"] = 5; }),
      "/layers/1/groups", "in_channels 32 is not divisible by groups 5");
  add("OutChannelsNotDivisibleByGroups", edit([](ModelBuilder& m) { m.layer(1)["groups"] = 32; }),
      "/layers/1/groups", "out_channels 16 is not divisible by groups 32");
  add("AffineNormWithoutBias", edit([](ModelBuilder& m) {
        auto& bn = m.add_batch_norm("bn", 16);
        bn["affine"] = true;
        bn.erase("bias");
      }),
      "/layers/2/bias", "missing; affine is true, so weight and bias are needed");
  add("OutputPaddingTooLarge",
      edit([](ModelBuilder& m) { m.add_conv_transpose("up", 16, 8, 3)["output_padding"] = 2; }),
      "/layers/2/output_padding",
      "output_padding [2, 2] must be smaller than stride or dilation in each dimension");
  add("LinearInputShapeDoesNotMatch", edit([](ModelBuilder& m) {
        m.add_linear("fc", 12, 2, {3, 2, 3});
      }),
      "/layers/2/input_shape", "C×H×W = 3×2×3 must equal in_features 12");

  // ---- Other fields.
  // SiLU and Hardswish have no MPS neuron.
  add("UnknownActivation", edit([](ModelBuilder& m) { m.layer(0)["activation"] = "silu"; }),
      "/layers/0/activation",
      "expected one of \"none\", \"relu\", \"relu6\", \"leaky_relu\", \"sigmoid\", \"tanh\", "
      "\"elu\", \"hardsigmoid\", \"softplus\", \"gelu\", \"prelu\", found string \"silu\"");
  add("BatchNormWithoutRunningVar",
      edit([](ModelBuilder& m) { m.add_batch_norm("bn", 16).erase("running_var"); }),
      "/layers/2/running_var", "missing; batch_norm2d needs a tensor file");
  add("NonPositiveEps", edit([](ModelBuilder& m) { m.add_batch_norm("bn", 16)["eps"] = 0; }),
      "/layers/2/eps", "expected a number > 0 (as float32), found 0");

  // ---- Tensor entries and dtypes.
  add("MissingWeight", edit([](ModelBuilder& m) { m.layer(0).erase("weight"); }),
      "/layers/0/weight", "missing; conv2d needs a tensor file");
  add("TensorNotAPath", edit([](ModelBuilder& m) { m.layer(0)["weight"] = 12; }),
      "/layers/0/weight", "expected a path string or {\"path\": ..., \"dtype\": ...}, found 12");
  add("EmptyTensorPath", edit([](ModelBuilder& m) { m.layer(0)["weight"] = ""; }),
      "/layers/0/weight", "expected a non-empty file path, found string \"\"");
  add("TensorObjectWithoutPath", edit([](ModelBuilder& m) {
        m.layer(0)["weight"] = {{"dtype", "float32"}};
      }),
      "/layers/0/weight", "missing \"path\" in tensor object");
  add("UnknownDtype", edit([](ModelBuilder& m) {
        m.layer(0)["weight"] = {{"path", "conv1.weight.bin"}, {"dtype", "int8"}};
      }),
      "/layers/0/weight/dtype",
      "expected \"float32\", \"float16\" or \"bfloat16\", found string \"int8\"");

  // ---- Tensor files.
  add("BinMissing", edit([](ModelBuilder& m) { m.layer(1)["bias"] = "nowhere.bin"; }),
      "/layers/1/bias",
      "cannot open \"nowhere.bin\" ({dir}/nowhere.bin): No such file or directory");
  add("BinTooShort",
      edit([](ModelBuilder& m) { std::filesystem::resize_file(m.path("conv1.weight.bin"), 3452); }),
      "/layers/0/weight",
      "\"conv1.weight.bin\" ({dir}/conv1.weight.bin): expected 3456 bytes (32×3×3×3 float32), "
      "found 3452");
  add("BinTooLong",
      edit([](ModelBuilder& m) { std::filesystem::resize_file(m.path("conv2.bias.bin"), 68); }),
      "/layers/1/bias",
      "\"conv2.bias.bin\" ({dir}/conv2.bias.bin): expected 64 bytes (16 float32), found 68");
  add("BinIsADirectory", edit([](ModelBuilder& m) {
        std::filesystem::create_directory(m.path("folder.bin"));
        m.layer(1)["weight"] = "folder.bin";
      }),
      "/layers/1/weight",
      "\"folder.bin\" ({dir}/folder.bin) is not a regular file (it is a directory)");
  c.push_back(
      {"BinUnreadable", edit([](ModelBuilder& m) { ::chmod(m.path("conv2.bias.bin").c_str(), 0); }),
       "/layers/1/bias", "cannot open \"conv2.bias.bin\" ({dir}/conv2.bias.bin): Permission denied",
       ExitCode::kBadInput, true});
  add("NaNAndInfInWeights", edit([](ModelBuilder& m) {
        std::vector<float> w(32 * 3 * 3 * 3, 0.5f);
        w[17] = kNaN;
        w[18] = -kNaN;
        w[200] = kInf;
        write_values(m, "conv1.weight.bin", w);
      }),
      "/layers/0/weight",
      "\"conv1.weight.bin\" ({dir}/conv1.weight.bin): 3 non-finite values (2 NaN, 1 infinite; "
      "first at element 17); --allow-non-finite accepts them");
  add("InfInBias", edit([](ModelBuilder& m) {
        std::vector<float> b(16, 0.0f);
        b[15] = -kInf;
        write_values(m, "conv2.bias.bin", b);
      }),
      "/layers/1/bias",
      "\"conv2.bias.bin\" ({dir}/conv2.bias.bin): 1 non-finite values (0 NaN, 1 infinite; first "
      "at element 15); --allow-non-finite accepts them");
  add("NaNInFloat16Weights", edit([](ModelBuilder& m) {
        std::vector<uint16_t> w(16 * 32, 0x3c00);
        w[3] = 0x7e00;  // NaN
        w[4] = 0xfc00;  // -inf
        write_values(m, "half.bin", w);
        m.layer(1)["weight"] = {{"path", "half.bin"}, {"dtype", "float16"}};
      }),
      "/layers/1/weight",
      "\"half.bin\" ({dir}/half.bin): 2 non-finite values (1 NaN, 1 infinite; first at element "
      "3); --allow-non-finite accepts them");
  add("NaNInBFloat16Weights", edit([](ModelBuilder& m) {
        std::vector<uint16_t> w(16 * 32, 0x3f80);
        w[511] = 0x7fc1;  // NaN
        write_values(m, "brain.bin", w);
        m.layer(1)["weight"] = {{"path", "brain.bin"}, {"dtype", "bfloat16"}};
      }),
      "/layers/1/weight",
      "\"brain.bin\" ({dir}/brain.bin): 1 non-finite values (1 NaN, 0 infinite; first at element "
      "511); --allow-non-finite accepts them");
  add("AbsolutePath",
      edit([](ModelBuilder& m) { m.layer(1)["bias"] = m.path("conv2.bias.bin").string(); }),
      "/layers/1/bias",
      "\"{dir}/conv2.bias.bin\" is an absolute path; tensor files must be inside the manifest's "
      "folder (--allow-outside accepts it)");
  add("DotDotEscapesTheFolder",
      edit([](ModelBuilder& m) { m.layer(1)["bias"] = "../conv2.bias.bin"; }), "/layers/1/bias",
      "\"../conv2.bias.bin\" climbs out of the manifest's folder; tensor files must be inside the "
      "manifest's folder (--allow-outside accepts it)");
  add("DotDotInTheMiddleEscapes",
      edit([](ModelBuilder& m) { m.layer(1)["bias"] = "sub/../../x/conv2.bias.bin"; }),
      "/layers/1/bias",
      "\"sub/../../x/conv2.bias.bin\" climbs out of the manifest's folder; tensor files must be "
      "inside the manifest's folder (--allow-outside accepts it)");
  return c;
}

class Catalogue : public ::testing::TestWithParam<Case> {};

TEST_P(Catalogue, Rejects) {
  const Case& k = GetParam();
  if (k.needs_non_root && ::geteuid() == 0) {
    GTEST_SKIP() << "running as root: chmod 000 does not stop root from reading";
  }
  ModelBuilder m;
  m.add_conv("conv1", 3, 32, 3, 3);
  m.add_conv("conv2", 32, 16, 1, 1);
  const std::string text = k.edit(m);
  if (text.empty()) {
    m.write_manifest();
  } else if (text != "<no write>") {
    write_file(m.path("manifest.json"), text);
  }
  const auto before = list_dir(m.dir());
  const std::string dir = m.dir().string();
  const std::string want = replace_all(k.text, "{dir}", dir);

  const auto report = mpsbc::compile(m.options("new.mpsb"));
  EXPECT_EQ(report.exit_code, k.code);
  const auto errors = errors_of(report);
  ASSERT_FALSE(errors.empty());
  // The first error is the one the case is about; print all on mismatch.
  std::string all;
  for (const auto& e : errors) all += "  [" + e.pointer + "] " + e.text + "\n";
  EXPECT_EQ(errors[0].pointer, k.pointer) << all;
  if (want.rfind("<starts with>", 0) == 0) {
    EXPECT_EQ(errors[0].text.rfind(want.substr(13), 0), 0u) << all;
  } else {
    EXPECT_EQ(errors[0].text, want) << all;
  }
  EXPECT_EQ(errors[0].file, m.options().manifest_path);
  // Nothing written: no bundle, no temporary file.
  EXPECT_FALSE(std::filesystem::exists(m.path("new.mpsb")));
  EXPECT_EQ(list_dir(m.dir()), before);
  // check_manifest agrees.
  const auto checked = mpsbc::check_manifest(m.options("new.mpsb"));
  EXPECT_EQ(checked.exit_code, k.code);
  ::chmod(m.path("manifest.json").c_str(), 0644);  // so TempDir can clean up
}

INSTANTIATE_TEST_SUITE_P(BadManifests, Catalogue, ::testing::ValuesIn(catalogue()),
                         [](const ::testing::TestParamInfo<Case>& param) {
                           return param.param.name;
                         });

// A softplus parameter that is not a number is one error, not also a range
// error on the value it never had; a number out of range names itself.
TEST(CatalogueSoftplus, EachBadParameterIsOneError) {
  for (const auto& [field, value, want] :
       {std::tuple<std::string, json, std::string>{"beta", "x",
                                                   "expected a number, found string \"x\""},
        {"threshold", "x", "expected a number, found string \"x\""},
        {"beta", 0, "expected a number > 0, found 0"},
        {"threshold", 10,
         "expected a number >= 15: MPS's SoftPlus has no threshold, and below 15 PyTorch's "
         "linear branch differs from it by more than float32 resolution; found 10"}}) {
    SCOPED_TRACE(field + " " + value.dump());
    ModelBuilder m;
    m.add_conv("conv1", 3, 32, 3, 3);
    m.layer(0)["activation"] = "softplus";
    m.layer(0)[field] = value;
    m.write_manifest();
    const auto errors = errors_of(mpsbc::check_manifest(m.options("new.mpsb")));
    ASSERT_EQ(errors.size(), 1u);
    EXPECT_EQ(errors[0].pointer, "/layers/0/" + field);
    EXPECT_EQ(errors[0].text, want);
  }
}

TEST(CatalogueSize, HasAtLeastFortyCases) { EXPECT_GE(catalogue().size(), 40u); }

// The escape hatches: what the catalogue refuses by default is accepted when
// asked for, and a ".." that stays inside the folder is fine without asking.
TEST(CatalogueOptions, AllowOutsideAcceptsAbsoluteAndParentPaths) {
  ModelBuilder m;
  m.add_conv("conv1", 3, 8, 3, 3);
  std::filesystem::create_directory(m.path("sub"));
  std::filesystem::rename(m.path("conv1.bias.bin"), m.path("sub/conv1.bias.bin"));
  m.layer(0)["bias"] = "../" + m.dir().filename().string() + "/sub/conv1.bias.bin";
  m.layer(0)["weight"] = m.path("conv1.weight.bin").string();
  EXPECT_FALSE(m.compile().ok());
  auto options = m.options();
  options.allow_outside = true;
  const auto report = mpsbc::compile(options);
  EXPECT_TRUE(report.ok()) << (errors_of(report).empty() ? "" : errors_of(report)[0].message);
}

TEST(CatalogueOptions, DotDotInsideTheFolderNeedsNoFlag) {
  ModelBuilder m;
  m.add_conv("conv1", 3, 8, 3, 3);
  std::filesystem::create_directory(m.path("sub"));
  m.layer(0)["weight"] = "sub/../conv1.weight.bin";
  const auto report = m.compile();
  EXPECT_TRUE(report.ok()) << (errors_of(report).empty() ? "" : errors_of(report)[0].message);
}

TEST(CatalogueOptions, AllowNonFiniteAcceptsNaN) {
  ModelBuilder m;
  m.add_conv("conv1", 3, 8, 1, 1);
  write_values(m, "conv1.bias.bin", std::vector<float>{kNaN, kInf, -kInf, 0, 0, 0, 0, 0});
  EXPECT_FALSE(m.compile().ok());
  auto options = m.options();
  options.allow_non_finite = true;
  EXPECT_TRUE(mpsbc::compile(options).ok());
}

#ifdef MPSBC_BINARY
int run(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(CatalogueOptions, CommandLineFlags) {
  ModelBuilder m;
  m.add_conv("conv1", 3, 8, 1, 1);
  write_values(m, "conv1.bias.bin", std::vector<float>{kNaN, 0, 0, 0, 0, 0, 0, 0});
  m.layer(0)["weight"] = m.path("conv1.weight.bin").string();
  const std::string manifest = m.write_manifest().string();
  const std::string out = m.path("out.mpsb").string();
  const std::string base =
      std::string(MPSBC_BINARY) + " compile -q '" + manifest + "' -o '" + out + "' 2>/dev/null";
  EXPECT_EQ(run(base), 3);
  EXPECT_EQ(run(base + " --allow-outside"), 3);
  EXPECT_EQ(run(base + " --allow-outside --allow-non-finite"), 0);
  EXPECT_TRUE(std::filesystem::exists(out));
  EXPECT_EQ(run(std::string(MPSBC_BINARY) + " check -q '" + manifest +
                "' --allow-outside --allow-non-finite"),
            0);
}
#endif

}  // namespace
