// A bundle as a list of field values, for structure-aware fuzzing: decoded
// from a file (only the FlatBuffers Verifier is needed, not the semantic
// checks), mutated field by field, and encoded again through the generated
// FlatBuffers builder with the segment placed and the checksums recomputed,
// so that most mutants pass the verifier and the digests and reach the
// runtime's semantic checks, its data sources and verify().
//
// Shapes and dtypes are repaired from the layer-kind table (mpsb/kinds.h),
// and enums range over the schema's values, so a kind, role or activation
// added there is fuzzed without touching this file.
//
// Mutations pick values that sit on the checks' edges: every enum value and
// one past the last, 0, 1, powers of two, 2^31 - 1, 2^32 - 1, the paddings
// of docs/SECURITY.md's findings, another tensor's offset (aliasing). After
// mutating, a few repairs make the rest of the layer consistent again
// (shapes from the parameters, sizes from shape and dtype, offsets laid out
// afresh), each with some probability, so one field at a time is wrong.
#ifndef MPSB_TESTS_FUZZ_BUNDLE_FIELDS_H_
#define MPSB_TESTS_FUZZ_BUNDLE_FIELDS_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"
#include "mpsb/types.h"

namespace mpsb::fuzz {

struct TensorFields {
  uint8_t role = 0, dtype = 0, layout = 0, source_dtype = 0, source_layout = 0, transform = 0;
  std::vector<uint64_t> shape, source_shape;
  uint64_t offset = 0, size = 0, checksum = 0;
  bool keep_checksum = false;  // else recomputed from the segment on encode
};

struct ConvFields {
  // in, out, kh, kw, stride h/w, padding h/w, dilation h/w, groups,
  // output_padding h/w: the order of fb::ConvParams.
  uint32_t v[13] = {1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0};
};

struct LayerFields {
  std::string name;
  uint32_t index = 0;
  uint8_t kind = 0, activation = 0, quantization = 0;
  float activation_alpha = 0;
  std::optional<ConvFields> conv;
  std::optional<std::pair<uint32_t, uint32_t>> linear;  // in, out features
  std::vector<uint32_t> linear_input_shape;
  struct Norm {
    uint32_t num_features = 1;
    float eps = 1e-5f;
    uint32_t num_groups = 0;
  };
  std::optional<Norm> norm;  // also a PReLU layer's channel count
  float activation_beta = 0;
  std::vector<TensorFields> tensors;
  double weight_error[3] = {0, 0, 0};
};

struct BundleFields {
  uint32_t format_version = 1;
  std::string producer, name;
  std::vector<std::pair<std::string, std::string>> metadata;
  uint64_t segment_alignment = 64, tensor_alignment = 16;
  std::vector<LayerFields> layers;
  std::vector<uint8_t> segment;
  // Written as they are instead of what encode() computes.
  std::optional<uint64_t> segment_offset, segment_size, segment_checksum, metadata_checksum;
};

namespace detail {

inline std::string str(const flatbuffers::String* s) {
  return s ? std::string(s->data(), s->size()) : std::string();
}

// By memcpy: a hostile file may misalign the elements (the Verifier checks
// only the length prefix), and the runtime's refusal of that is under test.
template <typename T>
std::vector<T> vec(const flatbuffers::Vector<T>* v) {
  std::vector<T> out;
  if (!v) return out;
  out.resize(v->size());
  if (!out.empty()) std::memcpy(out.data(), v->Data(), out.size() * sizeof(T));
  return out;
}

inline uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

inline bool is_pow2(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

}  // namespace detail

// The fields of `data`, or nothing when the metadata fails the FlatBuffers
// Verifier (there are no fields to read).
inline std::optional<BundleFields> decode_bundle(const uint8_t* data, size_t size) {
  if (size < 12) return std::nullopt;
  uint32_t meta = 0;
  std::memcpy(&meta, data, 4);
  if (meta > size - 4 || meta > (1u << 30)) return std::nullopt;
  flatbuffers::Verifier verifier(data, meta + 4, 16, meta / 4 + 16);
  if (!fb::VerifySizePrefixedBundleBuffer(verifier)) return std::nullopt;
  const fb::Bundle* b = fb::GetSizePrefixedBundle(data);
  BundleFields f;
  f.format_version = b->format_version();
  f.producer = detail::str(b->producer());
  f.name = detail::str(b->name());
  if (b->metadata()) {
    for (const fb::KeyValue* kv : *b->metadata()) {
      f.metadata.emplace_back(detail::str(kv->key()), detail::str(kv->value()));
    }
  }
  f.segment_alignment = b->segment_alignment();
  f.tensor_alignment = b->tensor_alignment();
  const uint64_t off = std::min<uint64_t>(b->segment_offset(), size);
  const uint64_t len = std::min<uint64_t>(b->segment_size(), size - off);
  f.segment.assign(data + off, data + off + len);
  for (const fb::Layer* l : *b->layers()) {
    LayerFields lf;
    lf.name = detail::str(l->name());
    lf.index = l->index();
    lf.kind = static_cast<uint8_t>(l->kind());
    lf.activation = static_cast<uint8_t>(l->activation());
    lf.quantization = static_cast<uint8_t>(l->quantization());
    lf.activation_alpha = l->activation_alpha();
    if (const fb::ConvParams* c = l->conv()) {
      lf.conv =
          ConvFields{{c->in_channels(), c->out_channels(), c->kernel_h(), c->kernel_w(),
                      c->stride_h(), c->stride_w(), c->padding_h(), c->padding_w(), c->dilation_h(),
                      c->dilation_w(), c->groups(), c->output_padding_h(), c->output_padding_w()}};
    }
    if (const fb::LinearParams* p = l->linear()) {
      lf.linear = {p->in_features(), p->out_features()};
      lf.linear_input_shape = detail::vec<uint32_t>(p->input_shape());
    }
    if (const fb::NormParams* n = l->norm()) {
      lf.norm = LayerFields::Norm{n->num_features(), n->eps(), n->num_groups()};
    }
    lf.activation_beta = l->activation_beta();
    lf.weight_error[0] = l->weight_max_abs_error();
    lf.weight_error[1] = l->weight_signal_energy();
    lf.weight_error[2] = l->weight_noise_energy();
    for (const fb::Tensor* t : *l->tensors()) {
      TensorFields tf;
      tf.role = static_cast<uint8_t>(t->role());
      tf.dtype = static_cast<uint8_t>(t->dtype());
      tf.layout = static_cast<uint8_t>(t->layout());
      tf.source_dtype = static_cast<uint8_t>(t->source_dtype());
      tf.source_layout = static_cast<uint8_t>(t->source_layout());
      tf.transform = static_cast<uint8_t>(t->transform());
      tf.shape = detail::vec<uint64_t>(t->shape());
      tf.source_shape = detail::vec<uint64_t>(t->source_shape());
      tf.offset = t->offset();
      tf.size = t->size();
      tf.checksum = t->checksum();
      lf.tensors.push_back(std::move(tf));
    }
    f.layers.push_back(std::move(lf));
  }
  return f;
}

// The file: metadata built with the FlatBuffers builder, zero padding, the
// segment at the next multiple of the segment alignment (or 64 when that is
// not a small power of two), every checksum computed unless overridden.
inline std::vector<uint8_t> encode_bundle(const BundleFields& f) {
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  for (const LayerFields& l : f.layers) {
    std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
    for (const TensorFields& t : l.tensors) {
      uint64_t checksum = t.checksum;
      if (!t.keep_checksum && t.offset <= f.segment.size() &&
          t.size <= f.segment.size() - t.offset) {
        checksum = XXH3_64bits(f.segment.data() + t.offset, t.size);
      }
      tensors.push_back(fb::CreateTensor(
          fbb, static_cast<fb::TensorRole>(t.role), static_cast<fb::DType>(t.dtype),
          static_cast<fb::TensorLayout>(t.layout), fbb.CreateVector(t.shape),
          static_cast<fb::DType>(t.source_dtype), static_cast<fb::TensorLayout>(t.source_layout),
          fbb.CreateVector(t.source_shape), static_cast<fb::Transform>(t.transform), t.offset,
          t.size, checksum));
    }
    flatbuffers::Offset<fb::ConvParams> conv;
    if (l.conv) {
      const uint32_t* v = l.conv->v;
      conv = fb::CreateConvParams(fbb, v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9],
                                  v[10], v[11], v[12]);
    }
    flatbuffers::Offset<fb::LinearParams> linear;
    if (l.linear) {
      linear = fb::CreateLinearParams(fbb, l.linear->first, l.linear->second,
                                      fbb.CreateVector(l.linear_input_shape));
    }
    flatbuffers::Offset<fb::NormParams> norm;
    if (l.norm) {
      norm = fb::CreateNormParams(fbb, l.norm->num_features, l.norm->eps, l.norm->num_groups);
    }
    layers.push_back(fb::CreateLayer(
        fbb, fbb.CreateString(l.name), l.index, static_cast<fb::LayerKind>(l.kind), conv, linear,
        norm, static_cast<fb::Activation>(l.activation), l.activation_alpha,
        static_cast<fb::Quantization>(l.quantization), fbb.CreateVector(tensors), l.weight_error[0],
        l.weight_error[1], l.weight_error[2], l.activation_beta));
  }
  std::vector<flatbuffers::Offset<fb::KeyValue>> md;
  for (const auto& [k, v] : f.metadata) {
    md.push_back(fb::CreateKeyValue(fbb, fbb.CreateString(k), fbb.CreateString(v)));
  }
  const uint64_t segment_size = f.segment_size.value_or(f.segment.size());
  auto root = fb::CreateBundle(fbb, f.format_version, fbb.CreateString(f.producer),
                               fbb.CreateString(f.name), fbb.CreateVector(md), f.segment_alignment,
                               f.tensor_alignment, 0, segment_size, fbb.CreateVector(layers), 0, 0);
  fb::FinishSizePrefixedBundleBuffer(fbb, root);
  std::vector<uint8_t> file(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  const uint64_t place = detail::is_pow2(f.segment_alignment) && f.segment_alignment <= 4096
                             ? f.segment_alignment
                             : 64;
  const uint64_t at = detail::align_up(file.size(), place);
  fb::Bundle* m = fb::GetMutableSizePrefixedBundle(file.data());
  m->mutate_segment_offset(f.segment_offset.value_or(at));
  m->mutate_segment_checksum(
      f.segment_checksum.value_or(XXH3_64bits(f.segment.data(), f.segment.size())));
  m->mutate_metadata_checksum(0);
  m->mutate_metadata_checksum(f.metadata_checksum.value_or(XXH3_64bits(file.data(), file.size())));
  file.resize(at, 0);
  file.insert(file.end(), f.segment.begin(), f.segment.end());
  return file;
}

// ---- Mutation ---------------------------------------------------------------

class FieldMutator {
 public:
  explicit FieldMutator(uint32_t seed) : rng_(seed) {}

