// mpsb-dump on the embedded example (examples/tiny_cnn), compiled here with
// the project's own compiler so no opaque bundle is checked in.

#include "dump.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsbc/compile.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb::dump {
namespace {

namespace fs = std::filesystem;
using mpsb::testing::read_file;
using mpsb::testing::TempDir;
using mpsb::testing::write_file;
using nlohmann::json;

const fs::path kManifest = MPSB_EXAMPLE_MANIFEST;

struct Outcome {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs mpsb-dump exactly as main() would, with `args` after the program name.
Outcome dump(std::vector<std::string> args) {
  args.insert(args.begin(), "mpsb-dump");
  std::ostringstream out, err;
  Outcome r;
  r.code = run_command_line(args, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

// Compiles the manifest at `manifest` into `bundle` with default options.
mpsbc::CompileReport compile_to(const fs::path& manifest, const std::string& bundle,
                                bool allow_non_finite = false) {
  mpsbc::CompileOptions options;
  options.manifest_path = manifest.string();
  options.output_path = bundle;
  options.allow_non_finite = allow_non_finite;
  return mpsbc::compile(options);
}

std::string first_message(const mpsbc::CompileReport& report) {
  return report.diagnostics.empty() ? "" : report.diagnostics[0].message;
}

// A manifest of one 4->4 1x1 conv named `name` whose weight is `weight` (a
// path, or {path, dtype}).
json one_conv_manifest(const std::string& name, const json& weight) {
  return {{"format", "mpsb.manifest/1"},
          {"layers",
           {{{"name", name},
             {"type", "conv2d"},
             {"in_channels", 4},
             {"out_channels", 4},
             {"kernel_size", 1},
             {"weight", weight}}}}};
}

// [h, w] from a manifest pair, which is an int or [h, w] as in PyTorch.
std::pair<uint64_t, uint64_t> pair_of(const json& v) {
  if (v.is_array()) return {v.at(0).get<uint64_t>(), v.at(1).get<uint64_t>()};
  return {v.get<uint64_t>(), v.get<uint64_t>()};
}

class DumpTest : public ::testing::Test {
 protected:
  // One compile for the whole suite: every test reads the same bundle.
  static void SetUpTestSuite() {
    dir_ = std::make_unique<TempDir>();
    bundle_ = (dir_->path() / "tiny_cnn.mpsb").string();
    const mpsbc::CompileReport report = compile_to(kManifest, bundle_);
    std::string diagnostics;
    for (const auto& d : report.diagnostics) diagnostics += d.message + "\n";
    ASSERT_TRUE(report.ok()) << diagnostics;
    std::ifstream in(kManifest);
    manifest_ = json::parse(in);
  }
  static void TearDownTestSuite() { dir_.reset(); }

  // Every (layer, role, source .bin) the manifest names.
  struct SourceTensor {
    std::string layer, role;
    fs::path path;
  };
  static std::vector<SourceTensor> source_tensors() {
    std::vector<SourceTensor> v;
    for (const json& l : manifest_.at("layers")) {
      for (const char* role : {"weight", "bias", "running_mean", "running_var"}) {
        if (!l.contains(role)) continue;
        const json& t = l.at(role);
        const std::string file =
            t.is_string() ? t.get<std::string>() : t.at("path").get<std::string>();
        v.push_back({l.at("name").get<std::string>(), role, kManifest.parent_path() / file});
      }
    }
    return v;
  }

  static std::unique_ptr<TempDir> dir_;
  static std::string bundle_;
  static json manifest_;
};

std::unique_ptr<TempDir> DumpTest::dir_;
std::string DumpTest::bundle_;
json DumpTest::manifest_;

TEST_F(DumpTest, ExtractGivesBackEveryTensorByteIdentical) {
  const auto tensors = source_tensors();
  ASSERT_EQ(tensors.size(), 11u);  // six weights, five biases (pw has none)
  TempDir out;
  for (const auto& t : tensors) {
    SCOPED_TRACE(t.layer + "." + t.role);
    const fs::path file = out / (t.layer + "." + t.role + ".bin");
    const Outcome r = dump({bundle_, "--extract", t.layer + "." + t.role, "-o", file.string()});
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(read_file(file), read_file(t.path));
  }
  // Only the extracted files: no temporary file is left behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(out.path()), fs::directory_iterator()),
            static_cast<std::ptrdiff_t>(tensors.size()));
}

TEST_F(DumpTest, ExtractToStdoutWritesTheSourceBytes) {
  const Outcome r = dump({bundle_, "--extract", "grouped.weight", "-o", "-"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const auto want = read_file(kManifest.parent_path() / "grouped.weight.bin");
  EXPECT_EQ(std::vector<uint8_t>(r.out.begin(), r.out.end()), want);
}

TEST_F(DumpTest, ExtractReplacesAnExistingFile) {
  TempDir out;
  const fs::path file = out / "w.bin";
  write_file(file, std::string("old contents"));
  const Outcome r = dump({bundle_, "--extract", "head.weight", "-o", file.string()});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(read_file(file), read_file(kManifest.parent_path() / "head.weight.bin"));
}

TEST_F(DumpTest, ExtractMissingTensorFailsAndWritesNothing) {
  TempDir out;
  const fs::path file = out / "bias.bin";
  const Outcome r = dump({bundle_, "--extract", "pw.bias", "-o", file.string()});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find("has no bias"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(file));
}

TEST_F(DumpTest, ExtractRejectsUnknownLayerAndRole) {
  TempDir out;
  const Outcome layer = dump({bundle_, "--extract", "nope.weight", "-o", (out / "x").string()});
  EXPECT_EQ(layer.code, kExitFailure);
  EXPECT_NE(layer.err.find("no layer named 'nope'"), std::string::npos) << layer.err;
  const Outcome role = dump({bundle_, "--extract", "stem.gamma", "-o", (out / "x").string()});
  EXPECT_EQ(role.code, kExitUsage);
  EXPECT_NE(role.err.find("unknown tensor role 'gamma'"), std::string::npos) << role.err;
  const Outcome form = dump({bundle_, "--extract", "stem", "-o", (out / "x").string()});
  EXPECT_EQ(form.code, kExitUsage);
  EXPECT_FALSE(fs::exists(out / "x"));
}

TEST_F(DumpTest, JsonListsEveryLayerWithStoredAndPyTorchShapes) {
  const Outcome r = dump({bundle_, "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("name"), manifest_.at("name"));
  EXPECT_EQ(j.at("metadata"), manifest_.at("metadata"));
  const json& want_layers = manifest_.at("layers");
  const json& layers = j.at("layers");
  ASSERT_EQ(layers.size(), want_layers.size());
  EXPECT_EQ(j.at("layer_count"), want_layers.size());
  EXPECT_EQ(j.at("tensor_count"), source_tensors().size());
  uint64_t total = 0;
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& want = want_layers[i];
    const json& l = layers[i];
    SCOPED_TRACE(want.at("name").get<std::string>());
    // Listed in network (manifest) order, not the bundle's name order.
    EXPECT_EQ(l.at("index"), i);
    EXPECT_EQ(l.at("name"), want.at("name"));
    EXPECT_EQ(l.at("kind"), "conv2d");
    EXPECT_EQ(l.at("activation"), want.value("activation", "none"));
    const uint64_t o = want.at("out_channels"), in = want.at("in_channels");
    const uint64_t g = want.value("groups", 1);
    const auto [kh, kw] = pair_of(want.at("kernel_size"));
    const json& p = l.at("params");
    EXPECT_EQ(p.at("in_channels"), in);
    EXPECT_EQ(p.at("out_channels"), o);
    EXPECT_EQ(p.at("kernel_size"), json({kh, kw}));
    const auto [sh, sw] = pair_of(want.at("stride"));
    EXPECT_EQ(p.at("stride"), json({sh, sw}));
    const auto [ph, pw] = pair_of(want.at("padding"));
    EXPECT_EQ(p.at("padding"), json({ph, pw}));
    const auto [dh, dw] = pair_of(want.at("dilation"));
    EXPECT_EQ(p.at("dilation"), json({dh, dw}));
    EXPECT_EQ(p.at("groups"), g);

    const json& tensors = l.at("tensors");
    ASSERT_EQ(tensors.size(), want.contains("bias") ? 2u : 1u);
    const json& w = tensors.at(0);
    EXPECT_EQ(w.at("role"), "weight");
    EXPECT_EQ(w.at("layout"), "ohwi");
    EXPECT_EQ(w.at("shape"), json({o, kh, kw, in / g}));
    EXPECT_EQ(w.at("source_layout"), "oihw");
    EXPECT_EQ(w.at("source_shape"), json({o, in / g, kh, kw}));
    EXPECT_EQ(w.at("transform"), "conv_oihw_to_ohwi");
    EXPECT_EQ(w.at("dtype"), "float32");
    EXPECT_EQ(w.at("source_dtype"), "float32");
    EXPECT_EQ(w.at("size"), o * kh * kw * (in / g) * 4);
    if (want.contains("bias")) {
      const json& b = tensors.at(1);
      EXPECT_EQ(b.at("role"), "bias");
      EXPECT_EQ(b.at("layout"), "vector");
      EXPECT_EQ(b.at("shape"), json({o}));
      EXPECT_EQ(b.at("source_shape"), json({o}));
    }
    for (const json& t : tensors) {
      EXPECT_EQ(t.at("offset").get<uint64_t>() % j.at("tensor_alignment").get<uint64_t>(), 0u);
      EXPECT_EQ(t.at("file_offset").get<uint64_t>(),
                j.at("segment_offset").get<uint64_t>() + t.at("offset").get<uint64_t>());
      const std::string checksum = t.at("checksum");
      EXPECT_EQ(checksum.size(), 18u);  // "0x" + 16 hex digits
      EXPECT_EQ(checksum.rfind("0x", 0), 0u);
      total += t.at("size").get<uint64_t>();
    }
  }
  EXPECT_EQ(j.at("tensor_bytes"), total);
  EXPECT_EQ(j.at("file_size"), fs::file_size(bundle_));
}

TEST_F(DumpTest, SummaryHasHeaderAndOneTableRowPerLayer) {
  const Outcome r = dump({bundle_});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (const char* field : {"name", "format version", "producer", "metadata", "layers", "tensors",
                            "tensor bytes", "alignment", "segment"}) {
    EXPECT_NE(r.out.find(std::string("\n") + field + " "), std::string::npos) << field;
  }
  EXPECT_NE(r.out.find("license = MIT"), std::string::npos);
  EXPECT_NE(r.out.find("tiny_cnn"), std::string::npos);

  std::vector<std::string> lines;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  // The row of each layer holds its index, name, kind, channels, params,
  // weight shape, dtype and bytes, in that order.
  const std::vector<std::vector<std::string>> rows = {
      {"0", "stem", "conv2d", "3->16", "3x3 s2 p1 d1 g1", "relu", "16x3x3x3", "float32"},
      {"1", "dw", "conv2d", "16->16", "3x3 s1 p1 d1 g16", "relu", "16x3x3x1", "float32"},
      {"2", "pw", "conv2d", "16->32", "1x1 s1 p0 d1 g1", "relu", "32x1x1x16", "float32"},
      {"3", "grouped", "conv2d", "32->32", "3x3 s1 p1 d1 g4", "relu", "32x3x3x8", "float32"},
      {"4", "dilated", "conv2d", "32->32", "3x3 s1 p2 d2 g1", "relu", "32x3x3x32", "float32"},
      {"5", "head", "conv2d", "32->8", "3x5 s1 p1,2 d1 g1", "none", "8x3x5x32", "float32"},
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row[1]);
    const auto it = std::find_if(lines.begin(), lines.end(), [&](const std::string& line) {
      size_t at = 0;
      for (const auto& cell : row) {
        at = line.find(cell, at);
        if (at == std::string::npos) return false;
        at += cell.size();
      }
      return true;
    });
    EXPECT_NE(it, lines.end()) << r.out;
  }
  // Columns are aligned: every table row starts the name at the same column.
  const auto header = std::find_if(lines.begin(), lines.end(), [](const std::string& l) {
    return l.find("name") != std::string::npos && l.find("bytes") != std::string::npos;
  });
  ASSERT_NE(header, lines.end());
  const size_t name_col = header->find("name");
  for (auto it = header + 1; it != lines.end() && !it->empty(); ++it) {
    EXPECT_NE(it->at(name_col), ' ') << *it;
    EXPECT_EQ(it->at(name_col - 1), ' ') << *it;
  }
}

TEST_F(DumpTest, LayerShowsEveryFieldOfThatLayer) {
  const Outcome r = dump({bundle_, "--layer", "head"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (const char* s : {"head", "conv2d", "in_channels", "out_channels", "kernel_size", "[3, 5]",
                        "padding", "[1, 2]", "dilation", "groups", "activation", "head.weight",
                        "head.bias", "float32 ohwi 8x3x5x32", "float32 oihw 8x32x3x5",
                        "conv_oihw_to_ohwi", "checksum", "offset"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
}

TEST_F(DumpTest, LayerJsonIsThatLayerOnly) {
  const Outcome r = dump({bundle_, "--layer", "dw", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json j = json::parse(r.out);
  EXPECT_EQ(j.at("name"), "dw");
  EXPECT_EQ(j.at("params").at("groups"), 16);
  EXPECT_EQ(j.at("tensors").at(0).at("shape"), json({16, 3, 3, 1}));
}

TEST_F(DumpTest, LayerStatsDescribeTheSourceValues) {
  const Outcome r = dump({bundle_, "--layer", "dilated", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const auto bytes = read_file(kManifest.parent_path() / "dilated.weight.bin");
  std::vector<float> v(bytes.size() / 4);
  std::memcpy(v.data(), bytes.data(), bytes.size());
  const json stats = json::parse(r.out).at("tensors").at(0).at("stats");
  EXPECT_EQ(stats.at("min"), double(*std::min_element(v.begin(), v.end())));
  EXPECT_EQ(stats.at("max"), double(*std::max_element(v.begin(), v.end())));
  double sum = 0;
  for (float f : v) sum += f;
  EXPECT_NEAR(stats.at("mean").get<double>(), sum / double(v.size()), 1e-9);
  // The whole-bundle listing stays a metadata-only read.
  const Outcome all = dump({bundle_, "--json"});
  EXPECT_FALSE(json::parse(all.out).at("layers").at(0).at("tensors").at(0).contains("stats"));
}

TEST_F(DumpTest, LayerWithUnknownNameFails) {
  const Outcome r = dump({bundle_, "--layer", "conv99"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_TRUE(r.out.empty());
  EXPECT_NE(r.err.find("no layer named 'conv99'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(bundle_), std::string::npos) << r.err;
}

TEST_F(DumpTest, VerifyPassesOnGoodBundle) {
  const Outcome r = dump({bundle_, "--verify"});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out.rfind("OK: ", 0), 0u) << r.out;
}

TEST_F(DumpTest, VerifyFailsOnFlippedDataByte) {
  auto bytes = read_file(bundle_);
  uint64_t at = 0;
  {
    Result<Bundle> b = Bundle::open(bundle_);
    ASSERT_TRUE(b.ok()) << b.message();
    const Tensor t = b->find("dilated")->find(TensorRole::kWeight).value();
    at = b->segment_offset() + t.offset() + t.size() / 2;
  }
  bytes[at] ^= 0x01;  // the smallest change: one bit of one weight
  TempDir dir;
  const fs::path bad = dir / "bad.mpsb";
  write_file(bad, bytes.data(), bytes.size());

  // The structure is intact, so the summary still works ...
  EXPECT_EQ(dump({bad.string()}).code, kExitOk);
  // ... but the deep check names the problem ...
  const Outcome r = dump({bad.string(), "--verify"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_EQ(r.out.rfind("FAILED: ", 0), 0u) << r.out;
  EXPECT_NE(r.err.find("checksum"), std::string::npos) << r.err;
  // ... and extract refuses to hand the corrupt tensor out as the original.
  const Outcome x =
      dump({bad.string(), "--extract", "dilated.weight", "-o", (dir / "w.bin").string()});
  EXPECT_EQ(x.code, kExitFailure);
  EXPECT_FALSE(fs::exists(dir / "w.bin"));
  // The other tensors are still intact and can be had.
  const Outcome ok =
      dump({bad.string(), "--extract", "stem.weight", "-o", (dir / "s.bin").string()});
  EXPECT_EQ(ok.code, kExitOk) << ok.err;
}

TEST(DumpNames, ControlCharactersInNamesAreEscaped) {
  // A layer name is any non-empty string without NUL; a crafted one must not
  // be able to drive the terminal that shows it.
  TempDir dir;
  const std::string evil = "evil\x1b[2J\n\xe2\x80\xae";
  const std::vector<float> weight = mpsb::testing::random_floats(4 * 4, 7);
  mpsb::testing::write_vector(dir / "w.bin", weight);
  json manifest = one_conv_manifest(evil, "w.bin");
  manifest["name"] = "names\x07";
  write_file(dir / "manifest.json", manifest.dump());
  const std::string bundle = (dir / "names.mpsb").string();
  const mpsbc::CompileReport report = compile_to(dir / "manifest.json", bundle);
  ASSERT_TRUE(report.ok()) << first_message(report);

  for (const auto& args :
       std::vector<std::vector<std::string>>{{bundle}, {bundle, "--layer", evil}}) {
    const Outcome r = dump(args);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find('\x07'), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\xe2\x80\xae"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("evil\\x1b[2J\\n\\u{202e}"), std::string::npos) << r.out;
  }
  // JSON keeps the exact name, escaped by the JSON rules.
  const Outcome j = dump({bundle, "--json"});
  ASSERT_EQ(j.code, kExitOk) << j.err;
  EXPECT_EQ(j.out.find('\x1b'), std::string::npos);
  EXPECT_EQ(j.out.find("\xe2\x80\xae"), std::string::npos);
  EXPECT_EQ(json::parse(j.out).at("layers").at(0).at("name"), evil);
}

// A one-layer bundle whose 4->4 1x1 conv weight is the given 16 raw
// elements of `dtype`; returns its path.
std::string compile_one_layer(const TempDir& dir, const std::string& dtype,
                              const std::vector<uint16_t>& weight) {
  mpsb::testing::write_vector(dir / "w.bin", weight);
  write_file(dir / "manifest.json",
             one_conv_manifest("conv", {{"path", "w.bin"}, {"dtype", dtype}}).dump());
  const std::string bundle = (dir / "one.mpsb").string();
  // Some tests store NaN and inf on purpose.
  const mpsbc::CompileReport report =
      compile_to(dir / "manifest.json", bundle, /*allow_non_finite=*/true);
  EXPECT_TRUE(report.ok()) << first_message(report);
  return bundle;
}

TEST(DumpHalfPrecision, Float16WeightsRoundTripAndHaveStats) {
  TempDir dir;
  // 1.0, -2.0, the smallest subnormal, the largest finite half, then zeros.
  std::vector<uint16_t> w(16, 0);
  w[0] = 0x3c00;
  w[1] = 0xc000;
  w[2] = 0x0001;
  w[3] = 0x7bff;
  const std::string bundle = compile_one_layer(dir, "float16", w);
  const Outcome x = dump({bundle, "--extract", "conv.weight", "-o", (dir / "out.bin").string()});
  ASSERT_EQ(x.code, kExitOk) << x.err;
  EXPECT_EQ(read_file(dir / "out.bin"), read_file(dir / "w.bin"));

  const Outcome r = dump({bundle, "--layer", "conv", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const json stats = json::parse(r.out).at("tensors").at(0).at("stats");
  EXPECT_EQ(stats.at("min"), -2.0);
  EXPECT_EQ(stats.at("max"), 65504.0);
  EXPECT_EQ(stats.at("zeros"), 12);
  EXPECT_EQ(stats.at("nan"), 0);
  EXPECT_EQ(stats.at("inf"), 0);
  EXPECT_DOUBLE_EQ(stats.at("mean").get<double>(), (1.0 - 2.0 + 0x1p-24 + 65504.0) / 16);
}

TEST(DumpHalfPrecision, BFloat16WeightsRoundTripAndCountNonFinite) {
  TempDir dir;
  std::vector<uint16_t> w(16, 0x3f80);  // 1.0
  w[5] = 0xbfc0;                        // -1.5
  w[6] = 0x7fc0;                        // NaN
  w[7] = 0xff80;                        // -inf
  const std::string bundle = compile_one_layer(dir, "bfloat16", w);
  const Outcome x = dump({bundle, "--extract", "conv.weight", "-o", "-"});
  ASSERT_EQ(x.code, kExitOk) << x.err;
  const auto want = read_file(dir / "w.bin");
  EXPECT_EQ(std::vector<uint8_t>(x.out.begin(), x.out.end()), want);

  const Outcome r = dump({bundle, "--layer", "conv"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("min -1.5, max 1,"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("NaN 1, inf 1"), std::string::npos) << r.out;
}

TEST(DumpCommandLine, MissingFileIsAnErrorNamingIt) {
  TempDir dir;
  const std::string path = (dir / "missing.mpsb").string();
  const Outcome r = dump({path});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
}

TEST(DumpCommandLine, NotABundleIsRefused) {
  TempDir dir;
  const fs::path path = dir / "model.tflite";
  std::vector<uint8_t> junk(4096, 0);
  std::memcpy(junk.data() + 8, "TFL3", 4);
  write_file(path, junk.data(), junk.size());
  const Outcome r = dump({path.string(), "--verify"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find(path.string()), std::string::npos) << r.err;
}

TEST(DumpCommandLine, UsageErrorsExitTwo) {
  EXPECT_EQ(dump({}).code, kExitUsage);
  EXPECT_EQ(dump({"x.mpsb", "--extract", "a.weight"}).code, kExitUsage);  // no -o
  EXPECT_EQ(dump({"x.mpsb", "-o", "w.bin"}).code, kExitUsage);            // no --extract
  EXPECT_EQ(dump({"x.mpsb", "--extract", "a.weight", "-o", "w", "--json"}).code, kExitUsage);
  EXPECT_EQ(dump({"x.mpsb", "--verify", "--layer", "a"}).code, kExitUsage);
  EXPECT_EQ(dump({"x.mpsb", "--frobnicate"}).code, kExitUsage);
}

TEST(DumpCommandLine, HelpExitsZeroAndListsFlags) {
  const Outcome r = dump({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* flag : {"--json", "--layer", "--extract", "--output", "--verify"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

// Options from a command line that must parse.
Options parse(std::vector<std::string> args) {
  args.insert(args.begin(), "mpsb-dump");
  std::ostringstream out, err;
  int code = -1;
  auto o = parse_args(args, out, err, &code);
  EXPECT_EQ(code, kExitOk) << err.str();
  return o.value_or(Options{});
}

TEST(DumpCommandLine, ParseArgsSelectsTheMode) {
  EXPECT_EQ(parse({"m.mpsb"}).mode, Mode::kSummary);
  EXPECT_TRUE(parse({"m.mpsb", "--json"}).json);
  EXPECT_EQ(parse({"m.mpsb", "--layer", "conv1"}).mode, Mode::kLayer);
  EXPECT_EQ(parse({"m.mpsb", "--verify"}).mode, Mode::kVerify);
  const Options x = parse({"m.mpsb", "--extract", "features.0.weight", "-o", "w.bin"});
  EXPECT_EQ(x.mode, Mode::kExtract);
  EXPECT_EQ(x.tensor, "features.0.weight");
  EXPECT_EQ(x.output, "w.bin");
  EXPECT_EQ(x.bundle_path, "m.mpsb");
}

TEST(Printable, EscapesWhatCouldTamperWithATerminal) {
  EXPECT_EQ(printable("conv1"), "conv1");
  EXPECT_EQ(printable("caf\xc3\xa9"), "caf\xc3\xa9");  // UTF-8 passes through
  EXPECT_EQ(printable("a\nb\tc"), "a\\nb\\tc");
  EXPECT_EQ(printable("\x1b[31mred"), "\\x1b[31mred");
  EXPECT_EQ(printable(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(printable("back\\slash"), "back\\\\slash");
  EXPECT_EQ(printable("\xff\xfe"), "\\xff\\xfe");  // not UTF-8
  EXPECT_EQ(printable("\xc0\xaf"), "\\xc0\\xaf");  // overlong '/'
  EXPECT_EQ(printable("\xe2\x80\xae"
                      "abc"),
            "\\u{202e}abc");                      // right-to-left override
  EXPECT_EQ(printable("\xc2\x9b"), "\\u{009b}");  // C1 CSI
}

TEST(Printable, DisplayWidthCountsCodePoints) {
  EXPECT_EQ(display_width("conv1"), 5u);
  EXPECT_EQ(display_width("caf\xc3\xa9"), 4u);
}

// ---------------------------------------------------------------------------
// --stats, --diff, --explain, --json schema, colour, widths

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The histogram cell of a --stats row: the text between the two bars.
std::string histogram_of(const std::string& line) {
  const size_t a = line.find('|'), b = line.rfind('|');
  if (a == std::string::npos || b == a) return "";
  return line.substr(a + 1, b - a - 1);
}

TEST_F(DumpTest, StatsListsEveryTensorWithAHistogram) {
  const Outcome r = dump({bundle_, "--stats"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 1 + source_tensors().size()) << r.out;
  for (const char* col : {"tensor", "dtype", "elements", "min", "max", "mean", "std", "zeros",
                          "NaN", "inf", "histogram"}) {
    EXPECT_NE(lines[0].find(col), std::string::npos) << col;
  }
  // Network order, one row per tensor, 16 bins of ▁..█ or blank.
  const auto tensors = source_tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const std::string& line = lines[i + 1];
    SCOPED_TRACE(line);
    EXPECT_EQ(line.find("  " + tensors[i].layer + "." + tensors[i].role + " "), 0u);
    const std::string h = histogram_of(line);
    EXPECT_EQ(display_width(h), 16u);
    EXPECT_NE(h.find("█"), std::string::npos);  // the fullest bin
  }
  // stem.weight: 432 elements, none zero, none NaN or inf.
  EXPECT_NE(lines[1].find(" 432 "), std::string::npos);
}

TEST_F(DumpTest, StatsOfOneLayerAndAsJson) {
  const Outcome r = dump({bundle_, "--stats", "--layer", "pw"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(lines_of(r.out).size(), 2u) << r.out;  // pw has a weight only
  EXPECT_NE(r.out.find("pw.weight"), std::string::npos);
  EXPECT_EQ(dump({bundle_, "--stats", "--layer", "nope"}).code, kExitFailure);

  const Outcome j = dump({bundle_, "--stats", "--json"});
  ASSERT_EQ(j.code, kExitOk) << j.err;
  const json doc = json::parse(j.out);
  EXPECT_EQ(doc.at("document"), "stats");
  for (const json& l : doc.at("layers")) {
    for (const json& t : l.at("tensors")) {
      const json& st = t.at("stats");
      EXPECT_EQ(st.at("of"), "values");
      uint64_t sum = 0;
      for (const json& n : st.at("histogram")) sum += n.get<uint64_t>();
      EXPECT_EQ(sum, st.at("elements").get<uint64_t>());  // every element is finite
      EXPECT_LE(st.at("min").get<double>(), st.at("mean").get<double>());
      EXPECT_LE(st.at("mean").get<double>(), st.at("max").get<double>());
    }
  }
}

// A bundle built straight from the schema (tests/runtime/test_bundle.h):
// names and dtypes the compiler would not produce.
std::string write_test_bundle(const TempDir& dir, const std::string& file,
                              const mpsb::testing::BundleSpec& spec) {
  const std::vector<uint8_t> bytes = mpsb::testing::build_bundle(spec);
  write_file(dir / file, bytes.data(), bytes.size());
  return (dir / file).string();
}

TEST(DumpStats, Uint8TensorsShowCodesWithANote) {
  TempDir dir;
  mpsb::testing::BundleSpec spec;
  mpsb::testing::LayerSpec l = mpsb::testing::conv_layer("q", 4, 4, 1, 1, false);
  l.tensors[0].dtype = DType::kUInt8;
  l.tensors[0].bytes.assign(16, 0);
  for (uint8_t i = 0; i < 16; ++i) l.tensors[0].bytes[i] = static_cast<uint8_t>(i * 17);  // 0..255
  // uint8 weights come with their per-output-channel ranges.
  l.quantization = mpsb::Quantization::kLinear;
  mpsb::testing::TensorSpec ranges;
  ranges.role = TensorRole::kQuantRanges;
  ranges.layout = mpsb::TensorLayout::kRanges;
  ranges.source_layout = mpsb::TensorLayout::kRanges;
  ranges.shape = {4, 2};
  l.tensors.push_back(ranges);
  spec.layers.push_back(l);
  const std::string path = write_test_bundle(dir, "q.mpsb", spec);
  const Outcome r = dump({path, "--stats"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("uint8*"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("quantization codes"), std::string::npos) << r.out;
  // One code per bin: a flat histogram.
  EXPECT_EQ(histogram_of(lines_of(r.out)[1]), "████████████████") << r.out;
  const json st = json::parse(dump({path, "--layer", "q", "--json"}).out)["tensors"][0]["stats"];
  EXPECT_EQ(st.at("of"), "uint8_codes");
  EXPECT_EQ(st.at("min"), 0.0);
  EXPECT_EQ(st.at("max"), 255.0);
  EXPECT_EQ(st.at("zeros"), 1);
}

TEST(DumpStats, HistogramShowsGapsAndAllNaNHasNoRange) {
  TempDir dir;
  mpsb::testing::BundleSpec spec;
  mpsb::testing::LayerSpec l = mpsb::testing::conv_layer("c", 4, 4, 1, 1, true);
  // Weight: twelve -1 and four +1: the extreme bins only, a 3:1 ratio.
  std::vector<float> w(16, -1.0f);
  for (size_t i = 12; i < 16; ++i) w[i] = 1.0f;
  l.tensors[0].bytes.resize(64);
  std::memcpy(l.tensors[0].bytes.data(), w.data(), 64);
  // Bias: NaN, +inf, -inf, NaN.
  const std::vector<float> b = {std::nanf(""), INFINITY, -INFINITY, std::nanf("")};
  l.tensors[1].bytes.resize(16);
  std::memcpy(l.tensors[1].bytes.data(), b.data(), 16);
  spec.layers.push_back(l);
  const std::string path = write_test_bundle(dir, "h.mpsb", spec);
  const Outcome r = dump({path, "--stats"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const auto lines = lines_of(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(histogram_of(lines[1]), "█              ▃") << r.out;
  EXPECT_NE(lines[2].find("  2    2  -"), std::string::npos)
      << r.out;  // NaN 2, inf 2, no histogram
  const json st = json::parse(dump({path, "--layer", "c", "--json"}).out)["tensors"][1]["stats"];
  EXPECT_TRUE(st.at("min").is_null());
  EXPECT_EQ(st.at("nan"), 2);
  EXPECT_EQ(st.at("inf"), 2);
}

// Compiles the example after `edit` changed a copy of it; returns the bundle.
std::string compile_edited_example(const TempDir& dir, const std::function<void(json&)>& edit) {
  // The folder with its probes/ subfolder.
  fs::copy(kManifest.parent_path(), dir.path(), fs::copy_options::recursive);
  json m = json::parse(std::ifstream(kManifest));
  edit(m);
  write_file(dir / "manifest.json", m.dump());
  const std::string bundle = (dir / "edited.mpsb").string();
  const mpsbc::CompileReport report = compile_to(dir / "manifest.json", bundle);
  EXPECT_TRUE(report.ok()) << first_message(report);
  return bundle;
}

TEST_F(DumpTest, DiffOfABundleWithItselfIsEmptyAndExitsZero) {
  const Outcome r = dump({"--diff", bundle_, bundle_});
  EXPECT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("no differences"), std::string::npos) << r.out;
  const Outcome j = dump({"--diff", bundle_, bundle_, "--json"});
  EXPECT_EQ(j.code, kExitOk);
  EXPECT_TRUE(json::parse(j.out).at("identical").get<bool>());
}

TEST_F(DumpTest, DiffNamesWhatChangedAndByHowMuch) {
  TempDir dir;
  const std::string other = compile_edited_example(dir, [](json& m) {
    m["metadata"]["torch_seed"] = "1";
    m["layers"][1]["activation"] = "relu6";    // dw: a parameter
    m["layers"][3].erase("bias");              // grouped: a tensor removed
    m["layers"].erase(5);                      // head: a layer removed
    m["layers"].push_back({{"name", "extra"},  // a layer added
                           {"type", "conv2d"},
                           {"in_channels", 16},
                           {"out_channels", 32},
                           {"kernel_size", 1},
                           {"weight", "pw.weight.bin"}});
  });
  // stem.weight: two elements moved by 0.25 and 0.5.
  {
    auto bytes = read_file(dir / "stem.weight.bin");
    float f[2];
    std::memcpy(f, bytes.data() + 8, 8);
    f[0] += 0.25f;
    f[1] += 0.5f;
    std::memcpy(bytes.data() + 8, f, 8);
    write_file(dir / "stem.weight.bin", bytes.data(), bytes.size());
    ASSERT_TRUE(compile_to(dir / "manifest.json", other).ok());
  }
  const Outcome r = dump({"--diff", bundle_, other});
  EXPECT_EQ(r.code, kExitDifferent) << r.err;
  for (const char* s : {"~ bundle metadata.torch_seed: \"0\" -> \"1\"",
                        "~ layer dw (conv2d): activation \"relu\" -> \"relu6\"",
                        "- tensor grouped.bias", "- layer head (conv2d)", "+ layer extra (conv2d)",
                        "~ tensor stem.weight: 2 of 432 elements differ, max abs diff 0.5",
                        "layers: 1 added, 1 removed, 3 changed; tensors: 0 added, 1 removed, 1 "
                        "changed"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
  const Outcome j = dump({"--diff", bundle_, other, "--json"});
  EXPECT_EQ(j.code, kExitDifferent);
  const json d = json::parse(j.out);
  EXPECT_FALSE(d.at("identical").get<bool>());
  EXPECT_EQ(d.at("summary").at("layers_added"), 1);
  const json& stem = d.at("layers").at(0);
  EXPECT_EQ(stem.at("name"), "stem");
  const json& data = stem.at("tensors").at(0).at("data");
  EXPECT_EQ(data.at("differing"), 2);
  EXPECT_EQ(data.at("elements"), 432);
  EXPECT_NEAR(data.at("max_abs_diff").get<double>(), 0.5, 1e-6);
}

TEST_F(DumpTest, DiffComparesSkippedModules) {
  TempDir dir;
  const json act = {{"name", "act"}, {"type", "Hardswish"}, {"reason", "no MPS neuron"}};
  const std::string one =
      compile_edited_example(dir, [&](json& m) { m["skipped"] = json::array({act}); });
  const Outcome r = dump({"--diff", bundle_, one});
  EXPECT_EQ(r.code, kExitDifferent) << r.err;
  EXPECT_EQ(r.out, "--- " + bundle_ + "\n+++ " + one +
                       "\n~ bundle skipped_modules: [] -> "
                       "[{\"name\":\"act\",\"type\":\"Hardswish\",\"reason\":\"no MPS neuron\"}]\n"
                       "layers: 0 added, 0 removed, 0 changed; tensors: 0 added, 0 removed, 0 "
                       "changed\n");
  // Another reason for the same module is a change too; the same list none.
  TempDir dir2;
  const std::string other = compile_edited_example(dir2, [&](json& m) {
    json changed = act;
    changed["reason"] = "did not run";
    m["skipped"] = json::array({changed});
  });
  const json d = json::parse(dump({"--diff", one, other, "--json"}).out);
  ASSERT_EQ(d.at("header").size(), 1u) << d.dump(2);
  EXPECT_EQ(d.at("header").at(0).at("field"), "skipped_modules");
  EXPECT_EQ(d.at("header").at(0).at("a").at(0).at("reason"), "no MPS neuron");
  EXPECT_EQ(d.at("header").at(0).at("b").at(0).at("reason"), "did not run");
  EXPECT_EQ(dump({"--diff", one, one}).code, kExitOk);
}

TEST(DumpDiff, Float16AgainstFloat32ComparesValues) {
  TempDir a_dir, b_dir;
  std::vector<uint16_t> half(16, 0x3c00);  // 1.0
  half[3] = 0x3e00;                        // 1.5
  const std::string a = compile_one_layer(a_dir, "float16", half);
  std::vector<float> full(16, 1.0f);
  full[3] = 1.25f;
  mpsb::testing::write_vector(b_dir / "w.bin", full);
  write_file(b_dir / "manifest.json", one_conv_manifest("conv", "w.bin").dump());
  const std::string b = (b_dir / "b.mpsb").string();
  ASSERT_TRUE(compile_to(b_dir / "manifest.json", b).ok());
  const Outcome r = dump({"--diff", a, b});
  EXPECT_EQ(r.code, kExitDifferent);
  EXPECT_NE(r.out.find("dtype \"float16\" -> \"float32\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 of 16 elements differ, max abs diff 0.25"), std::string::npos) << r.out;
}

TEST_F(DumpTest, DiffTroubleExitsTwo) {
  TempDir dir;
  const Outcome missing = dump({"--diff", bundle_, (dir / "missing.mpsb").string()});
  EXPECT_EQ(missing.code, kExitDiffTrouble);
  EXPECT_NE(missing.err.find("missing.mpsb"), std::string::npos) << missing.err;
  const Outcome one = dump({"--diff", bundle_});
  EXPECT_EQ(one.code, kExitUsage);
  EXPECT_NE(one.err.find("--diff compares two bundles"), std::string::npos) << one.err;
  EXPECT_EQ(dump({"--diff", bundle_, bundle_, "--layer", "stem"}).code, kExitUsage);
  EXPECT_EQ(dump({bundle_, bundle_}).code, kExitUsage);  // two files without --diff
}

std::string fmt_hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%08llx", static_cast<unsigned long long>(v));
  return buf;
}

TEST_F(DumpTest, ExplainWalksTheFileOffsetByOffset) {
  const Outcome r = dump({bundle_, "--explain"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  Result<Bundle> b = Bundle::open(bundle_);
  ASSERT_TRUE(b.ok());
  const uint64_t meta = b->metadata_bytes().size();
  for (const std::string& s :
       {std::string("first 32 bytes"), std::string("00000000  "),
        fmt_hex(0) + "  " + fmt_hex(4) + "      4  size prefix: " + std::to_string(meta - 4),
        std::string("file identifier \"MPSB\""), std::string("vtable of the root table"),
        std::string("root table (Bundle)"),
        fmt_hex(meta) + "  " + fmt_hex(16384) + "  " + std::to_string(16384 - meta) +
            "  padding from the end of the metadata to the segment alignment (16384) (all zero)",
        fmt_hex(16384) + "  " + fmt_hex(16384 + 81920) + "  81920  data segment: 11 tensors",
        std::string("    [0, 1728) stem.weight float32 ohwi 16x3x3x3"),
        std::string("trailing padding to the segment alignment (16384) (all zero)"),
        fmt_hex(98304) + "                     end of file"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
  }
  // "MPSB" shows in the ASCII column of the hex dump.
  EXPECT_NE(r.out.find("MPSB"), std::string::npos);

  // JSON: the top-level regions tile the file, the tensor ones the segment.
  const Outcome j = dump({bundle_, "--explain", "--json"});
  ASSERT_EQ(j.code, kExitOk) << j.err;
  const json doc = json::parse(j.out);
  EXPECT_EQ(doc.at("head").get<std::string>().substr(16, 8), "4d505342");  // "MPSB"
  uint64_t top = 0, inner = 16384;
  size_t tensors = 0;
  for (const json& region : doc.at("regions")) {
    const std::string kind = region.at("region");
    const uint64_t off = region.at("offset"), size = region.at("size");
    if (kind == "tensor" || kind == "tensor_padding" || kind == "trailing_padding") {
      EXPECT_EQ(off, inner) << region.dump();
      inner += size;
      if (kind == "tensor") {
        ++tensors;
        EXPECT_FALSE(region.at("layer").is_null());
      }
    } else {
      EXPECT_EQ(off, top) << region.dump();
      top += size;
    }
  }
  EXPECT_EQ(top, doc.at("file_size").get<uint64_t>());
  EXPECT_EQ(inner, top);
  EXPECT_EQ(tensors, 11u);
}

// Keys of every object of each document, from docs/DUMP_JSON.md: a "###
// `ID`" heading, then a table whose rows start with "| `key` |".
std::map<std::string, std::vector<std::string>> documented_keys() {
  std::ifstream in(MPSB_DUMP_JSON_DOC);
  std::map<std::string, std::vector<std::string>> keys;
  std::string current;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("### `", 0) == 0) {
      current = line.substr(5, line.find('`', 5) - 5);
      keys[current];
    } else if (line.rfind("#", 0) == 0) {
      current.clear();
    } else if (!current.empty() && line.rfind("| `", 0) == 0) {
      keys[current].push_back(line.substr(3, line.find('`', 3) - 3));
    }
  }
  return keys;
}

std::vector<std::string> keys_of(const json& object) {
  std::vector<std::string> k;
  for (const auto& [key, value] : object.items()) k.push_back(key);
  return k;
}

TEST_F(DumpTest, JsonKeysAreExactlyTheDocumentedOnes) {
  const auto doc = documented_keys();
  ASSERT_TRUE(doc.contains("bundle")) << MPSB_DUMP_JSON_DOC;
  // nlohmann::json sorts keys; ordered comparison is by set.
  const auto expect_keys = [&](const json& object, const std::string& id,
                               std::vector<std::string> drop = {}) {
    SCOPED_TRACE(id);
    ASSERT_TRUE(doc.contains(id));
    std::vector<std::string> want = doc.at(id);
    for (const auto& d : drop) std::erase(want, d);
    std::vector<std::string> got = keys_of(object);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want);
  };
  const auto check_layer = [&](const json& l, const std::string& id, bool stats) {
    expect_keys(l, id);
    expect_keys(l.at("params"), "params." + l.at("kind").get<std::string>());
    for (const json& t : l.at("tensors")) {
      expect_keys(t, "tensor",
                  stats ? std::vector<std::string>{} : std::vector<std::string>{"stats"});
      if (stats) expect_keys(t.at("stats"), "stats");
    }
  };
  for (const bool stats : {false, true}) {
    std::vector<std::string> args = {bundle_, "--json"};
    if (stats) args.push_back("--stats");
    const json j = json::parse(dump(args).out);
    EXPECT_EQ(j.at("schema"), "mpsb.dump/1");
    EXPECT_EQ(j.at("document"), stats ? "stats" : "bundle");
    expect_keys(j, "bundle");
    for (const json& l : j.at("layers")) check_layer(l, "layer", stats);
  }
  const json layer = json::parse(dump({bundle_, "--layer", "head", "--json"}).out);
  EXPECT_EQ(layer.at("schema"), "mpsb.dump/1");
  EXPECT_EQ(layer.at("document"), "layer");
  check_layer(layer, "layer_document", true);

  TempDir dir;
  const std::string other = compile_edited_example(dir, [](json& m) {
    m["name"] = "other";
    m["layers"][0]["stride"] = 1;
    m["layers"][0]["bias"] = "dw.bias.bin";  // same shape, other values
    m["layers"][3].erase("bias");
    m["layers"].erase(5);
  });
  const json diff = json::parse(dump({"--diff", bundle_, other, "--json"}).out);
  EXPECT_EQ(diff.at("schema"), "mpsb.dump/1");
  EXPECT_EQ(diff.at("document"), "diff");
  expect_keys(diff, "diff");
  expect_keys(diff.at("summary"), "diff.summary");
  ASSERT_FALSE(diff.at("header").empty());
  for (const json& c : diff.at("header")) expect_keys(c, "change");
  bool saw_data = false;
  for (const json& l : diff.at("layers")) {
    expect_keys(l, "diff.layer");
    for (const json& c : l.at("changes")) expect_keys(c, "change");
    for (const json& t : l.at("tensors")) {
      expect_keys(t, "diff.tensor");
      if (!t.at("data").is_null()) {
        expect_keys(t.at("data"), "diff.data");
        saw_data = true;
      }
    }
  }
  EXPECT_TRUE(saw_data) << diff.dump(2);

  const json explain = json::parse(dump({bundle_, "--explain", "--json"}).out);
  EXPECT_EQ(explain.at("document"), "explain");
  expect_keys(explain, "explain");
  for (const json& r : explain.at("regions")) expect_keys(r, "region");

  const json buffers = json::parse(dump({bundle_, "--buffers", "64K", "--json"}).out);
  EXPECT_EQ(buffers.at("document"), "buffers");
  expect_keys(buffers, "buffers");
  ASSERT_FALSE(buffers.at("windows").empty());
  for (const json& w : buffers.at("windows")) {
    expect_keys(w, "buffers.window");
    for (const json& t : w.at("tensors")) expect_keys(t, "buffers.tensor");
  }
}

TEST_F(DumpTest, ColourOnlyWhenAskedOrOnATerminal) {
  const auto run_with = [&](ColorMode color, bool terminal) {
    Options o;
    o.bundle_path = bundle_;
    o.color = color;
    o.out_is_terminal = terminal;
    std::ostringstream out, err;
    EXPECT_EQ(run(o, out, err), kExitOk);
    return out.str();
  };
  const auto coloured = [](const std::string& s) { return s.find("\x1b[") != std::string::npos; };
  ::unsetenv("NO_COLOR");
  EXPECT_FALSE(coloured(run_with(ColorMode::kAuto, false)));
  EXPECT_TRUE(coloured(run_with(ColorMode::kAuto, true)));
  EXPECT_TRUE(coloured(run_with(ColorMode::kAlways, false)));
  EXPECT_FALSE(coloured(run_with(ColorMode::kNever, true)));
  ::setenv("NO_COLOR", "1", 1);
  EXPECT_FALSE(coloured(run_with(ColorMode::kAuto, true)));
  EXPECT_TRUE(coloured(run_with(ColorMode::kAlways, true)));
  ::setenv("NO_COLOR", "", 1);  // empty counts as unset (no-color.org)
  EXPECT_TRUE(coloured(run_with(ColorMode::kAuto, true)));
  ::unsetenv("NO_COLOR");

  // The command line: --color=always, and colour never breaks the columns.
  const Outcome plain = dump({bundle_, "--color=never"});
  const Outcome always = dump({bundle_, "--color=always"});
  EXPECT_TRUE(coloured(always.out));
  std::string stripped;
  for (size_t i = 0; i < always.out.size(); ++i) {
    if (always.out[i] == '\x1b') {
      i = always.out.find('m', i);
      continue;
    }
    stripped += always.out[i];
  }
  EXPECT_EQ(stripped, plain.out);
  // JSON is never coloured.
  EXPECT_FALSE(coloured(dump({bundle_, "--json", "--color=always"}).out));
  EXPECT_EQ(dump({bundle_, "--color=sometimes"}).code, kExitUsage);
}

TEST(DumpCommandLine, BadFlagsExitTwoWithAMessage) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"x.mpsb", "--frobnicate"},  // unknown option
           {"x.mpsb", "--layer"},       // missing argument
           {"x.mpsb", "--color"},       // missing argument
           {"--diff", "x.mpsb"},        // --diff with one file
           {"x.mpsb", "--stats", "--extract", "a.weight", "-o", "w"},
           {"x.mpsb", "--explain", "--stats"},
           {"x.mpsb", "--explain", "--diff", "y.mpsb"},
           {"x.mpsb", "--verify", "--stats"},
       }) {
    const Outcome r = dump(args);
    SCOPED_TRACE(::testing::PrintToString(args));
    EXPECT_EQ(r.code, kExitUsage);
    EXPECT_FALSE(r.err.empty());
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
}

TEST(DumpCommandLine, HelpHasExamplesAndExitCodes) {
  const Outcome r = dump({"--help"});
  EXPECT_EQ(r.code, kExitOk);
  for (const char* s : {"--stats", "--diff", "--explain", "--color", "Examples:",
                        "mpsb-dump --diff old.mpsb new.mpsb", "Exit codes:", "2 trouble"}) {
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  }
}

TEST(DumpCommandLine, ParseArgsSelectsTheNewModes) {
  EXPECT_EQ(parse({"m.mpsb", "--stats"}).mode, Mode::kStats);
  EXPECT_EQ(parse({"m.mpsb", "--stats", "--layer", "c"}).layer, "c");
  EXPECT_EQ(parse({"m.mpsb", "--explain"}).mode, Mode::kExplain);
  const Options d = parse({"--diff", "a.mpsb", "b.mpsb"});
  EXPECT_EQ(d.mode, Mode::kDiff);
  EXPECT_EQ(d.bundle_path, "a.mpsb");
  EXPECT_EQ(d.other_path, "b.mpsb");
  EXPECT_EQ(parse({"a.mpsb", "--diff", "b.mpsb"}).other_path, "b.mpsb");
  EXPECT_EQ(parse({"m.mpsb"}).color, ColorMode::kAuto);
  EXPECT_EQ(parse({"m.mpsb", "--color", "never"}).color, ColorMode::kNever);
  EXPECT_EQ(parse({"m.mpsb", "--color=always"}).color, ColorMode::kAlways);
}

// Names no compiler would write, built straight from the schema: escapes,
// bidi overrides, bytes that are not UTF-8, and a name of 300 characters.
TEST(DumpNames, HostileNamesCannotReachTheTerminal) {
  TempDir dir;
  const std::string long_name(300, 'L');
  const std::vector<std::string> names = {
      "ansi\x1b[31mred\x1b]0;title\x07",  // SGR and an OSC window title
      "ctl\r\n\t\b\x7f",                  // C0 controls and DEL
      "rtl\xe2\x80\xae"
      "cba",                  // RIGHT-TO-LEFT OVERRIDE
      "bad\xff\xfe\xc0\xaf",  // not UTF-8, overlong '/'
      "c1\xc2\x9b"
      "2J",  // C1 CSI
      long_name,
  };
  mpsb::testing::BundleSpec spec;
  spec.name = "model\x1b[2J";
  spec.metadata = {{"key\x1b[1m", "value\xe2\x80\xae"}};
  for (const auto& n : names) spec.layers.push_back(mpsb::testing::conv_layer(n, 4, 4, 1));
  const std::string path = write_test_bundle(dir, "hostile.mpsb", spec);
  const std::string other = write_test_bundle(dir, "other.mpsb", mpsb::testing::BundleSpec{});

  const auto is_safe = [](const std::string& out) {
    for (const char c : out) {
      const auto u = static_cast<unsigned char>(c);
      if ((u < 0x20 && c != '\n') || u == 0x7f || u == 0xff || u == 0xfe || u == 0xc0) {
        return false;
      }
    }
    return out.find("\xe2\x80\xae") == std::string::npos &&
           out.find("\xc2\x9b") == std::string::npos;
  };
  std::vector<std::vector<std::string>> commands = {{path},
                                                    {path, "--stats"},
                                                    {path, "--explain"},
                                                    {path, "--json"},
                                                    {path, "--verify"},
                                                    {"--diff", path, other},
                                                    {"--diff", path, other, "--json"},
                                                    {path, "--explain", "--json"}};
  for (const auto& n : names) commands.push_back({path, "--layer", n});
  for (const auto& args : commands) {
    const Outcome r = dump(args);
    SCOPED_TRACE(printable(::testing::PrintToString(args)));
    EXPECT_TRUE(r.code == kExitOk || r.code == kExitDifferent) << r.err;
    EXPECT_TRUE(is_safe(r.out)) << printable(r.out);
    EXPECT_TRUE(is_safe(r.err)) << printable(r.err);
  }
  const Outcome summary = dump({path});
  for (const char* s : {"ansi\\x1b[31mred\\x1b]0;title\\x07", "ctl\\r\\n\\t\\x08\\x7f",
                        "rtl\\u{202e}cba", "bad\\xff\\xfe\\xc0\\xaf", "c1\\u{009b}2J",
                        "model\\x1b[2J", "key\\x1b[1m = value\\u{202e}"}) {
    EXPECT_NE(summary.out.find(s), std::string::npos) << s << "\n" << summary.out;
  }
  // The table cuts the long name to 40 columns with an ellipsis and keeps
  // its columns aligned; --layer shows it whole.
  EXPECT_NE(summary.out.find(std::string(39, 'L') + "…"), std::string::npos);
  EXPECT_EQ(summary.out.find(std::string(40, 'L')), std::string::npos);
  const Outcome whole = dump({path, "--layer", long_name});
  EXPECT_NE(whole.out.find(long_name), std::string::npos);
  // JSON has the exact names back (invalid UTF-8 replaced by U+FFFD).
  const json j = json::parse(dump({path, "--json"}).out);
  std::vector<std::string> got;
  for (const json& l : j.at("layers")) got.push_back(l.at("name"));
  EXPECT_NE(std::find(got.begin(), got.end(), names[0]), got.end());
  EXPECT_NE(std::find(got.begin(), got.end(), names[2]), got.end());
  EXPECT_NE(
      std::find(got.begin(), got.end(), "bad\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
      got.end());
}

// ---------------------------------------------------------------------------
// Kinds and activations added through the layer-kind table (mpsb/kinds.h)

// A model with each: group_norm, prelu with 1 and with C slopes, and convs
// with fused elu, prelu and softplus. `beta` is c3's softplus beta.
std::string compile_new_kinds(const TempDir& dir, const std::string& bundle, float beta = 2,
                              float slope = 0.25f) {
  const auto bin = [&](const std::string& name, size_t n, uint32_t seed) {
    const std::vector<float> v = mpsb::testing::random_floats(n, seed);
    write_file(dir / name, v.data(), v.size() * 4);
    return name;
  };
  write_file(dir / "pr.w", &slope, 4);
  const json m = {{"format", "mpsb.manifest/1"},
                  {"layers",
                   {{{"name", "c1"},
                     {"type", "conv2d"},
                     {"in_channels", 3},
                     {"out_channels", 8},
                     {"kernel_size", 3},
                     {"padding", 1},
                     {"weight", bin("c1.w", 216, 1)},
                     {"activation", "elu"},
                     {"alpha", 0.5}},
                    {{"name", "gn"},
                     {"type", "group_norm"},
                     {"num_groups", 4},
                     {"num_channels", 8},
                     {"weight", bin("gn.w", 8, 2)},
                     {"bias", bin("gn.b", 8, 3)}},
                    {{"name", "pr"}, {"type", "prelu"}, {"num_channels", 8}, {"weight", "pr.w"}},
                    {{"name", "pc"},
                     {"type", "prelu"},
                     {"num_parameters", 8},
                     {"num_channels", 8},
                     {"weight", bin("pc.w", 8, 4)}},
                    {{"name", "c2"},
                     {"type", "conv2d"},
                     {"in_channels", 8},
                     {"out_channels", 8},
                     {"kernel_size", 1},
                     {"weight", bin("c2.w", 64, 5)},
                     {"activation", "prelu"},
                     {"num_parameters", 8},
                     {"activation_weight", bin("c2.a", 8, 6)}},
                    {{"name", "c3"},
                     {"type", "conv2d"},
                     {"in_channels", 8},
                     {"out_channels", 8},
                     {"kernel_size", 1},
                     {"weight", bin("c3.w", 64, 7)},
                     {"activation", "softplus"},
                     {"beta", beta},
                     {"threshold", 20}}}}};
  write_file(dir / "manifest.json", m.dump());
  const auto report = compile_to(dir / "manifest.json", (dir / bundle).string());
  EXPECT_TRUE(report.ok()) << first_message(report);
  return (dir / bundle).string();
}

// The summary line of layer `name` ("  3  name  kind ...").
std::string row_of(const std::string& out, const std::string& name) {
  for (const std::string& line : lines_of(out)) {
    std::istringstream in(line);
    std::string index, n;
    in >> index >> n;
    if (n == name) return line;
  }
  return "";
}

TEST(DumpNewKinds, TableShowsChannelsParamsAndActivationParameters) {
  TempDir dir;
  const std::string path = compile_new_kinds(dir, "k.mpsb");
  const Outcome r = dump({path});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const auto cells = [&](const std::string& name) {
    std::vector<std::string> c;
    std::string line = row_of(r.out, name);
    // Cells are separated by two or more spaces.
    for (size_t i = 0; i < line.size();) {
      while (i < line.size() && line[i] == ' ') ++i;
      size_t j = line.find("  ", i);
      if (j == std::string::npos) j = line.size();
      if (j > i) c.push_back(line.substr(i, j - i));
      i = j;
    }
    return c;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(cells("c1"), (V{"0", "c1", "conv2d", "3->8", "3x3 s1 p1 d1 g1", "elu(0.5)", "8x3x3x3",
                            "ohwi", "float32", "864"}));
  EXPECT_EQ(cells("gn"), (V{"1", "gn", "group_norm", "8", "groups 4 eps 1e-05", "none", "8",
                            "vector", "float32", "64"}));
  EXPECT_EQ(cells("pr"),
            (V{"2", "pr", "prelu", "8", "1 slope", "none", "8", "vector", "float32", "32"}));
  EXPECT_EQ(cells("pc"),
            (V{"3", "pc", "prelu", "8", "8 slopes", "none", "8", "vector", "float32", "32"}));
  EXPECT_EQ(cells("c2")[5], "prelu");
  EXPECT_EQ(cells("c3")[5], "softplus(2, 20)");
}

TEST(DumpNewKinds, LayerShowsEveryParameterByItsPyTorchName) {
  TempDir dir;
  const std::string path = compile_new_kinds(dir, "k.mpsb");
  const std::string gn = dump({path, "--layer", "gn"}).out;
  for (const char* s : {"kind          group_norm\n", "num_groups    4\n", "num_channels  8\n",
                        "eps           1e-05\n", "gn.weight\n", "gn.bias\n"}) {
    EXPECT_NE(gn.find(s), std::string::npos) << s << gn;
  }
  const std::string pr = dump({path, "--layer", "pr"}).out;
  for (const char* s : {"num_parameters  1 (broadcast to every channel)\n", "num_channels    8\n",
                        "source     float32 vector 1\n", "stored     float32 vector 8\n",
                        "transform  broadcast\n"}) {
    EXPECT_NE(pr.find(s), std::string::npos) << s << pr;
  }
  EXPECT_NE(dump({path, "--layer", "pc"}).out.find("num_parameters  8\n"), std::string::npos);
  EXPECT_NE(dump({path, "--layer", "c1"}).out.find("activation    elu (alpha 0.5)\n"),
            std::string::npos);
  EXPECT_NE(
      dump({path, "--layer", "c3"}).out.find("activation    softplus (beta 2, threshold 20)\n"),
      std::string::npos);
  EXPECT_NE(dump({path, "--layer", "c2"}).out.find("c2.activation_weight\n"), std::string::npos);
}

TEST(DumpNewKinds, JsonHasTheKindsParamsAndTheActivationParameters) {
  TempDir dir;
  const std::string path = compile_new_kinds(dir, "k.mpsb");
  const json j = json::parse(dump({path, "--json"}).out);
  std::map<std::string, json> by_name;
  for (const json& l : j.at("layers")) by_name[l.at("name")] = l;
  EXPECT_EQ(by_name["gn"].at("params"),
            json({{"num_groups", 4}, {"num_channels", 8}, {"eps", 1e-5f}}));
  EXPECT_EQ(by_name["pr"].at("params"), json({{"num_parameters", 1}, {"num_channels", 8}}));
  EXPECT_EQ(by_name["pc"].at("params"), json({{"num_parameters", 8}, {"num_channels", 8}}));
  EXPECT_EQ(by_name["c1"].at("activation_params"), json({{"alpha", 0.5}}));
  EXPECT_EQ(by_name["c1"].at("activation_alpha"), 0.5);
  EXPECT_EQ(by_name["c3"].at("activation_params"), json({{"beta", 2.0}, {"threshold", 20.0}}));
  EXPECT_EQ(by_name["c2"].at("activation_params"), json::object());
  EXPECT_TRUE(by_name["c2"].at("activation_alpha").is_null());
  // The keys of the new params objects are the documented ones.
  const auto doc = documented_keys();
  for (const char* kind : {"group_norm", "prelu"}) {
    const json& params = by_name[kind == std::string("prelu") ? "pr" : "gn"].at("params");
    std::vector<std::string> want = doc.at(std::string("params.") + kind), got = keys_of(params);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, want) << kind;
  }
}

TEST(DumpNewKinds, ExtractGivesBackTheSourceBytesOfBroadcastAndPReLUTensors) {
  TempDir dir;
  const std::string path = compile_new_kinds(dir, "k.mpsb");
  for (const auto& [tensor, source] : std::vector<std::pair<std::string, std::string>>{
           {"pr.weight", "pr.w"},             // [1], stored broadcast to [8]
           {"pc.weight", "pc.w"},             // [8]
           {"c2.activation_weight", "c2.a"},  // fused prelu's slopes
           {"gn.bias", "gn.b"}}) {
    SCOPED_TRACE(tensor);
    const fs::path out = dir / (tensor + ".out");
    const Outcome r = dump({path, "--extract", tensor, "-o", out.string()});
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(read_file(out), read_file(dir / source));
  }
  EXPECT_EQ(read_file(dir / "pr.weight.out").size(), 4u);
}

TEST(DumpNewKinds, StatsAndDiffCoverTheNewRoles) {
  TempDir dir;
  const std::string a = compile_new_kinds(dir, "a.mpsb");
  const Outcome st = dump({a, "--stats"});
  ASSERT_EQ(st.code, kExitOk) << st.err;
  EXPECT_NE(st.out.find("  c2.activation_weight  float32         8 "), std::string::npos) << st.out;
  std::string pr_row;
  for (const std::string& line : lines_of(st.out)) {
    if (line.rfind("  pr.weight ", 0) == 0) pr_row = line;
  }
  // Eight stored copies of the one slope.
  EXPECT_NE(pr_row.find(" 8     0.25    0.25 "), std::string::npos) << st.out;
  const std::string b = compile_new_kinds(dir, "b.mpsb", 3, 0.5f);
  const Outcome d = dump({"--diff", a, b});
  EXPECT_EQ(d.code, kExitDifferent) << d.err;
  EXPECT_NE(d.out.find("~ layer pr (prelu)\n    ~ tensor pr.weight: 8 of 8 elements differ, max "
                       "abs diff 0.25\n"),
            std::string::npos)
      << d.out;
  EXPECT_NE(d.out.find("~ layer c3 (conv2d): activation_alpha 2.0 -> 3.0\n"), std::string::npos)
      << d.out;
}

TEST(Printable, TruncateToWidthCutsCodePointsAndAddsAnEllipsis) {
  EXPECT_EQ(truncate_to_width("conv1", 5), "conv1");
  EXPECT_EQ(truncate_to_width("conv12", 5), "conv…");
  EXPECT_EQ(truncate_to_width("caf\xc3\xa9s", 4), "caf…");
  EXPECT_EQ(truncate_to_width("\xc3\xa9\xc3\xa9\xc3\xa9", 2), "\xc3\xa9…");
  EXPECT_EQ(display_width(truncate_to_width(std::string(100, 'x'), 40)), 40u);
}

}  // namespace
}  // namespace mpsb::dump
