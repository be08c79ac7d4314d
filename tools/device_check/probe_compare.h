// The parts of mpsb-device-check (tools/device_check/main.mm) that need no
// GPU: whether a probe file is the model's, what a probe's feature maps look
// like to an MPSImage, how a result is compared with PyTorch's, and the
// tolerance for each weight precision.
// Header-only C++ so the GNUstep check build and the tests use exactly this.

#ifndef MPSB_TOOLS_DEVICE_CHECK_PROBE_COMPARE_H_
#define MPSB_TOOLS_DEVICE_CHECK_PROBE_COMPARE_H_

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mpsb/types.h"

namespace mpsb::device_check {

// Why a probe file is not the one of the model bundle at `model_path`, or ""
// when it is (docs/FORMAT.md §8): its metadata mpsb.probes_for
// (`probes_for`, "" when it has none) must be the model's
// Bundle::segment_checksum() as 16 lowercase hex digits, as mpsbc
// --probes-out writes it and mpsb-dump --check matches it.
inline std::string probe_file_mismatch(std::string_view probes_for, const std::string& model_path,
                                       uint64_t model_segment_checksum) {
  if (probes_for.empty()) return "not a probe file (no metadata mpsb.probes_for)";
  char own[17];
  std::snprintf(own, sizeof own, "%016llx",
                static_cast<unsigned long long>(model_segment_checksum));
  if (probes_for == own) return "";
  return "the probe file of another bundle: it names segment checksum " + std::string(probes_for) +
         ", " + model_path + " has " + own + " (compile with --probes-out again)";
}

// An NHWC feature map of one image: what MPSImage -readBytes/-writeBytes
// take with MPSDataLayoutHeightxWidthxFeatureChannels.
struct FeatureMap {
  uint64_t height = 0, width = 0, channels = 0;
  std::vector<float> values;  // [height][width][channels]
};

// A probe tensor [N][H][W][C] (docs/FORMAT.md, probe files) as N maps.
// REQUIRES: shape has 4 dimensions and values.size() is their product.
inline std::vector<FeatureMap> split_images(std::span<const uint64_t> shape,
                                            std::span<const float> values) {
  std::vector<FeatureMap> maps(shape[0]);
  const uint64_t per_image = shape[1] * shape[2] * shape[3];
  for (uint64_t n = 0; n < shape[0]; ++n) {
    maps[n].height = shape[1];
    maps[n].width = shape[2];
    maps[n].channels = shape[3];
    const std::span<const float> image = values.subspan(n * per_image, per_image);
    maps[n].values.assign(image.begin(), image.end());
  }
  return maps;
}

// A linear layer's probe input is PyTorch's flattened vector (1 × 1 × F,
// F = C·H·W in torch.flatten's order c, h, w); MPSCNNFullyConnected reads an
// H × W × C image. This is the image whose flatten is the vector.
// REQUIRES: in.values.size() == c * h * w.
inline FeatureMap unflatten(const FeatureMap& in, uint64_t c, uint64_t h, uint64_t w) {
  FeatureMap out;
  out.height = h;
  out.width = w;
  out.channels = c;
  out.values.resize(c * h * w);
  for (uint64_t ci = 0; ci < c; ++ci) {
    for (uint64_t y = 0; y < h; ++y) {
      for (uint64_t x = 0; x < w; ++x) {
        out.values[(y * w + x) * c + ci] = in.values[(ci * h + y) * w + x];
      }
    }
  }
  return out;
}

// max |got - want| over max |want| (the output's scale, so values near zero
// do not blow up the ratio); +inf when the sizes differ or a value is not
// finite.
inline double max_relative_error(std::span<const float> got, std::span<const float> want) {
  if (got.size() != want.size()) return INFINITY;
  double diff = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    diff = std::max(diff, std::fabs(double(got[i]) - double(want[i])));
    scale = std::max(scale, std::fabs(double(want[i])));
  }
  return diff / std::max(scale, 1e-12);
}

// The tolerance of a layer by its weight precision. MPS keeps float16
// intermediates on many paths even for float32 images (and computes with
// float16 weights before macOS 11 / iOS 14, which do not ask for
// kernelWeightsDataType), so float32 weights get float16's rounding too;
// float16 weights add theirs; uint8 weights add the quantization error the
// compiler reported (the probe output is the float model's). Layers without
// weights (normalizations, prelu) count as float32.
inline double tolerance_for(DType weights) {
  switch (weights) {
    case DType::kFloat32:
      return 5e-3;
    case DType::kFloat16:
    case DType::kBFloat16:
      return 1e-2;
    case DType::kUInt8:
      return 5e-2;
  }
  return 5e-3;
}

}  // namespace mpsb::device_check

#endif  // MPSB_TOOLS_DEVICE_CHECK_PROBE_COMPARE_H_
