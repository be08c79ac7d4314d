#include "runtime/test_bundle.h"

#include <algorithm>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"

namespace mpsb::testing {
namespace {

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint64_t count(const std::vector<uint64_t>& s) {
  uint64_t n = 1;
  for (auto d : s) n *= d;
  return n;
}

std::vector<uint8_t> fill_bytes(const TensorSpec& t, uint32_t salt) {
  if (!t.bytes.empty()) return t.bytes;
  std::vector<uint8_t> b(count(t.shape) * dtype_size(t.dtype));
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<uint8_t>((i * 31 + salt * 7 + 1) & 0xff);
  return b;
}

}  // namespace

LayerSpec conv_layer(std::string name, uint32_t in, uint32_t out, uint32_t k, uint32_t groups,
                     bool bias) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kConv2d;
  l.conv.in_channels = in;
  l.conv.out_channels = out;
  l.conv.kernel_h = l.conv.kernel_w = k;
  l.conv.padding_h = l.conv.padding_w = k / 2;
  l.conv.groups = groups;
  TensorSpec w;
  w.role = TensorRole::kWeight;
  w.layout = TensorLayout::kOHWI;
  w.shape = {out, k, k, in / groups};
  w.source_layout = TensorLayout::kOIHW;
  w.source_shape = {out, in / groups, k, k};
  w.transform = Transform::kConvOIHWToOHWI;
  l.tensors.push_back(w);
  if (bias) {
    TensorSpec b;
    b.role = TensorRole::kBias;
    b.shape = {out};
    l.tensors.push_back(b);
  }
  return l;
}

LayerSpec legalized_conv_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                               uint32_t groups) {
  LayerSpec l = conv_layer(std::move(name), in, out, k);
  l.legalized_groups = groups;
  l.tensors[0].source_shape = {out, in / groups, k, k};
  l.tensors[0].transform = Transform::kConvGroupedToDense;
  return l;
}

LayerSpec batch_norm_layer(std::string name, uint32_t c) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kBatchNorm2d;
  l.norm = {c, 1e-5f};
  for (TensorRole r : {TensorRole::kWeight, TensorRole::kBias, TensorRole::kRunningMean,
                       TensorRole::kRunningVar}) {
    TensorSpec t;
    t.role = r;
    t.shape = {c};
    l.tensors.push_back(t);
  }
  return l;
}

LayerSpec instance_norm_layer(std::string name, uint32_t c, bool affine) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kInstanceNorm2d;
  l.norm = {c, 1e-5f};
  if (affine) {
    for (TensorRole r : {TensorRole::kWeight, TensorRole::kBias}) {
      TensorSpec t;
      t.role = r;
      t.shape = {c};
      l.tensors.push_back(t);
    }
  }
  return l;
}

LayerSpec group_norm_layer(std::string name, uint32_t c, uint32_t groups, bool affine) {
  LayerSpec l = instance_norm_layer(std::move(name), c, affine);
  l.kind = LayerKind::kGroupNorm;
  l.norm.num_groups = groups;
  return l;
}

LayerSpec prelu_layer(std::string name, uint32_t c, uint32_t num_parameters) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kPReLU;
  l.norm.num_features = c;
  TensorSpec t;
  t.role = TensorRole::kWeight;
  t.shape = {c};
  t.source_shape = {num_parameters};
  t.transform = num_parameters == c ? Transform::kIdentity : Transform::kBroadcast;
  l.tensors.push_back(t);
  return l;
}

LayerSpec conv_transpose_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                               uint32_t stride) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kConvTranspose2d;
  l.conv.in_channels = in;
  l.conv.out_channels = out;
  l.conv.kernel_h = l.conv.kernel_w = k;
  l.conv.stride_h = l.conv.stride_w = stride;
  l.conv.padding_h = l.conv.padding_w = k / 2;
  l.conv.output_padding_h = l.conv.output_padding_w = stride - 1;
  TensorSpec w;
  w.role = TensorRole::kWeight;
  w.layout = TensorLayout::kOHWIRotated;
  w.shape = {out, k, k, in};
  w.source_layout = TensorLayout::kIOHW;
  w.source_shape = {in, out, k, k};
  w.transform = Transform::kConvTransposeToOHWIRotated;
  l.tensors.push_back(w);
  TensorSpec b;
  b.role = TensorRole::kBias;
  b.shape = {out};
  l.tensors.push_back(b);
  return l;
}

