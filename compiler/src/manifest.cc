#include "manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string_view>

#include "checked_math.h"
#include "conv_bounds.h"
#include "duplicate_keys.h"

namespace mpsbc {
namespace {

using mpsb::Activation;
using mpsb::DType;
using mpsb::LayerKind;
using mpsb::TensorRole;
using nlohmann::json;

constexpr std::string_view kFormat = "mpsb.manifest/1";
constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();

// RFC 6901: '~' and '/' inside a reference token are escaped.
std::string escape_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

std::string child(std::string_view pointer, std::string_view key) {
  return std::string(pointer) + "/" + escape_token(key);
}

std::string child(std::string_view pointer, size_t index) {
  return std::string(pointer) + "/" + std::to_string(index);
}

// A value as quoted in "found ..." messages. Containers are summarized, not
// dumped: they may be large or deeply nested.
std::string describe(const json& v) {
  auto clip = [](std::string s) {
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
  };
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::string:
      return "string " + clip(v.dump(-1, ' ', false, json::error_handler_t::replace));
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return clip(v.dump());
    case json::value_t::array:
      return v.empty() ? "an empty array" : "an array of " + std::to_string(v.size()) + " elements";
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  return "an unsupported value";
}

std::string quote(std::string_view s) { return json(std::string(s)).dump(); }

// An integral zero written with a sign: nlohmann stores "-0" as a signed
// integer 0 or as the float -0.0.
bool is_negative_zero(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>() == 0;
  if (v.is_number_float()) {
    const double d = v.get<double>();
    return d == 0.0 && std::signbit(d);
  }
  return false;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += "×";
    s += std::to_string(shape[i]);
  }
  return s;
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "float32") return DType::kFloat32;
  if (s == "float16") return DType::kFloat16;
  if (s == "bfloat16") return DType::kBFloat16;
  return std::nullopt;
}

std::optional<Activation> parse_activation(std::string_view s) {
  if (s == "none") return Activation::kNone;
  if (s == "relu") return Activation::kReLU;
  if (s == "relu6") return Activation::kReLU6;
  if (s == "leaky_relu") return Activation::kLeakyReLU;
  if (s == "sigmoid") return Activation::kSigmoid;
  if (s == "tanh") return Activation::kTanh;
  return std::nullopt;
}

std::optional<LayerKind> parse_kind(std::string_view s) {
  if (s == "conv2d") return LayerKind::kConv2d;
  if (s == "conv_transpose2d") return LayerKind::kConvTranspose2d;
  if (s == "linear") return LayerKind::kLinear;
  if (s == "batch_norm2d") return LayerKind::kBatchNorm2d;
  if (s == "instance_norm2d") return LayerKind::kInstanceNorm2d;
  return std::nullopt;
}

struct Pair {
  uint32_t h = 0, w = 0;
};

// Reads the fields of one JSON object, reporting each problem at its JSON
// pointer. Remembers which keys were read so that the rest can be reported:
// a misspelt "padidng" would otherwise silently mean padding 0.
class FieldReader {
 public:
  FieldReader(const json& object, std::string pointer, std::string what, Diagnostics& diag)
      : object_(object), pointer_(std::move(pointer)), what_(std::move(what)), diag_(diag) {}

  const std::string& pointer() const { return pointer_; }
  std::string at(std::string_view key) const { return child(pointer_, key); }
  bool failed() const { return failed_; }
  void error(std::string_view key, std::string_view text) {
    failed_ = true;
    diag_.error(at(key), text);
  }

  // The member, or nullptr when absent. Marks the key as known.
  const json* find(std::string_view key) {
    known_.insert(std::string(key));
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  // Marks keys that are accepted and have no effect on the bundle.
  void ignore(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) known_.insert(std::string(k));
  }

  // A required unsigned integer in [min, 2^32 - 1] (the schema stores uint).
  std::optional<uint32_t> required_uint(std::string_view key, uint64_t min) {
    const json* v = find(key);
    if (!v) {
      error(key, "missing; " + what_ + " needs " + expect_uint(min));
      return std::nullopt;
    }
    return read_uint(*v, at(key), min);
  }

  std::optional<uint32_t> optional_uint(std::string_view key, uint32_t fallback, uint64_t min) {
    const json* v = find(key);
    if (!v) return fallback;
    return read_uint(*v, at(key), min);
  }

  // An int or [h, w], as PyTorch's _pair accepts.
  std::optional<Pair> pair(std::string_view key, std::optional<Pair> fallback, uint64_t min) {
    const json* v = find(key);
    if (!v) {
      if (fallback) return fallback;
      error(key, "missing; " + what_ +
                     " needs an integer or [h, w] of integers >= " + std::to_string(min));
      return std::nullopt;
    }
    if (v->is_array()) {
      if (v->size() != 2) {
        error(key, "expected [h, w] with 2 integers, found " + describe(*v));
        return std::nullopt;
      }
      auto h = read_uint((*v)[0], child(at(key), 0), min);
      auto w = read_uint((*v)[1], child(at(key), 1), min);
      if (!h || !w) return std::nullopt;
      return Pair{*h, *w};
    }
    if (v->is_string()) {
      // PyTorch also takes padding="same"/"valid"; the exporter resolves it.
      error(key, "expected an integer or [h, w], found " + describe(*v) +
                     " (string forms are not supported: give the numbers)");
      return std::nullopt;
    }
    if (!v->is_number()) {
      error(key, "expected an integer or [h, w], found " + describe(*v));
      return std::nullopt;
    }
    auto n = read_uint(*v, at(key), min);
    if (!n) return std::nullopt;
    return Pair{*n, *n};
  }

