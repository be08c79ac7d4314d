// The manifest (`mpsb.manifest/1`) as the compiler sees it after parsing and
// validation: every layer with its parameters, and every tensor with its
// source file and layout plan. docs/MANIFEST.md gives the format; the
// fields and tensor roles of each layer kind come from mpsb/kinds.h.

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
#include "mpsbc/precision.h"
#include "source_file.h"

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
  // Stored element type: the weight's precision (plan_precision), float32
  // for vectors and quantization tables.
  mpsb::DType dtype = mpsb::DType::kFloat32;
  TensorPlan plan;
  // Bytes in the .bin, and bytes stored in the bundle.
  uint64_t source_size = 0;
  uint64_t size = 0;
  // --fold-batchnorm: stored row r (the output channel) becomes
  // row * fold_scale[r] + fold_shift[r]. Empty: unchanged.
  std::vector<float> fold_scale, fold_shift;
  // A tensor the compiler made (the bias of a folded conv that had none):
  // its stored values; `path` is empty then.
  std::vector<float> synthesized;
  // The .bin as check_tensor_files() found it: later readers refuse a file
  // whose identity differs (swapped or rewritten since).
  FileIdentity identity;
  // Whoever reads the bytes must refuse NaN and infinities (validation did
  // not scan them: TensorFileOptions::scan_non_finite).
  bool scan_on_read = false;
};

// The tensor's file for messages: the path as the manifest gives it, quoted,
// then the resolved path when it differs.
std::string describe_file(const ManifestTensor& t);

// A layer's real input and output from one PyTorch run (the exporter's
// probes), float32 in PyTorch order.
struct Probe {
  std::string pointer;  // "/layers/<i>/probe"
  // As the manifest gives them (for the folder rule and messages), and
  // resolved against the manifest's folder.
  std::string input_text, output_text;
  std::filesystem::path input, output;
  std::vector<uint64_t> input_shape, output_shape;
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
  // The activation's parameters in kinds.h's order (activation_spec).
  float activation_alpha = 0.0f;
  float activation_beta = 0.0f;
  std::optional<Probe> probe;
  // The manifest's "precision" for this layer's weight, if it sets one.
  std::optional<Precision> precision;
  // What plan_precision() chose and why, when it differs from what was
  // asked; and what storing at that precision cost (measure_precision()).
  Precision weight_precision = Precision::kFloat32;
  std::string precision_note;
  QuantizationError weight_error;
  double weight_signal_energy = 0, weight_noise_energy = 0;
  HalfConversion half;
  // batch_norm2d only: the conv whose output it normalizes (for folding).
  std::string follows;
  // After --fold-batchnorm: the folded batch norm's name and probe, whose
  // output this conv must now reproduce.
  std::string folded_from;
  std::optional<Probe> folded_probe;
  // A conv MPS refuses at kernel creation: why (Apple's rule) and where in
  // the manifest; empty otherwise. legalize_layers() (legalize.h) makes it
  // an error, or with --legalize stores the dense equivalent: conv.groups
  // becomes 1 and legalized_groups keeps the manifest's groups.
  std::string mps_refusal, mps_refusal_pointer;
  uint32_t legalized_groups = 0;
  // In the order of the kind's roles in mpsb/kinds.h, then what the
  // compiler adds (a folded conv's bias, uint8 ranges or lookup table): the
  // order of both the bundle's tensor vector and the data segment.
  std::vector<ManifestTensor> tensors;
};

// A module of the PyTorch model that tools/export left out of the manifest
// (its "skipped" list): stored in the bundle so every reader can say the
// bundle is not the whole model.
struct SkippedModule {
  std::string name;  // qualified module name; "" for the model itself
  std::string type;  // its class, "Hardswish"
  std::string reason;
};

struct Manifest {
  std::string path;
  std::optional<std::string> name;
  // Sorted by key.
  std::vector<std::pair<std::string, std::string>> metadata;
  bool has_metadata = false;
  std::vector<ManifestLayer> layers;
  // In the manifest's order.
  std::vector<SkippedModule> skipped;
};

// Reads and validates the manifest at `path`: JSON syntax, fields, types,
// ranges, shapes and MPS limits. Does not look at the .bin files. Returns
// nullopt when the file cannot be read or is not a JSON object; otherwise
// the manifest, which is only usable if `diag` holds no errors. Sets *io_error
// when the file itself could not be read.
std::optional<Manifest> parse_manifest(const std::string& path, Diagnostics& diag, bool* io_error);

}  // namespace mpsbc

#endif  // MPSBC_MANIFEST_H_
