// Opens the bundle mpsb_add_bundle compiled and checks one layer through the
// C++ API and the C API of the installed runtime.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsb/sources.h"

namespace {

int fail(const char* what) {
  std::fprintf(stderr, "FAIL: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // MODEL_PATH: where mpsb_add_bundle wrote it (MPSB_BUNDLE_FILE).
  const char* path = argc == 2 ? argv[1] : MODEL_PATH;

  mpsb::Result<mpsb::Bundle> bundle = mpsb::Bundle::open(path);
  if (!bundle) {
    std::fprintf(stderr, "%s\n", bundle.message().c_str());
    return fail("Bundle::open");
  }
  if (bundle->layer_count() != 6) return fail("tiny_cnn has 6 layers");
  std::optional<mpsb::Layer> layer = bundle->find("grouped");
  if (!layer) return fail("find(\"grouped\")");
  auto conv = mpsb::ConvolutionSource::from(*bundle, *layer);
  if (!conv) return fail("ConvolutionSource::from");
  if (conv->kernel_width() != 3 || conv->kernel_height() != 3 || conv->groups() != 4 ||
      conv->input_feature_channels() != 32 || conv->output_feature_channels() != 32)
    return fail("grouped: 3x3, 32->32, groups 4");
  if (reinterpret_cast<std::uintptr_t>(conv->weights()) % 256 != 0)
    return fail("weights 256-byte aligned");
  if (conv->bias_terms() == nullptr) return fail("grouped has a bias");

  char message[256];
  mpsb_bundle* c_bundle = nullptr;
  mpsb_status s = mpsb_bundle_open(path, 0, &c_bundle, message, sizeof message);
  if (s != MPSB_OK) {
    std::fprintf(stderr, "%s (%s)\n", message, mpsb_error_string(s));
    return fail("mpsb_bundle_open");
  }
  const mpsb_layer* c_layer = mpsb_bundle_find_layer(c_bundle, "grouped");
  mpsb_conv_descriptor d;
  if (c_layer == nullptr || mpsb_layer_conv_descriptor(c_bundle, c_layer, &d) != MPSB_OK)
    return fail("mpsb_layer_conv_descriptor");
  // Two mappings of the same file: the same bytes, in different places.
  if (d.groups != 4 || d.kernel_width != 3 || d.input_feature_channels != 32 ||
      std::memcmp(d.weights, conv->weights(), conv->weights_tensor().size()) != 0)
    return fail("C and C++ APIs agree on grouped");
  mpsb_bundle_free(c_bundle);

  std::printf("downstream: %s, %zu layers, grouped 3x3 32->32 g4 OK (mpsb %s)\n",
              std::string(bundle->name()).c_str(), bundle->layer_count(), mpsb_version_string());
  return 0;
}
