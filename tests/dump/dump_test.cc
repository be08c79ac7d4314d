// mpsb-dump on the embedded example (examples/tiny_cnn), compiled here with
// the project's own compiler so no opaque bundle is checked in.

#include "dump.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsbc/compile.h"
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
    mpsbc::CompileOptions options;
    options.manifest_path = kManifest.string();
    options.output_path = bundle_;
    const mpsbc::CompileReport report = mpsbc::compile(options);
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
  json manifest = {{"format", "mpsb.manifest/1"},
                   {"name", "names\x07"},
                   {"layers",
                    {{{"name", evil},
                      {"type", "conv2d"},
                      {"in_channels", 4},
                      {"out_channels", 4},
                      {"kernel_size", 1},
                      {"weight", "w.bin"}}}}};
  write_file(dir / "manifest.json", manifest.dump());
  mpsbc::CompileOptions options;
  options.manifest_path = (dir / "manifest.json").string();
  options.output_path = (dir / "names.mpsb").string();
  const mpsbc::CompileReport report = mpsbc::compile(options);
  ASSERT_TRUE(report.ok()) << (report.diagnostics.empty() ? "" : report.diagnostics[0].message);

  for (const auto& args : std::vector<std::vector<std::string>>{
           {options.output_path}, {options.output_path, "--layer", evil}}) {
    const Outcome r = dump(args);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find('\x07'), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("\xe2\x80\xae"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("evil\\x1b[2J\\n\\u{202e}"), std::string::npos) << r.out;
  }
  // JSON keeps the exact name, escaped by the JSON rules.
  const Outcome j = dump({options.output_path, "--json"});
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
  const json manifest = {{"format", "mpsb.manifest/1"},
                         {"layers",
                          {{{"name", "conv"},
                            {"type", "conv2d"},
                            {"in_channels", 4},
                            {"out_channels", 4},
                            {"kernel_size", 1},
                            {"weight", {{"path", "w.bin"}, {"dtype", dtype}}}}}}};
  write_file(dir / "manifest.json", manifest.dump());
  mpsbc::CompileOptions options;
  options.manifest_path = (dir / "manifest.json").string();
  options.output_path = (dir / "one.mpsb").string();
  const mpsbc::CompileReport report = mpsbc::compile(options);
  EXPECT_TRUE(report.ok()) << (report.diagnostics.empty() ? "" : report.diagnostics[0].message);
  return options.output_path;
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
  EXPECT_EQ(stats.at("nonfinite"), 0);
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
  EXPECT_NE(r.out.find("NaN/inf 2"), std::string::npos) << r.out;
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

TEST(DumpCommandLine, ParseArgsSelectsTheMode) {
  const auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "mpsb-dump");
    std::ostringstream out, err;
    int code = -1;
    auto o = parse_args(args, out, err, &code);
    EXPECT_EQ(code, kExitOk) << err.str();
    return o.value_or(Options{});
  };
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

}  // namespace
}  // namespace mpsb::dump
