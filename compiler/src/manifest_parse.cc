#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>

#include "checked_math.h"
#include "conv_bounds.h"
#include "duplicate_keys.h"
#include "field_reader.h"
#include "manifest.h"
#include "mpsb/kinds.h"
#include "source_file.h"

namespace mpsbc {
namespace {

using mpsb::Activation;
using mpsb::FieldSpec;
using mpsb::FieldType;
using mpsb::KindSpec;
using mpsb::LayerKind;
using mpsb::ParamTable;
using mpsb::Presence;
using mpsb::RoleSpec;
using mpsb::Slot;
using mpsb::StoredShape;
using mpsb::TensorRole;

constexpr std::string_view kFormat = "mpsb.manifest/1";

// Fills t.plan and t.size; reports an element count or byte size that does
// not fit 64 bits (a shape that large can only be a mistake).
bool finish_tensor(ManifestTensor& t, TensorPlan plan, Diagnostics& diag) {
  t.plan = std::move(plan);
  auto count = checked_product(t.plan.source_shape);
  auto bytes = count ? checked_mul(*count, mpsb::dtype_size(t.dtype)) : std::nullopt;
  if (!bytes) {
    diag.error(t.pointer,
               "tensor shape " + shape_text(t.plan.source_shape) + " overflows a 64-bit byte size");
    return false;
  }
  // Stored as read until plan_precision() decides otherwise.
  t.source_size = t.size = *bytes;
  return true;
}

// A layer's manifest fields as its kind's table (mpsb/kinds.h) lists them,
// read by slot: absent optional fields hold PyTorch's default.
struct Fields {
  std::array<std::optional<uint32_t>, mpsb::kSlotCount> uint;
  std::array<std::optional<Pair>, mpsb::kSlotCount> pair;
  std::array<std::optional<float>, mpsb::kSlotCount> number;
  std::array<std::optional<bool>, mpsb::kSlotCount> flag;  // nullopt when absent
  std::array<const json*, mpsb::kSlotCount> text{};        // kString values, or nullptr
  std::vector<uint64_t> shape3;                            // kShape3 when given
  bool ok = true;  // every field given parsed, every required one present

