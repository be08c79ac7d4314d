// Fuzzes the runtime's loader: Bundle::from_memory on arbitrary bytes, then
// every accessor a consumer would call on what it accepted — layers, tensors,
// the MPS data sources (each pointer read over the full extent MPS would
// read), find() by every name, verify() — and the same bytes through the C
// API via an in-memory file, whose answer must agree with from_memory.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_util.h"
#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsb/sources.h"

namespace {

using mpsb::Bundle;
using mpsb::Layer;
using mpsb::LayerKind;
using mpsb::Tensor;
using mpsb::TensorRole;
using mpsb::fuzz::touch;
using mpsb::fuzz::touch_floats;

// The contract the loader promises; a broken promise is a finding.
void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "contract broken: %s\n", what);
    std::abort();
  }
}

void walk_tensor(const Bundle& b, const Tensor& t) {
  (void)t.role(), (void)t.dtype(), (void)t.layout(), (void)t.source_dtype();
  (void)t.source_layout(), (void)t.transform(), (void)t.checksum();
  uint64_t sum = 0;
  for (uint64_t d : t.shape()) sum += d;
  for (uint64_t d : t.source_shape()) sum += d;
  require(t.shape().size() >= 1 && t.shape().size() <= 8, "rank in 1..8");
  require(t.element_count() * mpsb::dtype_size(t.dtype()) == t.size(), "size = shape x dtype");
  const auto bytes = t.bytes();
  require(bytes.data() >= b.segment().data() &&
              bytes.data() + bytes.size() <= b.segment().data() + b.segment().size(),
          "tensor inside the segment");
  touch(bytes.data(), bytes.size());
  b.load(t);
  b.purge(t);
  (void)sum;
}

void walk_sources(const Bundle& b, const Layer& l) {
  if (auto c = mpsb::ConvolutionSource::from(b, l); c.ok()) {
    const uint64_t in_per_group = c->input_feature_channels() / c->groups();
    // What MPS reads from -weights: [out][kH][kW][in/groups] elements.
    const uint64_t elements = uint64_t{c->output_feature_channels()} * c->kernel_height() *
                              c->kernel_width() * in_per_group;
    const uint64_t need = elements * mpsb::dtype_size(c->weight_dtype());
    require(c->weights_tensor().size() >= need, "weights cover the descriptor");
    touch(c->weights(), need);
    if (const float* bias = c->bias_terms()) touch_floats(bias, c->output_feature_channels());
    (void)c->label(), (void)c->data_type(), (void)c->weights_layout(), (void)c->params();
    (void)c->activation(), (void)c->activation_alpha(), (void)c->transposed();
    c->load();
    c->purge();
  }
  if (auto n = mpsb::BatchNormSource::from(b, l); n.ok()) {
    const size_t c = n->number_of_feature_channels();
    for (const float* p : {n->gamma(), n->beta(), n->mean(), n->variance()}) {
      if (p) touch_floats(p, c);
    }
    require(n->mean() && n->variance(), "batch norm has running statistics");
    (void)n->epsilon(), (void)n->label();
    n->load();
    n->purge();
  }
  if (auto n = mpsb::InstanceNormSource::from(b, l); n.ok()) {
    const size_t c = n->number_of_feature_channels();
    for (const float* p : {n->gamma(), n->beta()}) {
      if (p) touch_floats(p, c);
    }
    (void)n->epsilon(), (void)n->label();
  }
}

void walk(const Bundle& b) {
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
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    touch(l.name().data(), l.name().size());
    (void)l.kind(), (void)l.activation(), (void)l.activation_alpha(), (void)l.quantization();
    (void)l.conv(), (void)l.linear(), (void)l.norm();
    const auto found = b.find(l.name());
    require(found && found->name() == l.name(), "find() returns every layer");
    require(b.layer_in_network_order(l.index()).name() == l.name(), "network order");
    for (size_t j = 0; j < l.tensor_count(); ++j) walk_tensor(b, l.tensor(j));
    for (int r = 0; r <= static_cast<int>(TensorRole::kQuantLookupTable); ++r) {
      if (auto t = l.find(static_cast<TensorRole>(r))) walk_tensor(b, *t);
    }
    walk_sources(b, l);
    (void)b.verify_layer(l);
  }
  (void)b.find("");
  (void)b.find("\xff");
  const mpsb::Status s = b.verify();
  require(s.ok() || !s.message().empty(), "verify failures have a message");
}

void walk_c_api(const mpsb_bundle* b) {
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
      touch(conv.weights, conv.weights_size);
      if (conv.bias) touch_floats(conv.bias, conv.output_feature_channels);
    }
    mpsb_norm_descriptor norm;
    if (mpsb_layer_norm_descriptor(b, l, &norm) == MPSB_OK) {
      for (const float* p : {norm.gamma, norm.beta, norm.mean, norm.variance}) {
        if (p) touch_floats(p, norm.feature_channels);
      }
    }
    mpsb_tensor_info info;
    for (size_t j = 0; j < mpsb_layer_tensor_count(b, l); ++j) {
      require(mpsb_layer_tensor(b, l, j, &info) == MPSB_OK, "tensor i < count");
      require(info.rank <= MPSB_MAX_RANK && info.source_rank <= MPSB_MAX_RANK, "rank");
      touch(info.data, info.size);
    }
    for (int r = MPSB_ROLE_WEIGHT; r <= MPSB_ROLE_QUANT_LOOKUP_TABLE; ++r) {
      (void)mpsb_layer_find_tensor(b, l, static_cast<mpsb_tensor_role>(r), &info);
    }
    mpsb_layer_load(b, l);
    mpsb_layer_purge(b, l);
  }
  require(mpsb_bundle_layer(b, n) == nullptr, "layer past the end");
  char message[256];
  (void)mpsb_bundle_verify(b, message, sizeof message);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = Bundle::from_memory(data, size);
  if (r.ok()) {
    walk(*r);
  } else {
    require(!r.message().empty(), "errors have a message");
    require(r.message().rfind("<memory>: ", 0) == 0, "errors name the file");
  }

  // The C API takes a path: the same bytes through an in-memory file, and
  // the same verdict.
  static mpsb::fuzz::MemFile file;
  file.set(data, size);
  mpsb_bundle* b = nullptr;
  char message[256];
  const mpsb_status s = mpsb_bundle_open(file.path().c_str(), 0, &b, message, sizeof message);
  require(static_cast<int>(s) == static_cast<int>(r.error()), "open and from_memory agree");
  require((s == MPSB_OK) == (b != nullptr), "handle iff ok");
  if (b) walk_c_api(b);
  mpsb_bundle_free(b);
  return 0;
}
