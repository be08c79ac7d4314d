// The manifest (`mpsb.manifest/1`) as the compiler sees it after parsing and
// validation: every layer with its parameters, and every tensor with its
// source file and layout plan. DESIGN.md ("The manifest") gives the format;
// this module enforces it.

#ifndef MPSBC_MANIFEST_H_
#define MPSBC_MANIFEST_H_

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "diagnostics.h"
#include "mpsb/bundle.h"
#include "mpsb/types.h"
#include "mpsbc/layout.h"

namespace mpsbc {

struct ManifestTensor {
  mpsb::TensorRole role = mpsb::TensorRole::kWeight;
  // JSON pointer of the tensor's entry, e.g. "/layers/0/weight".
  std::string pointer;
  // The path as written in the manifest, for messages.
  std::string path_text;
  // Resolved against the manifest's folder.
  std::filesystem::path path;
  mpsb::DType source_dtype = mpsb::DType::kFloat32;
  // No conversion yet: stored dtype == source dtype.
  mpsb::DType dtype = mpsb::DType::kFloat32;
  TensorPlan plan;
  // Stored bytes == source bytes (same element count and dtype).
  uint64_t size = 0;
};

struct ManifestLayer {
  std::string name;
  uint32_t index = 0;
  std::string pointer;  // "/layers/<index>"
  mpsb::LayerKind kind = mpsb::LayerKind::kConv2d;
  mpsb::ConvParams conv;
  mpsb::LinearParams linear;
  mpsb::NormParams norm;
  mpsb::Activation activation = mpsb::Activation::kNone;
  float activation_alpha = 0.0f;
  // In role order (weight, bias, running_mean, running_var): the order of
  // both the bundle's tensor vector and the data segment.
  std::vector<ManifestTensor> tensors;
};

struct Manifest {
  std::string path;
  std::optional<std::string> name;
  // Sorted by key.
  std::vector<std::pair<std::string, std::string>> metadata;
  bool has_metadata = false;
  std::vector<ManifestLayer> layers;
};

// Reads and validates the manifest at `path`: JSON syntax, fields, types,
// ranges, shapes and MPS limits. Does not look at the .bin files. Returns
// nullopt when the file cannot be read or is not a JSON object; otherwise
// the manifest, which is only usable if `diag` holds no errors. Sets *io_error
// when the file itself could not be read.
std::optional<Manifest> parse_manifest(const std::string& path, Diagnostics& diag, bool* io_error);

// Checks that every tensor's file exists, is a readable regular file and has
// exactly the byte size its shape and dtype need.
void check_tensor_files(const Manifest& manifest, Diagnostics& diag);

}  // namespace mpsbc

#endif  // MPSBC_MANIFEST_H_