  // A finite number that fits a float; `positive` also rejects <= 0 and
  // values that round to 0 as float.
  std::optional<float> number(std::string_view key, float fallback, bool positive) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) {
      error(key, "expected a number, found " + describe(*v));
      return std::nullopt;
    }
    const double d = v->get<double>();
    if (!std::isfinite(d) || std::fabs(d) > double(std::numeric_limits<float>::max())) {
      error(key, "expected a finite number within float range, found " + describe(*v));
      return std::nullopt;
    }
    const float f = static_cast<float>(d);
    if (positive && !(f > 0.0f)) {
      error(key, "expected a number > 0 (as float32), found " + describe(*v));
      return std::nullopt;
    }
    return f;
  }

  std::optional<bool> boolean(std::string_view key) {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      error(key, "expected true or false, found " + describe(*v));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  // A tensor entry: a path string or {"path": ..., "dtype": ...}. Absent or
  // null gives nullopt; `*present` tells a broken entry from an absent one.
  std::optional<ManifestTensor> tensor(std::string_view key, TensorRole role,
                                       const std::filesystem::path& folder, bool required,
                                       bool* present) {
    *present = false;
    const json* v = find(key);
    if (!v || v->is_null()) {
      if (required) error(key, "missing; " + what_ + " needs a tensor file");
      return std::nullopt;
    }
    *present = true;
    ManifestTensor t;
    t.role = role;
    t.pointer = at(key);
    const json* path = v;
    std::string path_pointer = t.pointer;
    if (v->is_object()) {
      FieldReader sub(*v, t.pointer, "a tensor", diag_);
      path = sub.find("path");
      path_pointer = sub.at("path");
      if (!path) {
        error(key, "missing \"path\" in tensor object");
        return std::nullopt;
      }
      if (const json* dt = sub.find("dtype")) {
        std::optional<DType> parsed;
        if (dt->is_string()) parsed = parse_dtype(dt->get_ref<const std::string&>());
        if (!parsed) {
          failed_ = true;
          diag_.error(sub.at("dtype"),
                      "expected \"float32\", \"float16\" or \"bfloat16\", found " + describe(*dt));
          return std::nullopt;
        }
        t.source_dtype = *parsed;
      }
      sub.report_unknown();
    } else if (!v->is_string()) {
      error(key,
            "expected a path string or {\"path\": ..., \"dtype\": ...}, found " + describe(*v));
      return std::nullopt;
    }
    if (!path->is_string()) {
      failed_ = true;
      diag_.error(path_pointer, "expected a path string, found " + describe(*path));
      return std::nullopt;
    }
    t.path_text = path->get<std::string>();
    if (t.path_text.empty() || t.path_text.find('\0') != std::string::npos) {
      failed_ = true;
      diag_.error(path_pointer, "expected a non-empty file path, found " + describe(*path));
      return std::nullopt;
    }
    std::filesystem::path p(t.path_text);
    t.path = p.is_absolute() ? p : folder / p;
    t.dtype = t.source_dtype;
    return t;
  }

  // The fused activation and its LeakyReLU slope.
  void activation(Activation* act, float* alpha) {
    *act = Activation::kNone;
    *alpha = 0.0f;
    if (const json* v = find("activation")) {
      std::optional<Activation> parsed;
      if (v->is_string()) parsed = parse_activation(v->get_ref<const std::string&>());
      if (!parsed) {
        error("activation",
              "expected one of \"none\", \"relu\", \"relu6\", \"leaky_relu\", \"sigmoid\", "
              "\"tanh\", found " +
                  describe(*v));
        return;
      }
      *act = *parsed;
    }
    if (*act == Activation::kLeakyReLU) {
      // PyTorch's LeakyReLU default.
      if (auto s = number("negative_slope", 0.01f, false)) *alpha = *s;
    } else if (find("negative_slope")) {
      diag_.warning(at("negative_slope"), "ignored: the activation is not \"leaky_relu\"");
    }
  }

  // Public for array elements, which have no key of their own.
  std::optional<uint32_t> read_uint(const json& v, const std::string& pointer, uint64_t min) {
    const char* problem = nullptr;
    uint64_t n = 0;
    if (v.is_number_unsigned()) {
      n = v.get<uint64_t>();
      if (n < min) problem = "too small";
      if (n > kMaxU32) problem = "too large";
    } else if (is_negative_zero(v)) {
      // "-0", which nlohmann reads as a signed integer or a float: zero.
      if (n < min) problem = "too small";
    } else if (v.is_number_integer()) {
      problem = "negative";
    } else {
      problem = "wrong type";
    }
    if (problem) {
      failed_ = true;
      std::string range = expect_uint(min);
      if (v.is_number_unsigned() && n > kMaxU32) range = "an integer <= " + std::to_string(kMaxU32);
      diag_.error(pointer, "expected " + range + ", found " + describe(v));
      return std::nullopt;
    }
    return static_cast<uint32_t>(n);
  }

  void report_unknown() {
    std::vector<std::string> unknown;
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (!known_.count(it.key())) unknown.push_back(it.key());
    }
    std::sort(unknown.begin(), unknown.end());
    for (const auto& k : unknown) {
      diag_.warning(at(k), "unknown field for " + what_ + ", ignored");
    }
  }

 private:
  static std::string expect_uint(uint64_t min) {
    return min == 0 ? "an integer >= 0" : "an integer >= " + std::to_string(min);
  }

  const json& object_;
  std::string pointer_;
  std::string what_;
  Diagnostics& diag_;
  std::set<std::string> known_;
  bool failed_ = false;
};

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

