// Writes the seed corpora for the fuzz targets, built at run time from the
// schema (runtime/test_bundle.h) so no binary blob is checked in:
//   make_fuzz_seeds BUNDLE_DIR MANIFEST_DIR [COMPILE_DIR DUMP_CHECK_DIR]
// BUNDLE_DIR gets small valid bundles with every layer kind, dtype and
// quantization, and the hostile bundles of docs/SECURITY.md's findings
// (crafted_cases.h); MANIFEST_DIR gets manifests over the tensor files that
// fuzz_manifest writes into its scratch folder (w.bin, b.bin, h.bin, n.bin).
// COMPILE_DIR and DUMP_CHECK_DIR get folder inputs (fuzz_files.h) for
// fuzz_compile (manifest, tensors, probes, each precision and folding) and
// fuzz_dump_check (the same with a bundle), the crafted --check paddings
// among them. scripts/fuzz.sh adds the example model compiled by mpsbc.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz/crafted_cases.h"
#include "fuzz/fuzz_files.h"
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

  // docs/SECURITY.md's findings.
  write_bundle(dir, "crafted_batch_norm_gamma_float16.mpsb",
               mpsb::crafted::norm_gamma_float16(mpsb::LayerKind::kBatchNorm2d));
  write_bundle(dir, "crafted_instance_norm_gamma_float16.mpsb",
               mpsb::crafted::norm_gamma_float16(mpsb::LayerKind::kInstanceNorm2d));
  write_bundle(dir, "crafted_batch_norm_gamma_uint8_lut.mpsb",
               mpsb::crafted::norm_gamma_uint8_lut());
  for (const auto& p : mpsb::crafted::kPaddings) {
    write_bundle(dir, std::string("crafted_conv_padding_") + p.name + ".mpsb",
                 mpsb::crafted::conv_with_padding(p.h, p.w));
  }
  write_bundle(dir, "crafted_aliasing_convs.mpsb", mpsb::crafted::aliasing_convs(64));
}

void write_folder(const std::filesystem::path& dir, const std::string& name,
                  const std::vector<mpsb::fuzz::FuzzFile>& files) {
  const auto bytes = mpsb::fuzz::serialize_files(files);
  mpsb::testing::write_file(dir / name, bytes.data(), bytes.size());
}

// A conv "c" with a probe, then a batch norm "bn" that follows it (folded
// with --fold-batchnorm) with its own probe.
json conv_bn_layers(uint32_t pad_h, uint32_t pad_w) {
  json layers = json::array({mpsb::crafted::conv_manifest_layer(pad_h, pad_w)});
  layers.push_back({{"name", "bn"},
                    {"type", "batch_norm2d"},
                    {"num_features", 4},
                    {"follows", "c"},
                    {"weight", "b.bin"},
                    {"bias", "b.bin"},
                    {"running_mean", "b.bin"},
                    {"running_var", "b.bin"},
                    {"probe",
                     {{"input", "y.bin"},
                      {"input_shape", {1, 4, 5, 5}},
                      {"output", "y.bin"},
                      {"output_shape", {1, 4, 5, 5}}}}});
  return layers;
}

void write_compile_folders(const std::filesystem::path& dir) {
  using mpsb::crafted::manifest;
  using mpsb::crafted::manifest_folder;
  // Options byte: precision in bits 0-1, --fold-batchnorm in bit 2.
  for (uint8_t options = 0; options < 8; ++options) {
    write_folder(dir, "conv_bn_" + std::to_string(options),
                 manifest_folder(manifest(conv_bn_layers(1, 1)), options));
  }
  json fc = {{"name", "fc"},
             {"type", "linear"},
             {"in_features", 18},
             {"out_features", 4},
             {"input_shape", {2, 3, 3}},
             {"weight", "w.bin"},
             {"bias", "b.bin"},
             {"probe",
              {{"input", "x.bin"},
               {"input_shape", {1, 2, 3, 3}},
               {"output", "b.bin"},
               {"output_shape", {1, 4}}}}};
  json up = {{"name", "up"},
             {"type", "conv_transpose2d"},
             {"in_channels", 2},
             {"out_channels", 4},
             {"kernel_size", 3},
             {"stride", 2},
             {"padding", 1},
             {"output_padding", 1},
             {"weight", "w.bin"},
             {"bias", "b.bin"},
             {"probe",
              {{"input", "x.bin"},
               {"input_shape", {1, 2, 5, 5}},
               {"output", "y.bin"},
               {"output_shape", {1, 4, 5, 5}}}}};
  write_folder(dir, "linear_and_transposed", manifest_folder(manifest(json::array({fc, up})), 1));
  for (const auto& p : mpsb::crafted::kPaddings) {
    write_folder(
        dir, std::string("crafted_padding_") + p.name,
        manifest_folder(manifest(json::array({mpsb::crafted::conv_manifest_layer(p.h, p.w)})), 0));
  }
  write_folder(dir, "crafted_nan_uint8_linear", mpsb::crafted::nan_weight_uint8_linear_folder());
}

// fuzz_dump_check: the compile folders' manifest with the bundle beside it.
void write_dump_check_folders(const std::filesystem::path& dir) {
  using mpsb::crafted::manifest;
  using mpsb::crafted::manifest_folder;
  auto with_bundle = [](std::vector<mpsb::fuzz::FuzzFile> files,
                        const mpsb::testing::BundleSpec& spec) {
    files.push_back({"model.mpsb", mpsb::testing::build_bundle(spec)});
    return files;
  };
  write_folder(
      dir, "conv",
      with_bundle(
          manifest_folder(manifest(json::array({mpsb::crafted::conv_manifest_layer(1, 1)})), 0),
          mpsb::crafted::conv_with_padding(1, 1)));
  for (const auto& p : mpsb::crafted::kPaddings) {
    // The manifest is harmless; the bundle's padding reaches the reference.
    write_folder(
        dir, std::string("crafted_padding_") + p.name,
        with_bundle(
            manifest_folder(manifest(json::array({mpsb::crafted::conv_manifest_layer(1, 1)})), 0),
            mpsb::crafted::conv_with_padding(p.h, p.w)));
  }
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
                 {"affine", true},
                 {"weight", {{"path", "b.bin"}, {"dtype", "float32"}}},
                 {"bias", "b.bin"}});
  write_manifest(
      dir, "every_kind", all,
      {{"metadata", {{"license", "MIT"}, {"seed", "0"}}},
       {"skipped", {{{"name", "act"}, {"type", "Hardswish"}, {"reason", "no MPS neuron"}}}}});

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
  if (argc != 3 && argc != 5) {
    std::fprintf(stderr,
                 "usage: make_fuzz_seeds BUNDLE_DIR MANIFEST_DIR [COMPILE_DIR DUMP_CHECK_DIR]\n");
    return 2;
  }
  for (int i = 1; i < argc; ++i) std::filesystem::create_directories(argv[i]);
  write_bundles(argv[1]);
  write_manifests(argv[2]);
  if (argc == 5) {
    write_compile_folders(argv[3]);
    write_dump_check_folders(argv[4]);
  }
  return 0;
}
