// What the bundle fuzz targets do with a bundle the runtime accepted: call
// every accessor a consumer would, and read every byte every data source
// promises, over the extent MPS would read it (as float loads where MPS
// reads floats, so UBSan sees misalignment too), computed from the layer's
// parameters rather than from the tensor's own size. Any broken promise
// aborts: ASan reports an over-promise as a read past the mapping.
#ifndef MPSB_TESTS_FUZZ_FUZZ_WALK_H_
#define MPSB_TESTS_FUZZ_FUZZ_WALK_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>

#include "fuzz_util.h"
#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsb/mpsb.h"
#include "mpsb/sources.h"

namespace mpsb::fuzz {

// The contract the loader promises; a broken promise is a finding.
inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "contract broken: %s\n", what);
    std::abort();
  }
}

inline void walk_tensor(const Bundle& b, const Tensor& t) {
  (void)t.role(), (void)t.dtype(), (void)t.layout(), (void)t.source_dtype();
  (void)t.source_layout(), (void)t.transform(), (void)t.checksum();
  uint64_t sum = 0;
  for (uint64_t d : t.shape()) sum += d;
  for (uint64_t d : t.source_shape()) sum += d;
  require(t.shape().size() >= 1 && t.shape().size() <= 8, "rank in 1..8");
  require(t.element_count() * dtype_size(t.dtype()) == t.size(), "size = shape x dtype");
  const auto bytes = t.bytes();
  require(bytes.data() >= b.segment().data() &&
              bytes.data() + bytes.size() <= b.segment().data() + b.segment().size(),
          "tensor inside the segment");
  touch(bytes.data(), bytes.size());
  b.load(t);
  b.purge(t);
  g_sink = g_sink + static_cast<unsigned>(sum);
}

// A pointer a data source hands MPS, promising `bytes` bytes: it must be the
// start of the layer's tensor of that role, and that tensor must hold them.
// Stronger than ASan alone, which sees an over-promise only when it runs
// past the end of the whole mapping.
inline void require_covered(const Layer& l, TensorRole role, const void* p, uint64_t bytes,
                            const char* what) {
  const std::optional<Tensor> t = l.find(role);
  if (!t || t->data() != p || t->size() < bytes) {
    std::fprintf(stderr, "layer '%.*s': %s promises %llu bytes, its tensor holds %llu\n",
                 static_cast<int>(l.name().size()), l.name().data(), what,
                 static_cast<unsigned long long>(bytes),
                 static_cast<unsigned long long>(t ? t->size() : 0));
    require(false, "a data source covers what it promises");
  }
}

// MPS reads -weights as [out][kH][kW][in/groups] elements of the data type.
inline uint64_t conv_weight_bytes(uint64_t out, uint64_t kh, uint64_t kw, uint64_t in,
                                  uint64_t groups, DType dtype) {
  return out * kh * kw * (in / groups) * dtype_size(dtype);
}

