#include <algorithm>
#include <cstring>
#include <new>
#include <optional>
#include <string>

#include "bundle_internal.h"
#include "mpsb/buffers.h"
#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsb/sources.h"

using mpsb::Bundle;
using mpsb::Error;
using mpsb::Layer;
using mpsb::Tensor;

struct mpsb_bundle {
  explicit mpsb_bundle(Bundle b) : bundle(std::move(b)) {}
  Bundle bundle;
};

struct mpsb_buffer_plan {
  mpsb_buffer_plan(const mpsb_bundle* b, mpsb::BufferPlan p) : bundle(b), plan(std::move(p)) {}
  const mpsb_bundle* bundle;
  mpsb::BufferPlan plan;
};

static_assert(MPSB_ERROR_MAP_FAILED == static_cast<int>(Error::kMapFailed));
static_assert(MPSB_ERROR_NON_ZERO_PADDING == static_cast<int>(Error::kNonZeroPadding));
// Each C enumeration's last value is the C++ count minus one, so a value
// added to mpsb/types.h and not to mpsb.h fails here.
constexpr size_t count_after(int last) { return static_cast<size_t>(last) + 1; }
static_assert(count_after(MPSB_DTYPE_UINT8) == mpsb::kDTypeCount);
static_assert(count_after(MPSB_LAYER_PROBE) == mpsb::kLayerKindCount);
static_assert(count_after(MPSB_ROLE_PROBE_OUTPUT) == mpsb::kTensorRoleCount);
static_assert(count_after(MPSB_ACTIVATION_PRELU) == mpsb::kActivationCount);
static_assert(MPSB_LAYER_GROUP_NORM == static_cast<int>(mpsb::LayerKind::kGroupNorm));
static_assert(MPSB_ACTIVATION_ELU == static_cast<int>(mpsb::Activation::kELU));
static_assert(MPSB_ACTIVATION_GELU == static_cast<int>(mpsb::Activation::kGELU));

namespace {

// A layer handle is the address of its slot in the metadata's sorted layer
// vector: checking that a handle belongs to a bundle is then a range check,
// so a stray or foreign pointer is refused without being read.
const uint8_t* layer_slots(const mpsb_bundle* b, size_t* count) {
  const auto* root = mpsb::internal::Access::mapping(b->bundle).root;
  *count = root->layers()->size();
  return root->layers()->Data();
}

const mpsb_layer* handle_of(const mpsb_bundle* b, size_t sorted_index) {
  size_t n = 0;
  const uint8_t* slots = layer_slots(b, &n);
  if (sorted_index >= n) return nullptr;
  return reinterpret_cast<const mpsb_layer*>(slots + sorted_index * sizeof(flatbuffers::uoffset_t));
}

// The sorted index of a handle of `b`, or nullopt for anything else.
std::optional<size_t> sorted_index_of(const mpsb_bundle* b, const mpsb_layer* h) {
  if (!b || !h) return std::nullopt;
  size_t n = 0;
  const uint8_t* slots = layer_slots(b, &n);
  const auto* p = reinterpret_cast<const uint8_t*>(h);
  if (p < slots || p >= slots + n * sizeof(flatbuffers::uoffset_t)) return std::nullopt;
  const auto delta = static_cast<size_t>(p - slots);
  if (delta % sizeof(flatbuffers::uoffset_t) != 0) return std::nullopt;
  return delta / sizeof(flatbuffers::uoffset_t);
}

std::optional<Layer> layer_of(const mpsb_bundle* b, const mpsb_layer* h) {
  const std::optional<size_t> i = sorted_index_of(b, h);
  if (!i) return std::nullopt;
  return b->bundle.layer(*i);
}

void copy_message(const std::string& text, char* message, size_t size) {
  if (!message || size == 0) return;
  const size_t n = std::min(text.size(), size - 1);
  std::memcpy(message, text.data(), n);
  message[n] = '\0';
}

mpsb_status status_of(Error e) { return static_cast<mpsb_status>(e); }

void fill(const Tensor& t, mpsb_tensor_info* out) {
  *out = {};
  out->role = static_cast<mpsb_tensor_role>(t.role());
  out->dtype = static_cast<mpsb_dtype>(t.dtype());
  out->layout = static_cast<uint32_t>(t.layout());
  // Bundle::open caps ranks at MPSB_MAX_RANK.
  out->rank = static_cast<uint32_t>(t.shape().size());
  std::copy(t.shape().begin(), t.shape().end(), out->shape);
  out->source_dtype = static_cast<mpsb_dtype>(t.source_dtype());
  out->source_layout = static_cast<uint32_t>(t.source_layout());
  out->source_rank = static_cast<uint32_t>(t.source_shape().size());
  std::copy(t.source_shape().begin(), t.source_shape().end(), out->source_shape);
  out->offset = t.offset();
  out->size = t.size();
  out->checksum = t.checksum();
  out->data = t.data();
}

// *out = a new handle made of `before...` and r's value (message ""), or
// r's error in `message` and *out untouched.
template <typename Handle, typename T, typename... Before>
mpsb_status hand_out(mpsb::Result<T> r, Handle** out, char* message, size_t message_size,
                     Before&&... before) {
  if (!r.ok()) {
    copy_message(r.message(), message, message_size);
    return status_of(r.error());
  }
  *out = new (std::nothrow) Handle(std::forward<Before>(before)..., std::move(r).value());
  if (!*out) {
    copy_message("out of memory", message, message_size);
    return MPSB_ERROR_IO;
  }
  copy_message("", message, message_size);
  return MPSB_OK;
}

}  // namespace

