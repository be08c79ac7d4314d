#include "mpsb/bundle.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "bundle_internal.h"
#include "mpsb/fb/bundle_generated.h"
#include "tensor_ranges.h"

namespace mpsb {
namespace {

constexpr uint32_t kFormatVersion = 1;
// FlatBuffers 2.0.8 addresses at most 2 GiB; its Verifier does not enforce
// that in release builds, so open() does.
constexpr uint64_t kMaxMetadataSize = (uint64_t{1} << 31) - 1;
constexpr uint64_t kMaxSegmentAlignment = uint64_t{1} << 30;
// Data sources hand out float* (and MPS reads 16-byte vectors), so every
// tensor must start at least 16-byte aligned; with a smaller alignment a
// crafted file could make bias_terms() a misaligned float*. mpsbc never
// writes less (its kMinTensorAlignment).
constexpr uint64_t kMinTensorAlignment = 16;
// Deeper than any valid bundle (Bundle > Layer > Tensor > shape).
constexpr uint32_t kMaxDepth = 16;

bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

bool aligned_u64(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(uint64_t) == 0; }

// Multiplies into *acc, reporting overflow instead of wrapping.
bool mul_ok(uint64_t* acc, uint64_t v) {
  if (v != 0 && *acc > std::numeric_limits<uint64_t>::max() / v) return false;
  *acc *= v;
  return true;
}

using internal::printable;

std::string_view view(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

template <typename E>
bool enum_ok(E v, E max) {
  return static_cast<uint32_t>(v) <= static_cast<uint32_t>(max);
}

// Checks one bundle held in memory, in the documented order. `where` names
// the file in messages.
class Checker {
 public:
  Checker(const std::byte* data, uint64_t size, const std::string& where)
      : data_(data), size_(size), where_(where) {}

  Status run(std::vector<uint32_t>* network_order) {
    if (Status s = check_envelope(); !s) return s;
    if (Status s = check_bundle(); !s) return s;
    return check_layers(network_order);
  }

  const fb::Bundle* root() const { return root_; }

 private:
  Status fail(Error e, const std::string& what) const { return {e, where_ + ": " + what}; }

  Status check_envelope() {
    // Size prefix (4) + root offset (4) + identifier (4).
    if (size_ < 12) {
      return fail(Error::kTruncated,
                  "file is " + std::to_string(size_) + " bytes, too small for an mpsb bundle");
    }
    if (!flatbuffers::BufferHasIdentifier(data_, fb::BundleIdentifier(), true)) {
      return fail(Error::kBadIdentifier,
                  "not an mpsb bundle (identifier is '" +
                      printable(std::string_view(reinterpret_cast<const char*>(data_) + 8, 4)) +
                      "', want 'MPSB')");
    }
    const uint64_t meta = flatbuffers::ReadScalar<uint32_t>(data_);
    if (meta > kMaxMetadataSize) {
      return fail(Error::kTooLarge, "metadata size " + std::to_string(meta) +
                                        " exceeds the FlatBuffers limit of 2 GiB");
    }
    if (meta > size_ - 4) {
      return fail(Error::kTruncated, "metadata needs " + std::to_string(meta + 4) +
                                         " bytes but the file has " + std::to_string(size_));
    }
    metadata_size_ = 4 + meta;
    // At most one table per 4 bytes of metadata: a bound the verifier can
    // hold hostile input to without limiting large valid bundles.
    const auto max_tables = static_cast<uint32_t>(std::min<uint64_t>(meta / 4 + 16, UINT32_MAX));
    flatbuffers::Verifier verifier(reinterpret_cast<const uint8_t*>(data_), metadata_size_,
                                   kMaxDepth, max_tables);
    if (!fb::VerifySizePrefixedBundleBuffer(verifier)) {
      return fail(Error::kVerifierFailed, "metadata failed FlatBuffers verification");
    }
    root_ = fb::GetSizePrefixedBundle(data_);
    return Ok{};
  }

  Status check_bundle() {
    const fb::Bundle& b = *root_;
    if (b.format_version() == 0 || b.format_version() > kFormatVersion) {
      return fail(Error::kUnsupportedVersion, "format version " +
                                                  std::to_string(b.format_version()) +
                                                  " is not supported (this reader supports " +
                                                  std::to_string(kFormatVersion) + ")");
    }
    const uint64_t sa = b.segment_alignment(), ta = b.tensor_alignment();
    if (!is_pow2(sa) || sa > kMaxSegmentAlignment) {
      return fail(Error::kBadField,
                  "segment_alignment " + std::to_string(sa) + " is not a power of two up to 1 GiB");
    }
    if (!is_pow2(ta) || ta < kMinTensorAlignment || ta > sa) {
      return fail(Error::kBadField, "tensor_alignment " + std::to_string(ta) +
                                        " is not a power of two from 16 up to segment_alignment");
    }
    const uint64_t off = b.segment_offset(), seg = b.segment_size();
    if (off % sa != 0 || seg % sa != 0) {
      return fail(Error::kMisaligned, "data segment at " + std::to_string(off) + " size " +
                                          std::to_string(seg) + " is not aligned to " +
                                          std::to_string(sa));
    }
    if (off < metadata_size_) {
      return fail(Error::kBadSegment, "data segment at " + std::to_string(off) +
                                          " overlaps the metadata (" +
                                          std::to_string(metadata_size_) + " bytes)");
    }
    if (off > size_ || seg > size_ - off) {
      return fail(Error::kTruncated, "data segment [" + std::to_string(off) + ", +" +
                                         std::to_string(seg) + ") ends past the end of the file (" +
                                         std::to_string(size_) + " bytes)");
    }
    if (off + seg != size_) {
      return fail(Error::kBadSegment, "file has " + std::to_string(size_ - off - seg) +
                                          " bytes after the data segment");
    }
    segment_offset_ = off;
    segment_size_ = seg;
    if (const auto* md = b.metadata()) {
      for (flatbuffers::uoffset_t i = 1; i < md->size(); ++i) {
        if (!(view(md->Get(i - 1)->key()) < view(md->Get(i)->key()))) {
          return fail(Error::kUnsortedNames, "metadata keys are not sorted and unique at '" +
                                                 printable(view(md->Get(i)->key())) + "'");
        }
      }
    }
    return Ok{};
  }

  Status check_layers(std::vector<uint32_t>* network_order) {
    const auto& layers = *root_->layers();
    const uint32_t n = layers.size();
    network_order->assign(n, UINT32_MAX);
    for (uint32_t i = 0; i < n; ++i) {
      const fb::Layer* l = layers.Get(i);
      const std::string_view name = view(l->name());
      const std::string at = "layer '" + printable(name) + "'";
      if (name.empty() || name.find('\0') != std::string_view::npos) {
        return fail(Error::kBadField, "layer " + std::to_string(i) + " has an empty name or a NUL");
      }
      if (i > 0) {
        const std::string_view prev = view(layers.Get(i - 1)->name());
        if (prev == name) return fail(Error::kDuplicateName, at + " appears twice");
        if (!(prev < name)) {
          return fail(Error::kUnsortedNames,
                      at + " is out of order (layers must be sorted by name)");
        }
      }
      if (l->index() >= n || (*network_order)[l->index()] != UINT32_MAX) {
        return fail(Error::kBadField,
                    at + ": index " + std::to_string(l->index()) + " is out of range or repeated");
      }
      (*network_order)[l->index()] = i;
      if (Status s = check_layer(*l, at); !s) return s;
    }
    return Ok{};
  }

  Status check_layer(const fb::Layer& l, const std::string& at) {
    if (!enum_ok(l.kind(), fb::LayerKind::MAX) || !enum_ok(l.activation(), fb::Activation::MAX) ||
        !enum_ok(l.quantization(), fb::Quantization::MAX)) {
      return fail(Error::kBadField, at + ": kind, activation or quantization out of range");
    }
    // Expected stored shapes of weight and vectors, from the parameters, so
    // that a data source can never hand MPS fewer bytes than it will read.
    std::vector<uint64_t> weight_shape;
    uint64_t vector_len = 0;
    switch (l.kind()) {
      case fb::LayerKind::Conv2d:
      case fb::LayerKind::ConvTranspose2d: {
        const fb::ConvParams* c = l.conv();
        if (!c) return fail(Error::kBadField, at + ": conv parameters missing");
        if (c->in_channels() == 0 || c->out_channels() == 0 || c->kernel_h() == 0 ||
            c->kernel_w() == 0 || c->stride_h() == 0 || c->stride_w() == 0 ||
            c->dilation_h() == 0 || c->dilation_w() == 0 || c->groups() == 0 ||
            c->in_channels() % c->groups() != 0 || c->out_channels() % c->groups() != 0) {
          return fail(Error::kBadField,
                      at + ": conv parameters are zero or not divisible by groups");
        }
        weight_shape = {c->out_channels(), c->kernel_h(), c->kernel_w(),
                        c->in_channels() / c->groups()};
        vector_len = c->out_channels();
        break;
      }
      case fb::LayerKind::Linear: {
        const fb::LinearParams* p = l.linear();
        if (!p || p->in_features() == 0 || p->out_features() == 0) {
          return fail(Error::kBadField, at + ": linear parameters missing or zero");
        }
        const auto* is = p->input_shape();
        if (is && is->size() != 0) {
          uint64_t chw = 1;
          bool ok = is->size() == 3;
          for (uint32_t d : *is) ok = ok && d != 0 && mul_ok(&chw, d);
          if (!ok || chw != p->in_features()) {
            return fail(Error::kBadField, at + ": input_shape does not multiply to in_features");
          }
          weight_shape = {p->out_features(), is->Get(1), is->Get(2), is->Get(0)};
        } else {
          weight_shape = {p->out_features(), 1, 1, p->in_features()};
        }
        vector_len = p->out_features();
        break;
      }
      case fb::LayerKind::BatchNorm2d:
      case fb::LayerKind::InstanceNorm2d: {
        const fb::NormParams* p = l.norm();
        if (!p || p->num_features() == 0) {
          return fail(Error::kBadField, at + ": norm parameters missing or zero");
        }
        vector_len = p->num_features();
        break;
      }
    }
    uint32_t roles_seen = 0;
    const auto& tensors = *l.tensors();
    for (uint32_t j = 0; j < tensors.size(); ++j) {
      const fb::Tensor& t = *tensors.Get(j);
      const std::string tat = at + " tensor " + std::to_string(j);
      if (!enum_ok(t.role(), fb::TensorRole::MAX) || !enum_ok(t.dtype(), fb::DType::MAX) ||
          !enum_ok(t.source_dtype(), fb::DType::MAX) ||
          !enum_ok(t.layout(), fb::TensorLayout::MAX) ||
          !enum_ok(t.source_layout(), fb::TensorLayout::MAX) ||
          !enum_ok(t.transform(), fb::Transform::MAX)) {
        return fail(Error::kBadField, tat + ": an enum field is out of range");
      }
      const uint32_t bit = 1u << static_cast<uint32_t>(t.role());
      if (roles_seen & bit) {
        return fail(Error::kBadField,
                    tat + ": second tensor with role " +
                        std::string(to_string(static_cast<TensorRole>(t.role()))));
      }
      roles_seen |= bit;
      // Tensor::shape() hands out these vectors as spans of uint64_t, but
      // the FlatBuffers Verifier only checks a vector's 4-byte length
      // prefix for alignment: a crafted file can put the elements at 4 mod
      // 8, and reading them would be a misaligned load (found by fuzzing).
      if (!aligned_u64(t.shape()->data()) || !aligned_u64(t.source_shape()->data())) {
        return fail(Error::kMisaligned, tat + ": shape vector is not 8-byte aligned");
      }
      uint64_t count = 1, source_count = 1;
      bool ok = t.shape()->size() != 0 && t.source_shape()->size() != 0 && t.shape()->size() <= 8 &&
                t.source_shape()->size() <= 8;
      for (uint64_t d : *t.shape()) ok = ok && d != 0 && mul_ok(&count, d);
      for (uint64_t d : *t.source_shape()) ok = ok && d != 0 && mul_ok(&source_count, d);
      if (!ok || count != source_count) {
        return fail(Error::kBadField, tat +
                                          ": shape is empty, has a zero or overflows, or "
                                          "differs in element count from its source shape");
      }
      uint64_t bytes = count;
      if (!mul_ok(&bytes, dtype_size(static_cast<DType>(t.dtype()))) || bytes != t.size()) {
        return fail(Error::kSizeMismatch, tat + ": size " + std::to_string(t.size()) +
                                              " is not shape x dtype = " + std::to_string(bytes));
      }
      if (t.offset() % root_->tensor_alignment() != 0) {
        return fail(Error::kMisaligned, tat + ": offset " + std::to_string(t.offset()) +
                                            " is not a multiple of the tensor alignment " +
                                            std::to_string(root_->tensor_alignment()));
      }
      if (t.size() > segment_size_ || t.offset() > segment_size_ - t.size()) {
        return fail(Error::kTensorOutOfRange, tat + ": [" + std::to_string(t.offset()) + ", +" +
                                                  std::to_string(t.size()) +
                                                  ") lies outside the data segment (" +
                                                  std::to_string(segment_size_) + " bytes)");
      }
      if (Status s = check_role_shape(t, tat, weight_shape, vector_len); !s) return s;
    }
    // Quantized weights come with what dequantizes them, and only then.
    const fb::Tensor* weight = nullptr;
    for (const fb::Tensor* t : tensors) {
      if (t->role() == fb::TensorRole::Weight) weight = t;
    }
    const bool uint8_weight = weight && weight->dtype() == fb::DType::UInt8;
    const bool has_ranges = roles_seen & (1u << uint32_t(fb::TensorRole::QuantRanges));
    const bool has_table = roles_seen & (1u << uint32_t(fb::TensorRole::QuantLookupTable));
    const bool consistent =
        l.quantization() == fb::Quantization::None     ? !uint8_weight && !has_ranges && !has_table
        : l.quantization() == fb::Quantization::Linear ? uint8_weight && has_ranges && !has_table
                                                       : uint8_weight && has_table && !has_ranges;
    if (!consistent) {
      return fail(Error::kBadField,
                  at + ": quantization " +
                      std::string(to_string(static_cast<Quantization>(l.quantization()))) +
                      " does not match its weight dtype and quantization tables");
    }
    if (weight && weight->dtype() == fb::DType::BFloat16) {
      return fail(Error::kBadField, at + ": bfloat16 weights (MPS takes float32, float16, uint8)");
    }
    const bool needs_weight = l.kind() == fb::LayerKind::Conv2d ||
                              l.kind() == fb::LayerKind::ConvTranspose2d ||
                              l.kind() == fb::LayerKind::Linear;
    if (needs_weight && !(roles_seen & 1u)) {
      return fail(Error::kBadField, at + ": has no weight tensor");
    }
    if (l.kind() == fb::LayerKind::BatchNorm2d && (roles_seen & 0b1100u) != 0b1100u) {
      return fail(Error::kBadField, at + ": batch norm needs running_mean and running_var");
    }
    return Ok{};
  }

  Status check_role_shape(const fb::Tensor& t, const std::string& tat,
                          const std::vector<uint64_t>& weight_shape, uint64_t vector_len) {
    const auto& shape = *t.shape();
    auto shape_is = [&](const std::vector<uint64_t>& want) {
      return shape.size() == want.size() && std::equal(shape.begin(), shape.end(), want.begin());
    };
    switch (t.role()) {
      case fb::TensorRole::Weight:
        if (!weight_shape.empty() ? !shape_is(weight_shape) : !shape_is({vector_len})) {
          return fail(Error::kSizeMismatch, tat + ": weight shape does not match the layer");
        }
        break;
      case fb::TensorRole::Bias:
      case fb::TensorRole::RunningMean:
      case fb::TensorRole::RunningVar:
        if (!shape_is({vector_len}) || t.dtype() != fb::DType::Float32) {
          return fail(Error::kSizeMismatch,
                      tat + ": vector must be " + std::to_string(vector_len) + " float32 values");
        }
        break;
      case fb::TensorRole::QuantRanges:
        if (weight_shape.empty() || !shape_is({weight_shape[0], 2}) ||
            t.dtype() != fb::DType::Float32) {
          return fail(Error::kSizeMismatch, tat + ": ranges must be [out][2] float32");
        }
        break;
      case fb::TensorRole::QuantLookupTable:
        if (!shape_is({256}) || t.dtype() != fb::DType::Float32) {
          return fail(Error::kSizeMismatch, tat + ": lookup table must be 256 float32 values");
        }
        break;
    }
    return Ok{};
  }

  const std::byte* data_;
  uint64_t size_;
  const std::string& where_;
  const fb::Bundle* root_ = nullptr;
  uint64_t metadata_size_ = 0;
  uint64_t segment_offset_ = 0;
  uint64_t segment_size_ = 0;
};

std::atomic<uint64_t> g_bytes_hashed{0};

uint64_t hash(const void* p, size_t n) {
  g_bytes_hashed.fetch_add(n, std::memory_order_relaxed);
  return XXH3_64bits(p, n);
}

// For "not a regular file (a FIFO)".
std::string file_type_name(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a file";
}

}  // namespace

uint64_t internal::bytes_hashed() { return g_bytes_hashed.load(std::memory_order_relaxed); }

internal::Mapping::~Mapping() {
  if (owned && data) munmap(const_cast<std::byte*>(data), size);
}

Bundle::Bundle(std::unique_ptr<internal::Mapping> m) : m_(std::move(m)) {}
Bundle::Bundle(Bundle&&) noexcept = default;
Bundle& Bundle::operator=(Bundle&&) noexcept = default;
Bundle::~Bundle() = default;

Result<Bundle> Bundle::open(const std::string& path, const OpenOptions& options) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
  // writer, forever; the type check below then refuses it. On a regular
  // file the flag changes nothing (mmap ignores it).
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return {Error::kIo, path + ": cannot open: " + std::strerror(errno)};
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return {Error::kIo, path + ": cannot stat: " + std::strerror(e)};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return {Error::kIo, path + ": not a regular file (" + file_type_name(st.st_mode) + ")"};
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size < 12) {
    ::close(fd);
    return {Error::kTruncated,
            path + ": file is " + std::to_string(size) + " bytes, too small for an mpsb bundle"};
  }
  void* p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  const int map_errno = errno;
  ::close(fd);  // The mapping keeps the file alive.
  if (p == MAP_FAILED)
    return {Error::kMapFailed, path + ": mmap failed: " + std::strerror(map_errno)};
  auto m = std::make_unique<internal::Mapping>();
  m->data = static_cast<const std::byte*>(p);
  m->size = size;
  m->owned = true;
  m->path = path;
  return finish_open(std::move(m), options);
}