  // Changes one to four fields of `f`, then repairs what is likely to be
  // inconsistent. `mutate_bytes(data, size, max)` is libFuzzer's byte
  // mutator, for the segment and strings.
  template <typename ByteMutator>
  void mutate(BundleFields& f, ByteMutator&& mutate_bytes) {
    const int n = 1 + pick(4);
    for (int i = 0; i < n; ++i) mutate_one(f, mutate_bytes);
    if (chance(3, 4)) repair(f);
  }

 private:
  uint32_t pick(uint32_t n) { return n == 0 ? 0 : static_cast<uint32_t>(rng_() % n); }
  bool chance(uint32_t num, uint32_t den) { return pick(den) < num; }

  // Values on the edges of what the checks and the CPU reference accept.
  uint64_t interesting(uint64_t current, uint64_t max) {
    static const uint64_t kValues[] = {0,
                                       1,
                                       2,
                                       3,
                                       4,
                                       7,
                                       8,
                                       16,
                                       17,
                                       255,
                                       256,
                                       4096,
                                       65535,
                                       1000000,
                                       1073774592,  // docs/SECURITY.md: the padding that
                                       2147418112,  //   wrapped the --check output size
                                       (1u << 31) - 1,
                                       1u << 31,
                                       UINT32_MAX,
                                       uint64_t{1} << 32,
                                       UINT64_MAX / 2,
                                       UINT64_MAX};
    uint64_t v;
    switch (pick(4)) {
      case 0:
        v = current + 1;
        break;
      case 1:
        v = current - 1;
        break;
      case 2:
        v = uint64_t{1} << pick(64);
        break;
      default:
        v = kValues[pick(sizeof kValues / sizeof kValues[0])];
    }
    return std::min(v, max);
  }
  uint32_t interesting32(uint32_t current) {
    return static_cast<uint32_t>(interesting(current, UINT32_MAX));
  }
  // Every value of the enum and one past its last.
  template <typename E>
  uint8_t enum_value() {
    return static_cast<uint8_t>(pick(static_cast<uint32_t>(E::MAX) + 2));
  }
  float interesting_float() {
    static const float kValues[] = {0.0f,
                                    -0.0f,
                                    1e-5f,
                                    0.1f,
                                    1.0f,
                                    -1.0f,
                                    65504.0f,
                                    std::numeric_limits<float>::denorm_min(),
                                    std::numeric_limits<float>::max(),
                                    std::numeric_limits<float>::infinity(),
                                    -std::numeric_limits<float>::infinity(),
                                    std::numeric_limits<float>::quiet_NaN()};
    return kValues[pick(sizeof kValues / sizeof kValues[0])];
  }

