/* Plain-C test of the C API (compiled as C11, no C++):
 *   c_api_test BUNDLE [KINDS_BUNDLE [F16_GAMMA_BUNDLE]]
 * BUNDLE comes from `write_test_bundle OUT`: layers conv1 (4->8, 3x3, bias),
 * conv0 (8->8, 1x1, groups 2, no bias), bn1 (8 features), in that order.
 * KINDS_BUNDLE from `write_test_bundle OUT kinds`: gn (8 channels, 4 groups,
 * affine), gn_plain (8 channels, 2 groups), prelu (8 channels, one
 * parameter), conv_prelu (fused PReLU, 8 slopes), conv_elu (alpha 0.5),
 * conv_softplus (beta 2, threshold 20), conv_hardsigmoid, conv_gelu.
 * F16_GAMMA_BUNDLE from `write_test_bundle OUT f16_gamma`: a batch norm
 * whose gamma is float16 [C], which open must refuse (a norm descriptor
 * would promise C floats where 2C bytes exist).
 * The expected MPS neurons are written out here from Apple's
 * MPSCNNNeuronType.h and PyTorch's definitions, not computed by the
 * library. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mpsb/mpsb.h"

static int passed = 0, failed = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      ++passed;                                                                \
    } else {                                                                   \
      ++failed;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
    }                                                                          \
  } while (0)

/* The tensor of `role` in `layer`, or NULL. */
static const void* tensor_data(const mpsb_bundle* b, const mpsb_layer* layer,
                               mpsb_tensor_role role) {
  mpsb_tensor_info info;
  return mpsb_layer_find_tensor(b, layer, role, &info) == MPSB_OK ? info.data : NULL;
}

static void check_neuron(const mpsb_bundle* b, const char* name, mpsb_activation activation,
                         int32_t type, float a, float bb) {
  mpsb_neuron n;
  const mpsb_layer* l = mpsb_bundle_find_layer(b, name);
  CHECK(l != NULL);
  CHECK(mpsb_layer_neuron(b, l, &n) == MPSB_OK);
  CHECK(n.activation == activation);
  CHECK(n.mps_neuron_type == type);
  CHECK(fabsf(n.a - a) <= 1e-7f && fabsf(n.b - bb) <= 1e-7f);
  CHECK(n.data == NULL && n.count == 0);
  if (n.mps_neuron_type != type) fprintf(stderr, "  (layer %s)\n", name);
}

/* Buffer windows over BUNDLE (segment alignment 4096): every tensor's
 * window and offset give back its own bytes; the refusals keep their codes
 * and name the tensor. */
