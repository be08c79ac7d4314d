// Bundle: a read-only, memory-mapped .mpsb file and the views into it.
//
// Bundle::open maps the file and checks it in a fixed order (size,
// identifier, FlatBuffers verifier, semantic checks) before any field is
// read; a file that fails is refused with a precise Error. Opening reads the
// metadata only and touches no weight page.
//
// Layer and Tensor are views: they own nothing, point into the mapping, and
// are valid while the Bundle that made them lives. A Bundle is immutable
// after open, so any number of threads may read it and its views at once.

#ifndef MPSB_BUNDLE_H_
#define MPSB_BUNDLE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "mpsb/result.h"
#include "mpsb/types.h"

namespace mpsb {

namespace fb {
struct Bundle;
struct Layer;
struct Tensor;
}  // namespace fb

namespace internal {
struct Mapping;
struct Access;
}  // namespace internal

class Bundle;

// One tensor of a layer. Cheap to copy.
class Tensor {
 public:
  TensorRole role() const;
  DType dtype() const;
  TensorLayout layout() const;
  // Stored shape, outermost first. Points into the mapping.
  std::span<const uint64_t> shape() const;
  uint64_t element_count() const;

  DType source_dtype() const;
  TensorLayout source_layout() const;
  // PyTorch shape of the source tensor. Points into the mapping.
  std::span<const uint64_t> source_shape() const;
  Transform transform() const;

  // Offset from the start of the data segment and size in bytes.
  uint64_t offset() const;
  uint64_t size() const;
  // XXH3-64 of the stored bytes, as recorded by the compiler.
  uint64_t checksum() const;

  // The stored bytes. Points into the bundle's mapping; valid while the
  // Bundle lives. Reading it may fault pages in from the file.
  const void* data() const;
  std::span<const std::byte> bytes() const;

 private:
  friend class Layer;
  Tensor(const fb::Tensor* t, const std::byte* segment) : t_(t), segment_(segment) {}
  const fb::Tensor* t_;
  const std::byte* segment_;
};

struct ConvParams {
  uint32_t in_channels = 0, out_channels = 0;
  uint32_t kernel_h = 0, kernel_w = 0;
  uint32_t stride_h = 1, stride_w = 1;
  uint32_t padding_h = 0, padding_w = 0;
  uint32_t dilation_h = 1, dilation_w = 1;
  uint32_t groups = 1;
  uint32_t output_padding_h = 0, output_padding_w = 0;
};

struct LinearParams {
  uint32_t in_features = 0, out_features = 0;
  // {C, H, W} of the flattened feature map, or all zero for a vector input.
  uint32_t input_c = 0, input_h = 0, input_w = 0;
  bool flattened() const { return input_c != 0; }
};

// Normalization parameters (batch, instance and group norm); for a PReLU
// layer, num_features is its feature channels and the rest is unused.
struct NormParams {
  uint32_t num_features = 0;
  float eps = 0;
  uint32_t num_groups = 0;  // group norm: groups; 0 for the other kinds
};

// One layer. Cheap to copy.
class Layer {
 public:
  // Points into the mapping; valid while the Bundle lives.
  std::string_view name() const;
  // Position in the manifest (network order).
  uint32_t index() const;
  LayerKind kind() const;
  Activation activation() const;
  // The activation's parameters, in the order kinds.h lists them for it
  // (negative_slope; alpha; beta and threshold). 0 when it has none.
  float activation_alpha() const;
  float activation_beta() const;
  Quantization quantization() const;
  // The name of the manifest's batch_norm2d that --fold-batchnorm folded
  // into this conv's weight and bias (docs/FORMAT.md), or empty. Its weight
  // and bias are then not PyTorch's: they hold W·s and b·s + (β − μ·s). The
  // batch norm itself is not in the bundle. Points into the mapping; valid
  // while the Bundle lives.
  std::string_view folded_batchnorm() const;

  // What storing the weight at its precision changed, as the compiler
  // measured it against the float32 weight (schema: Layer.weight_*).
  struct WeightError {
    double max_abs = 0;
    double signal_energy = 0;  // Σw²
    double noise_energy = 0;   // Σ(w − w')²
    bool exact() const { return noise_energy == 0; }
    // 10·log10(signal / noise); meaningless when exact().
    double sqnr_db() const;
  };
  WeightError weight_error() const;

  // REQUIRES: kind() is kConv2d or kConvTranspose2d.
  ConvParams conv() const;
  // A conv MPS refuses stored as the equivalent dense one (mpsbc
  // --legalize): the manifest's groups, while conv().groups is 1 and the
  // weight's transform is kConvGroupedToDense. 0 for every other layer.
  uint32_t legalized_groups() const;
  // REQUIRES: kind() is kLinear.
  LinearParams linear() const;
  // REQUIRES: kind_spec(kind()).params is kNorm, kGroupNorm or kChannels.
  NormParams norm() const;

