/* mpsb C API: open an .mpsb bundle and read the weights MPS needs.
 *
 * Conventions
 * - Every function and type has the `mpsb_` prefix; handles are opaque.
 * - mpsb_bundle_open() creates a bundle, mpsb_bundle_free() destroys it;
 *   mpsb_buffer_plan_create() and mpsb_buffer_plan_free() do the same for a
 *   buffer plan. Both frees accept NULL. Nothing else allocates.
 * - A const mpsb_layer* and every pointer a query returns (names, weights,
 *   biases, shapes) points into the bundle's read-only mapping: do not free
 *   it; it is valid until mpsb_bundle_free() of the bundle that gave it.
 * - Functions that can fail return an mpsb_status (0 is MPSB_OK); the codes
 *   are stable. mpsb_error_string() names a code. Functions that fill a
 *   message buffer write a NUL-terminated, possibly shortened, text.
 * - NULL arguments where a handle is required give MPSB_ERROR_INVALID_ARGUMENT
 *   (or 0 / NULL for plain queries); they never crash.
 * - Structs an mpsb_* query fills only grow at their end, so code built
 *   against an older header keeps reading the fields it knows.
 * - Enumerations equal the C++ ones in <mpsb/types.h> value for value;
 *   c_api.cc ties each one's last value to the C++ count, so a value added
 *   there and not here fails the build.
 * - Threading: an open bundle is immutable; any number of threads may query
 *   it at once. mpsb_bundle_free() must not race with other calls on the
 *   same bundle.
 */
#ifndef MPSB_MPSB_H_
#define MPSB_MPSB_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MPSB_VERSION_MAJOR 0
#define MPSB_VERSION_MINOR 1
#define MPSB_VERSION_PATCH 0
#define MPSB_VERSION_NUMBER \
  (MPSB_VERSION_MAJOR * 10000 + MPSB_VERSION_MINOR * 100 + MPSB_VERSION_PATCH)

/* Version of the linked library, as MPSB_VERSION_NUMBER and "0.1.0". */
unsigned mpsb_version_number(void);
const char* mpsb_version_string(void);

/* Values equal mpsb::Error in <mpsb/result.h>. */
typedef enum mpsb_status {
  MPSB_OK = 0,
  MPSB_ERROR_INVALID_ARGUMENT = 1,
  MPSB_ERROR_NOT_FOUND = 2,
  MPSB_ERROR_WRONG_LAYER_KIND = 3,
  MPSB_ERROR_TRUNCATED = 10,
  MPSB_ERROR_BAD_IDENTIFIER = 11,
  MPSB_ERROR_VERIFIER_FAILED = 12,
  MPSB_ERROR_TOO_LARGE = 13,
  MPSB_ERROR_UNSUPPORTED_VERSION = 14,
  MPSB_ERROR_BAD_SEGMENT = 15,
  MPSB_ERROR_TENSOR_OUT_OF_RANGE = 16,
  MPSB_ERROR_SIZE_MISMATCH = 17,
  MPSB_ERROR_MISALIGNED = 18,
  MPSB_ERROR_DUPLICATE_NAME = 19,
  MPSB_ERROR_UNSORTED_NAMES = 20,
  MPSB_ERROR_BAD_FIELD = 21,
  MPSB_ERROR_CHECKSUM_MISMATCH = 22,
  MPSB_ERROR_NON_ZERO_PADDING = 23,
  MPSB_ERROR_IO = 30,
  MPSB_ERROR_MAP_FAILED = 31
} mpsb_status;

/* A static string such as "truncated"; "unknown error" for other values. */
const char* mpsb_error_string(int status);

typedef enum mpsb_dtype {
  MPSB_DTYPE_FLOAT32 = 0,
  MPSB_DTYPE_FLOAT16 = 1,
  MPSB_DTYPE_BFLOAT16 = 2,
  MPSB_DTYPE_UINT8 = 3
} mpsb_dtype;

typedef enum mpsb_layer_kind {
  MPSB_LAYER_CONV2D = 0,
  MPSB_LAYER_CONV_TRANSPOSE2D = 1,
  MPSB_LAYER_LINEAR = 2,
  MPSB_LAYER_BATCH_NORM2D = 3,
  MPSB_LAYER_INSTANCE_NORM2D = 4,
  MPSB_LAYER_GROUP_NORM = 5, /* nn.GroupNorm: mpsb_layer_norm_descriptor */
  MPSB_LAYER_PRELU = 6,      /* nn.PReLU: mpsb_layer_neuron */
  MPSB_LAYER_PROBE = 7       /* probe files only: a layer's PyTorch input and output */
} mpsb_layer_kind;