  template <typename ByteMutator>
  void mutate_string(std::string& s, ByteMutator&& mutate_bytes) {
    std::vector<uint8_t> b(s.begin(), s.end());
    b.resize(std::max<size_t>(b.size() * 2, 8));
    b.resize(mutate_bytes(b.data(), s.size(), b.size()));
    s.assign(b.begin(), b.end());
  }

  void mutate_shape(std::vector<uint64_t>& shape) {
    switch (pick(4)) {
      case 0:
        if (!shape.empty()) shape.pop_back();
        break;
      case 1:
        if (shape.size() < 9) shape.push_back(interesting(1, UINT64_MAX));
        break;
      default:
        if (!shape.empty()) {
          uint64_t& d = shape[pick(static_cast<uint32_t>(shape.size()))];
          d = interesting(d, UINT64_MAX);
        }
    }
  }

  template <typename ByteMutator>
  void mutate_tensor(BundleFields& f, TensorFields& t, ByteMutator&& mutate_bytes) {
    switch (pick(12)) {
      case 0:
        t.role = enum_value<fb::TensorRole>();
        break;
      case 1:
        t.dtype = enum_value<fb::DType>();
        break;
      case 2:
        t.layout = enum_value<fb::TensorLayout>();
        break;
      case 3:
        t.source_dtype = enum_value<fb::DType>();
        break;
      case 4:
        t.source_layout = enum_value<fb::TensorLayout>();
        break;
      case 5:
        t.transform = enum_value<fb::Transform>();
        break;
      case 6:
        mutate_shape(t.shape);
        break;
      case 7:
        mutate_shape(t.source_shape);
        break;
      case 8: {
        // Alias another tensor's bytes, or an edge of the segment.
        const TensorFields* other = random_tensor(f);
        t.offset = other && chance(1, 2)
                       ? other->offset
                       : interesting(t.offset, UINT64_MAX) & ~uint64_t{chance(1, 2) ? 15u : 0u};
        break;
      }
      case 9:
        t.size = interesting(t.size, UINT64_MAX);
        break;
      case 10:
        t.keep_checksum = true;
        t.checksum = rng_();
        break;
      default: {
        // The segment's values: what --stats, --check and --extract compute on.
        if (t.offset <= f.segment.size() && t.size <= f.segment.size() - t.offset && t.size) {
          mutate_bytes(f.segment.data() + t.offset, t.size, t.size);
        }
      }
    }
  }

