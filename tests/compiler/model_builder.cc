#include "model_builder.h"

#include <algorithm>

namespace mpsb::testing {

ModelBuilder::ModelBuilder()
    : manifest_({{"format", "mpsb.manifest/1"}, {"layers", nlohmann::json::array()}}) {}

std::vector<float> ModelBuilder::write_floats(const std::string& file, uint64_t n) {
  auto v = random_floats(n, seed_++);
  write_vector(dir_ / file, v);
  data_[file] = v;
  return v;
}

nlohmann::json& ModelBuilder::add_conv(const std::string& name, uint64_t in, uint64_t out,
                                       uint64_t kh, uint64_t kw, uint64_t groups, bool bias) {
  nlohmann::json l = {{"name", name},
                      {"type", "conv2d"},
                      {"in_channels", in},
                      {"out_channels", out},
                      {"kernel_size", {kh, kw}},
                      {"groups", groups},
                      {"weight", name + ".weight.bin"}};
  data_[name + ".weight"] = write_floats(name + ".weight.bin", out * (in / groups) * kh * kw);
  if (bias) {
    l["bias"] = name + ".bias.bin";
    data_[name + ".bias"] = write_floats(name + ".bias.bin", out);
  }
  manifest_["layers"].push_back(l);
  return manifest_["layers"].back();
}

nlohmann::json& ModelBuilder::add_conv_transpose(const std::string& name, uint64_t in, uint64_t out,
                                                 uint64_t k, uint64_t groups) {
  nlohmann::json l = {{"name", name},
                      {"type", "conv_transpose2d"},
                      {"in_channels", in},
                      {"out_channels", out},
                      {"kernel_size", k},
                      {"stride", 2},
                      {"padding", 1},
                      {"output_padding", 1},
                      {"groups", groups},
                      {"weight", name + ".weight.bin"},
                      {"bias", name + ".bias.bin"}};
  data_[name + ".weight"] = write_floats(name + ".weight.bin", in * (out / groups) * k * k);
  data_[name + ".bias"] = write_floats(name + ".bias.bin", out);
  manifest_["layers"].push_back(l);
  return manifest_["layers"].back();
}

nlohmann::json& ModelBuilder::add_linear(const std::string& name, uint64_t in, uint64_t out,
                                         std::vector<uint64_t> input_chw) {
  nlohmann::json l = {{"name", name},
                      {"type", "linear"},
                      {"in_features", in},
                      {"out_features", out},
                      {"weight", name + ".weight.bin"},
                      {"bias", name + ".bias.bin"}};
  if (!input_chw.empty()) l["input_shape"] = input_chw;
  data_[name + ".weight"] = write_floats(name + ".weight.bin", in * out);
  data_[name + ".bias"] = write_floats(name + ".bias.bin", out);
  manifest_["layers"].push_back(l);
  return manifest_["layers"].back();
}

nlohmann::json& ModelBuilder::add_batch_norm(const std::string& name, uint64_t n) {
  nlohmann::json l = {{"name", name}, {"type", "batch_norm2d"}, {"num_features", n}};
  for (const char* role : {"weight", "bias", "running_mean", "running_var"}) {
    const std::string file = name + "." + role + ".bin";
    l[role] = file;
    data_[name + "." + role] = write_floats(file, n);
  }
  manifest_["layers"].push_back(l);
  return manifest_["layers"].back();
}

std::filesystem::path ModelBuilder::write_manifest(const std::string& file) const {
  write_file(dir_ / file, manifest_.dump(2));
  return dir_ / file;
}

mpsbc::CompileOptions ModelBuilder::options(const std::string& output) const {
  mpsbc::CompileOptions o;
  o.manifest_path = (dir_ / "manifest.json").string();
  o.output_path = (dir_ / output).string();
  return o;
}

mpsbc::CompileReport ModelBuilder::compile(const std::string& output) {
  write_manifest();
  return mpsbc::compile(options(output));
}

std::vector<mpsbc::Diagnostic> errors_of(const mpsbc::CompileReport& r) {
  std::vector<mpsbc::Diagnostic> out;
  for (const auto& d : r.diagnostics) {
    if (d.severity == mpsbc::Diagnostic::Severity::kError) out.push_back(d);
  }
  return out;
}

std::vector<std::string> list_dir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace mpsb::testing