typedef enum mpsb_tensor_role {
  MPSB_ROLE_WEIGHT = 0,
  MPSB_ROLE_BIAS = 1,
  MPSB_ROLE_RUNNING_MEAN = 2,
  MPSB_ROLE_RUNNING_VAR = 3,
  MPSB_ROLE_QUANT_RANGES = 4,
  MPSB_ROLE_QUANT_LOOKUP_TABLE = 5,
  MPSB_ROLE_ACTIVATION_WEIGHT = 6, /* per-output-channel slopes of a fused PReLU */
  MPSB_ROLE_PROBE_INPUT = 7,       /* a probe layer's input, float32 [N][H][W][C] */
  MPSB_ROLE_PROBE_OUTPUT = 8       /* a probe layer's output, float32 [N][H][W][C] */
} mpsb_tensor_role;

typedef enum mpsb_activation {
  MPSB_ACTIVATION_NONE = 0,
  MPSB_ACTIVATION_RELU = 1,
  MPSB_ACTIVATION_RELU6 = 2,
  MPSB_ACTIVATION_LEAKY_RELU = 3,
  MPSB_ACTIVATION_SIGMOID = 4,
  MPSB_ACTIVATION_TANH = 5,
  MPSB_ACTIVATION_ELU = 6,
  MPSB_ACTIVATION_HARDSIGMOID = 7,
  MPSB_ACTIVATION_SOFTPLUS = 8,
  MPSB_ACTIVATION_GELU = 9,
  MPSB_ACTIVATION_PRELU = 10
} mpsb_activation;

typedef struct mpsb_bundle mpsb_bundle;
typedef struct mpsb_layer mpsb_layer;

/* Open flags. */
#define MPSB_OPEN_VERIFY 1u /* also check every checksum (reads all weights) */

/* Maps and checks `path`. On success *out is the new bundle; on failure
 * *out is NULL and, when message is not NULL, message receives the reason
 * (naming the file and the place). */
mpsb_status mpsb_bundle_open(const char* path, unsigned flags, mpsb_bundle** out, char* message,
                             size_t message_size);
void mpsb_bundle_free(mpsb_bundle* bundle);

/* Deep check: all checksums, metadata digest, zero padding. */
mpsb_status mpsb_bundle_verify(const mpsb_bundle* bundle, char* message, size_t message_size);

/* Bundle name ("" when none) and the number of layers. */
const char* mpsb_bundle_name(const mpsb_bundle* bundle);
size_t mpsb_bundle_layer_count(const mpsb_bundle* bundle);

/* Modules of the PyTorch model that are not in the bundle (the exporter's
 * "skipped" list), in its order; 0 for a bundle of the whole model. */
size_t mpsb_bundle_skipped_module_count(const mpsb_bundle* bundle);
/* Entry i's qualified module name ("" for the model itself), class and
 * reason, valid while the bundle lives. Returns 1, or 0 (each set to "")
 * when i >= mpsb_bundle_skipped_module_count(). Any output may be NULL. */
int mpsb_bundle_skipped_module(const mpsb_bundle* bundle, size_t i, const char** name,
                               const char** type, const char** reason);

/* Layers sorted by name; NULL when i >= mpsb_bundle_layer_count(). */
const mpsb_layer* mpsb_bundle_layer(const mpsb_bundle* bundle, size_t i);
/* The layer at manifest position `index` (network order), or NULL. */
const mpsb_layer* mpsb_bundle_layer_in_network_order(const mpsb_bundle* bundle, size_t index);
/* Binary search by name; NULL when absent. */
const mpsb_layer* mpsb_bundle_find_layer(const mpsb_bundle* bundle, const char* name);

/* The whole data segment, page-aligned, for newBufferWithBytesNoCopy. */
const void* mpsb_bundle_segment(const mpsb_bundle* bundle, uint64_t* size);