Result<Bundle> Bundle::from_memory(const void* data, size_t size, const OpenOptions& options) {
  if (data == nullptr && size != 0) return {Error::kInvalidArgument, "<memory>: null data"};
  auto m = std::make_unique<internal::Mapping>();
  m->data = static_cast<const std::byte*>(data);
  m->size = size;
  m->owned = false;
  m->path = "<memory>";
  return finish_open(std::move(m), options);
}

Result<Bundle> Bundle::finish_open(std::unique_ptr<internal::Mapping> m,
                                   const OpenOptions& options) {
  Checker checker(m->data, m->size, m->path);
  if (Status s = checker.run(&m->network_order); !s) return {s.error(), s.message()};
  if (Status s = internal::check_tensor_ranges(*checker.root(), m->path); !s) {
    return {s.error(), s.message()};
  }
  m->root = checker.root();
  m->segment = m->data + m->root->segment_offset();
  Bundle bundle(std::move(m));
  if (options.verify_checksums) {
    if (Status s = bundle.verify(); !s) return {s.error(), s.message()};
  }
  return bundle;
}

const fb::Bundle* Bundle::root() const { return m_->root; }

Status Bundle::verify_layer(const Layer& layer) const {
  for (size_t i = 0; i < layer.tensor_count(); ++i) {
    const Tensor t = layer.tensor(i);
    if (hash(t.data(), t.size()) != t.checksum()) {
      return {Error::kChecksumMismatch, m_->path + ": layer '" + printable(layer.name()) +
                                            "' tensor " + std::string(to_string(t.role())) +
                                            ": checksum mismatch (the data is corrupt)"};
    }
  }
  return Ok{};
}