  template <typename ByteMutator>
  void mutate_layer(LayerFields& l, ByteMutator&& mutate_bytes) {
    switch (pick(14)) {
      case 0:
        l.kind = enum_value<fb::LayerKind>();
        break;
      case 1:
        l.activation = enum_value<fb::Activation>();
        break;
      case 2:
        l.quantization = enum_value<fb::Quantization>();
        break;
      case 3:
        if (chance(1, 2)) {
          l.activation_alpha = interesting_float();
        } else {
          l.activation_beta = interesting_float();
        }
        break;
      case 4:
        l.index = interesting32(l.index);
        break;
      case 5:
        mutate_string(l.name, mutate_bytes);
        break;
      case 6:
      case 7:
      case 8: {
        if (!l.conv) l.conv = ConvFields{};
        uint32_t& v = l.conv->v[pick(13)];
        v = interesting32(v);
        break;
      }
      case 9:
        if (!l.linear) l.linear = std::pair<uint32_t, uint32_t>{1, 1};
        if (chance(1, 2)) {
          l.linear->first = interesting32(l.linear->first);
        } else {
          l.linear->second = interesting32(l.linear->second);
        }
        break;
      case 10:
        if (l.linear_input_shape.size() != 3 || chance(1, 4)) {
          l.linear_input_shape.resize(pick(5), 1);
        } else {
          uint32_t& d = l.linear_input_shape[pick(3)];
          d = interesting32(d);
        }
        break;
      case 11:
        if (!l.norm) l.norm = LayerFields::Norm{};
        switch (pick(3)) {
          case 0:
            l.norm->num_features = interesting32(l.norm->num_features);
            break;
          case 1:
            l.norm->num_groups = interesting32(l.norm->num_groups);
            break;
          default:
            l.norm->eps = interesting_float();
        }
        break;
      case 12:
        switch (pick(3)) {
          case 0:
            l.conv.reset();
            break;
          case 1:
            l.linear.reset();
            break;
          default:
            l.norm.reset();
        }
        break;
      default:
        if (!l.tensors.empty()) {
          const size_t j = pick(static_cast<uint32_t>(l.tensors.size()));
          if (chance(1, 2)) {
            l.tensors.erase(l.tensors.begin() + static_cast<std::ptrdiff_t>(j));
          } else {
            l.tensors.push_back(l.tensors[j]);
            l.tensors.back().role = enum_value<fb::TensorRole>();
          }
        }
    }
  }