/* Layer queries. `layer` must come from `bundle`. */
const char* mpsb_layer_name(const mpsb_bundle* bundle, const mpsb_layer* layer);
int mpsb_layer_kind_of(const mpsb_bundle* bundle, const mpsb_layer* layer); /* -1 on NULL */
uint32_t mpsb_layer_index(const mpsb_bundle* bundle, const mpsb_layer* layer);
/* The name of the manifest's batch_norm2d that mpsbc --fold-batchnorm
 * folded into this conv's weight and bias (docs/FORMAT.md), valid while the
 * bundle lives; NULL when none was (or on a NULL argument). The weight and
 * bias are then not PyTorch's: they hold W*s and b*s + (beta - mean*s). */
const char* mpsb_layer_folded_batchnorm(const mpsb_bundle* bundle, const mpsb_layer* layer);
/* A conv MPS refuses, stored as the equivalent dense one (mpsbc --legalize):
 * the manifest's groups, while mpsb_conv_descriptor.groups is 1. 0 for every
 * other layer and on a NULL argument. */
uint32_t mpsb_layer_legalized_groups(const mpsb_bundle* bundle, const mpsb_layer* layer);

/* What MPSCNNConvolutionDescriptor and the data source need. For linear
 * layers, the values of the equivalent MPSCNNFullyConnected. */
typedef struct mpsb_conv_descriptor {
  uint32_t kernel_width, kernel_height;
  uint32_t input_feature_channels, output_feature_channels; /* totals */
  uint32_t stride_x, stride_y;
  uint32_t dilation_x, dilation_y;
  uint32_t groups;
  uint32_t padding_x, padding_y;               /* PyTorch padding */
  uint32_t output_padding_x, output_padding_y; /* transposed convs */
  int transposed;                              /* 1 for conv_transpose2d */
  /* MPSCNNKernel offset (convolutions) or kernelOffsetX/Y (transposed
   * convolutions) that reproduces PyTorch's padding; see
   * mpsb::ConvolutionSource::mps_offset_x in <mpsb/sources.h>. */
  int64_t mps_offset_x, mps_offset_y;
  mpsb_activation activation;
  float activation_alpha;
  mpsb_dtype weight_dtype;
  uint32_t mps_data_type; /* MPSDataType value of the weights */
  const void* weights;    /* OHWI, in the mapping */
  uint64_t weights_size;  /* bytes */
  const float* bias;      /* output_feature_channels floats, or NULL */
  /* uint8 weights: 0 none, 1 linear (ranges), 2 lookup table. */
  uint32_t quantization;
  const float* ranges;       /* output_feature_channels × {min, max}, or NULL */
  const float* lookup_table; /* 256 floats, or NULL */
  /* MPSDataType MPS should compute with (-kernelWeightsDataType). */
  uint32_t kernel_weights_mps_data_type;
} mpsb_conv_descriptor;

mpsb_status mpsb_layer_conv_descriptor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                       mpsb_conv_descriptor* out);

/* Batch, instance and group norm parameters. Each pointer is NULL or
 * points to feature_channels floats in the mapping: gamma and beta are NULL
 * when PyTorch had no affine weight (gamma 1, beta 0), mean and variance
 * for every kind but batch_norm2d. */
typedef struct mpsb_norm_descriptor {
  uint32_t feature_channels;
  float epsilon;
  const float* gamma;
  const float* beta;
  const float* mean;
  const float* variance;
  /* group_norm: the groups the channels are split into (it divides
   * feature_channels); 0 for batch and instance norm. */
  uint32_t num_groups;
} mpsb_norm_descriptor;

/* MPSB_ERROR_WRONG_LAYER_KIND unless the layer is a batch_norm2d,
 * instance_norm2d or group_norm. */
mpsb_status mpsb_layer_norm_descriptor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                       mpsb_norm_descriptor* out);

/* The MPS neuron (MPSCNNNeuronType.h) that computes what PyTorch computes:
 * of a conv2d, conv_transpose2d or linear layer's fused activation
 * (MPSCNNConvolutionDescriptor.fusedNeuronDescriptor; type 0, none, when it
 * has none), of a batch_norm2d layer's activation (a neuron kernel run after
 * the batch norm, which fuses none), or of a prelu layer. f(x) per Apple's header with these a, b,
 * c; docs/APPLE.md lists the PyTorch form of each. */
typedef struct mpsb_neuron {
  mpsb_activation activation;
  int32_t mps_neuron_type; /* MPSCNNNeuronType value: ReLU 1, ..., GeLU 15 */
  float a, b, c;
  /* PReLU: `count` floats in the mapping, one slope per feature channel,
   * for +[MPSNNNeuronDescriptor cnnNeuronPReLUDescriptorWithData:noCopy:];
   * otherwise NULL and 0. */
  const float* data;
  uint64_t count;
} mpsb_neuron;