Status Bundle::verify() const {
  const uint64_t meta = 4 + flatbuffers::ReadScalar<uint32_t>(m_->data);
  // The metadata digest is computed with its own field zeroed; patch a copy.
  std::vector<uint8_t> copy(reinterpret_cast<const uint8_t*>(m_->data),
                            reinterpret_cast<const uint8_t*>(m_->data) + meta);
  fb::Bundle* mutable_root = fb::GetMutableSizePrefixedBundle(copy.data());
  if (!mutable_root->mutate_metadata_checksum(0)) {
    return {Error::kBadField, m_->path + ": metadata_checksum field is missing"};
  }
  if (hash(copy.data(), copy.size()) != root()->metadata_checksum()) {
    return {Error::kChecksumMismatch, m_->path + ": metadata checksum mismatch (bytes 0.." +
                                          std::to_string(meta) + " are corrupt)"};
  }
  const uint64_t off = root()->segment_offset();
  for (uint64_t i = meta; i < off; ++i) {
    if (m_->data[i] != std::byte{0}) {
      return {Error::kNonZeroPadding,
              m_->path + ": padding byte at offset " + std::to_string(i) + " is not zero"};
    }
  }
  for (size_t i = 0; i < layer_count(); ++i) {
    if (Status s = verify_layer(layer(i)); !s) return s;
  }
  const auto seg = segment();
  if (hash(seg.data(), seg.size()) != root()->segment_checksum()) {
    return {Error::kChecksumMismatch,
            m_->path + ": data segment checksum mismatch (padding or tensor bytes are corrupt)"};
  }
  return Ok{};
}