void add_tensor(ManifestLayer& layer, std::optional<ManifestTensor> t, TensorPlan plan,
                Diagnostics& diag) {
  if (!t) return;
  if (finish_tensor(*t, std::move(plan), diag)) layer.tensors.push_back(std::move(*t));
}

void parse_conv(FieldReader& r, ManifestLayer& layer, const std::filesystem::path& folder,
                Diagnostics& diag) {
  const bool transposed = layer.kind == LayerKind::kConvTranspose2d;
  auto in = r.required_uint("in_channels", 1);
  auto out = r.required_uint("out_channels", 1);
  auto kernel = r.pair("kernel_size", std::nullopt, 1);
  auto stride = r.pair("stride", Pair{1, 1}, 1);
  auto padding = r.pair("padding", Pair{0, 0}, 0);
  auto dilation = r.pair("dilation", Pair{1, 1}, 1);
  auto groups = r.optional_uint("groups", 1, 1);
  std::optional<Pair> output_padding = Pair{0, 0};
  if (transposed) output_padding = r.pair("output_padding", Pair{0, 0}, 0);
  if (const json* mode = r.find("padding_mode")) {
    if (!mode->is_string() || mode->get_ref<const std::string&>() != "zeros") {
      r.error(
          "padding_mode",
          "expected \"zeros\" (the only padding MPS convolutions apply), found " + describe(*mode));
    }
  }
  bool weight_present = false, bias_present = false;
  auto weight = r.tensor("weight", TensorRole::kWeight, folder, true, &weight_present);
  auto bias = r.tensor("bias", TensorRole::kBias, folder, false, &bias_present);
  r.activation(&layer.activation, &layer.activation_alpha);

  if (!in || !out || !kernel || !stride || !padding || !dilation || !groups || !output_padding) {
    return;
  }
  auto& c = layer.conv;
  c.in_channels = *in;
  c.out_channels = *out;
  c.kernel_h = kernel->h;
  c.kernel_w = kernel->w;
  c.stride_h = stride->h;
  c.stride_w = stride->w;
  c.padding_h = padding->h;
  c.padding_w = padding->w;
  c.dilation_h = dilation->h;
  c.dilation_w = dilation->w;
  c.groups = *groups;
  c.output_padding_h = output_padding->h;
  c.output_padding_w = output_padding->w;

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
    // MPSCNNDepthWiseConvolutionDescriptor supports channel multiplier 1 only.
    diag.mps_limit(r.at("out_channels"),
                   "depthwise conv (groups == in_channels == " + std::to_string(c.in_channels) +
                       ") with out_channels " + std::to_string(c.out_channels) +
                       ": MPS supports depthwise channel multiplier 1 only");
  }
  if (shape_ok && c.groups > 1 && !depthwise) {
    const uint32_t in_per_group = c.in_channels / c.groups;
    const uint32_t out_per_group = c.out_channels / c.groups;
    if (in_per_group % 4 != 0 || out_per_group % 4 != 0) {
      // Apple's MPSCNNConvolutionDescriptor.groups documentation.
      diag.mps_limit(r.at("groups"), "grouped conv with " + std::to_string(in_per_group) +
                                         " input and " + std::to_string(out_per_group) +
                                         " output channels per group: MPS requires a multiple "
                                         "of 4 channels per group");
    }
  }
  if (!shape_ok || !weight_present) return;
  TensorPlan wplan = transposed ? plan_conv_transpose_weight(c.in_channels, c.out_channels,
                                                             c.groups, c.kernel_h, c.kernel_w)
                                : plan_conv_weight(c.out_channels, c.in_channels, c.groups,
                                                   c.kernel_h, c.kernel_w);
  add_tensor(layer, std::move(weight), std::move(wplan), diag);
  add_tensor(layer, std::move(bias), plan_vector(c.out_channels), diag);
}

