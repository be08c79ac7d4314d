// Writes the seed corpora for the fuzz targets, built at run time from the
// schema (runtime/test_bundle.h) so no binary blob is checked in:
//   make_fuzz_seeds BUNDLE_DIR MANIFEST_DIR
// BUNDLE_DIR gets small valid bundles with every layer kind, dtype and
// quantization; MANIFEST_DIR gets manifests over the tensor files that
// fuzz_manifest writes into its scratch folder (w.bin, b.bin, h.bin, n.bin).
// scripts/fuzz.sh adds the example model compiled by mpsbc to both.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace {

using mpsb::testing::BundleSpec;
using mpsb::testing::LayerSpec;
using mpsb::testing::TensorSpec;
using nlohmann::json;

LayerSpec quantized_conv(std::string name, mpsb::Quantization q) {
  LayerSpec l = mpsb::testing::conv_layer(std::move(name), 4, 4, 1);
  l.quantization = q;
  l.tensors[0].dtype = mpsb::DType::kUInt8;
  TensorSpec side;
  if (q == mpsb::Quantization::kLinear) {
    side.role = mpsb::TensorRole::kQuantRanges;
    side.layout = mpsb::TensorLayout::kRanges;
    side.shape = {4, 2};
  } else {
    side.role = mpsb::TensorRole::kQuantLookupTable;
    side.layout = mpsb::TensorLayout::kLookupTable;
    side.shape = {256};
  }
  l.tensors.push_back(side);
  return l;
}

std::vector<LayerSpec> every_kind() {
  std::vector<LayerSpec> layers;
  layers.push_back(mpsb::testing::conv_layer("conv", 4, 8, 3));
  layers.back().activation = mpsb::Activation::kLeakyReLU;
  layers.back().activation_alpha = 0.1f;
  layers.push_back(mpsb::testing::conv_layer("grouped", 8, 8, 1, 2, false));
  layers.push_back(mpsb::testing::conv_layer("depthwise", 8, 8, 3, 8));
  layers.push_back(mpsb::testing::batch_norm_layer("bn", 8));
  layers.push_back(mpsb::testing::instance_norm_layer("in", 8));
  layers.push_back(mpsb::testing::instance_norm_layer("in_plain", 8, false));
  layers.push_back(mpsb::testing::conv_transpose_layer("up", 8, 4, 3, 2));
  layers.push_back(mpsb::testing::linear_layer("fc_flat", 3, 4, 2, 2));
  layers.push_back(mpsb::testing::linear_layer("fc", 2, 3));
  return layers;
}

void write_bundle(const std::filesystem::path& dir, const std::string& name,
                  const BundleSpec& spec) {
  const auto bytes = mpsb::testing::build_bundle(spec);
  mpsb::testing::write_file(dir / name, bytes.data(), bytes.size());
}

void write_bundles(const std::filesystem::path& dir) {
  BundleSpec s;
  s.segment_alignment = 64;  // small files fuzz faster
  s.tensor_alignment = 16;
  s.metadata = {{"license", "MIT"}, {"source", "make_fuzz_seeds"}};
  s.layers = every_kind();
  write_bundle(dir, "every_kind.mpsb", s);

  s.segment_alignment = 4096;
  s.tensor_alignment = 256;
  write_bundle(dir, "every_kind_paged.mpsb", s);

  BundleSpec one;
  one.segment_alignment = 16;
  one.tensor_alignment = 16;
  one.layers.push_back(mpsb::testing::conv_layer("c", 1, 1, 1));
  write_bundle(dir, "one_conv.mpsb", one);

  BundleSpec typed;
  typed.segment_alignment = 64;
  typed.tensor_alignment = 16;
  typed.layers.push_back(mpsb::testing::conv_layer("half", 4, 4, 3));
  typed.layers.back().tensors[0].dtype = mpsb::DType::kFloat16;
  typed.layers.push_back(mpsb::testing::conv_layer("brain", 4, 4, 1));
  typed.layers.back().tensors[0].dtype = mpsb::DType::kBFloat16;
  typed.layers.push_back(quantized_conv("q_linear", mpsb::Quantization::kLinear));
  typed.layers.push_back(quantized_conv("q_table", mpsb::Quantization::kLookupTable));
  write_bundle(dir, "dtypes.mpsb", typed);
}