static void check_buffer_plan(const mpsb_bundle* b) {
  char message[512];
  mpsb_buffer_plan* plan = NULL;
  mpsb_buffer_window w;
  size_t i, j, window = 0;
  uint64_t offset = 0;
  CHECK(mpsb_buffer_plan_create(b, 1u << 20, 4096, &plan, message, sizeof message) == MPSB_OK);
  CHECK(plan != NULL && message[0] == '\0');
  CHECK(mpsb_buffer_plan_window_count(plan) == 1);
  CHECK(mpsb_buffer_plan_window(plan, 0, &w) == MPSB_OK);
  CHECK(w.offset == 0 && w.length % 4096 == 0 && w.data == mpsb_bundle_segment(b, NULL));
  CHECK(mpsb_buffer_plan_window(plan, 1, &w) == MPSB_ERROR_NOT_FOUND);
  mpsb_buffer_plan_free(plan);

  /* 256-byte pages and a 1280-byte limit (conv1's weight and no more): several
   * windows. */
  CHECK(mpsb_buffer_plan_create(b, 1280, 256, &plan, message, sizeof message) == MPSB_OK);
  CHECK(mpsb_buffer_plan_window_count(plan) > 1);
  for (i = 0; i < mpsb_bundle_layer_count(b); ++i) {
    const mpsb_layer* l = mpsb_bundle_layer(b, i);
    for (j = 0; j < mpsb_layer_tensor_count(b, l); ++j) {
      mpsb_tensor_info info;
      CHECK(mpsb_layer_tensor(b, l, j, &info) == MPSB_OK);
      CHECK(mpsb_buffer_plan_tensor(plan, l, j, &window, &offset) == MPSB_OK);
      CHECK(mpsb_buffer_plan_window(plan, window, &w) == MPSB_OK);
      CHECK(w.length <= 1280 && w.length % 256 == 0 && w.offset % 256 == 0);
      CHECK(offset + info.size <= w.length);
      CHECK((const char*)w.data + offset == (const char*)info.data);
    }
    CHECK(mpsb_buffer_plan_tensor(plan, l, j, &window, &offset) == MPSB_ERROR_NOT_FOUND);
  }
  CHECK(mpsb_buffer_plan_tensor(plan, NULL, 0, &window, &offset) == MPSB_ERROR_INVALID_ARGUMENT);
  mpsb_buffer_plan_free(plan);
  mpsb_buffer_plan_free(NULL);

  /* conv1's weight is 1152 bytes: more than a 1 KiB limit. */
  CHECK(mpsb_buffer_plan_create(b, 1024, 256, &plan, message, sizeof message) ==
        MPSB_ERROR_TOO_LARGE);
  CHECK(plan == NULL);
  CHECK(strstr(message, "layer 'conv1' tensor 0 (weight, 1152 bytes") != NULL);
  CHECK(mpsb_buffer_plan_create(b, 1u << 20, 16384, &plan, message, sizeof message) ==
        MPSB_ERROR_MISALIGNED);
  CHECK(strstr(message, "segment alignment 4096 is not a multiple of the page size 16384") != NULL);
  CHECK(mpsb_buffer_plan_create(b, 1u << 20, 3000, &plan, message, sizeof message) ==
        MPSB_ERROR_INVALID_ARGUMENT);
  CHECK(strcmp(message, "page size 3000 is not a power of two") == 0);
  CHECK(mpsb_buffer_plan_create(NULL, 1u << 20, 4096, &plan, message, sizeof message) ==
        MPSB_ERROR_INVALID_ARGUMENT);
  CHECK(mpsb_buffer_plan_window_count(NULL) == 0);
}