void parse_linear(FieldReader& r, ManifestLayer& layer, const std::filesystem::path& folder,
                  Diagnostics& diag) {
  auto in = r.required_uint("in_features", 1);
  auto out = r.required_uint("out_features", 1);
  std::vector<uint64_t> chw;
  bool shape_ok = true;
  if (const json* v = r.find("input_shape")) {
    if (!v->is_array() || v->size() != 3) {
      r.error("input_shape", "expected [C, H, W] of 3 integers, found " + describe(*v));
      shape_ok = false;
    } else {
      for (size_t i = 0; i < 3; ++i) {
        auto d = r.read_uint((*v)[i], child(r.at("input_shape"), i), 1);
        if (d) chw.push_back(*d);
      }
      shape_ok = chw.size() == 3;
    }
  }
  bool weight_present = false, bias_present = false;
  auto weight = r.tensor("weight", TensorRole::kWeight, folder, true, &weight_present);
  auto bias = r.tensor("bias", TensorRole::kBias, folder, false, &bias_present);
  r.activation(&layer.activation, &layer.activation_alpha);
  if (!in || !out || !shape_ok) return;
  layer.linear.in_features = *in;
  layer.linear.out_features = *out;
  if (!chw.empty()) {
    // C, H, W are each < 2^32, so the product fits 96 bits; check 64.
    auto n = checked_product(chw);
    if (!n || *n != *in) {
      r.error("input_shape",
              "C×H×W = " + shape_text(chw) + " must equal in_features " + std::to_string(*in));
      return;
    }
    layer.linear.input_c = static_cast<uint32_t>(chw[0]);
    layer.linear.input_h = static_cast<uint32_t>(chw[1]);
    layer.linear.input_w = static_cast<uint32_t>(chw[2]);
  }
  if (!weight_present) return;
  add_tensor(layer, std::move(weight), plan_linear_weight(*out, *in, chw), diag);
  add_tensor(layer, std::move(bias), plan_vector(*out), diag);
}

void parse_norm(FieldReader& r, ManifestLayer& layer, const std::filesystem::path& folder,
                Diagnostics& diag) {
  const bool batch = layer.kind == LayerKind::kBatchNorm2d;
  auto n = r.required_uint("num_features", 1);
  auto eps = r.number("eps", 1e-5f, true);  // PyTorch's default
  // PyTorch constructor arguments with no effect on the stored weights.
  r.ignore({"momentum", "track_running_stats"});
  auto affine = r.boolean("affine");
  bool present[4] = {};
  auto weight = r.tensor("weight", TensorRole::kWeight, folder, false, &present[0]);
  auto bias = r.tensor("bias", TensorRole::kBias, folder, false, &present[1]);
  std::optional<ManifestTensor> mean, var;
  if (batch) {
    mean = r.tensor("running_mean", TensorRole::kRunningMean, folder, true, &present[2]);
    var = r.tensor("running_var", TensorRole::kRunningVar, folder, true, &present[3]);
  }
  if (affine.value_or(false) && (!present[0] || !present[1])) {
    r.error(present[0] ? "bias" : "weight",
            "missing; affine is true, so weight and bias are needed");
  }
  if (!n || !eps) return;
  layer.norm.num_features = *n;
  layer.norm.eps = *eps;
  add_tensor(layer, std::move(weight), plan_vector(*n), diag);
  add_tensor(layer, std::move(bias), plan_vector(*n), diag);
  add_tensor(layer, std::move(mean), plan_vector(*n), diag);
  add_tensor(layer, std::move(var), plan_vector(*n), diag);
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
  std::optional<LayerKind> kind;
  if (!type) {
    top.error("type",
              "missing; expected one of conv2d, conv_transpose2d, linear, "
              "batch_norm2d, instance_norm2d");
  } else {
    if (type->is_string()) kind = parse_kind(type->get_ref<const std::string&>());
    if (!kind) {
      top.error("type", "unknown layer type " +
                            (type->is_string() ? quote(type->get_ref<const std::string&>())
                                               : describe(*type)) +
                            "; expected one of conv2d, conv_transpose2d, linear, batch_norm2d, "
                            "instance_norm2d");
    }
  }
  if (!kind) return std::nullopt;
  layer.kind = *kind;
  FieldReader r(v, pointer, std::string(mpsb::to_string(*kind)), diag);
  r.ignore({"name", "type"});
  if (const json* p = r.find("probe")) layer.probe = parse_probe(*p, r.at("probe"), folder, diag);
  if (*kind == LayerKind::kConv2d || *kind == LayerKind::kConvTranspose2d ||
      *kind == LayerKind::kLinear) {
    if (const json* p = r.find("precision")) {
      if (p->is_string()) layer.precision = parse_precision(p->get_ref<const std::string&>());
      if (!layer.precision) {
        r.error("precision",
                "expected \"float32\", \"float16\", \"uint8-linear\" or \"uint8-lut\", found " +
                    describe(*p));
      }
    }
  }
  if (*kind == LayerKind::kBatchNorm2d) {
    if (const json* f = r.find("follows")) {
      if (f->is_string() && !f->get_ref<const std::string&>().empty()) {
        layer.follows = f->get<std::string>();
      } else {
        r.error("follows",
                "expected the name of the conv this batch norm follows, found " + describe(*f));
      }
    }
  }
  switch (*kind) {
    case LayerKind::kConv2d:
    case LayerKind::kConvTranspose2d:
      parse_conv(r, layer, folder, diag);
      break;
    case LayerKind::kLinear:
      parse_linear(r, layer, folder, diag);
      break;
    case LayerKind::kBatchNorm2d:
    case LayerKind::kInstanceNorm2d:
      parse_norm(r, layer, folder, diag);
      break;
  }
  r.report_unknown();
  if (!ok || r.failed()) return std::nullopt;
  return layer;
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
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) {
      diag.error({}, "cannot read the manifest: it is a directory");
      *io_error = true;
      return std::nullopt;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      diag.error({}, std::string("cannot open the manifest: ") + std::strerror(errno));
      *io_error = true;
      return std::nullopt;
    }
    std::ostringstream buf;
    buf << in.rdbuf();
    if (in.bad()) {
      diag.error({}, "cannot read the manifest");
      *io_error = true;
      return std::nullopt;
    }
    text = std::move(buf).str();
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

  // Written by tools/export: modules it did not map. Informational.
  top.ignore({"skipped"});

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