  uint32_t u(Slot s) const { return *uint[size_t(s)]; }
  Pair p(Slot s) const { return *pair[size_t(s)]; }
};

Fields read_fields(FieldReader& r, const KindSpec& kind) {
  Fields f;
  for (const FieldSpec& spec : kind.fields) {
    const auto slot = size_t(spec.slot);
    switch (spec.type) {
      case FieldType::kUInt:
        f.uint[slot] = spec.required
                           ? r.required_uint(spec.name, spec.min)
                           : r.optional_uint(spec.name, uint32_t(spec.fallback), spec.min);
        f.ok = f.ok && f.uint[slot].has_value();
        break;
      case FieldType::kPair: {
        const auto fallback = uint32_t(spec.fallback);
        f.pair[slot] = r.pair(
            spec.name, spec.required ? std::nullopt : std::optional<Pair>(Pair{fallback, fallback}),
            spec.min);
        f.ok = f.ok && f.pair[slot].has_value();
        break;
      }
      case FieldType::kFloat:
        f.number[slot] = r.number(spec.name, float(spec.fallback), spec.min > 0);
        f.ok = f.ok && f.number[slot].has_value();
        break;
      case FieldType::kBool:
        f.flag[slot] = r.boolean(spec.name);
        break;
      case FieldType::kShape3:
        if (const json* v = r.find(spec.name)) {
          if (!v->is_array() || v->size() != 3) {
            r.error(spec.name, "expected [C, H, W] of 3 integers, found " + describe(*v));
            f.ok = false;
            break;
          }
          for (size_t i = 0; i < 3; ++i) {
            auto d = r.read_uint((*v)[i], child(r.at(spec.name), i), spec.min);
            if (d) f.shape3.push_back(*d);
          }
          f.ok = f.ok && f.shape3.size() == 3;
        }
        break;
      case FieldType::kString:
        f.text[slot] = r.find(spec.name);
        break;
      case FieldType::kAccepted:
        r.ignore({spec.name});
        break;
    }
  }
  return f;
}

// The parameter table's values and the rules of PyTorch and MPS about
// them. Returns false when a tensor's shape cannot be derived.
bool bind_conv(FieldReader& r, const Fields& f, ManifestLayer& layer) {
  const bool transposed = layer.kind == LayerKind::kConvTranspose2d;
  if (const json* mode = f.text[size_t(Slot::kPaddingMode)]) {
    if (!mode->is_string() || mode->get_ref<const std::string&>() != "zeros") {
      r.error(
          "padding_mode",
          "expected \"zeros\" (the only padding MPS convolutions apply), found " + describe(*mode));
    }
  }
  if (!f.ok) return false;
  auto& c = layer.conv;
  c.in_channels = f.u(Slot::kInChannels);
  c.out_channels = f.u(Slot::kOutChannels);
  c.kernel_h = f.p(Slot::kKernelSize).h;
  c.kernel_w = f.p(Slot::kKernelSize).w;
  c.stride_h = f.p(Slot::kStride).h;
  c.stride_w = f.p(Slot::kStride).w;
  c.padding_h = f.p(Slot::kPadding).h;
  c.padding_w = f.p(Slot::kPadding).w;
  c.dilation_h = f.p(Slot::kDilation).h;
  c.dilation_w = f.p(Slot::kDilation).w;
  c.groups = f.u(Slot::kGroups);
  if (transposed) {
    c.output_padding_h = f.p(Slot::kOutputPadding).h;
    c.output_padding_w = f.p(Slot::kOutputPadding).w;
  }
  bool shape_ok = true;
  if (c.in_channels % c.groups != 0) {
    r.error("groups", "in_channels " + std::to_string(c.in_channels) +
                          " is not divisible by groups " + std::to_string(c.groups));
    shape_ok = false;
  }
  if (c.out_channels % c.groups != 0) {
    r.error("groups", "out_channels " + std::to_string(c.out_channels) +
                          " is not divisible by groups " + std::to_string(c.groups));
    shape_ok = false;
  }
  if (const std::string bounds = conv_bounds_error(c); !bounds.empty()) {
    // docs/LAYERS.md, "Limits on padding and dilation".
    r.error(
        c.dilation_h > kMaxConvDilation || c.dilation_w > kMaxConvDilation ? "dilation" : "padding",
        bounds);
  }
  if (transposed) {
    // PyTorch's rule: the extra output rows must fall inside one stride or
    // one dilation step, otherwise the output size is ambiguous.
    if (c.output_padding_h >= std::max(c.stride_h, c.dilation_h) ||
        c.output_padding_w >= std::max(c.stride_w, c.dilation_w)) {
      r.error("output_padding", "output_padding [" + std::to_string(c.output_padding_h) + ", " +
                                    std::to_string(c.output_padding_w) +
                                    "] must be smaller than stride or dilation in each dimension");
    }
  }
  const bool depthwise = c.groups > 1 && c.groups == c.in_channels;
  if (shape_ok && depthwise && c.out_channels != c.in_channels) {
    // MPSCNNDepthWiseConvolutionDescriptor supports channel multiplier 1
    // only. Refused or legalized by legalize_layers() (legalize.h).
    layer.mps_refusal_pointer = r.at("out_channels");
    layer.mps_refusal =
        "depthwise conv (groups == in_channels == " + std::to_string(c.in_channels) +
        ") with out_channels " + std::to_string(c.out_channels) +
        ": MPS supports depthwise channel multiplier 1 only";
  }
  if (shape_ok && c.groups > 1 && !depthwise) {
    const uint32_t in_per_group = c.in_channels / c.groups;
    const uint32_t out_per_group = c.out_channels / c.groups;
    if (in_per_group % 4 != 0 || out_per_group % 4 != 0) {
      // Apple's MPSCNNConvolutionDescriptor.groups documentation. Refused
      // or legalized by legalize_layers() (legalize.h).
      layer.mps_refusal_pointer = r.at("groups");
      layer.mps_refusal = "grouped conv with " + std::to_string(in_per_group) + " input and " +
                          std::to_string(out_per_group) +
                          " output channels per group: MPS requires a multiple of 4 channels "
                          "per group";
    }
  }
  return shape_ok;
}

bool bind_linear(FieldReader& r, const Fields& f, ManifestLayer& layer) {
  if (!f.ok) return false;
  const uint32_t in = f.u(Slot::kInFeatures), out = f.u(Slot::kOutFeatures);
  layer.linear.in_features = in;
  layer.linear.out_features = out;
  if (!f.shape3.empty()) {
    // C, H, W are each < 2^32, so the product fits 96 bits; check 64.
    auto n = checked_product(f.shape3);
    if (!n || *n != in) {
      r.error("input_shape",
              "C×H×W = " + shape_text(f.shape3) + " must equal in_features " + std::to_string(in));
      return false;
    }
    layer.linear.input_c = static_cast<uint32_t>(f.shape3[0]);
    layer.linear.input_h = static_cast<uint32_t>(f.shape3[1]);
    layer.linear.input_w = static_cast<uint32_t>(f.shape3[2]);
  }
  return true;
}

bool bind_norm(FieldReader& r, const KindSpec& kind, const Fields& f, ManifestLayer& layer,
               uint32_t* num_parameters) {
  if (const json* v = f.text[size_t(Slot::kFollows)]) {
    if (v->is_string() && !v->get_ref<const std::string&>().empty()) {
      layer.follows = v->get<std::string>();
    } else {
      r.error("follows",
              "expected the name of the conv this batch norm follows, found " + describe(*v));
    }
  }
  // track_running_stats (accepted, kinds.h) only in the form MPS computes:
  // a batch norm applies its stored statistics (with false, PyTorch uses
  // each batch's own, even in eval mode), an instance norm each instance's
  // (with true, PyTorch's eval mode uses stored ones, which MPS does not
  // take). The exporter refuses both modules; a hand-written manifest must
  // not get them silently wrong.
  if (kind.served == mpsb::Served::kBatchNorm || kind.served == mpsb::Served::kInstanceNorm) {
    const bool batch = kind.served == mpsb::Served::kBatchNorm;
    if (const json* v = r.find("track_running_stats")) {
      if (!v->is_boolean()) {
        r.error("track_running_stats", "expected true or false, found " + describe(*v));
      } else if (v->get<bool>() != batch) {
        r.error("track_running_stats",
                batch ? "expected true: with false PyTorch normalizes with each batch's "
                        "statistics even in eval mode, and MPS's batch normalization applies "
                        "running_mean and running_var"
                      : "expected false: with true PyTorch's eval mode normalizes with stored "
                        "running statistics, and MPS's instance normalization takes none");
      }
    }
  }
  if (!f.ok) return false;
  layer.norm.num_features = f.u(Slot::kNumFeatures);
  if (kind.params != ParamTable::kChannels) layer.norm.eps = *f.number[size_t(Slot::kEps)];
  if (kind.params == ParamTable::kGroupNorm) {
    layer.norm.num_groups = f.u(Slot::kNumGroups);
    if (layer.norm.num_features % layer.norm.num_groups != 0) {
      r.error("num_groups", "num_channels " + std::to_string(layer.norm.num_features) +
                                " is not divisible by num_groups " +
                                std::to_string(layer.norm.num_groups));
      return false;
    }
  }
  if (kind.params == ParamTable::kChannels) {
    *num_parameters = f.u(Slot::kNumParameters);
    if (*num_parameters != 1 && *num_parameters != layer.norm.num_features) {
      r.error("num_parameters", "expected 1 or num_channels (" +
                                    std::to_string(layer.norm.num_features) + "), found " +
                                    std::to_string(*num_parameters));
      return false;
    }
  }
  return true;
}

// The fused activation and its parameters, as kinds.h lists them.
void read_activation(FieldReader& r, ManifestLayer& layer, Diagnostics& diag) {
  if (const json* v = r.find("activation")) {
    const mpsb::ActivationSpec* found = nullptr;
    if (v->is_string()) {
      for (const auto& a : mpsb::kActivations) {
        if (a.name == v->get_ref<const std::string&>()) found = &a;
      }
    }
    if (!found) {
      std::string names;
      for (const auto& a : mpsb::kActivations) {
        names += (names.empty() ? "\"" : ", \"") + std::string(a.name) + "\"";
      }
      r.error("activation", "expected one of " + names + ", found " + describe(*v));
      return;
    }
    layer.activation = found->activation;
  }
  const mpsb::ActivationSpec& spec = mpsb::activation_spec(layer.activation);
  float* values[2] = {&layer.activation_alpha, &layer.activation_beta};
  bool parsed[2] = {false, false};  // a value that is not a number is reported once
  for (int i = 0; i < 2; ++i) {
    if (spec.param_names[i].empty()) continue;
    if (auto x = r.number(spec.param_names[i], spec.param_defaults[i], false)) {
      *values[i] = *x;
      parsed[i] = true;
    }
  }
  if (!spec.option.empty()) {
    if (const json* v = r.find(spec.option)) {
      if (!v->is_string() || v->get_ref<const std::string&>() != spec.option_value) {
        r.error(spec.option, "expected \"" + std::string(spec.option_value) + "\" (the only form " +
                                 "MPS computes for " + std::string(spec.name) + "), found " +
                                 describe(*v));
      }
    }
  }
  if (layer.activation == Activation::kSoftplus) {
    // MPS's SoftPlus has no threshold: PyTorch's linear branch above
    // beta·x > threshold differs from it by log1p(exp(-threshold))/beta,
    // below float32 resolution only from threshold 15 on (docs/LAYERS.md).
    // Only given values can fail (the defaults, 1 and 20, pass).
    if (parsed[0] && !(layer.activation_alpha > 0)) {
      r.error("beta", "expected a number > 0, found " + describe(*r.find("beta")));
    }
    if (parsed[1] && !(layer.activation_beta >= 15)) {
      r.error("threshold",
              "expected a number >= 15: MPS's SoftPlus has no threshold, and "
              "below 15 PyTorch's linear branch differs from it by more than "
              "float32 resolution; found " +
                  describe(*r.find("threshold")));
    }
  }
  // Parameters of other activations would have no effect: as unknown
  // fields are, an error ("negative_slope" with "relu" meant "leaky_relu"?).
  for (const auto& other : mpsb::kActivations) {
    for (std::string_view name : other.param_names) {
      if (name.empty() || name == spec.param_names[0] || name == spec.param_names[1]) continue;
      if (r.find(name)) {
        diag.unknown_field(r.at(name),
                           "a parameter of activation \"" + std::string(other.name) +
                               "\", but the activation is \"" + std::string(spec.name) + "\"",
                           "");
      }
    }
  }
}

// The stored plan of a role's tensor, from the kind's table and the
// layer's parameters.
TensorPlan plan_role(const RoleSpec& spec, const ManifestLayer& layer, uint32_t num_parameters) {
  const auto& c = layer.conv;
  const auto& l = layer.linear;
  const uint64_t out =
      mpsb::kind_spec(layer.kind).params == ParamTable::kLinear ? l.out_features : c.out_channels;
  const uint64_t n = spec.shape == StoredShape::kFeatures ? layer.norm.num_features : out;
  switch (spec.transform) {
    case Transform::kConvOIHWToOHWI:
    case Transform::kConvGroupedToDense:  // never a role's: legalize_layers() plans it
      return plan_conv_weight(c.out_channels, c.in_channels, c.groups, c.kernel_h, c.kernel_w);
    case Transform::kConvTransposeToOHWIRotated:
    case Transform::kConvTransposeGroupedToDenseRotated:  // never a role's (legalize_layers())
      return plan_conv_transpose_weight(c.in_channels, c.out_channels, c.groups, c.kernel_h,
                                        c.kernel_w);
    case Transform::kLinearFlattenToOHWC: {
      std::vector<uint64_t> chw;
      if (l.flattened()) chw = {l.input_c, l.input_h, l.input_w};
      return plan_linear_weight(l.out_features, l.in_features, chw);
    }
    case Transform::kBroadcast:
      return plan_broadcast(num_parameters, n);
    case Transform::kNCHWToNHWC:  // probe files only (plan_feature_map)
    case Transform::kIdentity:
      break;
  }
  return plan_vector(n);
}

// The tensors the kind's roles name, in table order.
void read_tensors(FieldReader& r, const KindSpec& kind, ManifestLayer& layer,
                  const std::filesystem::path& folder, const Fields& f, bool params_ok,
                  uint32_t num_parameters, Diagnostics& diag) {
  std::optional<ManifestTensor> found[mpsb::kTensorRoleCount];
  bool present[mpsb::kTensorRoleCount] = {};
  const bool prelu = layer.activation == Activation::kPReLU;
  for (const RoleSpec& spec : kind.roles) {
    if (spec.field.empty()) continue;  // made by the compiler
    const auto i = size_t(spec.role);
    const bool required =
        spec.presence == Presence::kRequired || (spec.presence == Presence::kFusedPReLU && prelu);
    found[i] = r.tensor(spec.field, spec.role, folder, required, &present[i]);
    if (spec.presence == Presence::kFusedPReLU && !prelu && present[i]) {
      r.error(spec.field, "given, but the activation is not \"prelu\"");
    }
  }
  // γ and β: both when "affine" is true, neither when it is false, and
  // without "affine" both or neither (the manifest then says it by the
  // tensors it gives). Each tensor that is missing or too many is named.
  if (const RoleSpec* w = mpsb::role_spec(kind.kind, TensorRole::kWeight);
      w && w->presence == Presence::kAffine) {
    const std::optional<bool> affine = f.flag[size_t(Slot::kAffine)];
    const bool any = present[size_t(TensorRole::kWeight)] || present[size_t(TensorRole::kBias)];
    for (TensorRole role : {TensorRole::kWeight, TensorRole::kBias}) {
      const std::string_view field = mpsb::role_spec(kind.kind, role)->field;
      const bool has = present[size_t(role)];
      if (affine.value_or(any) && !has) {
        r.error(field, affine ? "missing; affine is true, so weight and bias are needed"
                              : "missing; weight and bias come in pairs (affine)");
      } else if (affine && !*affine && has) {
        r.error(field, "given, but affine is false (PyTorch has no weight and bias then)");
      }
    }
  }
  if (!params_ok) return;
  for (const RoleSpec& spec : kind.roles) {
    auto& t = found[size_t(spec.role)];
    if (!t) continue;
    if (finish_tensor(*t, plan_role(spec, layer, num_parameters), diag)) {
      layer.tensors.push_back(std::move(*t));
    }
  }
}

// "probe": {"input": path, "input_shape": [...], "output": path,
// "output_shape": [...]}, as tools/export writes it.
std::optional<Probe> parse_probe(const json& v, const std::string& pointer,
                                 const std::filesystem::path& folder, Diagnostics& diag) {
  if (!v.is_object()) {
    diag.error(
        pointer,
        "expected a probe object {input, input_shape, output, output_shape}, found " + describe(v));
    return std::nullopt;
  }
  FieldReader r(v, pointer, "a probe", diag);
  Probe p;
  p.pointer = pointer;
  bool ok = true;
  for (const char* key : {"input", "output"}) {
    const json* path = r.find(key);
    if (!path || !path->is_string() || path->get_ref<const std::string&>().empty()) {
      r.error(key, "expected a path string, found " + (path ? describe(*path) : "nothing"));
      ok = false;
      continue;
    }
    std::filesystem::path fp(path->get<std::string>());
    (key[0] == 'i' ? p.input_text : p.output_text) = path->get<std::string>();
    (key[0] == 'i' ? p.input : p.output) = fp.is_absolute() ? fp : folder / fp;
  }
  for (const char* key : {"input_shape", "output_shape"}) {
    const json* shape = r.find(key);
    auto& out = key[0] == 'i' ? p.input_shape : p.output_shape;
    if (!shape || !shape->is_array() || shape->empty() || shape->size() > 8) {
      r.error(key, "expected an array of 1 to 8 dimensions, found " +
                       (shape ? describe(*shape) : "nothing"));
      ok = false;
      continue;
    }
    for (size_t i = 0; i < shape->size(); ++i) {
      auto d = r.read_uint((*shape)[i], child(r.at(key), i), 1);
      if (!d) {
        ok = false;
        break;
      }
      out.push_back(*d);
    }
    if (ok && !checked_mul(checked_product(out).value_or(UINT64_MAX), 4)) {
      r.error(key, "shape " + shape_text(out) + " overflows a 64-bit byte size");
      ok = false;
    }
  }
  r.report_unknown();
  if (!ok || r.failed()) return std::nullopt;
  return p;
}

std::optional<ManifestLayer> parse_layer(const json& v, size_t index,
                                         const std::filesystem::path& folder, Diagnostics& diag) {
  const std::string pointer = child("/layers", index);
  if (!v.is_object()) {
    diag.error(pointer, "expected a layer object, found " + describe(v));
    return std::nullopt;
  }
  ManifestLayer layer;
  layer.index = static_cast<uint32_t>(index);
  layer.pointer = pointer;
  FieldReader top(v, pointer, "a layer", diag);
  const json* name = top.find("name");
  const json* type = top.find("type");
  bool ok = true;
  if (!name) {
    top.error("name", "missing; every layer needs a unique name");
    ok = false;
  } else if (!name->is_string() || name->get_ref<const std::string&>().empty() ||
             name->get_ref<const std::string&>().find('\0') != std::string::npos) {
    // NUL would break FlatBuffers' strcmp-based key order.
    top.error("name",
              "expected a non-empty string without NUL characters, found " + describe(*name));
    ok = false;
  } else {
    layer.name = name->get<std::string>();
  }
  const KindSpec* kind = nullptr;
  if (type && type->is_string()) {
    for (const KindSpec& k : mpsb::kKinds) {
      if (mpsb::in_manifest(k) && k.name == type->get_ref<const std::string&>()) kind = &k;
    }
  }
  if (!kind) {
    std::string names;
    for (const KindSpec& k : mpsb::kKinds) {
      if (mpsb::in_manifest(k)) names += (names.empty() ? "" : ", ") + std::string(k.name);
    }
    top.error("type", (type ? "unknown layer type " +
                                  (type->is_string() ? quote(type->get_ref<const std::string&>())
                                                     : describe(*type)) +
                                  "; expected one of "
                            : std::string("missing; expected one of ")) +
                          names);
    return std::nullopt;
  }
  layer.kind = kind->kind;
  FieldReader r(v, pointer, std::string(kind->name), diag);
  r.ignore({"name", "type"});
  if (const json* p = r.find("probe")) layer.probe = parse_probe(*p, r.at("probe"), folder, diag);
  if (kind->precision) {
    if (const json* p = r.find("precision")) {
      if (p->is_string()) layer.precision = parse_precision(p->get_ref<const std::string&>());
      if (!layer.precision) {
        r.error("precision",
                "expected \"float32\", \"float16\", \"uint8-linear\" or \"uint8-lut\", found " +
                    describe(*p));
      }
    }
  }
  const Fields f = read_fields(r, *kind);
  if (kind->fused_activation) read_activation(r, layer, diag);
  uint32_t num_parameters = 1;
  bool params_ok = false;
  switch (kind->params) {
    case ParamTable::kConv:
      params_ok = bind_conv(r, f, layer);
      break;
    case ParamTable::kLinear:
      params_ok = bind_linear(r, f, layer);
      break;
    case ParamTable::kNorm:
    case ParamTable::kGroupNorm:
    case ParamTable::kChannels:
      params_ok = bind_norm(r, *kind, f, layer, &num_parameters);
      break;
    case ParamTable::kNone:  // not a manifest kind (in_manifest)
      break;
  }
  if (layer.activation == Activation::kPReLU) {
    // nn.PReLU(num_parameters) fused: 1 or one slope per output channel.
    const uint32_t out = kind->params == ParamTable::kLinear ? layer.linear.out_features
                         : kind->params == ParamTable::kConv ? layer.conv.out_channels
                                                             : layer.norm.num_features;
    if (auto np = r.optional_uint("num_parameters", 1, 1)) {
      num_parameters = *np;
      if (params_ok && *np != 1 && *np != out) {
        r.error("num_parameters", "expected 1 or the layer's " + std::to_string(out) +
                                      " output channels, found " + std::to_string(*np));
      }
    }
  }
  read_tensors(r, *kind, layer, folder, f, params_ok, num_parameters, diag);
  r.report_unknown();
  if (!ok || r.failed()) return std::nullopt;
  return layer;
}

// "skipped": [{"name": ..., "type": ..., "reason": ...}], as tools/export
// writes it for the modules it left out. "name" is the module's qualified
// name, "" for the model itself; "type" and "reason" are not empty.
void parse_skipped(const json& v, Diagnostics& diag, std::vector<SkippedModule>* out) {
  const std::string pointer = "/skipped";
  if (!v.is_array()) {
    diag.error(pointer, "expected an array of {name, type, reason} objects, found " + describe(v));
    return;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = child(pointer, i);
    if (!v[i].is_object()) {
      diag.error(at, "expected a {name, type, reason} object, found " + describe(v[i]));
      continue;
    }
    FieldReader r(v[i], at, "a skipped module", diag);
    SkippedModule s;
    bool ok = true;
    for (auto [key, dest] : {std::pair<const char*, std::string*>{"name", &s.name},
                             {"type", &s.type},
                             {"reason", &s.reason}}) {
      const json* f = r.find(key);
      const bool may_be_empty = dest == &s.name;
      if (!f) {
        r.error(key, "missing; a skipped module has a name, a type and a reason");
        ok = false;
      } else if (!f->is_string() || (!may_be_empty && f->get_ref<const std::string&>().empty()) ||
                 f->get_ref<const std::string&>().find('\0') != std::string::npos) {
        r.error(key, std::string("expected a ") + (may_be_empty ? "" : "non-empty ") +
                         "string without NUL characters, found " + describe(*f));
        ok = false;
      } else {
        *dest = f->get<std::string>();
      }
    }
    r.report_unknown();
    if (ok) out->push_back(std::move(s));
  }
}

// "line 3, column 5: syntax error ..." out of nlohmann's message, which
// starts with an exception id that means nothing to a user.
std::string parse_error_text(const json::parse_error& e) {
  std::string_view what = e.what();
  auto pos = what.find("line ");
  if (pos != std::string_view::npos) return std::string(what.substr(pos));
  return std::string(what);
}

// nlohmann's text without its "[json.exception.out_of_range.406] " id.
std::string exception_text(const json::exception& e) {
  std::string_view what = e.what();
  const auto close = what.find("] ");
  return std::string(close == std::string_view::npos ? what : what.substr(close + 2));
}

// 1-based line and column of byte `offset` of `text`, as nlohmann counts them.
std::string line_column(std::string_view text, size_t offset) {
  size_t line = 1, column = 1;
  for (size_t i = 0; i < offset && i < text.size(); ++i) {
    if (text[i] == '\n') {
      ++line;
      column = 1;
    } else {
      ++column;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

// A number too large for a double ("1e400") is valid JSON grammar but
// nlohmann refuses it with out_of_range, which carries no place (and which
// a catch of parse_error alone let escape as a crash: found by fuzzing).
// The place is that of the first such number outside a string.
std::string number_overflow_text(const json::out_of_range& e, std::string_view text) {
  std::string msg = exception_text(e);  // "number overflow parsing '1e400'"
  const auto q1 = msg.find('\''), q2 = msg.rfind('\'');
  if (q1 == std::string::npos || q2 <= q1) return msg;
  const std::string_view token = std::string_view(msg).substr(q1 + 1, q2 - q1 - 1);
  bool in_string = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (text.substr(i, token.size()) == token &&
               (i == 0 ||
                std::string_view("-+.0123456789eE").find(text[i - 1]) == std::string_view::npos)) {
      return line_column(text, i) + ": number " + std::string(token) +
             " is out of the range of a double";
    }
  }
  return msg;
}

}  // namespace

std::optional<Manifest> parse_manifest(const std::string& path, Diagnostics& diag, bool* io_error) {
  *io_error = false;
  std::string text;
  {
    // Non-blocking and fstat'ed before any read, as every input file: a
    // FIFO or a device given as the manifest must not hang mpsbc.
    struct stat st;
    std::string why;
    bool not_regular = false;
    const int fd = open_regular(path.c_str(), &st, &why, &not_regular);
    if (fd < 0) {
      diag.error({}, !not_regular ? "cannot open the manifest: " + why
                     : S_ISDIR(st.st_mode)
                         ? std::string("cannot read the manifest: it is a directory")
                         : "cannot read the manifest: it " + why);
      *io_error = true;
      return std::nullopt;
    }
    char buf[65536];
    for (;;) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ::close(fd);
        diag.error({}, std::string("cannot read the manifest: ") + std::strerror(errno));
        *io_error = true;
        return std::nullopt;
      }
      if (n == 0) break;
      text.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
  }

  json doc;
  DuplicateKeys duplicates;
  try {
    doc = json::parse(text, duplicates.callback());
  } catch (const json::parse_error& e) {
    diag.error({}, "invalid JSON: " + parse_error_text(e));
    return std::nullopt;
  } catch (const json::out_of_range& e) {
    diag.error({}, "invalid JSON: " + number_overflow_text(e, text));
    return std::nullopt;
  } catch (const json::exception& e) {
    diag.error({}, "invalid JSON: " + exception_text(e));
    return std::nullopt;
  }
  if (!doc.is_object()) {
    diag.error({}, "expected a JSON object at the top level, found " + describe(doc));
    return std::nullopt;
  }
  for (const auto& d : duplicates.found()) {
    // Readers disagree on which one wins (nlohmann keeps the last, others
    // the first): refuse rather than guess.
    diag.error(d.pointer, "duplicate key " + quote(d.key) + ": members " + std::to_string(d.first) +
                              " and " + std::to_string(d.second) + " of " +
                              (d.object_pointer.empty() ? "the manifest" : d.object_pointer) +
                              " are both " + d.pointer + "; a key may appear once per object");
  }

  Manifest m;
  m.path = path;
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();
  FieldReader top(doc, "", "a manifest", diag);

  const json* format = top.find("format");
  if (!format) {
    top.error("format", "missing; expected \"" + std::string(kFormat) + "\"");
  } else if (!format->is_string() || format->get_ref<const std::string&>() != kFormat) {
    top.error("format", "expected \"" + std::string(kFormat) + "\", found " + describe(*format));
    // Another format's fields mean other things: do not guess at them.
    return std::nullopt;
  }

  if (const json* name = top.find("name")) {
    if (name->is_string()) {
      m.name = name->get<std::string>();
    } else {
      top.error("name", "expected a string, found " + describe(*name));
    }
  }

  if (const json* meta = top.find("metadata")) {
    if (!meta->is_object()) {
      top.error("metadata", "expected an object of string values, found " + describe(*meta));
    } else {
      m.has_metadata = true;
      for (auto it = meta->begin(); it != meta->end(); ++it) {
        if (!it->is_string()) {
          diag.error(child("/metadata", it.key()),
                     "expected a string value, found " + describe(*it));
          continue;
        }
        m.metadata.emplace_back(it.key(), it->get<std::string>());
      }
      // nlohmann's object is a std::map, so this is already sorted; sort
      // anyway with the byte order FlatBuffers' key lookup uses.
      std::sort(m.metadata.begin(), m.metadata.end());
    }
  }

  if (const json* skipped = top.find("skipped")) parse_skipped(*skipped, diag, &m.skipped);

  const json* layers = top.find("layers");
  if (!layers) {
    top.error("layers", "missing; expected an array of layers");
  } else if (!layers->is_array()) {
    top.error("layers", "expected an array of layers, found " + describe(*layers));
  } else if (layers->empty()) {
    top.error("layers", "expected at least one layer, found an empty array");
  } else if (layers->size() > kMaxU32) {
    top.error("layers", "too many layers (the bundle indexes them with 32 bits)");
  } else {
    std::map<std::string, size_t> first_index;
    for (size_t i = 0; i < layers->size(); ++i) {
      const json& lv = (*layers)[i];
      // Check names even for layers that fail, so duplicates are reported
      // in the same run.
      if (lv.is_object()) {
        auto it = lv.find("name");
        if (it != lv.end() && it->is_string()) {
          auto [pos, inserted] = first_index.emplace(it->get<std::string>(), i);
          if (!inserted) {
            diag.error(child(child("/layers", i), "name"),
                       "duplicate layer name " + quote(it->get_ref<const std::string&>()) +
                           " (first used at /layers/" + std::to_string(pos->second) + ")");
          }
        }
      }
      auto layer = parse_layer(lv, i, folder, diag);
      if (layer) m.layers.push_back(std::move(*layer));
    }
  }
  top.report_unknown();
  return m;
}

}  // namespace mpsbc
