// The checks Bundle::open runs on a file's bytes, in the documented order
// (docs/FORMAT.md §5): size, identifier, FlatBuffers verifier, then the
// semantic checks, the per-layer ones read from the layer-kind table.

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "bundle_internal.h"
#include "mpsb/kinds.h"

namespace mpsb::internal {
namespace {

constexpr uint32_t kFormatVersion = 1;
// FlatBuffers 2.0.8 addresses at most 2 GiB; its Verifier does not enforce
// that in release builds, so open() does.
constexpr uint64_t kMaxMetadataSize = (uint64_t{1} << 31) - 1;
constexpr uint64_t kMaxSegmentAlignment = uint64_t{1} << 30;
// Data sources hand out float* (and MPS reads 16-byte vectors), so every
// tensor must start at least 16-byte aligned; with a smaller alignment a
// crafted file could make bias_terms() a misaligned float*. mpsbc never
// writes less: both use mpsb_text.h's kMinTensorAlignment.
using text::kMinTensorAlignment;
// Deeper than any valid bundle (Bundle > Layer > Tensor > shape).
constexpr uint32_t kMaxDepth = 16;

bool aligned_u64(const void* p) { return reinterpret_cast<uintptr_t>(p) % alignof(uint64_t) == 0; }

// Multiplies into *acc, reporting overflow instead of wrapping.
bool mul_ok(uint64_t* acc, uint64_t v) {
  if (v != 0 && *acc > std::numeric_limits<uint64_t>::max() / v) return false;
  *acc *= v;
  return true;
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
    if (const auto* skipped = b.skipped_modules()) {
      // Each entry has all three strings (the model itself has the name ""),
      // a type and a reason that are not empty, and no NUL: the C API hands
      // them out as C strings.
      for (flatbuffers::uoffset_t i = 0; i < skipped->size(); ++i) {
        const fb::SkippedModule* m = skipped->Get(i);
        const flatbuffers::String* parts[] = {m->name(), m->type(), m->reason()};
        bool ok = m->type() && m->type()->size() != 0 && m->reason() && m->reason()->size() != 0;
        for (const flatbuffers::String* p : parts) {
          ok = ok && p && view(p).find('\0') == std::string_view::npos;
        }
        if (!ok) {
          return fail(Error::kBadField,
                      "skipped module " + std::to_string(i) +
                          " lacks its name, type or reason, or one of them holds a NUL");
        }
      }
    }
    return Ok{};
  }

  Status check_layers(std::vector<uint32_t>* network_order) {
    const auto& layers = *root_->layers();
    const uint32_t n = layers.size();
    uint32_t probes = 0;
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
      probes += l->kind() == fb::LayerKind::Probe;
    }
    return check_probe_file(probes, n);
  }

  // A probe file (docs/FORMAT.md §8) holds probe layers only and names the
  // model bundle it belongs to; a model bundle holds none.
  Status check_probe_file(uint32_t probes, uint32_t layers) {
    const fb::KeyValue* kv = nullptr;
    if (const auto* md = root_->metadata()) kv = md->LookupByKey(text::kProbesForKey);
    if (probes == 0 && !kv) return Ok{};
    if (!kv) {
      return fail(Error::kBadField,
                  "probe layers in a bundle without metadata " + std::string(text::kProbesForKey));
    }
    if (probes != layers) {
      return fail(Error::kBadField, "a probe file (metadata " + std::string(text::kProbesForKey) +
                                        ") holds " + std::to_string(layers - probes) +
                                        " layers that are not probes");
    }
    const std::string_view v = view(kv->value());
    const bool hex = v.size() == 16 && v.find_first_not_of("0123456789abcdef") == v.npos;
    if (!hex) {
      return fail(Error::kBadField, "metadata " + std::string(text::kProbesForKey) + " is '" +
                                        printable(v) + "', not 16 lowercase hex digits");
    }
    return Ok{};
  }