uint32_t Bundle::format_version() const { return root()->format_version(); }
std::string_view Bundle::name() const { return view(root()->name()); }
std::string_view Bundle::producer() const { return view(root()->producer()); }
size_t Bundle::metadata_count() const {
  return root()->metadata() ? root()->metadata()->size() : 0;
}
std::pair<std::string_view, std::string_view> Bundle::metadata(size_t i) const {
  const fb::KeyValue* kv = root()->metadata()->Get(static_cast<flatbuffers::uoffset_t>(i));
  return {view(kv->key()), view(kv->value())};
}
uint64_t Bundle::segment_alignment() const { return root()->segment_alignment(); }
uint64_t Bundle::tensor_alignment() const { return root()->tensor_alignment(); }
size_t Bundle::layer_count() const { return root()->layers()->size(); }

Layer Bundle::layer(size_t i) const {
  return Layer(root()->layers()->Get(static_cast<flatbuffers::uoffset_t>(i)), m_->segment);
}

std::optional<size_t> Bundle::find_index(std::string_view name) const {
  const auto& layers = *root()->layers();
  size_t lo = 0, hi = layers.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const std::string_view n = view(layers.Get(static_cast<flatbuffers::uoffset_t>(mid))->name());
    if (n == name) return mid;
    if (n < name) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return std::nullopt;
}

