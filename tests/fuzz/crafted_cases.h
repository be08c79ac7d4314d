// The hostile inputs of docs/SECURITY.md's findings, built by code: seeds
// for the fuzz targets (make_fuzz_seeds) and the inputs of the regression
// tests, from one definition each.
#ifndef MPSB_TESTS_FUZZ_CRAFTED_CASES_H_
#define MPSB_TESTS_FUZZ_CRAFTED_CASES_H_

#include <cstdint>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz/fuzz_files.h"
#include "runtime/test_bundle.h"

namespace mpsb::crafted {

using testing::BundleSpec;
using testing::LayerSpec;
using testing::TensorSpec;

// Small and packed: 16-byte alignment, so the last tensor ends the file and
// an over-read of it leaves the mapping (what ASan sees from a fuzz input).
inline BundleSpec packed() {
  BundleSpec s;
  s.segment_alignment = 16;
  s.tensor_alignment = 16;
  return s;
}

// A batch or instance norm of `c` channels whose gamma (the Weight role) is
// stored as float16 [c]: the data source promised c floats over 2c bytes.
// Placed last so gamma ends the segment.
inline BundleSpec norm_gamma_float16(LayerKind kind, uint32_t c = 8) {
  BundleSpec s = packed();
  LayerSpec l = kind == LayerKind::kBatchNorm2d ? testing::batch_norm_layer("norm", c)
                                                : testing::instance_norm_layer("norm", c);
  // Weight first in the spec, so move it to the end of the segment.
  TensorSpec gamma = l.tensors.front();
  l.tensors.erase(l.tensors.begin());
  gamma.dtype = DType::kFloat16;
  l.tensors.push_back(gamma);
  s.layers.push_back(l);
  return s;
}

// A batch norm whose gamma is uint8 [c] with lookup-table quantization and
// a 256-entry float32 table: c bytes where c floats were promised.
inline BundleSpec norm_gamma_uint8_lut(uint32_t c = 8) {
  BundleSpec s = packed();
  LayerSpec l = testing::batch_norm_layer("norm", c);
  l.quantization = Quantization::kLookupTable;
  TensorSpec table;
  table.role = TensorRole::kQuantLookupTable;
  table.layout = TensorLayout::kLookupTable;
  table.shape = {256};
  l.tensors.insert(l.tensors.begin(), table);
  // gamma last: it ends the segment.
  TensorSpec gamma = l.tensors[1];
  l.tensors.erase(l.tensors.begin() + 1);
  gamma.dtype = DType::kUInt8;
  l.tensors.push_back(gamma);
  s.layers.push_back(l);
  return s;
}

// docs/SECURITY.md's --check paddings: the pair that wrapped the CPU
// reference's output size to 4 floats, 2^31 - 1 (a write through NULL) and
// 10^6 (a bad_alloc nothing caught).
struct Padding {
  const char* name;
  uint32_t h, w;
};
inline const Padding kPaddings[] = {
    {"wrap", 1073774592u, 2147418112u},
    {"int_max", 2147483647u, 2147483647u},
    {"million", 1000000u, 1000000u},
};

// conv "c": 2 -> 4 channels, 3x3, with a bias, at the given padding.
inline BundleSpec conv_with_padding(uint32_t h, uint32_t w) {
  BundleSpec s = packed();
  s.layers.push_back(testing::conv_layer("c", 2, 4, 3));
  s.layers[0].conv.padding_h = h;
  s.layers[0].conv.padding_w = w;
  return s;
}

// `n` conv layers whose weights all claim the first one's bytes: before the
// overlap check, verify() hashed that range n times.
inline BundleSpec aliasing_convs(size_t n) {
  BundleSpec s = packed();
  for (size_t i = 0; i < n; ++i) {
    s.layers.push_back(testing::conv_layer("conv" + std::to_string(1000000 + i), 8, 8, 3, 1,
                                           /*bias=*/false));
    s.layers.back().tensors[0].offset = 0;
  }
  return s;
}

// ---- Manifest folders (fuzz_files.h records) --------------------------------

inline std::vector<uint8_t> floats(size_t n, float scale) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = scale * static_cast<float>(int(i % 7) - 3);
  std::vector<uint8_t> b(n * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// The conv "c" of conv_with_padding as a manifest layer: w.bin (4x2x3x3),
// b.bin (4), and a probe x.bin [1,2,5,5] -> y.bin [1,4,5,5].
inline nlohmann::json conv_manifest_layer(uint32_t pad_h, uint32_t pad_w) {
  return {{"name", "c"},
          {"type", "conv2d"},
          {"in_channels", 2},
          {"out_channels", 4},
          {"kernel_size", 3},
          {"padding", {pad_h, pad_w}},
          {"weight", "w.bin"},
          {"bias", "b.bin"},
          {"probe",
           {{"input", "x.bin"},
            {"input_shape", {1, 2, 5, 5}},
            {"output", "y.bin"},
            {"output_shape", {1, 4, 5, 5}}}}};
}

inline nlohmann::json manifest(nlohmann::json layers) {
  return {{"format", "mpsb.manifest/1"}, {"name", "crafted"}, {"layers", std::move(layers)}};
}

// The files every manifest above names, plus `manifest` as manifest.json and
// an options byte (fuzz_compile, fuzz_dump_check: precision, folding, ...).
inline std::vector<fuzz::FuzzFile> manifest_folder(const nlohmann::json& m, uint8_t options) {
  const std::string text = m.dump(1);
  return {{"manifest.json", std::vector<uint8_t>(text.begin(), text.end())},
          {"w.bin", floats(72, 0.125f)},
          {"b.bin", floats(4, 0.5f)},
          {"x.bin", floats(50, 1.0f)},
          {"y.bin", floats(100, 0.25f)},
          {"options", {options}}};
}

// Found by fuzz_compile in its first minute (docs/SECURITY.md): a NaN
// weight with --allow-non-finite at --precision uint8-linear (options byte
// 2 | 8) converted NaN to uint8, undefined behaviour (UBSan: "-nan is
// outside the range of representable values of type 'unsigned char'").
inline std::vector<fuzz::FuzzFile> nan_weight_uint8_linear_folder() {
  auto files = manifest_folder(manifest(nlohmann::json::array({conv_manifest_layer(1, 1)})), 2 | 8);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (auto& f : files) {
    if (f.name == "w.bin") std::memcpy(f.bytes.data() + 4 * 5, &nan, 4);
  }
  return files;
}

}  // namespace mpsb::crafted

#endif  // MPSB_TESTS_FUZZ_CRAFTED_CASES_H_