namespace {

// Where a tensor path leads outside the manifest's folder, why; else empty.
// Lexical: a symbolic link inside the folder is followed (whoever wrote the
// folder chose it).
std::string outside_reason(const std::string& path_text) {
  const std::filesystem::path p(path_text);
  if (p.is_absolute()) return "is an absolute path";
  const std::filesystem::path normal = p.lexically_normal();
  if (!normal.empty() && *normal.begin() == "..") return "climbs out of the manifest's folder";
  return {};
}

struct NonFinite {
  uint64_t nan = 0, inf = 0;
  uint64_t first = 0;  // element index of the first one
};

// Whether any element has an all-ones exponent (NaN or infinity): one
// branch-free pass the compiler vectorizes, so finite weights — nearly all
// of them — cost about a memory read.
bool any_non_finite(mpsb::DType dtype, const unsigned char* p, size_t elements) {
  unsigned hit = 0;
  if (dtype == DType::kFloat32) {
    for (size_t i = 0; i < elements; ++i) {
      uint32_t v;
      std::memcpy(&v, p + i * 4, 4);
      hit |= (v & 0x7f800000u) == 0x7f800000u;
    }
  } else if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
    const uint16_t exp = dtype == DType::kFloat16 ? 0x7c00u : 0x7f80u;
    for (size_t i = 0; i < elements; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, 2);
      hit |= (v & exp) == exp;
    }
  }
  return hit != 0;
}

void count_non_finite(mpsb::DType dtype, const unsigned char* p, size_t elements, uint64_t base,
                      NonFinite* nf) {
  if (!any_non_finite(dtype, p, elements)) return;
  for (size_t i = 0; i < elements; ++i) {
    bool nan = false, inf = false;
    switch (dtype) {
      case DType::kFloat32: {
        uint32_t v;
        std::memcpy(&v, p + i * 4, 4);
        nan = (v & 0x7f800000u) == 0x7f800000u && (v & 0x007fffffu) != 0;
        inf = (v & 0x7fffffffu) == 0x7f800000u;
        break;
      }
      case DType::kFloat16:
      case DType::kBFloat16: {
        uint16_t v;
        std::memcpy(&v, p + i * 2, 2);
        const uint16_t exp = dtype == DType::kFloat16 ? 0x7c00u : 0x7f80u;
        nan = (v & exp) == exp && (v & ~exp & 0x7fffu) != 0;
        inf = (v & 0x7fffu) == exp;
        break;
      }
      case DType::kUInt8:
        return;
    }
    if ((nan || inf) && nf->nan + nf->inf == 0) nf->first = base + i;
    nf->nan += nan;
    nf->inf += inf;
  }
}

// Reads the whole file once and counts NaN and infinite elements. Returns
// false with *error set when the file cannot be read to its end.
bool scan_non_finite(int fd, mpsb::DType dtype, uint64_t size, NonFinite* nf, std::string* error) {
  const size_t elem = mpsb::dtype_size(dtype);
  // Not zeroed: every byte used is read first. A multiple of every element size.
  constexpr size_t kChunk = size_t{1} << 20;
  static thread_local const auto buf = std::make_unique_for_overwrite<unsigned char[]>(kChunk);
  for (uint64_t pos = 0; pos < size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - pos));
    const ssize_t n = ::pread(fd, buf.get(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::strerror(errno);
      return false;
    }
    if (n == 0) {
      *error = "the file shrank while being read";
      return false;
    }
    const size_t whole = static_cast<size_t>(n) / elem * elem;
    if (whole == 0) {
      *error = "short read";
      return false;
    }
    count_non_finite(dtype, buf.get(), whole / elem, pos / elem, nf);
    pos += whole;
  }
  return true;
}

}  // namespace

std::string describe_file(const ManifestTensor& t) {
  // The resolved path too when it differs: the manifest's folder is often
  // not the current one.
  std::string file = quote(t.path_text);
  if (t.path.string() != t.path_text) file += " (" + t.path.string() + ")";
  return file;
}

