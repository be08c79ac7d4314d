/* The C API of the installed runtime from a plain C program (also compiled
 * by the package.pkg_config test with `pkg-config --cflags --libs mpsb`). */
#include <stdio.h>

#include "mpsb/mpsb.h"

int main(int argc, char** argv) {
  char message[256];
  mpsb_bundle* bundle = NULL;
  mpsb_status s;
  const mpsb_layer* layer;
  mpsb_conv_descriptor d;
  if (argc != 2) {
    fprintf(stderr, "usage: %s BUNDLE\n", argv[0]);
    return 2;
  }
  s = mpsb_bundle_open(argv[1], 0, &bundle, message, sizeof message);
  if (s != MPSB_OK) {
    fprintf(stderr, "FAIL: %s (%s)\n", message, mpsb_error_string(s));
    return 1;
  }
  layer = mpsb_bundle_find_layer(bundle, "head");
  if (layer == NULL || mpsb_layer_conv_descriptor(bundle, layer, &d) != MPSB_OK ||
      d.kernel_height != 3 || d.kernel_width != 5 || d.output_feature_channels != 8 ||
      d.bias == NULL) {
    fprintf(stderr, "FAIL: head: 3x5, 32->8, with bias\n");
    mpsb_bundle_free(bundle);
    return 1;
  }
  layer = mpsb_bundle_find_layer(bundle, "pw");
  if (layer == NULL || mpsb_layer_conv_descriptor(bundle, layer, &d) != MPSB_OK || d.bias != NULL) {
    fprintf(stderr, "FAIL: pw: no bias\n");
    mpsb_bundle_free(bundle);
    return 1;
  }
  printf("C API: %s, %zu layers, head 3x5, pw without bias OK\n", mpsb_bundle_name(bundle),
         mpsb_bundle_layer_count(bundle));
  mpsb_bundle_free(bundle);
  return 0;
}