  // Per-layer rules, all read from the layer-kind table (mpsb/kinds.h): the
  // parameter table the kind needs, the roles it may have with the exact
  // stored shape and element type of each, and when each must be present.
  // A data source can then never hand MPS fewer bytes than it will read.
  Status check_layer(const fb::Layer& l, const std::string& at) {
    if (!enum_ok(l.kind(), fb::LayerKind::MAX) || !enum_ok(l.activation(), fb::Activation::MAX) ||
        !enum_ok(l.quantization(), fb::Quantization::MAX)) {
      return fail(Error::kBadField, at + ": kind, activation or quantization out of range");
    }
    const KindSpec& kind = kind_spec(static_cast<LayerKind>(l.kind()));
    Shapes shapes;
    if (Status s = check_params(l, kind, at, &shapes); !s) return s;
    const auto activation = static_cast<Activation>(l.activation());
    if (activation != Activation::kNone && !kind.fused_activation) {
      return fail(Error::kBadField, at + ": a " + std::string(kind.name) +
                                        " layer takes no fused activation, found " +
                                        std::string(to_string(activation)));
    }
    if (!std::isfinite(l.activation_alpha()) || !std::isfinite(l.activation_beta())) {
      return fail(Error::kBadField, at + ": activation parameters are not finite");
    }
    // The batch norm a conv folded: gone from the bundle, so it names no
    // layer here, but it is a name and is shown like one.
    if (const flatbuffers::String* folded = l.folded_batchnorm()) {
      if (kind.params != ParamTable::kConv) {
        return fail(Error::kBadField, at + ": a " + std::string(kind.name) +
                                          " layer cannot have a batch norm folded into it");
      }
      const std::string_view name = view(folded);
      if (name.empty() || name.find('\0') != std::string_view::npos) {
        return fail(Error::kBadField, at + ": folded_batchnorm is empty or has a NUL");
      }
    }
    // MPS's SoftPlus takes a = 1/beta: it must be finite too.
    if (activation == Activation::kSoftplus &&
        !(l.activation_alpha() > 0 && std::isfinite(1.0f / l.activation_alpha()))) {
      return fail(Error::kBadField, at + ": softplus beta must be > 0");
    }
    uint32_t roles_seen = 0;
    const auto& tensors = *l.tensors();
    for (uint32_t j = 0; j < tensors.size(); ++j) {
      const fb::Tensor& t = *tensors.Get(j);
      const std::string tat = at + " tensor " + std::to_string(j);
      if (Status s = check_tensor(t, tat); !s) return s;
      const auto role = static_cast<TensorRole>(t.role());
      const RoleSpec* spec = role_spec(kind.kind, role);
      if (!spec) {
        return fail(Error::kBadField, tat + ": a " + std::string(kind.name) + " layer has no " +
                                          std::string(to_string(role)) + " tensor");
      }
      const uint32_t bit = 1u << static_cast<uint32_t>(t.role());
      if (roles_seen & bit) {
        return fail(Error::kBadField,
                    tat + ": second tensor with role " + std::string(to_string(role)));
      }
      roles_seen |= bit;
      if (Status s = check_role(t, *spec, shapes, tat); !s) return s;
    }
    if (Status s = check_legalized(l, at); !s) return s;
    return check_presence(l, kind, roles_seen, at);
  }

  // A conv MPS refuses, stored dense (--legalize, docs/FORMAT.md): exactly
  // conv.groups 1, legalized_groups > 1 dividing both channel counts, and a
  // ConvGroupedToDense weight from a [O][I/g][kH][kW] source (a conv2d) or a
  // ConvTransposeGroupedToDenseRotated weight from a [I][O/g][kH][kW] source
  // (a conv_transpose2d); a dense weight only with legalized_groups.
  Status check_legalized(const fb::Layer& l, const std::string& at) {
    const uint32_t g = l.legalized_groups();
    const fb::Tensor* weight = nullptr;
    for (const fb::Tensor* t : *l.tensors()) {
      if (t->role() == fb::TensorRole::Weight) weight = t;
    }
    const fb::Transform transform = weight ? weight->transform() : fb::Transform::Identity;
    const bool dense = is_grouped_to_dense(static_cast<Transform>(transform));
    if (g == 0) {
      if (dense) {
        return fail(Error::kBadField,
                    at + ": weight is stored grouped-to-dense but legalized_groups is 0");
      }
      return Ok{};
    }
    const fb::ConvParams* c = l.conv();
    const bool transposed = l.kind() == fb::LayerKind::ConvTranspose2d;
    if ((l.kind() != fb::LayerKind::Conv2d && !transposed) || !c) {
      return fail(Error::kBadField, at + ": legalized_groups on a layer that is not a conv2d or "
                                         "conv_transpose2d");
    }
    if (c->groups() != 1) {
      return fail(Error::kBadField, at + ": legalized_groups " + std::to_string(g) +
                                        " with conv groups " + std::to_string(c->groups()) +
                                        " (a legalized conv is stored with groups 1)");
    }
    if (g < 2 || c->in_channels() % g != 0 || c->out_channels() % g != 0) {
      return fail(Error::kBadField, at + ": legalized_groups " + std::to_string(g) +
                                        " is not > 1 or does not divide the channels");
    }
    if (!dense) {
      return fail(Error::kBadField,
                  at + ": legalized_groups is set but the weight is not stored grouped-to-dense");
    }
    // Each kind has its own dense transform.
    const fb::Transform own = transposed ? fb::Transform::ConvTransposeGroupedToDenseRotated
                                         : fb::Transform::ConvGroupedToDense;
    if (transform != own) {
      return fail(Error::kBadField,
                  at + ": weight transform " +
                      std::string(to_string(static_cast<Transform>(transform))) + " is not the " +
                      std::string(transposed ? "conv_transpose2d" : "conv2d") +
                      " dense transform " + std::string(to_string(static_cast<Transform>(own))));
    }
    const Dims want =
        transposed ? Dims{c->in_channels(), c->out_channels() / g, c->kernel_h(), c->kernel_w()}
                   : Dims{c->out_channels(), c->in_channels() / g, c->kernel_h(), c->kernel_w()};
    const auto& src = *weight->source_shape();
    if (!(src.size() == want.n && std::equal(src.begin(), src.end(), want.d.begin()))) {
      return fail(Error::kSizeMismatch, at + ": legalized weight source shape " +
                                            shape_text({src.data(), src.size()}) + " is not " +
                                            shape_text(want.span()));
    }
    return Ok{};
  }