void check_tensor_files(Manifest& manifest, Diagnostics& diag, const TensorFileOptions& options) {
  for (auto& layer : manifest.layers) {
    for (auto& t : layer.tensors) {
      const std::string file = describe_file(t);
      if (!options.allow_outside) {
        if (const std::string why = outside_reason(t.path_text); !why.empty()) {
          diag.error(t.pointer, quote(t.path_text) + " " + why +
                                    "; tensor files must be inside the manifest's folder "
                                    "(--allow-outside accepts it)");
          continue;
        }
      }
      struct stat st;
      std::string error;
      bool not_regular = false;
      const int fd = open_regular(t.path.c_str(), &st, &error, &not_regular);
      if (fd < 0) {
        diag.error(t.pointer,
                   not_regular ? file + " " + error : "cannot open " + file + ": " + error);
        continue;
      }
      const uint64_t found = static_cast<uint64_t>(st.st_size);
      if (found != t.source_size) {
        ::close(fd);
        diag.error(t.pointer, file + ": expected " + std::to_string(t.source_size) + " bytes (" +
                                  shape_text(t.plan.source_shape) + " " +
                                  std::string(mpsb::to_string(t.source_dtype)) + "), found " +
                                  std::to_string(found));
        continue;
      }
      t.identity = FileIdentity::of(st);
      if (!options.allow_non_finite && !options.scan_non_finite) t.scan_on_read = true;
      if (!options.allow_non_finite && options.scan_non_finite) {
        NonFinite nf;
        const bool read = scan_non_finite(fd, t.source_dtype, t.source_size, &nf, &error);
        if (!read) {
          diag.error(t.pointer, "cannot read " + file + ": " + error);
        } else if (nf.nan + nf.inf > 0) {
          diag.error(t.pointer, file + ": " + std::to_string(nf.nan + nf.inf) +
                                    " non-finite values (" + std::to_string(nf.nan) + " NaN, " +
                                    std::to_string(nf.inf) + " infinite; first at element " +
                                    std::to_string(nf.first) +
                                    "); --allow-non-finite accepts them");
        }
      }
      ::close(fd);
    }
  }
}

bool read_floats(const std::filesystem::path& path, uint64_t count, std::vector<float>* out,
                 std::string* error) {
  struct stat st;
  bool not_regular = false;
  const int fd = open_regular(path.c_str(), &st, error, &not_regular);
  if (fd < 0) {
    *error = not_regular ? quote(path.string()) + " " + *error
                         : "cannot read " + quote(path.string()) + ": " + *error;
    return false;
  }
  const uint64_t size = uint64_t(st.st_size);
  if (count > UINT64_MAX / 4 || size != count * 4) {
    ::close(fd);
    *error = quote(path.string()) + ": expected " + std::to_string(count) + " float32 values (" +
             std::to_string(count * 4) + " bytes), found " + std::to_string(size) + " bytes";
    return false;
  }
  out->resize(static_cast<size_t>(count));
  auto* dst = reinterpret_cast<char*>(out->data());
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, dst + done, size_t(size) - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  ::close(fd);
  if (done != size) {
    *error = "cannot read " + quote(path.string());
    return false;
  }
  return true;
}