/* MPSB_ERROR_WRONG_LAYER_KIND for instance and group norm layers. */
mpsb_status mpsb_layer_neuron(const mpsb_bundle* bundle, const mpsb_layer* layer, mpsb_neuron* out);

#define MPSB_MAX_RANK 8
typedef struct mpsb_tensor_info {
  mpsb_tensor_role role;
  mpsb_dtype dtype;
  uint32_t layout; /* mpsb::TensorLayout value */
  uint32_t rank;
  uint64_t shape[MPSB_MAX_RANK];
  mpsb_dtype source_dtype;
  uint32_t source_layout; /* mpsb::TensorLayout value */
  uint32_t source_rank;
  uint64_t source_shape[MPSB_MAX_RANK];
  uint64_t offset; /* from the start of the data segment */
  uint64_t size;   /* bytes */
  uint64_t checksum;
  const void* data; /* in the mapping */
} mpsb_tensor_info;

size_t mpsb_layer_tensor_count(const mpsb_bundle* bundle, const mpsb_layer* layer);
mpsb_status mpsb_layer_tensor(const mpsb_bundle* bundle, const mpsb_layer* layer, size_t i,
                              mpsb_tensor_info* out);
/* MPSB_ERROR_NOT_FOUND when the layer has no tensor with that role. */
mpsb_status mpsb_layer_find_tensor(const mpsb_bundle* bundle, const mpsb_layer* layer,
                                   mpsb_tensor_role role, mpsb_tensor_info* out);

/* madvise(WILLNEED) / madvise(DONTNEED) over the layer's tensors. */
void mpsb_layer_load(const mpsb_bundle* bundle, const mpsb_layer* layer);
void mpsb_layer_purge(const mpsb_bundle* bundle, const mpsb_layer* layer);

/* Buffers within Metal's limits (mpsb::BufferPlan in <mpsb/buffers.h>,
 * docs/APPLE.md): the data segment as page-aligned windows of at most
 * max_buffer_length bytes (MTLDevice.maxBufferLength, rounded down to whole
 * pages), one -newBufferWithBytesNoCopy: each, with every tensor whole inside
 * one window. Few windows: greedy in segment order, which none beats.
 * page_size must be a power of two (vm_page_size / getpagesize()) that
 * divides the bundle's segment alignment. Errors: MPSB_ERROR_INVALID_ARGUMENT
 * (bad page size, a limit below one page), MPSB_ERROR_MISALIGNED (segment
 * alignment not a multiple of the page size), MPSB_ERROR_TOO_LARGE (a tensor
 * longer than the limit; the message names it and the sizes).
 * The plan refers to `bundle` and must be freed before it. */
typedef struct mpsb_buffer_plan mpsb_buffer_plan;

typedef struct mpsb_buffer_window {
  uint64_t offset;  /* from the start of the data segment; page multiple */
  uint64_t length;  /* page multiple, <= the limit; never past the file's end */
  const void* data; /* mpsb_bundle_segment() + offset, in the mapping */
} mpsb_buffer_window;

mpsb_status mpsb_buffer_plan_create(const mpsb_bundle* bundle, uint64_t max_buffer_length,
                                    uint64_t page_size, mpsb_buffer_plan** out, char* message,
                                    size_t message_size);
void mpsb_buffer_plan_free(mpsb_buffer_plan* plan);
/* 0 for NULL or a bundle without tensors. */
size_t mpsb_buffer_plan_window_count(const mpsb_buffer_plan* plan);
/* MPSB_ERROR_NOT_FOUND when i >= mpsb_buffer_plan_window_count(). */
mpsb_status mpsb_buffer_plan_window(const mpsb_buffer_plan* plan, size_t i,
                                    mpsb_buffer_window* out);
/* The window of the layer's tensor `tensor_index` (as mpsb_layer_tensor
 * numbers them) and the tensor's offset in it, for -setBuffer:offset:.
 * MPSB_ERROR_NOT_FOUND when the layer has no such tensor. */
mpsb_status mpsb_buffer_plan_tensor(const mpsb_buffer_plan* plan, const mpsb_layer* layer,
                                    size_t tensor_index, size_t* window, uint64_t* offset);

#ifdef __cplusplus
}
#endif

#endif /* MPSB_MPSB_H_ */
