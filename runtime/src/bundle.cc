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
using internal::printable;
using internal::view;

namespace {

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
  if (Status s =
          internal::check_bundle_bytes(m->data, m->size, m->path, &m->root, &m->network_order);
      !s) {
    return {s.error(), s.message()};
  }
  if (Status s = internal::check_tensor_ranges(*m->root, m->path); !s) {
    return {s.error(), s.message()};
  }
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
size_t Bundle::skipped_module_count() const {
  return root()->skipped_modules() ? root()->skipped_modules()->size() : 0;
}
SkippedModule Bundle::skipped_module(size_t i) const {
  const fb::SkippedModule* s =
      root()->skipped_modules()->Get(static_cast<flatbuffers::uoffset_t>(i));
  return {view(s->name()), view(s->type()), view(s->reason())};
}
uint64_t Bundle::segment_alignment() const { return root()->segment_alignment(); }
uint64_t Bundle::segment_checksum() const { return root()->segment_checksum(); }
uint64_t Bundle::metadata_checksum() const { return root()->metadata_checksum(); }
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

void internal::advise(const Mapping& m, const Tensor& t, bool load) {
  if (!m.owned || t.size() == 0) return;
  static const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t begin = static_cast<uint64_t>(static_cast<const std::byte*>(t.data()) - m.data);
  const uint64_t start = begin / page * page;
  const uint64_t end = std::min<uint64_t>(m.size, begin + t.size());
  madvise(const_cast<std::byte*>(m.data + start), end - start,
          load ? MADV_WILLNEED : MADV_DONTNEED);
}

void internal::advise(const Mapping& m, const Layer& l, bool load) {
  for (size_t i = 0; i < l.tensor_count(); ++i) advise(m, l.tensor(i), load);
}

void Bundle::load(const Tensor& t) const { internal::advise(*m_, t, true); }
void Bundle::purge(const Tensor& t) const { internal::advise(*m_, t, false); }
void Bundle::load(const Layer& l) const { internal::advise(*m_, l, true); }
void Bundle::purge(const Layer& l) const { internal::advise(*m_, l, false); }

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
float Layer::activation_beta() const { return l_->activation_beta(); }
Quantization Layer::quantization() const { return static_cast<Quantization>(l_->quantization()); }
std::string_view Layer::folded_batchnorm() const { return view(l_->folded_batchnorm()); }

uint32_t Layer::legalized_groups() const { return l_->legalized_groups(); }

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
  if (const fb::NormParams* n = l_->norm()) p = {n->num_features(), n->eps(), n->num_groups()};
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