inline void walk_sources(const Bundle& b, const Layer& l) {
  if (auto c = ConvolutionSource::from(b, l); c.ok()) {
    const uint64_t need =
        conv_weight_bytes(c->output_feature_channels(), c->kernel_height(), c->kernel_width(),
                          c->input_feature_channels(), c->groups(), c->weight_dtype());
    require(c->weights_tensor().size() >= need, "weights cover the descriptor");
    require_covered(l, TensorRole::kWeight, c->weights(), need, "weights()");
    touch(c->weights(), need);
    const size_t out = c->output_feature_channels();
    if (const float* bias = c->bias_terms()) {
      require_covered(l, TensorRole::kBias, bias, out * 4, "bias_terms()");
      touch_floats(bias, out);
    }
    // uint8 weights: what MPS reads to dequantize them.
    if (const float* ranges = c->ranges_for_uint8_kernel()) {
      require_covered(l, TensorRole::kQuantRanges, ranges, 2 * out * 4,
                      "ranges_for_uint8_kernel()");
      touch_floats(ranges, 2 * out);
    }
    if (const float* table = c->lookup_table_for_uint8_kernel()) {
      require_covered(l, TensorRole::kQuantLookupTable, table, 256 * 4,
                      "lookup_table_for_uint8_kernel()");
      touch_floats(table, 256);
    }
    require(c->quantization() != Quantization::kLinear || c->ranges_for_uint8_kernel(),
            "linear quantization has ranges");
    require(c->quantization() != Quantization::kLookupTable || c->lookup_table_for_uint8_kernel(),
            "lookup-table quantization has a table");
    (void)c->label(), (void)c->data_type(), (void)c->weights_layout(), (void)c->params();
    (void)c->activation(), (void)c->activation_alpha(), (void)c->transposed();
    (void)c->kernel_weights_data_type(), (void)c->mps_offset_x(), (void)c->mps_offset_y();
    for (uint64_t in : {uint64_t{1}, uint64_t{224}, uint64_t{1} << 20}) {
      (void)c->output_width(in), (void)c->output_height(in);
    }
    c->load();
    c->purge();
  }
  if (auto n = BatchNormSource::from(b, l); n.ok()) {
    const size_t c = n->number_of_feature_channels();
    const std::pair<const float*, TensorRole> vectors[] = {
        {n->gamma(), TensorRole::kWeight},
        {n->beta(), TensorRole::kBias},
        {n->mean(), TensorRole::kRunningMean},
        {n->variance(), TensorRole::kRunningVar}};
    for (const auto& [p, role] : vectors) {
      if (!p) continue;
      require_covered(l, role, p, c * 4, "a batch norm vector");
      touch_floats(p, c);
    }
    require(n->mean() && n->variance(), "batch norm has running statistics");
    (void)n->epsilon(), (void)n->label();
    n->load();
    n->purge();
  }
  if (auto n = GroupNormSource::from(b, l); n.ok()) {
    const size_t c = n->number_of_feature_channels();
    require(n->number_of_groups() != 0 && c % n->number_of_groups() == 0,
            "group norm groups divide the channels");
    const std::pair<const float*, TensorRole> vectors[] = {{n->gamma(), TensorRole::kWeight},
                                                           {n->beta(), TensorRole::kBias}};
    for (const auto& [p, role] : vectors) {
      if (!p) continue;
      require_covered(l, role, p, c * 4, "a group norm vector");
      touch_floats(p, c);
    }
    (void)n->epsilon(), (void)n->label();
    n->load();
    n->purge();
  }
  if (auto n = neuron(l); n.ok()) {
    if (n->data) {
      // One slope per channel: a prelu layer's own, or the fused PReLU's
      // per output channel of a conv or linear layer.
      const bool prelu_layer = l.kind() == LayerKind::kPReLU;
      const uint64_t channels = prelu_layer                      ? l.norm().num_features
                                : l.kind() == LayerKind::kLinear ? l.linear().out_features
                                                                 : l.conv().out_channels;
      require(n->count == channels, "a neuron has one slope per channel");
      require_covered(l, prelu_layer ? TensorRole::kWeight : TensorRole::kActivationWeight, n->data,
                      n->count * 4, "neuron() slopes");
      touch_floats(n->data, n->count);
    }
    (void)n->mps_neuron_type, (void)n->a, (void)n->b, (void)n->c;
  }
  if (auto n = InstanceNormSource::from(b, l); n.ok()) {
    const size_t c = n->number_of_feature_channels();
    const std::pair<const float*, TensorRole> vectors[] = {{n->gamma(), TensorRole::kWeight},
                                                           {n->beta(), TensorRole::kBias}};
    for (const auto& [p, role] : vectors) {
      if (!p) continue;
      require_covered(l, role, p, c * 4, "an instance norm vector");
      touch_floats(p, c);
    }
    (void)n->epsilon(), (void)n->label();
    n->load();
    n->purge();
  }
}

inline void walk(const Bundle& b) {
  (void)b.format_version();
  touch(b.name().data(), b.name().size());
  touch(b.producer().data(), b.producer().size());
  for (size_t i = 0; i < b.metadata_count(); ++i) {
    const auto [k, v] = b.metadata(i);
    touch(k.data(), k.size());
    touch(v.data(), v.size());
  }
  (void)b.segment_alignment(), (void)b.tensor_alignment(), (void)b.segment_offset();
  touch(b.metadata_bytes().data(), b.metadata_bytes().size());
  require(b.file().size() == b.segment_offset() + b.segment().size(), "segment ends the file");
  // Tensors share no byte (docs/FORMAT.md §5), so whatever visits every
  // tensor once reads at most the segment: linear in the file size.
  uint64_t tensor_bytes = 0;
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    touch(l.name().data(), l.name().size());
    (void)l.kind(), (void)l.activation(), (void)l.activation_alpha(), (void)l.quantization();
    (void)l.conv(), (void)l.linear(), (void)l.norm(), (void)l.weight_error().sqnr_db();
    const auto found = b.find(l.name());
    require(found && found->name() == l.name(), "find() returns every layer");
    require(b.layer_in_network_order(l.index()).name() == l.name(), "network order");
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      walk_tensor(b, l.tensor(j));
      tensor_bytes += l.tensor(j).size();
    }
    for (int r = 0; r <= static_cast<int>(fb::TensorRole::MAX) + 1; ++r) {
      if (auto t = l.find(static_cast<TensorRole>(r))) walk_tensor(b, *t);
    }
    walk_sources(b, l);
    (void)b.verify_layer(l);
  }
  require(tensor_bytes <= b.segment().size(), "tensors fit the segment without sharing bytes");
  (void)b.find("");
  (void)b.find("\xff");
  const Status s = b.verify();
  require(s.ok() || !s.message().empty(), "verify failures have a message");
}