  // A stored shape of at most four dimensions, without allocating: open
  // checks every tensor of every layer.
  struct Dims {
    std::array<uint64_t, 4> d{};
    size_t n = 0;
    Dims() = default;
    Dims(std::initializer_list<uint64_t> v) : n(v.size()) {
      std::copy(v.begin(), v.end(), d.begin());
    }
    std::span<const uint64_t> span() const { return {d.data(), n}; }
  };

  // The stored shapes the layer's parameters imply.
  struct Shapes {
    Dims kernel;
    uint64_t out_channels = 0;
    uint64_t features = 0;
    // A probe's batch size, set by its first feature map.
    uint64_t batch = 0;
  };

  Status check_params(const fb::Layer& l, const KindSpec& kind, const std::string& at,
                      Shapes* shapes) {
    switch (kind.params) {
      case ParamTable::kConv: {
        const fb::ConvParams* c = l.conv();
        if (!c) return fail(Error::kBadField, at + ": conv parameters missing");
        if (c->in_channels() == 0 || c->out_channels() == 0 || c->kernel_h() == 0 ||
            c->kernel_w() == 0 || c->stride_h() == 0 || c->stride_w() == 0 ||
            c->dilation_h() == 0 || c->dilation_w() == 0 || c->groups() == 0 ||
            c->in_channels() % c->groups() != 0 || c->out_channels() % c->groups() != 0) {
          return fail(Error::kBadField,
                      at + ": conv parameters are zero or not divisible by groups");
        }
        shapes->kernel = {c->out_channels(), c->kernel_h(), c->kernel_w(),
                          c->in_channels() / c->groups()};
        shapes->out_channels = c->out_channels();
        return Ok{};
      }
      case ParamTable::kLinear: {
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
          shapes->kernel = {p->out_features(), is->Get(1), is->Get(2), is->Get(0)};
        } else {
          shapes->kernel = {p->out_features(), 1, 1, p->in_features()};
        }
        shapes->out_channels = p->out_features();
        return Ok{};
      }
      case ParamTable::kNorm:
      case ParamTable::kGroupNorm:
      case ParamTable::kChannels: {
        const fb::NormParams* p = l.norm();
        if (!p || p->num_features() == 0) {
          return fail(Error::kBadField, at + ": norm parameters missing or zero");
        }
        if (kind.params != ParamTable::kChannels && !(p->eps() > 0 && std::isfinite(p->eps()))) {
          return fail(Error::kBadField, at + ": eps must be a finite number > 0");
        }
        const bool grouped = kind.params == ParamTable::kGroupNorm;
        if (grouped ? p->num_groups() == 0 || p->num_features() % p->num_groups() != 0
                    : p->num_groups() != 0) {
          return fail(Error::kBadField,
                      at + (grouped ? ": num_groups is zero or does not divide num_features"
                                    : ": num_groups is set on a layer without groups"));
        }
        shapes->features = p->num_features();
        return Ok{};
      }
      case ParamTable::kNone:
        if (l.conv() || l.linear() || l.norm()) {
          return fail(Error::kBadField,
                      at + ": a " + std::string(kind.name) + " layer has no parameter table");
        }
        return Ok{};
    }
    return fail(Error::kBadField, at + ": unknown parameter table");
  }

  // What every tensor obeys, whatever its role.
  Status check_tensor(const fb::Tensor& t, const std::string& tat) {
    if (!enum_ok(t.role(), fb::TensorRole::MAX) || !enum_ok(t.dtype(), fb::DType::MAX) ||
        !enum_ok(t.source_dtype(), fb::DType::MAX) || !enum_ok(t.layout(), fb::TensorLayout::MAX) ||
        !enum_ok(t.source_layout(), fb::TensorLayout::MAX) ||
        !enum_ok(t.transform(), fb::Transform::MAX)) {
      return fail(Error::kBadField, tat + ": an enum field is out of range");
    }
    // Tensor::shape() hands out these vectors as spans of uint64_t, but the
    // FlatBuffers Verifier only checks a vector's 4-byte length prefix for
    // alignment: a crafted file can put the elements at 4 mod 8, and reading
    // them would be a misaligned load (found by fuzzing).
    if (!aligned_u64(t.shape()->data()) || !aligned_u64(t.source_shape()->data())) {
      return fail(Error::kMisaligned, tat + ": shape vector is not 8-byte aligned");
    }
    uint64_t count = 1, source_count = 1;
    bool ok = t.shape()->size() != 0 && t.source_shape()->size() != 0 && t.shape()->size() <= 8 &&
              t.source_shape()->size() <= 8;
    for (uint64_t d : *t.shape()) ok = ok && d != 0 && mul_ok(&count, d);
    for (uint64_t d : *t.source_shape()) ok = ok && d != 0 && mul_ok(&source_count, d);
    // A broadcast stores one source element repeated; every other transform
    // moves elements without adding any.
    const bool broadcast = t.transform() == fb::Transform::Broadcast;
    // A grouped conv stored dense adds zeros: check_legalized() checks its
    // source shape against the layer.
    const bool dense = is_grouped_to_dense(static_cast<Transform>(t.transform()));
    if (!ok || (broadcast ? source_count != 1
                : dense   ? source_count >= count
                          : count != source_count)) {
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
    return Ok{};
  }

  // The role's exact stored shape, element type and transform.
  Status check_role(const fb::Tensor& t, const RoleSpec& spec, Shapes& shapes,
                    const std::string& tat) {
    const std::string_view role = to_string(spec.role);
    const auto transform = static_cast<Transform>(t.transform());
    // A conv weight may also be stored dense (check_legalized).
    const bool dense_conv = (transform == Transform::kConvGroupedToDense &&
                             spec.transform == Transform::kConvOIHWToOHWI) ||
                            (transform == Transform::kConvTransposeGroupedToDenseRotated &&
                             spec.transform == Transform::kConvTransposeToOHWIRotated);
    if (transform != spec.transform && transform != Transform::kIdentity && !dense_conv) {
      return fail(Error::kBadField, tat + ": transform " + std::string(to_string(transform)) +
                                        " does not apply to a " + std::string(role) + " tensor");
    }
    Dims want;
    if (spec.shape == StoredShape::kFeatureMap) {
      if (Status s = feature_map_shape(t, spec, &shapes.batch, tat, &want); !s) return s;
    }
    switch (spec.shape) {
      case StoredShape::kKernel:
        want = shapes.kernel;
        break;
      case StoredShape::kOutChannels:
        want = {shapes.out_channels};
        break;
      case StoredShape::kFeatures:
        want = {shapes.features};
        break;
      case StoredShape::kRanges:
        want = {shapes.out_channels, 2};
        break;
      case StoredShape::kLookupTable:
        want = {256};
        break;
      case StoredShape::kFeatureMap:
        break;  // above
    }
    const auto& shape = *t.shape();
    if (!(shape.size() == want.n && std::equal(shape.begin(), shape.end(), want.d.begin()))) {
      return fail(Error::kSizeMismatch, tat + ": " + std::string(role) +
                                            " shape does not match the layer (" +
                                            shape_text(want.span()) + " expected, found " +
                                            shape_text({shape.data(), shape.size()}) + ")");
    }
    const auto dtype = static_cast<DType>(t.dtype());
    switch (spec.dtype) {
      case StoredDType::kFloat32:
        if (dtype != DType::kFloat32) {
          return fail(Error::kSizeMismatch, tat + ": " + std::string(role) +
                                                " must be float32 (MPS reads " + "float*), found " +
                                                std::string(to_string(dtype)));
        }
        break;
      case StoredDType::kWeight:
        if (dtype == DType::kBFloat16) {
          return fail(Error::kBadField,
                      tat + ": bfloat16 weights (MPS takes float32, float16, uint8)");
        }
        break;
    }
    const auto layout = static_cast<TensorLayout>(t.layout());
    const auto source_layout = static_cast<TensorLayout>(t.source_layout());
    if (layout != spec.stored_layout || source_layout != spec.source_layout) {
      return fail(Error::kBadField, tat + ": " + std::string(role) + " layouts " +
                                        std::string(to_string(source_layout)) + " -> " +
                                        std::string(to_string(layout)) + " are not " +
                                        std::string(to_string(spec.source_layout)) + " -> " +
                                        std::string(to_string(spec.stored_layout)));
    }
    return Ok{};
  }

  // A probe's feature map: stored [N][H][W][C], the same N as the layer's
  // other feature map; its source PyTorch's [N][C][H][W] (permuted) or a
  // Linear's [N][F] (stored [N][1][1][F], Identity). Sets *want to the
  // stored shape the source implies (none for another rank).
  Status feature_map_shape(const fb::Tensor& t, const RoleSpec& spec, uint64_t* batch,
                           const std::string& tat, Dims* want) {
    const auto& src = *t.source_shape();
    const auto transform = static_cast<Transform>(t.transform());
    if (src.size() == 4) {
      *want = {src.Get(0), src.Get(2), src.Get(3), src.Get(1)};
    } else if (src.size() == 2) {
      *want = {src.Get(0), 1, 1, src.Get(1)};
    } else {
      return Ok{};  // no shape matches: check_role reports it
    }
    if ((src.size() == 4) != (transform == spec.transform)) {
      return fail(Error::kBadField,
                  tat + ": " + std::string(to_string(spec.role)) +
                      (src.size() == 4 ? " from a [N, C, H, W] source needs transform "
                                       : " from a [N, F] source needs transform identity, not ") +
                      std::string(to_string(spec.transform)));
    }
    if (*batch == 0) *batch = want->d[0];
    want->d[0] = *batch;
    return Ok{};
  }

  // Required roles present, pairs complete, quantization tables exactly
  // where the quantization says, a fused PReLU's slopes exactly with it.
  Status check_presence(const fb::Layer& l, const KindSpec& kind, uint32_t roles_seen,
                        const std::string& at) {
    auto has = [&](TensorRole r) { return (roles_seen >> static_cast<uint32_t>(r)) & 1u; };
    const fb::Tensor* weight = nullptr;
    for (const fb::Tensor* t : *l.tensors()) {
      if (t->role() == fb::TensorRole::Weight) weight = t;
    }
    const bool uint8_weight = weight && weight->dtype() == fb::DType::UInt8;
    for (const RoleSpec& spec : kind.roles) {
      const std::string role(to_string(spec.role));
      switch (spec.presence) {
        case Presence::kRequired:
          if (!has(spec.role)) {
            return fail(Error::kBadField, at + ": has no " + role + " tensor (a " +
                                              std::string(kind.name) + " needs one)");
          }
          break;
        case Presence::kOptional:
          break;
        case Presence::kAffine:
          if (has(TensorRole::kWeight) != has(TensorRole::kBias)) {
            return fail(Error::kBadField, at + ": affine weight and bias come in pairs");
          }
          break;
        case Presence::kQuantized:
          break;  // below, once for both tables
        case Presence::kFusedPReLU:
          if (has(spec.role) != (l.activation() == fb::Activation::PReLU)) {
            return fail(Error::kBadField,
                        at + ": a fused prelu needs its " + role + " tensor, and only it");
          }
          break;
      }
    }
    const bool has_ranges = has(TensorRole::kQuantRanges);
    const bool has_table = has(TensorRole::kQuantLookupTable);
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

}  // namespace

Status check_bundle_bytes(const std::byte* data, uint64_t size, const std::string& where,
                          const fb::Bundle** root, std::vector<uint32_t>* network_order) {
  Checker checker(data, size, where);
  Status s = checker.run(network_order);
  if (s) *root = checker.root();
  return s;
}

}  // namespace mpsb::internal
