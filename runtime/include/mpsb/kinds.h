// What each layer kind and each fused activation takes, stores and serves:
// one entry per kind, the single source that the manifest parser, the
// writer, the runtime checker, mpsb-dump, the C API and the exporter read
// (docs/ADDING_A_KIND.md lists who reads what).
//
// A kind entry says which manifest fields it takes (PyTorch's argument names
// and defaults), which tensor roles it has (when each is present, its
// manifest field, source and stored layout, transform, stored shape and
// element type), which parameter table of the bundle it fills, and which MPS
// data source and kernel serve it. The tables are constexpr and indexed by
// the enum value; static_asserts below keep them complete and in order, so a
// value added to an enumeration that a table misses fails the build.
//
// Pure data; thread-safe.

#ifndef MPSB_KINDS_H_
#define MPSB_KINDS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "mpsb/types.h"

namespace mpsb {

// The parameter table of the bundle a kind fills, and the rules it obeys.
enum class ParamTable : uint8_t {
  kConv,       // ConvParams: channels, kernel, stride, padding, dilation, groups
  kLinear,     // LinearParams: features and the flattened input's [C, H, W]
  kNorm,       // NormParams: num_features, eps
  kGroupNorm,  // NormParams with num_groups, which divides num_features
  kChannels,   // NormParams.num_features alone: the feature channels (PReLU)
  kNone,       // no parameter table: a probe's shapes are its tensors' own
};
inline constexpr size_t kParamTableCount = 6;

// When a role's tensor is in a layer.
enum class Presence : uint8_t {
  kRequired,    // always
  kOptional,    // when the manifest gives it (a conv's bias)
  kAffine,      // a normalization's γ and β: both or neither, as "affine" says
  kQuantized,   // made by the compiler for uint8 weights, per the quantization
  kFusedPReLU,  // exactly when the fused activation is prelu
};

// The stored shape a role must have, derived from the layer's parameters.
enum class StoredShape : uint8_t {
  kKernel,       // conv: [O][kH][kW][I/g]; linear: [O][H][W][C] or [O][1][1][in]
  kOutChannels,  // [O] (out_channels, out_features)
  kFeatures,     // [num_features]
  kRanges,       // [O][2]: uint8 {min, max} per output channel
  kLookupTable,  // [256]
  kFeatureMap,   // a probe's [N][H][W][C], the same N for input and output
};

// The element types a role may be stored as.
enum class StoredDType : uint8_t {
  kFloat32,  // always float32: MPS reads these as float*
  kWeight,   // float32, float16 or uint8 (with its quantization tables)
};

struct RoleSpec {
  TensorRole role;
  // Manifest field that names the tensor file; empty when the compiler
  // makes the tensor itself.
  std::string_view field;
  Presence presence;
  TensorLayout source_layout;
  TensorLayout stored_layout;
  // The transform from source to stored; Identity where it would change
  // nothing (a 1×1 kernel, a Linear on a vector, num_parameters == C). A
  // conv2d weight may instead be kConvGroupedToDense, and a conv_transpose2d
  // weight kConvTransposeGroupedToDenseRotated, exactly when the layer's
  // legalized_groups is set (mpsbc --legalize; runtime/src/checker.cc).
  Transform transform;
  StoredShape shape;
  StoredDType dtype;
};

// A manifest field's JSON type.
enum class FieldType : uint8_t {
  kUInt,      // unsigned integer that fits uint32
  kPair,      // an int or [h, w], as PyTorch's _pair
  kFloat,     // finite number within float range
  kBool,      // true or false
  kShape3,    // [C, H, W]
  kString,    // a string, checked by the kind's rule
  kAccepted,  // accepted and without effect on the bundle (momentum, ...)
};

// Where a parsed field goes.
enum class Slot : uint8_t {
  kInChannels,
  kOutChannels,
  kKernelSize,
  kStride,
  kPadding,
  kDilation,
  kGroups,
  kOutputPadding,
  kPaddingMode,
  kInFeatures,
  kOutFeatures,
  kInputShape,
  kNumFeatures,
  kEps,
  kAffine,
  kNumGroups,
  kNumParameters,  // nn.PReLU num_parameters: the weight file's length, 1 or C
  kFollows,        // batch norm: the conv it follows, for --fold-batchnorm
  kNone,           // kAccepted fields
};
inline constexpr size_t kSlotCount = 19;

struct FieldSpec {
  std::string_view name;
  FieldType type;
  Slot slot;
  bool required;
  // Smallest accepted integer (kUInt, kPair, kShape3); for kFloat, a
  // positive minimum means "> 0".
  uint32_t min;
  // PyTorch's default, used when the field is absent and not required
  // (kBool: 0 or 1).
  double fallback;
};

// Which MPS object serves the kind.
enum class Served : uint8_t {
  kConvolution,   // ConvolutionSource (conv, transposed conv, fully connected)
  kBatchNorm,     // BatchNormSource
  kInstanceNorm,  // InstanceNormSource
  kGroupNorm,     // GroupNormSource
  kNeuron,        // neuron() with per-channel data (no data source object)
  kNotServed,     // a probe file's check data, never handed to MPS
};

struct KindSpec {
  LayerKind kind;
  std::string_view name;     // manifest "type", dump and C API name
  std::string_view pytorch;  // the module it comes from
  ParamTable params;
  Served served;
  std::string_view mps_data_source;  // the MPS protocol or object it fills
  std::string_view mps_kernel;       // the MPS kernel that runs it
  // Takes "activation" (and its parameters): fused into the MPS kernel of a
  // conv or linear; after a batch norm, a neuron the app runs after it.
  bool fused_activation;
  bool precision;  // takes "precision" for its weight
  std::span<const FieldSpec> fields;
  std::span<const RoleSpec> roles;
};

// A fused activation and the MPS neuron that computes it.
struct ActivationSpec {
  Activation activation;
  std::string_view name;     // manifest "activation" value
  std::string_view pytorch;  // the module it comes from
  // MPSCNNNeuronType value (MPSCNNNeuronType.h): none 0, ReLU 1, sigmoid 3,
  // hardSigmoid 4, tanH 5, softPlus 7, ELU 9, PReLU 10, ReLUN 11, GeLU 15.
  int32_t mps_neuron_type;
  // Its parameters (PyTorch's names and defaults), stored as the layer's
  // activation_alpha and activation_beta, in this order.
  std::string_view param_names[2];
  float param_defaults[2];
  // A string argument that must have this value, because MPS computes only
  // that form (GELU's approximate="none": MPS's GeLU is the erf form).
  std::string_view option;
  std::string_view option_value;
};

namespace kinds_detail {

using L = TensorLayout;
using T = Transform;
using R = TensorRole;
using P = Presence;
using S = StoredShape;
using D = StoredDType;
using F = FieldType;
using Sl = Slot;

inline constexpr RoleSpec kConvRoles[] = {
    {R::kWeight, "weight", P::kRequired, L::kOIHW, L::kOHWI, T::kConvOIHWToOHWI, S::kKernel,
     D::kWeight},
    {R::kBias, "bias", P::kOptional, L::kVector, L::kVector, T::kIdentity, S::kOutChannels,
     D::kFloat32},
    {R::kQuantRanges, "", P::kQuantized, L::kRanges, L::kRanges, T::kIdentity, S::kRanges,
     D::kFloat32},
    {R::kQuantLookupTable, "", P::kQuantized, L::kLookupTable, L::kLookupTable, T::kIdentity,
     S::kLookupTable, D::kFloat32},
    {R::kActivationWeight, "activation_weight", P::kFusedPReLU, L::kVector, L::kVector,
     T::kBroadcast, S::kOutChannels, D::kFloat32},
};
inline constexpr RoleSpec kConvTransposeRoles[] = {
    {R::kWeight, "weight", P::kRequired, L::kIOHW, L::kOHWIRotated, T::kConvTransposeToOHWIRotated,
     S::kKernel, D::kWeight},
    kConvRoles[1],
    kConvRoles[2],
    kConvRoles[3],
    kConvRoles[4],
};
inline constexpr RoleSpec kLinearRoles[] = {
    {R::kWeight, "weight", P::kRequired, L::kOI, L::kOHWI, T::kLinearFlattenToOHWC, S::kKernel,
     D::kWeight},
    kConvRoles[1],
    kConvRoles[2],
    kConvRoles[3],
    kConvRoles[4],
};
inline constexpr RoleSpec kAffineRoles[] = {
    {R::kWeight, "weight", P::kAffine, L::kVector, L::kVector, T::kIdentity, S::kFeatures,
     D::kFloat32},
    {R::kBias, "bias", P::kAffine, L::kVector, L::kVector, T::kIdentity, S::kFeatures, D::kFloat32},
};
inline constexpr RoleSpec kBatchNormRoles[] = {
    kAffineRoles[0],
    kAffineRoles[1],
    {R::kRunningMean, "running_mean", P::kRequired, L::kVector, L::kVector, T::kIdentity,
     S::kFeatures, D::kFloat32},
    {R::kRunningVar, "running_var", P::kRequired, L::kVector, L::kVector, T::kIdentity,
     S::kFeatures, D::kFloat32},
    // The activation after the norm (conv -> BN -> ReLU): MPS's batch norm
    // has no fused neuron, so an app runs neuron() after it; --fold-batchnorm
    // moves it onto the folded conv.
    {R::kActivationWeight, "activation_weight", P::kFusedPReLU, L::kVector, L::kVector,
     T::kBroadcast, S::kFeatures, D::kFloat32},
};
// A probe's feature maps: PyTorch's [N][C][H][W] stored as MPSImage's
// [N][H][W][C]; a Linear's [N][F] is [N][1][1][F], the same bytes
// (Identity).
inline constexpr RoleSpec kProbeRoles[] = {
    {R::kProbeInput, "", P::kRequired, L::kNCHW, L::kNHWC, T::kNCHWToNHWC, S::kFeatureMap,
     D::kFloat32},
    {R::kProbeOutput, "", P::kRequired, L::kNCHW, L::kNHWC, T::kNCHWToNHWC, S::kFeatureMap,
     D::kFloat32},
};
inline constexpr RoleSpec kPReLURoles[] = {
    {R::kWeight, "weight", P::kRequired, L::kVector, L::kVector, T::kBroadcast, S::kFeatures,
     D::kFloat32},
};

// PyTorch's defaults: Conv2d(stride=1, padding=0, dilation=1, groups=1,
// padding_mode='zeros'); ConvTranspose2d adds output_padding=0.
inline constexpr FieldSpec kConvFields[] = {
    {"in_channels", F::kUInt, Sl::kInChannels, true, 1, 0},
    {"out_channels", F::kUInt, Sl::kOutChannels, true, 1, 0},
    {"kernel_size", F::kPair, Sl::kKernelSize, true, 1, 0},
    {"stride", F::kPair, Sl::kStride, false, 1, 1},
    {"padding", F::kPair, Sl::kPadding, false, 0, 0},
    {"dilation", F::kPair, Sl::kDilation, false, 1, 1},
    {"groups", F::kUInt, Sl::kGroups, false, 1, 1},
    {"padding_mode", F::kString, Sl::kPaddingMode, false, 0, 0},
};
inline constexpr FieldSpec kConvTransposeFields[] = {
    kConvFields[0], kConvFields[1], kConvFields[2],
    kConvFields[3], kConvFields[4], kConvFields[5],
    kConvFields[6], kConvFields[7], {"output_padding", F::kPair, Sl::kOutputPadding, false, 0, 0},
};
inline constexpr FieldSpec kLinearFields[] = {
    {"in_features", F::kUInt, Sl::kInFeatures, true, 1, 0},
    {"out_features", F::kUInt, Sl::kOutFeatures, true, 1, 0},
    {"input_shape", F::kShape3, Sl::kInputShape, false, 1, 0},
};
// BatchNorm2d(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True).
inline constexpr FieldSpec kBatchNormFields[] = {
    {"num_features", F::kUInt, Sl::kNumFeatures, true, 1, 0},
    {"eps", F::kFloat, Sl::kEps, false, 1, 1e-5},
    {"affine", F::kBool, Sl::kAffine, false, 0, 1},
    {"momentum", F::kAccepted, Sl::kNone, false, 0, 0},
    {"track_running_stats", F::kAccepted, Sl::kNone, false, 0, 0},
    {"follows", F::kString, Sl::kFollows, false, 0, 0},
};
// InstanceNorm2d(eps=1e-5, momentum=0.1, affine=False, track_running_stats=False).
inline constexpr FieldSpec kInstanceNormFields[] = {
    {"num_features", F::kUInt, Sl::kNumFeatures, true, 1, 0},
    {"eps", F::kFloat, Sl::kEps, false, 1, 1e-5},
    {"affine", F::kBool, Sl::kAffine, false, 0, 0},
    {"momentum", F::kAccepted, Sl::kNone, false, 0, 0},
    {"track_running_stats", F::kAccepted, Sl::kNone, false, 0, 0},
};
// GroupNorm(num_groups, num_channels, eps=1e-5, affine=True).
inline constexpr FieldSpec kGroupNormFields[] = {
    {"num_groups", F::kUInt, Sl::kNumGroups, true, 1, 0},
    {"num_channels", F::kUInt, Sl::kNumFeatures, true, 1, 0},
    {"eps", F::kFloat, Sl::kEps, false, 1, 1e-5},
    {"affine", F::kBool, Sl::kAffine, false, 0, 1},
};
// PReLU(num_parameters=1); num_channels is the input's feature channels,
// which MPS needs one slope each of.
inline constexpr FieldSpec kPReLUFields[] = {
    {"num_parameters", F::kUInt, Sl::kNumParameters, false, 1, 1},
    {"num_channels", F::kUInt, Sl::kNumFeatures, true, 1, 0},
};

}  // namespace kinds_detail

inline constexpr std::array<KindSpec, kLayerKindCount> kKinds = {{
    {LayerKind::kConv2d, "conv2d", "nn.Conv2d", ParamTable::kConv, Served::kConvolution,
     "MPSCNNConvolutionDataSource", "MPSCNNConvolution", true, true, kinds_detail::kConvFields,
     kinds_detail::kConvRoles},
    {LayerKind::kConvTranspose2d, "conv_transpose2d", "nn.ConvTranspose2d", ParamTable::kConv,
     Served::kConvolution, "MPSCNNConvolutionDataSource", "MPSCNNConvolutionTranspose", true, true,
     kinds_detail::kConvTransposeFields, kinds_detail::kConvTransposeRoles},
    {LayerKind::kLinear, "linear", "nn.Linear", ParamTable::kLinear, Served::kConvolution,
     "MPSCNNConvolutionDataSource", "MPSCNNFullyConnected", true, true, kinds_detail::kLinearFields,
     kinds_detail::kLinearRoles},
    {LayerKind::kBatchNorm2d, "batch_norm2d", "nn.BatchNorm2d", ParamTable::kNorm,
     Served::kBatchNorm, "MPSCNNBatchNormalizationDataSource", "MPSCNNBatchNormalization", true,
     false, kinds_detail::kBatchNormFields, kinds_detail::kBatchNormRoles},
    {LayerKind::kInstanceNorm2d, "instance_norm2d", "nn.InstanceNorm2d", ParamTable::kNorm,
     Served::kInstanceNorm, "MPSCNNInstanceNormalizationDataSource", "MPSCNNInstanceNormalization",
     false, false, kinds_detail::kInstanceNormFields, kinds_detail::kAffineRoles},
    {LayerKind::kGroupNorm, "group_norm", "nn.GroupNorm", ParamTable::kGroupNorm,
     Served::kGroupNorm, "MPSCNNGroupNormalizationDataSource", "MPSCNNGroupNormalization", false,
     false, kinds_detail::kGroupNormFields, kinds_detail::kAffineRoles},
    {LayerKind::kPReLU, "prelu", "nn.PReLU", ParamTable::kChannels, Served::kNeuron,
     "MPSNNNeuronDescriptor (cnnNeuronPReLUDescriptorWithData:noCopy:)", "MPSCNNNeuronPReLU", false,
     false, kinds_detail::kPReLUFields, kinds_detail::kPReLURoles},
    // Only in probe files (docs/FORMAT.md §8): no manifest type, no fields.
    {LayerKind::kProbe,
     "probe",
     "",
     ParamTable::kNone,
     Served::kNotServed,
     "",
     "",
     false,
     false,
     {},
     kinds_detail::kProbeRoles},
}};

inline constexpr std::array<ActivationSpec, kActivationCount> kActivations = {{
    {Activation::kNone, "none", "", 0, {}, {}, {}, {}},
    {Activation::kReLU, "relu", "nn.ReLU", 1, {}, {}, {}, {}},
    {Activation::kReLU6, "relu6", "nn.ReLU6", 11, {}, {}, {}, {}},
    {Activation::kLeakyReLU, "leaky_relu", "nn.LeakyReLU", 1, {"negative_slope"}, {0.01f}, {}, {}},
    {Activation::kSigmoid, "sigmoid", "nn.Sigmoid", 3, {}, {}, {}, {}},
    {Activation::kTanh, "tanh", "nn.Tanh", 5, {}, {}, {}, {}},
    {Activation::kELU, "elu", "nn.ELU", 9, {"alpha"}, {1.0f}, {}, {}},
    {Activation::kHardSigmoid, "hardsigmoid", "nn.Hardsigmoid", 4, {}, {}, {}, {}},
    {Activation::kSoftplus,
     "softplus",
     "nn.Softplus",
     7,
     {"beta", "threshold"},
     {1.0f, 20.0f},
     {},
     {}},
    {Activation::kGELU, "gelu", "nn.GELU", 15, {}, {}, "approximate", "none"},
    {Activation::kPReLU, "prelu", "nn.PReLU", 10, {}, {}, {}, {}},
}};

// Whether a manifest may name the kind as a layer "type": every kind but
// Probe, which only probe files hold and which has no manifest fields.
constexpr bool in_manifest(const KindSpec& k) { return !k.fields.empty(); }

// REQUIRES: the value is in range (Bundle::open guarantees it for layers).
constexpr const KindSpec& kind_spec(LayerKind k) { return kKinds[static_cast<size_t>(k)]; }
constexpr const ActivationSpec& activation_spec(Activation a) {
  return kActivations[static_cast<size_t>(a)];
}

// The role's entry in the kind's table, or nullptr when the kind has no
// such role.
constexpr const RoleSpec* role_spec(LayerKind k, TensorRole r) {
  for (const RoleSpec& s : kind_spec(k).roles) {
    if (s.role == r) return &s;
  }
  return nullptr;
}

namespace kinds_detail {
constexpr bool kinds_in_order() {
  for (size_t i = 0; i < kKinds.size(); ++i) {
    if (static_cast<size_t>(kKinds[i].kind) != i || kKinds[i].name.empty() ||
        kKinds[i].roles.empty() ||
        kKinds[i].fields.empty() != (kKinds[i].kind == LayerKind::kProbe)) {
      return false;
    }
  }
  return true;
}
constexpr bool activations_in_order() {
  for (size_t i = 0; i < kActivations.size(); ++i) {
    if (static_cast<size_t>(kActivations[i].activation) != i || kActivations[i].name.empty()) {
      return false;
    }
  }
  return true;
}
}  // namespace kinds_detail
static_assert(kinds_detail::kinds_in_order(),
              "kKinds needs one complete entry per LayerKind, in enum order");
static_assert(kinds_detail::activations_in_order(),
              "kActivations needs one entry per Activation, in enum order");

}  // namespace mpsb

#endif  // MPSB_KINDS_H_
