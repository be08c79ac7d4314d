#include <string>
#include <vector>

#include "bundle_writer.h"
#include "checked_math.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsb/kinds.h"
#include "mpsbc/precision.h"
#include "mpsbc/report.h"

namespace mpsbc {
namespace {

namespace fb = mpsb::fb;

// The public enums mirror the schema's value for value (the runtime
// static_asserts it), so a cast is the conversion.
template <typename To, typename From>
To as_fb(From v) {
  return static_cast<To>(static_cast<uint8_t>(v));
}

// The metadata is written with ForceDefaults, so that every field is
// present and a reader sees the same bytes for the same values. Fields added
// to the schema after format 1 first shipped (Layer.activation_beta,
// Layer.folded_batchnorm, NormParams.num_groups) are written only where
// they apply, so that a
// bundle that does not use them keeps the bytes it had. The order of the
// add_ calls is the generated Create function's.
flatbuffers::Offset<fb::NormParams> create_norm_params(flatbuffers::FlatBufferBuilder& fbb,
                                                       const mpsb::NormParams& n) {
  fb::NormParamsBuilder b(fbb);
  if (n.num_groups != 0) b.add_num_groups(n.num_groups);
  b.add_eps(n.eps);
  b.add_num_features(n.num_features);
  return b.Finish();
}

flatbuffers::Offset<fb::Layer> create_layer(
    flatbuffers::FlatBufferBuilder& fbb, const ManifestLayer& l,
    flatbuffers::Offset<flatbuffers::String> name, flatbuffers::Offset<fb::ConvParams> conv,
    flatbuffers::Offset<fb::LinearParams> linear, flatbuffers::Offset<fb::NormParams> norm,
    flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::Tensor>>> tensors,
    flatbuffers::Offset<flatbuffers::String> folded_batchnorm) {
  fb::LayerBuilder b(fbb);
  b.add_weight_noise_energy(l.weight_noise_energy);
  b.add_weight_signal_energy(l.weight_signal_energy);
  b.add_weight_max_abs_error(l.weight_error.max_abs);
  if (!folded_batchnorm.IsNull()) b.add_folded_batchnorm(folded_batchnorm);
  if (l.legalized_groups != 0) b.add_legalized_groups(l.legalized_groups);
  if (l.activation_beta != 0) b.add_activation_beta(l.activation_beta);
  b.add_tensors(tensors);
  b.add_activation_alpha(l.activation_alpha);
  b.add_norm(norm);
  b.add_linear(linear);
  b.add_conv(conv);
  b.add_index(l.index);
  b.add_name(name);
  b.add_quantization(as_fb<fb::Quantization>(quantization(l.weight_precision)));
  b.add_activation(as_fb<fb::Activation>(l.activation));
  b.add_kind(as_fb<fb::LayerKind>(l.kind));
  return b.Finish();
}

}  // namespace

bool build_metadata(const Manifest& manifest, const BundlePlan& plan, Metadata* out,
                    Diagnostics& diag) {
  flatbuffers::FlatBufferBuilder fbb(16384);
  // Every scalar is stored, even at its default, so the checksums and the
  // segment offset can be patched in place and a reader always finds the
  // metadata_checksum bytes to zero.
  fbb.ForceDefaults(true);

  std::vector<size_t> first_tensor(manifest.layers.size());
  {
    size_t k = 0;
    for (size_t li = 0; li < manifest.layers.size(); ++li) {
      first_tensor[li] = k;
      k += manifest.layers[li].tensors.size();
    }
  }

  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  layers.reserve(plan.sorted_layers.size());
  for (size_t li : plan.sorted_layers) {
    const ManifestLayer& l = manifest.layers[li];
    std::vector<flatbuffers::Offset<fb::Tensor>> tensors;
    for (size_t ti = 0; ti < l.tensors.size(); ++ti) {
      const ManifestTensor& t = l.tensors[ti];
      const PlannedTensor& pt = plan.tensors[first_tensor[li] + ti];
      auto shape = fbb.CreateVector(t.plan.stored_shape);
      auto source_shape = fbb.CreateVector(t.plan.source_shape);
      tensors.push_back(fb::CreateTensor(
          fbb, as_fb<fb::TensorRole>(t.role), as_fb<fb::DType>(t.dtype),
          as_fb<fb::TensorLayout>(t.plan.stored_layout), shape, as_fb<fb::DType>(t.source_dtype),
          as_fb<fb::TensorLayout>(t.plan.source_layout), source_shape,
          as_fb<fb::Transform>(t.plan.transform), pt.offset, pt.size,
          /*checksum=*/0));
    }
    auto tensor_vec = fbb.CreateVector(tensors);
    flatbuffers::Offset<fb::ConvParams> conv = 0;
    flatbuffers::Offset<fb::LinearParams> linear = 0;
    flatbuffers::Offset<fb::NormParams> norm = 0;
    switch (mpsb::kind_spec(l.kind).params) {
      case mpsb::ParamTable::kConv: {
        const auto& c = l.conv;
        conv = fb::CreateConvParams(fbb, c.in_channels, c.out_channels, c.kernel_h, c.kernel_w,
                                    c.stride_h, c.stride_w, c.padding_h, c.padding_w, c.dilation_h,
                                    c.dilation_w, c.groups, c.output_padding_h, c.output_padding_w);
        break;
      }
      case mpsb::ParamTable::kLinear: {
        flatbuffers::Offset<flatbuffers::Vector<uint32_t>> input_shape = 0;
        if (l.linear.flattened()) {
          const std::vector<uint32_t> chw = {l.linear.input_c, l.linear.input_h, l.linear.input_w};
          input_shape = fbb.CreateVector(chw);
        }
        linear =
            fb::CreateLinearParams(fbb, l.linear.in_features, l.linear.out_features, input_shape);
        break;
      }
      case mpsb::ParamTable::kNorm:
      case mpsb::ParamTable::kGroupNorm:
      case mpsb::ParamTable::kChannels:
        norm = create_norm_params(fbb, l.norm);
        break;
      case mpsb::ParamTable::kNone:  // a probe: its tensors carry its shapes
        break;
    }
    auto name = fbb.CreateString(l.name);
    flatbuffers::Offset<flatbuffers::String> folded = 0;
    if (!l.folded_from.empty()) folded = fbb.CreateString(l.folded_from);
    layers.push_back(create_layer(fbb, l, name, conv, linear, norm, tensor_vec, folded));
  }
  // Already in key order (plan.sorted_layers); CreateVectorOfSortedTables
  // would sort again with the same comparison.
  auto layer_vec = fbb.CreateVector(layers);

  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::KeyValue>>> metadata = 0;
  if (manifest.has_metadata) {
    std::vector<flatbuffers::Offset<fb::KeyValue>> kvs;
    for (const auto& [key, value] : manifest.metadata) {
      auto k = fbb.CreateString(key);
      auto v = fbb.CreateString(value);
      kvs.push_back(fb::CreateKeyValue(fbb, k, v));
    }
    metadata = fbb.CreateVector(kvs);
  }
  // The manifest's "skipped" list, in its order; absent when it has none,
  // so a bundle of a whole model keeps the bytes it had before the field.
  flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<fb::SkippedModule>>> skipped = 0;
  if (!manifest.skipped.empty()) {
    std::vector<flatbuffers::Offset<fb::SkippedModule>> entries;
    for (const SkippedModule& s : manifest.skipped) {
      // One statement each: argument order is unspecified, the bytes are not.
      auto module_name = fbb.CreateString(s.name);
      auto type = fbb.CreateString(s.type);
      auto reason = fbb.CreateString(s.reason);
      entries.push_back(fb::CreateSkippedModule(fbb, module_name, type, reason));
    }
    skipped = fbb.CreateVector(entries);
  }
  flatbuffers::Offset<flatbuffers::String> name = 0;
  if (manifest.name) name = fbb.CreateString(*manifest.name);
  auto producer = fbb.CreateString(producer_string());

  auto root = fb::CreateBundle(fbb, /*format_version=*/1, producer, name, metadata,
                               plan.segment_alignment, plan.tensor_alignment,
                               /*segment_offset=*/0, plan.segment_size, layer_vec,
                               /*segment_checksum=*/0, /*metadata_checksum=*/0, skipped);
  fbb.FinishSizePrefixed(root, fb::BundleIdentifier());

  out->bytes.assign(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
  auto segment_offset = checked_align_up(out->bytes.size(), plan.segment_alignment);
  auto file_size = segment_offset ? checked_add(*segment_offset, plan.segment_size) : std::nullopt;
  if (!file_size) {
    diag.error("", "the bundle would exceed 2^64 bytes");
    return false;
  }
  out->segment_offset = *segment_offset;
  out->file_size = *file_size;
  if (!fb::GetMutableSizePrefixedBundle(out->bytes.data())
           ->mutate_segment_offset(*segment_offset)) {
    diag.error("", "internal error: segment_offset missing from the metadata");
    return false;
  }
  return true;
}

}  // namespace mpsbc