json conv(const std::string& name) {
  return {{"name", name},
          {"type", "conv2d"},
          {"in_channels", 2},
          {"out_channels", 4},
          {"kernel_size", 3},
          {"stride", 1},
          {"padding",
           [] {
             return json{1, 1};
           }()},
          {"weight", "w.bin"},
          {"bias", "b.bin"},
          {"activation", "relu"}};
}

void write_manifest(const std::filesystem::path& dir, const std::string& name, json layers,
                    json extra = json::object()) {
  json m = {{"format", "mpsb.manifest/1"}, {"name", name}, {"layers", std::move(layers)}};
  for (auto it = extra.begin(); it != extra.end(); ++it) m[it.key()] = it.value();
  mpsb::testing::write_file(dir / (name + ".json"), m.dump(1));
}

void write_manifests(const std::filesystem::path& dir) {
  write_manifest(dir, "conv", json::array({conv("c")}));
  json all = json::array();
  all.push_back(conv("conv"));
  all.push_back({{"name", "up"},
                 {"type", "conv_transpose2d"},
                 {"in_channels", 2},
                 {"out_channels", 4},
                 {"kernel_size", {3, 3}},
                 {"stride", 2},
                 {"padding", 1},
                 {"output_padding", 1},
                 {"dilation", 1},
                 {"groups", 1},
                 {"weight", "w.bin"},
                 {"bias", "b.bin"}});
  all.push_back({{"name", "fc"},
                 {"type", "linear"},
                 {"in_features", 18},
                 {"out_features", 4},
                 {"input_shape", {2, 3, 3}},
                 {"weight", "w.bin"},
                 {"bias", "b.bin"},
                 {"activation", "leaky_relu"},
                 {"negative_slope", 0.2}});
  all.push_back({{"name", "bn"},
                 {"type", "batch_norm2d"},
                 {"num_features", 4},
                 {"eps", 1e-5},
                 {"momentum", 0.1},
                 {"affine", true},
                 {"weight", "b.bin"},
                 {"bias", "b.bin"},
                 {"running_mean", "b.bin"},
                 {"running_var", "b.bin"}});
  all.push_back({{"name", "in"},
                 {"type", "instance_norm2d"},
                 {"num_features", 4},
                 {"weight", {{"path", "b.bin"}, {"dtype", "float32"}}},
                 {"bias", "b.bin"}});
  write_manifest(dir, "every_kind", all, {{"metadata", {{"license", "MIT"}, {"seed", "0"}}}});

  json half = conv("half");
  half["weight"] = {{"path", "h.bin"}, {"dtype", "float16"}};
  write_manifest(dir, "float16", json::array({half}));
  json nan = conv("nan");
  nan["bias"] = "n.bin";
  write_manifest(dir, "non_finite", json::array({nan}));
  json outside = conv("outside");
  outside["weight"] = "../w.bin";
  outside["bias"] = "/dev/null";
  write_manifest(dir, "outside", json::array({outside}));
  json folder = conv("folder");
  folder["weight"] = "dir.bin";
  write_manifest(dir, "directory", json::array({folder}));
  json grouped = conv("g");
  grouped["groups"] = 2;
  grouped["in_channels"] = 4;
  grouped["weight"] = "w.bin";
  write_manifest(dir, "grouped", json::array({grouped}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_fuzz_seeds BUNDLE_DIR MANIFEST_DIR\n");
    return 2;
  }
  std::filesystem::create_directories(argv[1]);
  std::filesystem::create_directories(argv[2]);
  write_bundles(argv[1]);
  write_manifests(argv[2]);
  return 0;
}
