// Builds bundles for runtime tests straight from the schema, independent of
// the compiler, so tests can make every kind of malformed file on purpose.
#ifndef MPSB_TESTS_RUNTIME_TEST_BUNDLE_H_
#define MPSB_TESTS_RUNTIME_TEST_BUNDLE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpsb/bundle.h"

namespace mpsb::testing {

struct TensorSpec {
  TensorRole role = TensorRole::kWeight;
  DType dtype = DType::kFloat32;
  TensorLayout layout = TensorLayout::kVector;
  std::vector<uint64_t> shape;
  TensorLayout source_layout = TensorLayout::kVector;
  std::vector<uint64_t> source_shape;  // empty: same as shape
  Transform transform = Transform::kIdentity;
  std::vector<uint8_t> bytes;  // empty: a deterministic fill of the right size
  // Overrides of what the builder would compute.
  std::optional<uint64_t> offset, size, checksum;
};

struct LayerSpec {
  std::string name;
  std::optional<uint32_t> index;  // default: position in BundleSpec::layers
  LayerKind kind = LayerKind::kConv2d;
  ConvParams conv;
  LinearParams linear;
  NormParams norm;
  Activation activation = Activation::kNone;
  bool omit_params = false;
  std::vector<TensorSpec> tensors;
  float activation_alpha = 0.0f;
  float activation_beta = 0.0f;
  Quantization quantization = Quantization::kNone;
  uint32_t legalized_groups = 0;
  // Layer.folded_batchnorm; absent when unset.
  std::optional<std::string> folded_batchnorm;
};

// An entry of Bundle.skipped_modules; an unset string is left out.
struct SkippedSpec {
  std::optional<std::string> name, type, reason;
};

struct BundleSpec {
  std::string name = "test";
  std::vector<std::pair<std::string, std::string>> metadata;
  uint32_t format_version = 1;
  uint64_t segment_alignment = 4096;
  uint64_t tensor_alignment = 256;
  bool sort_layers = true;
  std::vector<LayerSpec> layers;
  std::optional<uint64_t> segment_offset, segment_size, segment_checksum, metadata_checksum;
  // Empty: the field is absent.
  std::vector<SkippedSpec> skipped;
};

// A conv2d layer with OHWI weight (+ bias) matching its parameters.
// legalized_conv_layer: the same conv of `groups` groups stored dense
// (mpsbc --legalize): groups 1, weight [out][k][k][in] from a source
// [out][in/groups][k][k], transform kConvGroupedToDense.
LayerSpec legalized_conv_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                               uint32_t groups);
LayerSpec conv_layer(std::string name, uint32_t in, uint32_t out, uint32_t k, uint32_t groups = 1,
                     bool bias = true);
LayerSpec batch_norm_layer(std::string name, uint32_t c);
// An instance_norm2d layer; without affine it has no weight and bias.
LayerSpec instance_norm_layer(std::string name, uint32_t c, bool affine = true);
// A conv_transpose2d layer with rotated OHWI weight and a bias.
LayerSpec conv_transpose_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                               uint32_t stride);
// The same transposed conv of `groups` groups stored dense (mpsbc
// --legalize): groups 1, weight [out][k][k][in] rotated from a source
// [in][out/groups][k][k], transform kConvTransposeGroupedToDenseRotated.
LayerSpec legalized_conv_transpose_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                                         uint32_t stride, uint32_t groups);
// A linear layer after flatten of [c][h][w] (weight [out][h][w][c]), or on a
// vector of c features when h and w are 0; with a bias.
LayerSpec linear_layer(std::string name, uint32_t out, uint32_t c, uint32_t h = 0, uint32_t w = 0);

// A group_norm layer of c channels in `groups` groups; without affine it has
// no weight and bias.
LayerSpec group_norm_layer(std::string name, uint32_t c, uint32_t groups, bool affine = true);
// A prelu layer over c channels: its weight is c float32 slopes, stored
// from a source of num_parameters (1, broadcast, or c).
LayerSpec prelu_layer(std::string name, uint32_t c, uint32_t num_parameters);

// The whole file.
std::vector<uint8_t> build_bundle(const BundleSpec& spec);

}  // namespace mpsb::testing

#endif  // MPSB_TESTS_RUNTIME_TEST_BUNDLE_H_
