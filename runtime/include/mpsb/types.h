// Vocabulary types of an mpsb bundle: element types, layouts, layer kinds.
//
// The numeric values equal those of schema/bundle.fbs (checked at compile time
// in the runtime), so they are stable across releases and safe to persist.
// All functions here are pure and thread-safe.

#ifndef MPSB_TYPES_H_
#define MPSB_TYPES_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace mpsb {

enum class DType : uint8_t { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kUInt8 = 3 };

// Memory order of a tensor's elements, outermost dimension first.
enum class TensorLayout : uint8_t {
  kVector = 0,       // [C]
  kOIHW = 1,         // PyTorch Conv2d weight [O][I/g][kH][kW]
  kIOHW = 2,         // PyTorch ConvTranspose2d weight [I][O/g][kH][kW]
  kOI = 3,           // PyTorch Linear weight [out][in]
  kOHWI = 4,         // MPS convolution weight [O][kH][kW][I/g]
  kOHWIRotated = 5,  // MPS transposed convolution weight, kernel rotated 180°
  kRanges = 6,       // uint8 per-output-channel [O][2] {min, max}
  kLookupTable = 7,  // uint8 lookup table [256]
  kNCHW = 8,         // PyTorch feature map [N][C][H][W] (a probe's source)
  kNHWC = 9,         // MPSImage feature map [N][H][W][C] (a stored probe)
};

// How stored bytes derive from the source tensor; see compiler's layout.h.
enum class Transform : uint8_t {
  kIdentity = 0,
  kConvOIHWToOHWI = 1,
  kConvTransposeToOHWIRotated = 2,
  kLinearFlattenToOHWC = 3,
  kBroadcast = 4,  // a one-element source repeated to the stored length
  // Grouped conv stored dense, block diagonal, zeros elsewhere (--legalize)
  kConvGroupedToDense = 5,
  kNCHWToNHWC = 6,  // feature map permute (0, 2, 3, 1): a probe
  // Grouped transposed conv stored dense and rotated, block diagonal, zeros
  // elsewhere (--legalize)
  kConvTransposeGroupedToDenseRotated = 7,
};

enum class LayerKind : uint8_t {
  kConv2d = 0,
  kConvTranspose2d = 1,
  kLinear = 2,
  kBatchNorm2d = 3,
  kInstanceNorm2d = 4,
  kGroupNorm = 5,
  kPReLU = 6,
  kProbe = 7,  // a layer's PyTorch input and output, in probe files only
};

enum class TensorRole : uint8_t {
  kWeight = 0,
  kBias = 1,
  kRunningMean = 2,
  kRunningVar = 3,
  kQuantRanges = 4,
  kQuantLookupTable = 5,
  kActivationWeight = 6,  // per-output-channel slopes of a fused PReLU
  kProbeInput = 7,        // a probe layer's input feature map
  kProbeOutput = 8,       // a probe layer's output feature map
};

enum class Activation : uint8_t {
  kNone = 0,
  kReLU = 1,
  kReLU6 = 2,
  kLeakyReLU = 3,
  kSigmoid = 4,
  kTanh = 5,
  kELU = 6,
  kHardSigmoid = 7,
  kSoftplus = 8,
  kGELU = 9,
  kPReLU = 10,
};

enum class Quantization : uint8_t { kNone = 0, kLinear = 1, kLookupTable = 2 };

// How many values each enumeration has. types.cc ties each to the schema's
// last value, so a value added to the schema but not here (or to a table
// sized by these counts) fails the build.
inline constexpr size_t kDTypeCount = 4;
inline constexpr size_t kTensorLayoutCount = 10;
inline constexpr size_t kTransformCount = 8;
inline constexpr size_t kLayerKindCount = 8;
inline constexpr size_t kTensorRoleCount = 9;
inline constexpr size_t kActivationCount = 11;
inline constexpr size_t kQuantizationCount = 3;

// The grouped convs stored dense (--legalize): they add zeros, so their
// stored tensor is larger than the source.
constexpr bool is_grouped_to_dense(Transform t) {
  return t == Transform::kConvGroupedToDense || t == Transform::kConvTransposeGroupedToDenseRotated;
}

// Bytes per element; 0 for a value outside the enum.
constexpr size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 2;
    case DType::kUInt8:
      return 1;
  }
  return 0;
}

// Lower-case names as used in manifests and tool output ("float32",
// "conv2d", "ohwi", "weight", "relu", ...). Unknown values give "unknown".
std::string_view to_string(DType t);
std::string_view to_string(TensorLayout l);
std::string_view to_string(Transform t);
std::string_view to_string(LayerKind k);
std::string_view to_string(TensorRole r);
std::string_view to_string(Activation a);
std::string_view to_string(Quantization q);

}  // namespace mpsb

#endif  // MPSB_TYPES_H_