// A whole tensor's source values as floats, in source (PyTorch) order.
bool read_tensor_floats(const ManifestTensor& t, std::vector<float>* out, std::string* error) {
  const uint64_t count = t.plan.element_count();
  if (!t.synthesized.empty()) {
    *out = t.synthesized;
    return true;
  }
  const std::string changed =
      describe_file(t) + " changed since it was checked (replaced or rewritten); compile again";
  struct stat st;
  bool not_regular = false;
  const int fd = open_regular(t.path.c_str(), &st, error, &not_regular);
  if (fd < 0) {
    *error = not_regular ? changed : "cannot open " + describe_file(t) + ": " + *error;
    return false;
  }
  std::vector<unsigned char> raw(static_cast<size_t>(t.source_size));
  size_t done = 0;
  while (done < raw.size()) {
    const ssize_t n = ::pread(fd, raw.data() + done, raw.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  struct stat after;
  const bool same = ::fstat(fd, &after) == 0 &&
                    (!t.identity.recorded ||
                     (FileIdentity::of(st) == t.identity && FileIdentity::of(after) == t.identity));
  ::close(fd);
  if (!same || done != raw.size()) {
    *error = changed;
    return false;
  }
  if (t.scan_on_read) {
    NonFiniteCount nf;
    count_non_finite(raw.data(), t.source_dtype, count, 0, &nf);
    if (nf.count() > 0) {
      *error = describe_file(t) + ": " + non_finite_text(nf) + "; --allow-non-finite accepts them";
      return false;
    }
  }
  out->resize(static_cast<size_t>(count));
  to_float(t.source_dtype, raw.data(), out->data(), out->size());
  return true;
}

void check_probe_files(const Manifest& manifest, Diagnostics& diag, bool allow_outside) {
  for (const auto& layer : manifest.layers) {
    if (!layer.probe) continue;
    const Probe& p = *layer.probe;
    for (int k = 0; k < 2; ++k) {
      const auto& path = k == 0 ? p.input : p.output;
      const auto& text = k == 0 ? p.input_text : p.output_text;
      const auto& shape = k == 0 ? p.input_shape : p.output_shape;
      const uint64_t want = *checked_product(shape) * 4;
      const std::string at = p.pointer + (k == 0 ? "/input" : "/output");
      // The tensors' folder rule, decided from the text alone: nothing about
      // a file outside the folder (not even whether it exists) may reach a
      // message.
      if (!allow_outside) {
        if (const std::string why = outside_reason(text); !why.empty()) {
          diag.error(at, quote(text) + " " + why +
                             "; probe files must be inside the manifest's folder "
                             "(--allow-outside accepts it)");
          continue;
        }
      }
      struct stat st;
      std::string error;
      bool not_regular = false;
      const int fd = open_regular(path.c_str(), &st, &error, &not_regular);
      if (fd >= 0) ::close(fd);
      const uint64_t size = uint64_t(st.st_size);
      if (fd < 0) {
        diag.error(at, not_regular ? quote(path.string()) + " " + error
                                   : "cannot open " + quote(path.string()) + ": " + error);
      } else if (size != want) {
        diag.error(at, quote(path.string()) + ": expected " + std::to_string(want) + " bytes (" +
                           shape_text(shape) + " float32), found " + std::to_string(size));
      }
    }
  }
}

bool fold_batchnorm(Manifest& manifest, Diagnostics& diag) {
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < manifest.layers.size(); ++i) by_name[manifest.layers[i].name] = i;
  std::vector<bool> folded(manifest.layers.size(), false);
  bool ok = true;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const ManifestLayer& bn = manifest.layers[i];
    if (bn.kind != LayerKind::kBatchNorm2d || bn.follows.empty()) continue;
    const std::string at = bn.pointer + "/follows";
    auto it = by_name.find(bn.follows);
    if (it == by_name.end()) {
      diag.error(at, "no layer named " + quote(bn.follows) + " to fold into");
      ok = false;
      continue;
    }
    ManifestLayer& conv = manifest.layers[it->second];
    if (conv.kind != LayerKind::kConv2d && conv.kind != LayerKind::kConvTranspose2d) {
      diag.error(at, quote(bn.follows) + " is a " + std::string(mpsb::to_string(conv.kind)) +
                         "; only conv2d and conv_transpose2d fold a batch norm");
      ok = false;
      continue;
    }
    if (it->second > i || !conv.folded_from.empty() || conv.activation != mpsb::Activation::kNone) {
      diag.error(at, quote(bn.follows) + (it->second > i ? " comes after this batch norm"
                                          : conv.folded_from.empty()
                                              ? " applies an activation before the batch norm"
                                              : " already folds " + quote(conv.folded_from)));
      ok = false;
      continue;
    }
    if (bn.norm.num_features != conv.conv.out_channels) {
      diag.error(at, "num_features " + std::to_string(bn.norm.num_features) + " differs from " +
                         quote(bn.follows) + "'s out_channels " +
                         std::to_string(conv.conv.out_channels));
      ok = false;
      continue;
    }
    // γ, β, μ, σ² (γ = 1 and β = 0 when the batch norm is not affine).
    const uint64_t n = bn.norm.num_features;
    std::vector<float> v[4] = {std::vector<float>(n, 1.0f), std::vector<float>(n, 0.0f),
                               std::vector<float>(n, 0.0f), std::vector<float>(n, 1.0f)};
    for (const ManifestTensor& t : bn.tensors) {
      std::string error;
      if (!read_tensor_floats(t, &v[static_cast<int>(t.role)], &error)) {
        diag.error(t.pointer, error);
        ok = false;
      }
    }
    if (!ok) continue;
    // Apple's formula (MPSCNNBatchNormalization): s = γ/√(σ²+ε),
    // W' = W·s, b' = (b − μ)·s + β = b·s + (β − μ·s).
    std::vector<float> scale(n), shift(n);
    for (uint64_t c = 0; c < n; ++c) {
      const double s = double(v[0][c]) / std::sqrt(double(v[3][c]) + double(bn.norm.eps));
      scale[c] = float(s);
      shift[c] = float(double(v[1][c]) - double(v[2][c]) * s);
    }
    conv.tensors[0].fold_scale = scale;
    if (conv.tensors.size() > 1) {
      conv.tensors[1].fold_scale = scale;
      conv.tensors[1].fold_shift = shift;
    } else {
      ManifestTensor bias;
      bias.role = TensorRole::kBias;
      bias.pointer = bn.pointer;
      bias.path_text = "(bias of the folded " + bn.name + ")";
      bias.plan = plan_vector(n);
      bias.source_size = bias.size = n * 4;
      bias.synthesized = shift;
      conv.tensors.push_back(std::move(bias));
    }
    conv.folded_from = bn.name;
    conv.folded_probe = bn.probe;
    folded[i] = true;
  }
  if (!ok) return false;
  std::vector<ManifestLayer> kept;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    if (folded[i]) continue;
    kept.push_back(std::move(manifest.layers[i]));
    kept.back().index = static_cast<uint32_t>(kept.size() - 1);
  }
  manifest.layers = std::move(kept);
  return true;
}