static void check_kinds(const char* path) {
  char message[512];
  mpsb_bundle* b = NULL;
  mpsb_norm_descriptor norm;
  mpsb_neuron n;
  mpsb_conv_descriptor desc;
  const mpsb_layer *gn, *gn_plain, *prelu, *conv_prelu, *folded, *legal;
  const mpsb_status st = mpsb_bundle_open(path, MPSB_OPEN_VERIFY, &b, message, sizeof message);
  CHECK(st == MPSB_OK);
  if (st != MPSB_OK) {
    fprintf(stderr, "open failed: %s\n", message);
    return;
  }
  gn = mpsb_bundle_find_layer(b, "gn");
  gn_plain = mpsb_bundle_find_layer(b, "gn_plain");
  prelu = mpsb_bundle_find_layer(b, "prelu");
  conv_prelu = mpsb_bundle_find_layer(b, "conv_prelu");
  CHECK(gn && gn_plain && prelu && conv_prelu);
  CHECK(mpsb_layer_kind_of(b, gn) == MPSB_LAYER_GROUP_NORM);
  CHECK(mpsb_layer_kind_of(b, prelu) == MPSB_LAYER_PRELU);

  /* Group norm: the descriptor's num_groups, gamma and beta in the mapping,
   * no running statistics; NULL gamma and beta without affine. */
  CHECK(mpsb_layer_norm_descriptor(b, gn, &norm) == MPSB_OK);
  CHECK(norm.feature_channels == 8 && norm.num_groups == 4);
  CHECK(norm.epsilon == 1e-5f);
  CHECK(norm.gamma != NULL && (const void*)norm.gamma == tensor_data(b, gn, MPSB_ROLE_WEIGHT));
  CHECK(norm.beta != NULL && (const void*)norm.beta == tensor_data(b, gn, MPSB_ROLE_BIAS));
  CHECK(norm.mean == NULL && norm.variance == NULL);
  CHECK(mpsb_layer_norm_descriptor(b, gn_plain, &norm) == MPSB_OK);
  CHECK(norm.feature_channels == 8 && norm.num_groups == 2);
  CHECK(norm.gamma == NULL && norm.beta == NULL);
  CHECK(mpsb_layer_norm_descriptor(b, prelu, &norm) == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK(mpsb_layer_conv_descriptor(b, gn, &desc) == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK(mpsb_layer_neuron(b, gn, &n) == MPSB_ERROR_WRONG_LAYER_KIND);
  CHECK(mpsb_layer_neuron(b, NULL, &n) == MPSB_ERROR_INVALID_ARGUMENT);
  CHECK(mpsb_layer_neuron(b, gn, NULL) == MPSB_ERROR_INVALID_ARGUMENT);

  /* A prelu layer: MPSCNNNeuronTypePReLU (10), its 8 slopes in the mapping
   * (one stored per channel, broadcast by the compiler from 1). */
  CHECK(mpsb_layer_neuron(b, prelu, &n) == MPSB_OK);
  CHECK(n.activation == MPSB_ACTIVATION_PRELU && n.mps_neuron_type == 10);
  CHECK(n.count == 8 && (const void*)n.data == tensor_data(b, prelu, MPSB_ROLE_WEIGHT));
  CHECK(mpsb_layer_tensor_count(b, prelu) == 1);

  /* A fused PReLU: the slopes are the conv's activation_weight tensor. */
  CHECK(mpsb_layer_neuron(b, conv_prelu, &n) == MPSB_OK);
  CHECK(n.activation == MPSB_ACTIVATION_PRELU && n.mps_neuron_type == 10);
  CHECK(n.count == 8 &&
        (const void*)n.data == tensor_data(b, conv_prelu, MPSB_ROLE_ACTIVATION_WEIGHT));
  CHECK(mpsb_layer_conv_descriptor(b, conv_prelu, &desc) == MPSB_OK);
  CHECK(desc.activation == MPSB_ACTIVATION_PRELU);

  /* MPSCNNNeuronType.h: ELU 9, f = x >= 0 ? x : a * (exp(x) - 1), a =
   * PyTorch's alpha; SoftPlus 7, f = a * log(1 + exp(b * x)), PyTorch's
   * (1 / beta) * log(1 + exp(beta * x)) so a = 1 / beta, b = beta;
   * HardSigmoid 4, f = clamp(a * x + b, 0, 1), PyTorch's x / 6 + 1 / 2;
   * GeLU 15, no parameters. */
  check_neuron(b, "conv_elu", MPSB_ACTIVATION_ELU, 9, 0.5f, 0.0f);
  check_neuron(b, "conv_softplus", MPSB_ACTIVATION_SOFTPLUS, 7, 0.5f, 2.0f);
  check_neuron(b, "conv_hardsigmoid", MPSB_ACTIVATION_HARDSIGMOID, 4, 1.0f / 6.0f, 0.5f);
  check_neuron(b, "conv_gelu", MPSB_ACTIVATION_GELU, 15, 0.0f, 0.0f);
  /* A batch norm's activation, run after MPSCNNBatchNormalization: LeakyReLU
   * is ReLU 1 with a = negative_slope. */
  check_neuron(b, "bn_leaky", MPSB_ACTIVATION_LEAKY_RELU, 1, 0.25f, 0.0f);

  /* What --fold-batchnorm and --legalize recorded: the folded batch norm's
   * name (NULL when none), the manifest's groups of a conv stored dense. */
  folded = mpsb_bundle_find_layer(b, "conv_folded");
  legal = mpsb_bundle_find_layer(b, "conv_legal");
  CHECK(folded && legal);
  CHECK(mpsb_layer_folded_batchnorm(b, folded) != NULL &&
        strcmp(mpsb_layer_folded_batchnorm(b, folded), "bn_gone") == 0);
  CHECK(mpsb_layer_folded_batchnorm(b, legal) == NULL);
  CHECK(mpsb_layer_folded_batchnorm(b, gn) == NULL);
  CHECK(mpsb_layer_folded_batchnorm(NULL, folded) == NULL);
  CHECK(mpsb_layer_legalized_groups(b, legal) == 4);
  CHECK(mpsb_layer_conv_descriptor(b, legal, &desc) == MPSB_OK && desc.groups == 1);
  CHECK(mpsb_layer_legalized_groups(b, folded) == 0);
  CHECK(mpsb_layer_legalized_groups(b, gn) == 0);
  CHECK(mpsb_layer_legalized_groups(b, NULL) == 0);
  mpsb_bundle_free(b);
}

int main(int argc, char** argv) {
  char message[512];
  mpsb_bundle* b = (mpsb_bundle*)1;
  mpsb_status st;
  const mpsb_layer* conv1;
  const mpsb_layer* conv0;
  const mpsb_layer* bn;
  mpsb_conv_descriptor desc;
  mpsb_norm_descriptor norm;
  mpsb_tensor_info info;
  uint64_t segment_size = 0;
  const void* segment;

  if (argc < 2 || argc > 4) {
    fprintf(stderr, "usage: c_api_test BUNDLE [KINDS_BUNDLE [F16_GAMMA_BUNDLE]]\n");
    return 2;
  }

  CHECK(mpsb_version_number() == MPSB_VERSION_NUMBER);
  CHECK(strcmp(mpsb_error_string(MPSB_ERROR_TRUNCATED), "truncated") == 0);
  CHECK(strcmp(mpsb_error_string(12345), "unknown error") == 0);

  /* Failure: *out becomes NULL, the message names the file. */
  st = mpsb_bundle_open("/nonexistent.mpsb", 0, &b, message, sizeof message);
  CHECK(st == MPSB_ERROR_IO);
  CHECK(b == NULL);
  CHECK(strstr(message, "/nonexistent.mpsb") != NULL);
  CHECK(mpsb_bundle_open(NULL, 0, &b, NULL, 0) == MPSB_ERROR_INVALID_ARGUMENT);

  /* NULL handles never crash. */
  mpsb_bundle_free(NULL);
  CHECK(mpsb_bundle_layer_count(NULL) == 0);
  CHECK(mpsb_bundle_find_layer(NULL, "x") == NULL);
  CHECK(mpsb_layer_name(NULL, NULL) == NULL);
  CHECK(mpsb_layer_conv_descriptor(NULL, NULL, &desc) == MPSB_ERROR_INVALID_ARGUMENT);

  st = mpsb_bundle_open(argv[1], MPSB_OPEN_VERIFY, &b, message, sizeof message);
  CHECK(st == MPSB_OK);
  if (st != MPSB_OK) {
    fprintf(stderr, "open failed: %s\n", message);
    printf("%d passed, %d failed\n", passed, failed + 1);
    return 1;
  }
  CHECK(strcmp(mpsb_bundle_name(b), "c_api") == 0);
  CHECK(mpsb_bundle_layer_count(b) == 3);
  CHECK(mpsb_bundle_verify(b, message, sizeof message) == MPSB_OK);

  /* Sorted order and network order. */
  CHECK(strcmp(mpsb_layer_name(b, mpsb_bundle_layer(b, 0)), "bn1") == 0);
  CHECK(strcmp(mpsb_layer_name(b, mpsb_bundle_layer(b, 1)), "conv0") == 0);
  CHECK(strcmp(mpsb_layer_name(b, mpsb_bundle_layer_in_network_order(b, 0)), "conv1") == 0);
  CHECK(mpsb_bundle_layer(b, 3) == NULL);
  CHECK(mpsb_bundle_layer_in_network_order(b, 3) == NULL);

  conv1 = mpsb_bundle_find_layer(b, "conv1");
  conv0 = mpsb_bundle_find_layer(b, "conv0");
  bn = mpsb_bundle_find_layer(b, "bn1");
  CHECK(conv1 != NULL && conv0 != NULL && bn != NULL);
  CHECK(mpsb_bundle_find_layer(b, "conv") == NULL);
  CHECK(mpsb_layer_kind_of(b, conv1) == MPSB_LAYER_CONV2D);
  CHECK(mpsb_layer_index(b, conv1) == 0);
  CHECK(mpsb_layer_index(b, bn) == 2);

  /* A pointer that is not a layer handle of this bundle is refused. */
  CHECK(mpsb_layer_name(b, (const mpsb_layer*)((const char*)conv1 + 1)) == NULL);
  CHECK(mpsb_layer_name(b, (const mpsb_layer*)&desc) == NULL);

  CHECK(mpsb_layer_conv_descriptor(b, conv1, &desc) == MPSB_OK);
  CHECK(desc.kernel_width == 3 && desc.kernel_height == 3);
  CHECK(desc.input_feature_channels == 4 && desc.output_feature_channels == 8);
  CHECK(desc.groups == 1 && desc.stride_x == 1 && desc.dilation_y == 1);
  CHECK(desc.padding_x == 1);
  CHECK(desc.transposed == 0);
  CHECK(desc.weight_dtype == MPSB_DTYPE_FLOAT32);
  CHECK(desc.mps_data_type == 0x10000020u);
  CHECK(desc.weights_size == 8u * 3 * 3 * 4 * 4);
  CHECK(desc.bias != NULL);
  CHECK(desc.quantization == 0 && desc.ranges == NULL && desc.lookup_table == NULL);
  CHECK(desc.kernel_weights_mps_data_type == 0x10000020u);
  CHECK(desc.mps_offset_x == 0 && desc.mps_offset_y == 0); /* 3x3, padding 1 */

  CHECK(mpsb_layer_conv_descriptor(b, conv0, &desc) == MPSB_OK);
  CHECK(desc.groups == 2 && desc.bias == NULL);
  CHECK(mpsb_layer_conv_descriptor(b, bn, &desc) == MPSB_ERROR_WRONG_LAYER_KIND);

  CHECK(mpsb_layer_norm_descriptor(b, bn, &norm) == MPSB_OK);
  CHECK(norm.feature_channels == 8);
  CHECK(norm.epsilon > 0.0f && norm.epsilon < 1e-4f);
  CHECK(norm.gamma && norm.beta && norm.mean && norm.variance);
  CHECK(mpsb_layer_norm_descriptor(b, conv1, &norm) == MPSB_ERROR_WRONG_LAYER_KIND);

  CHECK(mpsb_layer_tensor_count(b, conv1) == 2);
  CHECK(mpsb_layer_find_tensor(b, conv1, MPSB_ROLE_WEIGHT, &info) == MPSB_OK);
  CHECK(info.rank == 4 && info.shape[0] == 8 && info.shape[1] == 3 && info.shape[3] == 4);
  CHECK(info.source_rank == 4 && info.source_shape[1] == 4 && info.source_shape[3] == 3);
  CHECK(info.size == 8u * 3 * 3 * 4 * 4);
  CHECK(info.offset % 256 == 0);
  CHECK(mpsb_layer_find_tensor(b, conv0, MPSB_ROLE_BIAS, &info) == MPSB_ERROR_NOT_FOUND);
  CHECK(mpsb_layer_tensor(b, conv1, 2, &info) == MPSB_ERROR_NOT_FOUND);

  segment = mpsb_bundle_segment(b, &segment_size);
  CHECK(segment != NULL && segment_size > 0 && segment_size % 4096 == 0);
  CHECK(mpsb_layer_find_tensor(b, conv1, MPSB_ROLE_WEIGHT, &info) == MPSB_OK);
  CHECK((const char*)info.data == (const char*)segment + info.offset);

  /* A conv without activation has neuron type none; a batch norm none. */
  check_neuron(b, "conv1", MPSB_ACTIVATION_NONE, 0, 0.0f, 0.0f);
  CHECK(mpsb_layer_norm_descriptor(b, bn, &norm) == MPSB_OK && norm.num_groups == 0);

  mpsb_layer_load(b, conv1);
  mpsb_layer_purge(b, conv1);
  check_buffer_plan(b);
  mpsb_bundle_free(b);

  if (argc >= 3) check_kinds(argv[2]);
  if (argc >= 4) {
    st = mpsb_bundle_open(argv[3], 0, &b, message, sizeof message);
    CHECK(st == MPSB_ERROR_SIZE_MISMATCH);
    CHECK(b == NULL);
    CHECK(strstr(message, "layer 'bn' tensor 0: weight must be float32") != NULL);
  }

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