LayerSpec legalized_conv_transpose_layer(std::string name, uint32_t in, uint32_t out, uint32_t k,
                                         uint32_t stride, uint32_t groups) {
  LayerSpec l = conv_transpose_layer(std::move(name), in, out, k, stride);
  l.legalized_groups = groups;
  l.tensors[0].source_shape = {in, out / groups, k, k};
  l.tensors[0].transform = Transform::kConvTransposeGroupedToDenseRotated;
  return l;
}

LayerSpec linear_layer(std::string name, uint32_t out, uint32_t c, uint32_t h, uint32_t w) {
  LayerSpec l;
  l.name = std::move(name);
  l.kind = LayerKind::kLinear;
  const bool flattened = h != 0 && w != 0;
  l.linear.out_features = out;
  l.linear.in_features = flattened ? c * h * w : c;
  if (flattened) {
    l.linear.input_c = c;
    l.linear.input_h = h;
    l.linear.input_w = w;
  }
  TensorSpec t;
  t.role = TensorRole::kWeight;
  t.layout = TensorLayout::kOHWI;
  t.shape = {out, flattened ? h : 1, flattened ? w : 1, c};
  t.source_layout = TensorLayout::kOI;
  t.source_shape = {out, l.linear.in_features};
  t.transform = flattened ? Transform::kLinearFlattenToOHWC : Transform::kIdentity;
  l.tensors.push_back(t);
  TensorSpec b;
  b.role = TensorRole::kBias;
  b.shape = {out};
  l.tensors.push_back(b);
  return l;
}