void plan_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag) {
  for (ManifestLayer& l : manifest.layers) {
    for (ManifestTensor& t : l.tensors) {
      // MPS takes biases, normalization vectors and tables as float*.
      t.dtype = DType::kFloat32;
      t.size = t.plan.element_count() * 4;
    }
    const bool has_weight = l.kind == LayerKind::kConv2d || l.kind == LayerKind::kConvTranspose2d ||
                            l.kind == LayerKind::kLinear;
    if (!has_weight || l.tensors.empty() || l.tensors[0].role != TensorRole::kWeight) continue;
    const Precision asked = l.precision.value_or(options.precision);
    Precision p = asked;
    const bool depthwise =
        l.kind == LayerKind::kConv2d && l.conv.groups > 1 && l.conv.groups == l.conv.in_channels;
    if (l.kind == LayerKind::kConvTranspose2d && p != Precision::kFloat32) {
      p = Precision::kFloat32;
      l.precision_note = "kept float32: MPSCNNConvolutionTranspose takes float32 weights only";
    } else if (depthwise && (p == Precision::kUInt8Linear || p == Precision::kUInt8Lut)) {
      p = Precision::kFloat16;
      l.precision_note = "float16 instead of " + std::string(to_string(asked)) +
                         ": MPS does not take uint8 weights for depthwise convolutions";
    }
    if (!l.precision_note.empty())
      diag.warning(l.pointer, "layer " + l.name + ": " + l.precision_note);
    l.weight_precision = p;
    ManifestTensor& w = l.tensors[0];
    w.dtype = stored_dtype(p);
    w.size = w.plan.element_count() * mpsb::dtype_size(w.dtype);
    if (p == Precision::kUInt8Linear || p == Precision::kUInt8Lut) {
      ManifestTensor table;
      const bool linear = p == Precision::kUInt8Linear;
      table.role = linear ? TensorRole::kQuantRanges : TensorRole::kQuantLookupTable;
      table.pointer = l.pointer;
      table.path_text =
          "(uint8 " + std::string(linear ? "ranges" : "lookup table") + " of " + l.name + ")";
      const uint64_t n = linear ? w.plan.stored_shape[0] * 2 : 256;
      const mpsb::TensorLayout layout =
          linear ? mpsb::TensorLayout::kRanges : mpsb::TensorLayout::kLookupTable;
      const std::vector<uint64_t> shape =
          linear ? std::vector<uint64_t>{w.plan.stored_shape[0], 2} : std::vector<uint64_t>{256};
      table.plan = {Transform::kIdentity, layout, shape, layout, shape};
      table.source_size = table.size = n * 4;
      table.synthesized.assign(static_cast<size_t>(n), 0.0f);  // measure_precision fills it
      l.tensors.push_back(std::move(table));
    }
  }
}

bool measure_precision(Manifest& manifest, const PrecisionOptions& options, Diagnostics& diag) {
  bool ok = true;
  std::vector<float> source, stored;
  for (ManifestLayer& l : manifest.layers) {
    if (l.tensors.empty() || l.tensors[0].role != TensorRole::kWeight ||
        l.weight_precision == Precision::kFloat32) {
      continue;
    }
    ManifestTensor& w = l.tensors[0];
    std::string error;
    if (!read_tensor_floats(w, &source, &error)) {
      diag.error(w.pointer, error);
      ok = false;
      continue;
    }
    // The values the writer will store, before rounding: stored order,
    // batch norm folded in.
    stored.resize(source.size());
    apply(w.plan, source.data(), stored.data(), sizeof(float));
    if (!w.fold_scale.empty()) {
      const size_t rows = w.fold_scale.size(), per = stored.size() / rows;
      for (size_t r = 0; r < rows; ++r) {
        for (size_t i = 0; i < per; ++i) stored[r * per + i] *= w.fold_scale[r];
      }
    }
    std::vector<float> back(stored.size());
    switch (l.weight_precision) {
      case Precision::kFloat16: {
        std::vector<uint16_t> half(stored.size());
        l.half = floats_to_half(stored.data(), half.data(), half.size(), options.allow_overflow);
        if (l.half.overflow && !options.allow_overflow) {
          diag.error(w.pointer, "layer " + l.name + ": " + std::to_string(l.half.overflow) +
                                    " weights overflow float16 (|w| > 65504); --allow-overflow "
                                    "clamps them to ±65504");
          ok = false;
        }
        if (l.half.flushed_to_zero) {
          diag.warning(w.pointer, "layer " + l.name + ": " +
                                      std::to_string(l.half.flushed_to_zero) +
                                      " non-zero weights become 0 in float16 (|w| < 2^-25)");
        }
        for (size_t i = 0; i < half.size(); ++i) back[i] = half_to_float(half[i]);
        break;
      }
      case Precision::kUInt8Linear: {
        std::vector<uint8_t> q(stored.size());
        ManifestTensor& ranges = l.tensors.back();
        const size_t rows = w.plan.stored_shape[0];
        quantize_linear(stored.data(), rows, stored.size() / rows, q.data(),
                        ranges.synthesized.data());
        dequantize_linear(q.data(), ranges.synthesized.data(), rows, stored.size() / rows,
                          back.data());
        break;
      }
      case Precision::kUInt8Lut: {
        std::vector<uint8_t> q(stored.size());
        ManifestTensor& table = l.tensors.back();
        quantize_lut(stored.data(), stored.size(), q.data(), table.synthesized.data());
        dequantize_lut(q.data(), table.synthesized.data(), stored.size(), back.data());
        break;
      }
      case Precision::kFloat32:
        break;
    }
    l.weight_error = measure_error(stored.data(), back.data(), stored.size());
    l.weight_signal_energy = l.weight_noise_energy = 0;
    for (size_t i = 0; i < stored.size(); ++i) {
      const double d = double(stored[i]) - double(back[i]);
      l.weight_signal_energy += double(stored[i]) * double(stored[i]);
      l.weight_noise_energy += d * d;
    }
  }
  return ok;
}

}  // namespace mpsbc