  size_t tensor_count() const;
  // REQUIRES: i < tensor_count()
  Tensor tensor(size_t i) const;
  // The tensor with that role, if the layer has one.
  std::optional<Tensor> find(TensorRole role) const;

 private:
  friend class Bundle;
  Layer(const fb::Layer* l, const std::byte* segment) : l_(l), segment_(segment) {}
  const fb::Layer* l_;
  const std::byte* segment_;
};

// A module of the PyTorch model that is not in the bundle: the exporter
// could not map it, or it did not run (schema: Bundle.skipped_modules).
// Points into the mapping; valid while the Bundle lives.
struct SkippedModule {
  std::string_view name;  // qualified module name; "" for the model itself
  std::string_view type;  // its class, "Hardswish"
  std::string_view reason;
};

struct OpenOptions {
  // Also check every tensor's checksum and the metadata and segment digests
  // (reads every weight page). Off by default: open stays cheap.
  bool verify_checksums = false;
};

class Bundle {
 public:
  // Maps `path` read-only and checks it. The error message names the file.
  [[nodiscard]] static Result<Bundle> open(const std::string& path,
                                           const OpenOptions& options = {});
  // Checks a bundle held in memory (not copied; must outlive the Bundle).
  // Used by tests and fuzzers. `data` must be 16-byte aligned, as malloc and
  // mmap give it: the views hand out uint64_t and float pointers into it (a
  // buffer at 4 mod 8 is refused with kMisaligned).
  [[nodiscard]] static Result<Bundle> from_memory(const void* data, size_t size,
                                                  const OpenOptions& options = {});

  Bundle(Bundle&&) noexcept;
  Bundle& operator=(Bundle&&) noexcept;
  Bundle(const Bundle&) = delete;
  Bundle& operator=(const Bundle&) = delete;
  ~Bundle();

  // Deep check: every tensor checksum, the metadata digest, the segment
  // digest (which also covers the zero padding). Reads the whole file.
  Status verify() const;
  // Deep check of one layer's tensors only.
  Status verify_layer(const Layer& layer) const;

  uint32_t format_version() const;
  std::string_view name() const;
  std::string_view producer() const;
  size_t metadata_count() const;
  // REQUIRES: i < metadata_count(). Sorted by key.
  std::pair<std::string_view, std::string_view> metadata(size_t i) const;

  // The modules of the PyTorch model that this bundle lacks, in the order
  // the exporter listed them; none for a bundle of the whole model.
  size_t skipped_module_count() const;
  // REQUIRES: i < skipped_module_count().
  SkippedModule skipped_module(size_t i) const;

  uint64_t segment_alignment() const;
  uint64_t tensor_alignment() const;

  // Layers sorted by name. REQUIRES: i < layer_count()
  size_t layer_count() const;
  Layer layer(size_t i) const;
  // Binary search by name.
  std::optional<Layer> find(std::string_view name) const;
  // The same search, giving the layer's position in the sorted order
  // (an index for layer()).
  std::optional<size_t> find_index(std::string_view name) const;
  // Layer with manifest index `index`. REQUIRES: index < layer_count()
  Layer layer_in_network_order(size_t index) const;

  // The whole data segment: starts page-aligned (at segment_offset()) and
  // its size is a multiple of segment_alignment(), so one
  // newBufferWithBytesNoCopy can wrap it. Points into the mapping.
  std::span<const std::byte> segment() const;
  uint64_t segment_offset() const;
  // The digests the compiler stored (docs/FORMAT.md): XXH3-64 of segment()
  // including its padding, and of metadata_bytes() with the
  // metadata_checksum field's 8 bytes zeroed. Read, not computed: open
  // checks them only with verify_checksums, verify() always. A probe file
  // names its model bundle by the model's segment_checksum()
  // (metadata mpsb.probes_for).
  uint64_t segment_checksum() const;
  uint64_t metadata_checksum() const;
  // The whole file as mapped, and the size-prefixed metadata at its start.
  std::span<const std::byte> file() const;
  std::span<const std::byte> metadata_bytes() const;

  // madvise(WILLNEED) / madvise(DONTNEED) over a tensor's pages. Hints only;
  // a no-op for bundles opened from memory.
  void load(const Tensor& t) const;
  void purge(const Tensor& t) const;
  // The same over every tensor of a layer.
  void load(const Layer& l) const;
  void purge(const Layer& l) const;

 private:
  friend struct internal::Access;
  explicit Bundle(std::unique_ptr<internal::Mapping> m);
  static Result<Bundle> finish_open(std::unique_ptr<internal::Mapping> m,
                                    const OpenOptions& options);
  const fb::Bundle* root() const;
  std::unique_ptr<internal::Mapping> m_;
};

// Returns the library version, "MAJOR.MINOR.PATCH".
std::string_view version();

}  // namespace mpsb

#endif  // MPSB_BUNDLE_H_
