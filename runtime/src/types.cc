#include "mpsb/types.h"

#include <array>
#include <span>

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"
#include "mpsb/result.h"

namespace mpsb {

// The public enums mirror the schema's; a mismatch would silently misread
// files. Each count must reach the schema's last value, so a value added to
// the schema fails here until the enum, its count and every table sized by
// the count (kinds.h, the name tables below) have it.
static_assert(kDTypeCount == size_t(fb::DType::MAX) + 1);
static_assert(kTensorLayoutCount == size_t(fb::TensorLayout::MAX) + 1);
static_assert(kTransformCount == size_t(fb::Transform::MAX) + 1);
static_assert(kLayerKindCount == size_t(fb::LayerKind::MAX) + 1);
static_assert(kTensorRoleCount == size_t(fb::TensorRole::MAX) + 1);
static_assert(kActivationCount == size_t(fb::Activation::MAX) + 1);
static_assert(kQuantizationCount == size_t(fb::Quantization::MAX) + 1);
static_assert(int(DType::kUInt8) == int(fb::DType::UInt8));
static_assert(int(TensorLayout::kLookupTable) == int(fb::TensorLayout::LookupTable));
static_assert(int(Transform::kBroadcast) == int(fb::Transform::Broadcast));
static_assert(int(Transform::kConvGroupedToDense) == int(fb::Transform::ConvGroupedToDense));
static_assert(int(Transform::kNCHWToNHWC) == int(fb::Transform::NCHWToNHWC));
static_assert(int(Transform::kConvTransposeGroupedToDenseRotated) ==
              int(fb::Transform::ConvTransposeGroupedToDenseRotated));
static_assert(int(TensorLayout::kNHWC) == int(fb::TensorLayout::NHWC));
static_assert(int(LayerKind::kProbe) == int(fb::LayerKind::Probe));
static_assert(int(TensorRole::kProbeOutput) == int(fb::TensorRole::ProbeOutput));
static_assert(int(LayerKind::kGroupNorm) == int(fb::LayerKind::GroupNorm));
static_assert(int(LayerKind::kPReLU) == int(fb::LayerKind::PReLU));
static_assert(int(TensorRole::kActivationWeight) == int(fb::TensorRole::ActivationWeight));
static_assert(int(Activation::kELU) == int(fb::Activation::ELU));
static_assert(int(Activation::kPReLU) == int(fb::Activation::PReLU));
static_assert(int(Quantization::kLookupTable) == int(fb::Quantization::LookupTable));

namespace {

constexpr bool all_named(std::span<const std::string_view> names) {
  for (std::string_view n : names) {
    if (n.empty()) return false;
  }
  return true;
}

constexpr std::array<std::string_view, kDTypeCount> kDTypeNames = {"float32", "float16", "bfloat16",
                                                                   "uint8"};
constexpr std::array<std::string_view, kTensorLayoutCount> kLayoutNames = {
    "vector",       "oihw",   "iohw",         "oi",   "ohwi",
    "ohwi_rotated", "ranges", "lookup_table", "nchw", "nhwc"};
constexpr std::array<std::string_view, kTransformCount> kTransformNames = {
    "identity",
    "conv_oihw_to_ohwi",
    "conv_transpose_to_ohwi_rotated",
    "linear_flatten_to_ohwc",
    "broadcast",
    "conv_grouped_to_dense",
    "nchw_to_nhwc",
    "conv_transpose_grouped_to_dense_rotated"};
constexpr std::array<std::string_view, kTensorRoleCount> kRoleNames = {"weight",
                                                                       "bias",
                                                                       "running_mean",
                                                                       "running_var",
                                                                       "quant_ranges",
                                                                       "quant_lookup_table",
                                                                       "activation_weight",
                                                                       "probe_input",
                                                                       "probe_output"};
constexpr std::array<std::string_view, kQuantizationCount> kQuantizationNames = {"none", "linear",
                                                                                 "lookup_table"};
static_assert(all_named(kDTypeNames) && all_named(kLayoutNames) && all_named(kTransformNames) &&
                  all_named(kRoleNames) && all_named(kQuantizationNames),
              "every enum value needs a name");

template <typename E, size_t N>
std::string_view name_of(E v, const std::array<std::string_view, N>& names) {
  const auto i = static_cast<size_t>(v);
  return i < N && !names[i].empty() ? names[i] : std::string_view("unknown");
}

}  // namespace

std::string_view to_string(DType t) { return name_of(t, kDTypeNames); }
std::string_view to_string(TensorLayout l) { return name_of(l, kLayoutNames); }
std::string_view to_string(Transform t) { return name_of(t, kTransformNames); }
std::string_view to_string(TensorRole r) { return name_of(r, kRoleNames); }
std::string_view to_string(Quantization q) { return name_of(q, kQuantizationNames); }
std::string_view to_string(LayerKind k) {
  return static_cast<size_t>(k) < kLayerKindCount ? kind_spec(k).name : "unknown";
}
std::string_view to_string(Activation a) {
  return static_cast<size_t>(a) < kActivationCount ? activation_spec(a).name : "unknown";
}

std::string_view to_string(Error e) {
  switch (e) {
    case Error::kOk:
      return "ok";
    case Error::kInvalidArgument:
      return "invalid argument";
    case Error::kNotFound:
      return "not found";
    case Error::kWrongLayerKind:
      return "wrong layer kind";
    case Error::kTruncated:
      return "truncated";
    case Error::kBadIdentifier:
      return "bad identifier";
    case Error::kVerifierFailed:
      return "verifier failed";
    case Error::kTooLarge:
      return "too large";
    case Error::kUnsupportedVersion:
      return "unsupported version";
    case Error::kBadSegment:
      return "bad data segment";
    case Error::kTensorOutOfRange:
      return "tensor out of range";
    case Error::kSizeMismatch:
      return "size mismatch";
    case Error::kMisaligned:
      return "misaligned";
    case Error::kDuplicateName:
      return "duplicate name";
    case Error::kUnsortedNames:
      return "unsorted names";
    case Error::kBadField:
      return "bad field";
    case Error::kChecksumMismatch:
      return "checksum mismatch";
    case Error::kNonZeroPadding:
      return "non-zero padding";
    case Error::kIo:
      return "i/o error";
    case Error::kMapFailed:
      return "map failed";
  }
  return "unknown error";
}

}  // namespace mpsb