std::optional<Layer> Bundle::find(std::string_view name) const {
  const std::optional<size_t> i = find_index(name);
  if (!i) return std::nullopt;
  return layer(*i);
}

Layer Bundle::layer_in_network_order(size_t index) const { return layer(m_->network_order[index]); }

std::span<const std::byte> Bundle::segment() const {
  return {m_->segment, static_cast<size_t>(root()->segment_size())};
}
uint64_t Bundle::segment_offset() const { return root()->segment_offset(); }
std::span<const std::byte> Bundle::file() const { return {m_->data, m_->size}; }
std::span<const std::byte> Bundle::metadata_bytes() const {
  return {m_->data, 4 + flatbuffers::ReadScalar<uint32_t>(m_->data)};
}

namespace {
void advise(const internal::Mapping& m, const Tensor& t, int advice) {
  if (!m.owned || t.size() == 0) return;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t begin = static_cast<uint64_t>(static_cast<const std::byte*>(t.data()) - m.data);
  const uint64_t start = begin / page * page;
  const uint64_t end = std::min<uint64_t>(m.size, begin + t.size());
  madvise(const_cast<std::byte*>(m.data + start), end - start, advice);
}
}  // namespace

void Bundle::load(const Tensor& t) const { advise(*m_, t, MADV_WILLNEED); }
void Bundle::purge(const Tensor& t) const { advise(*m_, t, MADV_DONTNEED); }
void Bundle::load(const Layer& l) const {
  for (size_t i = 0; i < l.tensor_count(); ++i) load(l.tensor(i));
}
void Bundle::purge(const Layer& l) const {
  for (size_t i = 0; i < l.tensor_count(); ++i) purge(l.tensor(i));
}