  const TensorFields* random_tensor(const BundleFields& f) {
    if (f.layers.empty()) return nullptr;
    const LayerFields& l = f.layers[pick(static_cast<uint32_t>(f.layers.size()))];
    if (l.tensors.empty()) return nullptr;
    return &l.tensors[pick(static_cast<uint32_t>(l.tensors.size()))];
  }

  template <typename ByteMutator>
  void mutate_one(BundleFields& f, ByteMutator&& mutate_bytes) {
    const uint32_t what = pick(20);
    if (what < 8 && !f.layers.empty()) {
      LayerFields& l = f.layers[pick(static_cast<uint32_t>(f.layers.size()))];
      mutate_layer(l, mutate_bytes);
      return;
    }
    if (what < 15 && !f.layers.empty()) {
      LayerFields& l = f.layers[pick(static_cast<uint32_t>(f.layers.size()))];
      if (l.tensors.empty()) return;
      mutate_tensor(f, l.tensors[pick(static_cast<uint32_t>(l.tensors.size()))], mutate_bytes);
      return;
    }
    switch (what) {
      case 15:
        f.format_version = interesting32(f.format_version);
        break;
      case 16:
        if (chance(1, 2)) {
          f.segment_alignment =
              chance(3, 4) ? uint64_t{1} << pick(13) : interesting(64, UINT64_MAX);
        } else {
          f.tensor_alignment = chance(3, 4) ? uint64_t{1} << pick(13) : interesting(16, UINT64_MAX);
        }
        break;
      case 17:
        // Structure: a layer duplicated (renamed or not), removed or moved.
        if (!f.layers.empty()) {
          const size_t i = pick(static_cast<uint32_t>(f.layers.size()));
          switch (pick(3)) {
            case 0:
              f.layers.push_back(f.layers[i]);
              if (chance(3, 4)) f.layers.back().name += "_" + std::to_string(pick(100));
              f.layers.back().index = static_cast<uint32_t>(f.layers.size() - 1);
              break;
            case 1:
              f.layers.erase(f.layers.begin() + static_cast<std::ptrdiff_t>(i));
              break;
            default:
              std::swap(f.layers[i], f.layers[pick(static_cast<uint32_t>(f.layers.size()))]);
          }
        }
        break;
      case 18:
        switch (pick(5)) {
          case 0:
            f.segment_offset = interesting(0, UINT64_MAX);
            break;
          case 1:
            f.segment_size = interesting(f.segment.size(), UINT64_MAX);
            break;
          case 2:
            f.segment_checksum = rng_();
            break;
          case 3:
            f.metadata_checksum = rng_();
            break;
          default:
            f.segment.resize(f.segment.size() + 16 * pick(5));
        }
        break;
      default:
        if (f.metadata.empty() || chance(1, 3)) {
          f.metadata.emplace_back("k" + std::to_string(pick(10)), "v");
        } else {
          auto& kv = f.metadata[pick(static_cast<uint32_t>(f.metadata.size()))];
          mutate_string(chance(1, 2) ? kv.first : kv.second, mutate_bytes);
        }
    }
  }

