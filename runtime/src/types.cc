#include "mpsb/types.h"

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/result.h"

namespace mpsb {

// The public enums mirror the schema's; a mismatch would silently misread files.
static_assert(int(DType::kUInt8) == int(fb::DType::UInt8));
static_assert(int(TensorLayout::kLookupTable) == int(fb::TensorLayout::LookupTable));
static_assert(int(Transform::kLinearFlattenToOHWC) == int(fb::Transform::LinearFlattenToOHWC));
static_assert(int(LayerKind::kInstanceNorm2d) == int(fb::LayerKind::InstanceNorm2d));
static_assert(int(TensorRole::kQuantLookupTable) == int(fb::TensorRole::QuantLookupTable));
static_assert(int(Activation::kTanh) == int(fb::Activation::Tanh));
static_assert(int(Quantization::kLookupTable) == int(fb::Quantization::LookupTable));

std::string_view to_string(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kUInt8:
      return "uint8";
  }
  return "unknown";
}

std::string_view to_string(TensorLayout l) {
  switch (l) {
    case TensorLayout::kVector:
      return "vector";
    case TensorLayout::kOIHW:
      return "oihw";
    case TensorLayout::kIOHW:
      return "iohw";
    case TensorLayout::kOI:
      return "oi";
    case TensorLayout::kOHWI:
      return "ohwi";
    case TensorLayout::kOHWIRotated:
      return "ohwi_rotated";
    case TensorLayout::kRanges:
      return "ranges";
    case TensorLayout::kLookupTable:
      return "lookup_table";
  }
  return "unknown";
}

std::string_view to_string(Transform t) {
  switch (t) {
    case Transform::kIdentity:
      return "identity";
    case Transform::kConvOIHWToOHWI:
      return "conv_oihw_to_ohwi";
    case Transform::kConvTransposeToOHWIRotated:
      return "conv_transpose_to_ohwi_rotated";
    case Transform::kLinearFlattenToOHWC:
      return "linear_flatten_to_ohwc";
  }
  return "unknown";
}

std::string_view to_string(LayerKind k) {
  switch (k) {
    case LayerKind::kConv2d:
      return "conv2d";
    case LayerKind::kConvTranspose2d:
      return "conv_transpose2d";
    case LayerKind::kLinear:
      return "linear";
    case LayerKind::kBatchNorm2d:
      return "batch_norm2d";
    case LayerKind::kInstanceNorm2d:
      return "instance_norm2d";
  }
  return "unknown";
}

std::string_view to_string(TensorRole r) {
  switch (r) {
    case TensorRole::kWeight:
      return "weight";
    case TensorRole::kBias:
      return "bias";
    case TensorRole::kRunningMean:
      return "running_mean";
    case TensorRole::kRunningVar:
      return "running_var";
    case TensorRole::kQuantRanges:
      return "quant_ranges";
    case TensorRole::kQuantLookupTable:
      return "quant_lookup_table";
  }
  return "unknown";
}

std::string_view to_string(Activation a) {
  switch (a) {
    case Activation::kNone:
      return "none";
    case Activation::kReLU:
      return "relu";
    case Activation::kReLU6:
      return "relu6";
    case Activation::kLeakyReLU:
      return "leaky_relu";
    case Activation::kSigmoid:
      return "sigmoid";
    case Activation::kTanh:
      return "tanh";
  }
  return "unknown";
}

std::string_view to_string(Quantization q) {
  switch (q) {
    case Quantization::kNone:
      return "none";
    case Quantization::kLinear:
      return "linear";
    case Quantization::kLookupTable:
      return "lookup_table";
  }
  return "unknown";
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