std::string_view version() { return MPSB_VERSION_STRING; }

// ---- Views ------------------------------------------------------------------

TensorRole Tensor::role() const { return static_cast<TensorRole>(t_->role()); }
DType Tensor::dtype() const { return static_cast<DType>(t_->dtype()); }
TensorLayout Tensor::layout() const { return static_cast<TensorLayout>(t_->layout()); }
std::span<const uint64_t> Tensor::shape() const {
  return {t_->shape()->data(), t_->shape()->size()};
}
uint64_t Tensor::element_count() const {
  uint64_t n = 1;
  for (uint64_t d : shape()) n *= d;
  return n;
}
DType Tensor::source_dtype() const { return static_cast<DType>(t_->source_dtype()); }
TensorLayout Tensor::source_layout() const {
  return static_cast<TensorLayout>(t_->source_layout());
}
std::span<const uint64_t> Tensor::source_shape() const {
  return {t_->source_shape()->data(), t_->source_shape()->size()};
}
Transform Tensor::transform() const { return static_cast<Transform>(t_->transform()); }
uint64_t Tensor::offset() const { return t_->offset(); }
uint64_t Tensor::size() const { return t_->size(); }
uint64_t Tensor::checksum() const { return t_->checksum(); }
const void* Tensor::data() const { return segment_ + t_->offset(); }
std::span<const std::byte> Tensor::bytes() const {
  return {segment_ + t_->offset(), static_cast<size_t>(t_->size())};
}