  // The stored shape and whether float32 is required, for each role of the
  // layer's kind, from the layer-kind table (mpsb/kinds.h); an empty shape
  // when the kind has no such role or its parameters are missing.
  struct Expected {
    std::vector<uint64_t> shape;
    bool float32 = false;
  };
  static Expected expected(const LayerFields& l, uint8_t role) {
    if (l.kind > static_cast<uint8_t>(fb::LayerKind::MAX) ||
        role > static_cast<uint8_t>(fb::TensorRole::MAX)) {
      return {};
    }
    const RoleSpec* spec = role_spec(static_cast<LayerKind>(l.kind), static_cast<TensorRole>(role));
    if (!spec) return {};
    uint64_t out = 0;
    std::vector<uint64_t> kernel;
    if (l.conv) {
      const uint32_t* v = l.conv->v;
      kernel = {v[1], v[2], v[3], v[0] / (v[10] ? v[10] : 1)};
      out = v[1];
    }
    if (l.linear && l.kind == uint8_t(fb::LayerKind::Linear)) {
      const auto& s = l.linear_input_shape;
      kernel = s.size() == 3 ? std::vector<uint64_t>{l.linear->second, s[1], s[2], s[0]}
                             : std::vector<uint64_t>{l.linear->second, 1, 1, l.linear->first};
      out = l.linear->second;
    }
    Expected e;
    e.float32 = spec->dtype == StoredDType::kFloat32;
    switch (spec->shape) {
      case StoredShape::kKernel:
        e.shape = kernel;
        break;
      case StoredShape::kOutChannels:
        if (out) e.shape = {out};
        break;
      case StoredShape::kFeatures:
        if (l.norm) e.shape = {l.norm->num_features};
        break;
      case StoredShape::kRanges:
        if (out) e.shape = {out, 2};
        break;
      case StoredShape::kLookupTable:
        e.shape = {256};
        break;
      case StoredShape::kFeatureMap:
        break;  // a probe's shape follows its source's; left as mutated
    }
    return e;
  }