extern "C" {

unsigned mpsb_version_number(void) { return MPSB_VERSION_NUMBER; }
const char* mpsb_version_string(void) { return MPSB_VERSION_STRING; }

const char* mpsb_error_string(int status) {
  // to_string returns views of string literals, so data() is NUL-terminated.
  return mpsb::to_string(static_cast<Error>(status)).data();
}

mpsb_status mpsb_bundle_open(const char* path, unsigned flags, mpsb_bundle** out, char* message,
                             size_t message_size) {
  if (out) *out = nullptr;
  if (!path || !out) {
    copy_message("mpsb_bundle_open: path and out must not be NULL", message, message_size);
    return MPSB_ERROR_INVALID_ARGUMENT;
  }
  mpsb::OpenOptions options;
  options.verify_checksums = (flags & MPSB_OPEN_VERIFY) != 0;
  return hand_out(Bundle::open(path, options), out, message, message_size);
}

void mpsb_bundle_free(mpsb_bundle* bundle) { delete bundle; }

mpsb_status mpsb_bundle_verify(const mpsb_bundle* bundle, char* message, size_t message_size) {
  if (!bundle) return MPSB_ERROR_INVALID_ARGUMENT;
  auto s = bundle->bundle.verify();
  copy_message(s.message(), message, message_size);
  return status_of(s.error());
}

const char* mpsb_bundle_name(const mpsb_bundle* bundle) {
  if (!bundle) return "";
  const auto* name = mpsb::internal::Access::mapping(bundle->bundle).root->name();
  return name ? name->c_str() : "";
}

size_t mpsb_bundle_skipped_module_count(const mpsb_bundle* bundle) {
  return bundle ? bundle->bundle.skipped_module_count() : 0;
}

int mpsb_bundle_skipped_module(const mpsb_bundle* bundle, size_t i, const char** name,
                               const char** type, const char** reason) {
  const char* parts[3] = {"", "", ""};
  const bool found = bundle && i < bundle->bundle.skipped_module_count();
  if (found) {
    // FlatBuffers strings end in a NUL, and Bundle::open refused any inside.
    const auto* m = mpsb::internal::Access::mapping(bundle->bundle)
                        .root->skipped_modules()
                        ->Get(static_cast<flatbuffers::uoffset_t>(i));
    parts[0] = m->name()->c_str();
    parts[1] = m->type()->c_str();
    parts[2] = m->reason()->c_str();
  }
  if (name) *name = parts[0];
  if (type) *type = parts[1];
  if (reason) *reason = parts[2];
  return found ? 1 : 0;
}

size_t mpsb_bundle_layer_count(const mpsb_bundle* bundle) {
  return bundle ? bundle->bundle.layer_count() : 0;
}

const mpsb_layer* mpsb_bundle_layer(const mpsb_bundle* bundle, size_t i) {
  return bundle ? handle_of(bundle, i) : nullptr;
}

const mpsb_layer* mpsb_bundle_layer_in_network_order(const mpsb_bundle* bundle, size_t index) {
  if (!bundle || index >= bundle->bundle.layer_count()) return nullptr;
  return handle_of(bundle, mpsb::internal::Access::mapping(bundle->bundle).network_order[index]);
}

const mpsb_layer* mpsb_bundle_find_layer(const mpsb_bundle* bundle, const char* name) {
  if (!bundle || !name) return nullptr;
  const std::optional<size_t> i = bundle->bundle.find_index(name);
  return i ? handle_of(bundle, *i) : nullptr;
}

const void* mpsb_bundle_segment(const mpsb_bundle* bundle, uint64_t* size) {
  if (!bundle) {
    if (size) *size = 0;
    return nullptr;
  }
  const auto seg = bundle->bundle.segment();
  if (size) *size = seg.size();
  return seg.data();
}

const char* mpsb_layer_name(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  // Names are FlatBuffers strings: NUL-terminated in the mapping.
  return l ? l->name().data() : nullptr;
}

int mpsb_layer_kind_of(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  return l ? static_cast<int>(l->kind()) : -1;
}

uint32_t mpsb_layer_index(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  return l ? l->index() : UINT32_MAX;
}

const char* mpsb_layer_folded_batchnorm(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  if (!l || l->folded_batchnorm().empty()) return nullptr;
  // A FlatBuffers string: NUL-terminated in the mapping.
  return l->folded_batchnorm().data();
}

uint32_t mpsb_layer_legalized_groups(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  return l ? l->legalized_groups() : 0;
}

mpsb_status mpsb_layer_conv_descriptor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                       mpsb_conv_descriptor* out) {
  const auto l = layer_of(bundle, layer);
  if (!l || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  auto src = mpsb::ConvolutionSource::from(bundle->bundle, *l);
  if (!src.ok()) return status_of(src.error());
  const mpsb::ConvParams& p = src->params();
  *out = {};
  out->kernel_width = src->kernel_width();
  out->kernel_height = src->kernel_height();
  out->input_feature_channels = src->input_feature_channels();
  out->output_feature_channels = src->output_feature_channels();
  out->stride_x = src->stride_x();
  out->stride_y = src->stride_y();
  out->dilation_x = src->dilation_x();
  out->dilation_y = src->dilation_y();
  out->groups = src->groups();
  out->padding_x = p.padding_w;
  out->padding_y = p.padding_h;
  out->output_padding_x = p.output_padding_w;
  out->output_padding_y = p.output_padding_h;
  out->transposed = src->transposed() ? 1 : 0;
  out->mps_offset_x = src->mps_offset_x();
  out->mps_offset_y = src->mps_offset_y();
  out->activation = static_cast<mpsb_activation>(src->activation());
  out->activation_alpha = src->activation_alpha();
  out->weight_dtype = static_cast<mpsb_dtype>(src->weight_dtype());
  out->mps_data_type = static_cast<uint32_t>(src->data_type());
  out->weights = src->weights();
  out->weights_size = src->weights_tensor().size();
  out->bias = src->bias_terms();
  out->quantization = static_cast<uint32_t>(src->quantization());
  out->ranges = src->ranges_for_uint8_kernel();
  out->lookup_table = src->lookup_table_for_uint8_kernel();
  out->kernel_weights_mps_data_type = static_cast<uint32_t>(src->kernel_weights_data_type());
  return MPSB_OK;
}

mpsb_status mpsb_layer_norm_descriptor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                       mpsb_norm_descriptor* out) {
  const auto l = layer_of(bundle, layer);
  if (!l || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  *out = {};
  if (auto bn = mpsb::BatchNormSource::from(bundle->bundle, *l); bn.ok()) {
    out->feature_channels = bn->number_of_feature_channels();
    out->epsilon = bn->epsilon();
    out->gamma = bn->gamma();
    out->beta = bn->beta();
    out->mean = bn->mean();
    out->variance = bn->variance();
    return MPSB_OK;
  }
  if (auto gn = mpsb::GroupNormSource::from(bundle->bundle, *l); gn.ok()) {
    out->feature_channels = gn->number_of_feature_channels();
    out->epsilon = gn->epsilon();
    out->gamma = gn->gamma();
    out->beta = gn->beta();
    out->num_groups = gn->number_of_groups();
    return MPSB_OK;
  }
  auto in = mpsb::InstanceNormSource::from(bundle->bundle, *l);
  if (!in.ok()) return status_of(in.error());
  out->feature_channels = in->number_of_feature_channels();
  out->epsilon = in->epsilon();
  out->gamma = in->gamma();
  out->beta = in->beta();
  return MPSB_OK;
}

mpsb_status mpsb_layer_neuron(const mpsb_bundle* bundle, const mpsb_layer* layer,
                              mpsb_neuron* out) {
  const auto l = layer_of(bundle, layer);
  if (!l || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  *out = {};
  const auto n = mpsb::neuron(*l);
  if (!n.ok()) return status_of(n.error());
  out->activation = static_cast<mpsb_activation>(n->activation);
  out->mps_neuron_type = n->mps_neuron_type;
  out->a = n->a;
  out->b = n->b;
  out->c = n->c;
  out->data = n->data;
  out->count = n->count;
  return MPSB_OK;
}

size_t mpsb_layer_tensor_count(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  const auto l = layer_of(bundle, layer);
  return l ? l->tensor_count() : 0;
}

mpsb_status mpsb_layer_tensor(const mpsb_bundle* bundle, const mpsb_layer* layer, size_t i,
                              mpsb_tensor_info* out) {
  const auto l = layer_of(bundle, layer);
  if (!l || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  if (i >= l->tensor_count()) return MPSB_ERROR_NOT_FOUND;
  fill(l->tensor(i), out);
  return MPSB_OK;
}

mpsb_status mpsb_layer_find_tensor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                   mpsb_tensor_role role, mpsb_tensor_info* out) {
  const auto l = layer_of(bundle, layer);
  if (!l || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  const auto t = l->find(static_cast<mpsb::TensorRole>(role));
  if (!t) return MPSB_ERROR_NOT_FOUND;
  fill(*t, out);
  return MPSB_OK;
}

void mpsb_layer_load(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  if (const auto l = layer_of(bundle, layer)) bundle->bundle.load(*l);
}

void mpsb_layer_purge(const mpsb_bundle* bundle, const mpsb_layer* layer) {
  if (const auto l = layer_of(bundle, layer)) bundle->bundle.purge(*l);
}

mpsb_status mpsb_buffer_plan_create(const mpsb_bundle* bundle, uint64_t max_buffer_length,
                                    uint64_t page_size, mpsb_buffer_plan** out, char* message,
                                    size_t message_size) {
  if (out) *out = nullptr;
  if (!bundle || !out) {
    copy_message("mpsb_buffer_plan_create: bundle and out must not be NULL", message, message_size);
    return MPSB_ERROR_INVALID_ARGUMENT;
  }
  return hand_out(mpsb::BufferPlan::make(bundle->bundle, max_buffer_length, page_size), out,
                  message, message_size, bundle);
}

void mpsb_buffer_plan_free(mpsb_buffer_plan* plan) { delete plan; }

size_t mpsb_buffer_plan_window_count(const mpsb_buffer_plan* plan) {
  return plan ? plan->plan.windows().size() : 0;
}

mpsb_status mpsb_buffer_plan_window(const mpsb_buffer_plan* plan, size_t i,
                                    mpsb_buffer_window* out) {
  if (!plan || !out) return MPSB_ERROR_INVALID_ARGUMENT;
  if (i >= plan->plan.windows().size()) return MPSB_ERROR_NOT_FOUND;
  const mpsb::BufferWindow& w = plan->plan.windows()[i];
  out->offset = w.offset;
  out->length = w.length;
  out->data = plan->bundle->bundle.segment().data() + w.offset;
  return MPSB_OK;
}

mpsb_status mpsb_buffer_plan_tensor(const mpsb_buffer_plan* plan, const mpsb_layer* layer,
                                    size_t tensor_index, size_t* window, uint64_t* offset) {
  if (!plan || !window || !offset) return MPSB_ERROR_INVALID_ARGUMENT;
  const std::optional<size_t> i = sorted_index_of(plan->bundle, layer);
  if (!i) return MPSB_ERROR_INVALID_ARGUMENT;
  if (tensor_index >= plan->bundle->bundle.layer(*i).tensor_count()) return MPSB_ERROR_NOT_FOUND;
  const mpsb::TensorPlacement p = plan->plan.placement(*i, tensor_index);
  *window = p.window;
  *offset = p.offset;
  return MPSB_OK;
}

}  // extern "C"