std::string_view Layer::name() const { return view(l_->name()); }
uint32_t Layer::index() const { return l_->index(); }
LayerKind Layer::kind() const { return static_cast<LayerKind>(l_->kind()); }
Activation Layer::activation() const { return static_cast<Activation>(l_->activation()); }
float Layer::activation_alpha() const { return l_->activation_alpha(); }
Quantization Layer::quantization() const { return static_cast<Quantization>(l_->quantization()); }

Layer::WeightError Layer::weight_error() const {
  return {l_->weight_max_abs_error(), l_->weight_signal_energy(), l_->weight_noise_energy()};
}

double Layer::WeightError::sqnr_db() const {
  return 10.0 * std::log10(std::max(signal_energy, 1e-300) / noise_energy);
}

ConvParams Layer::conv() const {
  ConvParams p;
  if (const fb::ConvParams* c = l_->conv()) {
    p = {c->in_channels(),     c->out_channels(), c->kernel_h(),  c->kernel_w(),
         c->stride_h(),        c->stride_w(),     c->padding_h(), c->padding_w(),
         c->dilation_h(),      c->dilation_w(),   c->groups(),    c->output_padding_h(),
         c->output_padding_w()};
  }
  return p;
}

LinearParams Layer::linear() const {
  LinearParams p;
  if (const fb::LinearParams* l = l_->linear()) {
    p.in_features = l->in_features();
    p.out_features = l->out_features();
    if (l->input_shape() && l->input_shape()->size() == 3) {
      p.input_c = l->input_shape()->Get(0);
      p.input_h = l->input_shape()->Get(1);
      p.input_w = l->input_shape()->Get(2);
    }
  }
  return p;
}

NormParams Layer::norm() const {
  NormParams p;
  if (const fb::NormParams* n = l_->norm()) p = {n->num_features(), n->eps()};
  return p;
}

size_t Layer::tensor_count() const { return l_->tensors()->size(); }
Tensor Layer::tensor(size_t i) const {
  return Tensor(l_->tensors()->Get(static_cast<flatbuffers::uoffset_t>(i)), segment_);
}
std::optional<Tensor> Layer::find(TensorRole role) const {
  for (const fb::Tensor* t : *l_->tensors()) {
    if (static_cast<TensorRole>(t->role()) == role) return Tensor(t, segment_);
  }
  return std::nullopt;
}

}  // namespace mpsb