std::vector<uint8_t> build_bundle(const BundleSpec& spec) {
  // Plan tensor bytes and offsets in spec order.
  struct Placed {
    std::vector<uint8_t> bytes;
    uint64_t offset, size, checksum;
  };
  std::vector<std::vector<Placed>> placed(spec.layers.size());
  uint64_t cursor = 0;
  uint32_t salt = 0;
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    for (const TensorSpec& t : spec.layers[i].tensors) {
      Placed p;
      p.bytes = fill_bytes(t, ++salt);
      cursor = align_up(cursor, spec.tensor_alignment);
      p.offset = t.offset.value_or(cursor);
      p.size = t.size.value_or(p.bytes.size());
      p.checksum = t.checksum.value_or(XXH3_64bits(p.bytes.data(), p.bytes.size()));
      cursor += p.bytes.size();
      placed[i].push_back(std::move(p));
    }
  }
  const uint64_t segment_size =
      spec.segment_size.value_or(align_up(std::max<uint64_t>(cursor, 1), spec.segment_alignment));

  std::vector<size_t> order(spec.layers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (spec.sort_layers) {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return spec.layers[a].name < spec.layers[b].name; });
  }

  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);
  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  for (size_t i : order) {
    const LayerSpec& l = spec.layers[i];
    std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
    for (size_t j = 0; j < l.tensors.size(); ++j) {
      const TensorSpec& t = l.tensors[j];
      const Placed& p = placed[i][j];
      const auto& src = t.source_shape.empty() ? t.shape : t.source_shape;
      tensors.push_back(
          fb::CreateTensor(fbb, static_cast<fb::TensorRole>(t.role),
                           static_cast<fb::DType>(t.dtype), static_cast<fb::TensorLayout>(t.layout),
                           fbb.CreateVector(t.shape), static_cast<fb::DType>(t.dtype),
                           static_cast<fb::TensorLayout>(t.source_layout), fbb.CreateVector(src),
                           static_cast<fb::Transform>(t.transform), p.offset, p.size, p.checksum));
    }
    flatbuffers::Offset<fb::ConvParams> conv;
    flatbuffers::Offset<fb::LinearParams> linear;
    flatbuffers::Offset<fb::NormParams> norm;
    if (!l.omit_params) {
      const ConvParams& c = l.conv;
      switch (kind_spec(l.kind).params) {
        case ParamTable::kConv:
          conv =
              fb::CreateConvParams(fbb, c.in_channels, c.out_channels, c.kernel_h, c.kernel_w,
                                   c.stride_h, c.stride_w, c.padding_h, c.padding_w, c.dilation_h,
                                   c.dilation_w, c.groups, c.output_padding_h, c.output_padding_w);
          break;
        case ParamTable::kLinear: {
          std::vector<uint32_t> shape;
          if (l.linear.flattened()) shape = {l.linear.input_c, l.linear.input_h, l.linear.input_w};
          linear = fb::CreateLinearParams(fbb, l.linear.in_features, l.linear.out_features,
                                          fbb.CreateVector(shape));
          break;
        }
        case ParamTable::kNorm:
        case ParamTable::kGroupNorm:
        case ParamTable::kChannels:
          norm = fb::CreateNormParams(fbb, l.norm.num_features, l.norm.eps, l.norm.num_groups);
          break;
        case ParamTable::kNone:
          // Tests of a probe layer with a parameter table it must not have.
          if (c.in_channels != 0) {
            conv = fb::CreateConvParams(fbb, c.in_channels, c.out_channels, c.kernel_h, c.kernel_w,
                                        c.stride_h, c.stride_w, c.padding_h, c.padding_w,
                                        c.dilation_h, c.dilation_w, c.groups, c.output_padding_h,
                                        c.output_padding_w);
          }
          break;
      }
    }
    layers.push_back(
        fb::CreateLayer(fbb, fbb.CreateString(l.name), l.index.value_or(static_cast<uint32_t>(i)),
                        static_cast<fb::LayerKind>(l.kind), conv, linear, norm,
                        static_cast<fb::Activation>(l.activation), l.activation_alpha,
                        static_cast<fb::Quantization>(l.quantization), fbb.CreateVector(tensors),
                        0.0, 0.0, 0.0, l.activation_beta,
                        l.folded_batchnorm ? fbb.CreateString(*l.folded_batchnorm)
                                           : flatbuffers::Offset<flatbuffers::String>(),
                        l.legalized_groups));
  }
  std::vector<flatbuffers::Offset<fb::KeyValue>> md;
  for (const auto& [k, v] : spec.metadata) {
    md.push_back(fb::CreateKeyValue(fbb, fbb.CreateString(k), fbb.CreateString(v)));
  }
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::SkippedModule>>> skipped = 0;
  if (!spec.skipped.empty()) {
    std::vector<flatbuffers::Offset<fb::SkippedModule>> entries;
    for (const SkippedSpec& s : spec.skipped) {
      auto str = [&](const std::optional<std::string>& v) {
        return v ? fbb.CreateString(*v) : flatbuffers::Offset<flatbuffers::String>();
      };
      auto name = str(s.name);
      auto type = str(s.type);
      auto reason = str(s.reason);
      entries.push_back(fb::CreateSkippedModule(fbb, name, type, reason));
    }
    skipped = fbb.CreateVector(entries);
  }
  auto root = fb::CreateBundle(fbb, spec.format_version, fbb.CreateString("test_bundle"),
                               fbb.CreateString(spec.name), fbb.CreateVector(md),
                               spec.segment_alignment, spec.tensor_alignment, 0, segment_size,
                               fbb.CreateVector(layers), 0, 0, skipped);
  fb::FinishSizePrefixedBundleBuffer(fbb, root);

  std::vector<uint8_t> meta(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  fb::Bundle* mroot = fb::GetMutableSizePrefixedBundle(meta.data());
  const uint64_t segment_offset =
      spec.segment_offset.value_or(align_up(meta.size(), spec.segment_alignment));
  mroot->mutate_segment_offset(segment_offset);

  std::vector<uint8_t> segment(segment_size, 0);
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    for (const Placed& p : placed[i]) {
      if (p.offset <= segment.size() && p.bytes.size() <= segment.size() - p.offset) {
        std::memcpy(segment.data() + p.offset, p.bytes.data(), p.bytes.size());
      }
    }
  }
  mroot->mutate_segment_checksum(
      spec.segment_checksum.value_or(XXH3_64bits(segment.data(), segment.size())));
  mroot->mutate_metadata_checksum(0);
  mroot->mutate_metadata_checksum(
      spec.metadata_checksum.value_or(XXH3_64bits(meta.data(), meta.size())));

  std::vector<uint8_t> file(std::max<uint64_t>(segment_offset, meta.size()), 0);
  std::memcpy(file.data(), meta.data(), meta.size());
  file.insert(file.end(), segment.begin(), segment.end());
  return file;
}

}  // namespace mpsb::testing