inline void walk_c_api(const mpsb_bundle* b) {
  (void)mpsb_bundle_name(b);
  uint64_t seg_size = 0;
  const void* seg = mpsb_bundle_segment(b, &seg_size);
  touch(seg, seg_size);
  const size_t n = mpsb_bundle_layer_count(b);
  for (size_t i = 0; i < n; ++i) {
    const mpsb_layer* l = mpsb_bundle_layer(b, i);
    require(l != nullptr, "layer handle");
    const char* name = mpsb_layer_name(b, l);
    require(name && mpsb_bundle_find_layer(b, name) == l, "find_layer by name");
    require(mpsb_bundle_layer_in_network_order(b, mpsb_layer_index(b, l)) == l, "network order");
    (void)mpsb_layer_kind_of(b, l);
    mpsb_conv_descriptor conv;
    if (mpsb_layer_conv_descriptor(b, l, &conv) == MPSB_OK) {
      const uint64_t need = conv_weight_bytes(conv.output_feature_channels, conv.kernel_height,
                                              conv.kernel_width, conv.input_feature_channels,
                                              conv.groups, static_cast<DType>(conv.weight_dtype));
      require(conv.weights_size >= need, "C API weights cover the descriptor");
      touch(conv.weights, need);
      if (conv.bias) touch_floats(conv.bias, conv.output_feature_channels);
      if (conv.ranges) touch_floats(conv.ranges, 2 * size_t{conv.output_feature_channels});
      if (conv.lookup_table) touch_floats(conv.lookup_table, 256);
    }
    mpsb_norm_descriptor norm;
    if (mpsb_layer_norm_descriptor(b, l, &norm) == MPSB_OK) {
      for (const float* p : {norm.gamma, norm.beta, norm.mean, norm.variance}) {
        if (p) touch_floats(p, norm.feature_channels);
      }
    }
    mpsb_neuron neuron;
    if (mpsb_layer_neuron(b, l, &neuron) == MPSB_OK && neuron.data) {
      touch_floats(neuron.data, neuron.count);
    }
    mpsb_tensor_info info;
    for (size_t j = 0; j < mpsb_layer_tensor_count(b, l); ++j) {
      require(mpsb_layer_tensor(b, l, j, &info) == MPSB_OK, "tensor i < count");
      require(info.rank <= MPSB_MAX_RANK && info.source_rank <= MPSB_MAX_RANK, "rank");
      touch(info.data, info.size);
    }
    for (int r = MPSB_ROLE_WEIGHT; r <= MPSB_ROLE_PROBE_OUTPUT; ++r) {
      if (mpsb_layer_find_tensor(b, l, static_cast<mpsb_tensor_role>(r), &info) == MPSB_OK) {
        touch(info.data, info.size);
      }
    }
    mpsb_layer_load(b, l);
    mpsb_layer_purge(b, l);
  }
  require(mpsb_bundle_layer(b, n) == nullptr, "layer past the end");
  char message[256];
  (void)mpsb_bundle_verify(b, message, sizeof message);
}

// Bundle::from_memory and the C API (through an in-memory file) on the same
// bytes: the same verdict, and everything accepted walked.
inline void open_and_walk(const uint8_t* data, size_t size) {
  auto r = Bundle::from_memory(data, size);
  if (r.ok()) {
    walk(*r);
  } else {
    require(!r.message().empty(), "errors have a message");
    require(r.message().rfind("<memory>: ", 0) == 0, "errors name the file");
  }
  static MemFile file;
  file.set(data, size);
  mpsb_bundle* b = nullptr;
  char message[256];
  const mpsb_status s = mpsb_bundle_open(file.path().c_str(), 0, &b, message, sizeof message);
  require(static_cast<int>(s) == static_cast<int>(r.error()), "open and from_memory agree");
  require((s == MPSB_OK) == (b != nullptr), "handle iff ok");
  if (b) walk_c_api(b);
  mpsb_bundle_free(b);
}

}  // namespace mpsb::fuzz

#endif  // MPSB_TESTS_FUZZ_FUZZ_WALK_H_
