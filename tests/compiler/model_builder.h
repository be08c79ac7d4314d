// Builds manifests and their .bin files at test time, so no binary test data
// is checked in.
#ifndef MPSB_TESTS_COMPILER_MODEL_BUILDER_H_
#define MPSB_TESTS_COMPILER_MODEL_BUILDER_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace mpsb::testing {

class ModelBuilder {
 public:
  ModelBuilder();

  // Adds a conv2d layer with random float32 weight (and bias) files named
  // after the layer. Returns the layer's JSON for further edits.
  nlohmann::json& add_conv(const std::string& name, uint64_t in, uint64_t out, uint64_t kh,
                           uint64_t kw, uint64_t groups = 1, bool bias = true);
  nlohmann::json& add_conv_transpose(const std::string& name, uint64_t in, uint64_t out, uint64_t k,
                                     uint64_t groups = 1);
  nlohmann::json& add_linear(const std::string& name, uint64_t in, uint64_t out,
                             std::vector<uint64_t> input_chw = {});
  nlohmann::json& add_batch_norm(const std::string& name, uint64_t n);

  // Writes `n` random floats to `file` (in the model folder); returns them.
  std::vector<float> write_floats(const std::string& file, uint64_t n);

  // Writes the manifest; returns its path.
  std::filesystem::path write_manifest(const std::string& file = "manifest.json") const;

  mpsbc::CompileOptions options(const std::string& output = "out.mpsb") const;
  mpsbc::CompileReport compile(const std::string& output = "out.mpsb");

  nlohmann::json& manifest() { return manifest_; }
  nlohmann::json& layer(size_t i) { return manifest_["layers"][i]; }
  const std::filesystem::path& dir() const { return dir_.path(); }
  std::filesystem::path path(const std::string& name) const { return dir_ / name; }
  // Source floats written for "<layer>.<role>".
  const std::vector<float>& floats(const std::string& key) const { return data_.at(key); }

 private:
  TempDir dir_;
  nlohmann::json manifest_;
  std::map<std::string, std::vector<float>> data_;
  uint32_t seed_ = 1;
};

// All error diagnostics of a report.
std::vector<mpsbc::Diagnostic> errors_of(const mpsbc::CompileReport& r);
// Files in `dir`, names only, sorted.
std::vector<std::string> list_dir(const std::filesystem::path& dir);

}  // namespace mpsb::testing

#endif  // MPSB_TESTS_COMPILER_MODEL_BUILDER_H_
