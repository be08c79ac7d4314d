// Writes a small valid bundle for the plain-C API test: write_test_bundle OUT
#include <cstdio>

#include "runtime/test_bundle.h"
#include "util/test_util.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: write_test_bundle OUT\n");
    return 2;
  }
  mpsb::testing::BundleSpec spec;
  spec.name = "c_api";
  spec.layers.push_back(mpsb::testing::conv_layer("conv1", 4, 8, 3));
  spec.layers.push_back(mpsb::testing::conv_layer("conv0", 8, 8, 1, 2, false));
  spec.layers.push_back(mpsb::testing::batch_norm_layer("bn1", 8));
  const auto bytes = mpsb::testing::build_bundle(spec);
  mpsb::testing::write_file(argv[1], bytes.data(), bytes.size());
  return 0;
}