  // Tensors bigger than this are left inconsistent rather than grown into.
  static constexpr uint64_t kMaxTensorBytes = 1 << 16;

  void repair(BundleFields& f) {
    const bool shapes = chance(2, 3), sizes = chance(3, 4), layout = chance(3, 4),
               order = chance(3, 4);
    if (chance(3, 4)) f.format_version = 1;
    if (chance(3, 4) && !(detail::is_pow2(f.segment_alignment) && f.segment_alignment <= 4096 &&
                          detail::is_pow2(f.tensor_alignment) && f.tensor_alignment >= 16 &&
                          f.tensor_alignment <= f.segment_alignment)) {
      f.segment_alignment = 64;
      f.tensor_alignment = 16;
    }
    if (chance(3, 4)) {
      std::sort(f.metadata.begin(), f.metadata.end());
      f.metadata.erase(std::unique(f.metadata.begin(), f.metadata.end(),
                                   [](const auto& a, const auto& b) { return a.first == b.first; }),
                       f.metadata.end());
    }
    for (LayerFields& l : f.layers) {
      for (TensorFields& t : l.tensors) {
        if (shapes) {
          const Expected want = expected(l, t.role);
          if (!want.shape.empty()) {
            t.shape = want.shape;
            if (t.source_shape.empty() || chance(1, 2)) t.source_shape = want.shape;
          }
          if (want.float32 && chance(3, 4)) t.dtype = uint8_t(fb::DType::Float32);
        }
        if (sizes) {
          uint64_t n = mpsb::dtype_size(static_cast<mpsb::DType>(t.dtype));
          bool ok = n != 0 && !t.shape.empty();
          for (uint64_t d : t.shape) {
            ok = ok && d != 0 && n <= kMaxTensorBytes / d;
            if (ok) n *= d;
          }
          if (ok) t.size = n;
        }
      }
    }
    if (layout && detail::is_pow2(f.tensor_alignment) && f.tensor_alignment <= 4096) {
      uint64_t cursor = 0;
      for (LayerFields& l : f.layers) {
        for (TensorFields& t : l.tensors) {
          if (t.size > kMaxTensorBytes) continue;
          cursor = detail::align_up(cursor, f.tensor_alignment);
          t.offset = cursor;
          cursor += t.size;
        }
      }
      const uint64_t seg = detail::is_pow2(f.segment_alignment) && f.segment_alignment <= 4096
                               ? f.segment_alignment
                               : 16;
      const size_t old = f.segment.size();
      f.segment.resize(detail::align_up(std::max<uint64_t>(cursor, 1), seg));
      for (size_t i = old; i < f.segment.size(); ++i) f.segment[i] = uint8_t(i * 37 + 11);
      f.segment_size.reset();
      f.segment_offset.reset();
    }
    if (order) {
      std::stable_sort(f.layers.begin(), f.layers.end(),
                       [](const LayerFields& a, const LayerFields& b) { return a.name < b.name; });
      std::vector<uint32_t> idx(f.layers.size());
      for (uint32_t i = 0; i < idx.size(); ++i) idx[i] = f.layers[i].index;
      std::vector<uint32_t> by_index(f.layers.size());
      for (uint32_t i = 0; i < by_index.size(); ++i) by_index[i] = i;
      std::stable_sort(by_index.begin(), by_index.end(),
                       [&](uint32_t a, uint32_t b) { return idx[a] < idx[b]; });
      for (uint32_t rank = 0; rank < by_index.size(); ++rank) f.layers[by_index[rank]].index = rank;
    }
  }

  std::minstd_rand rng_;
};

}  // namespace mpsb::fuzz

#endif  // MPSB_TESTS_FUZZ_BUNDLE_FIELDS_H_
