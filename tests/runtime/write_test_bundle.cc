// Writes small valid bundles for the plain-C API test:
//   write_test_bundle OUT          conv1, conv0, bn1
//   write_test_bundle OUT kinds    group norms, a prelu layer and convs with
//                                  each fused activation that has parameters
//   write_test_bundle OUT f16_gamma  a batch norm whose gamma is float16 [C]
//                                  (docs/SECURITY.md: must be refused)
#include <cstdio>
#include <cstring>

#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace {

using mpsb::Activation;
using mpsb::testing::conv_layer;
using mpsb::testing::LayerSpec;

// Layers, in this network order, that c_api_test.c reads by name.
mpsb::testing::BundleSpec kinds_spec() {
  mpsb::testing::BundleSpec spec;
  spec.name = "c_api_kinds";
  spec.layers.push_back(mpsb::testing::group_norm_layer("gn", 8, 4));
  spec.layers.push_back(mpsb::testing::group_norm_layer("gn_plain", 8, 2, false));
  spec.layers.push_back(mpsb::testing::prelu_layer("prelu", 8, 1));
  LayerSpec fused = conv_layer("conv_prelu", 4, 8, 1);
  fused.activation = Activation::kPReLU;
  mpsb::testing::TensorSpec slopes;
  slopes.role = mpsb::TensorRole::kActivationWeight;
  slopes.shape = {8};
  fused.tensors.push_back(slopes);
  spec.layers.push_back(fused);
  LayerSpec elu = conv_layer("conv_elu", 4, 4, 1);
  elu.activation = Activation::kELU;
  elu.activation_alpha = 0.5f;
  spec.layers.push_back(elu);
  LayerSpec softplus = conv_layer("conv_softplus", 4, 4, 1);
  softplus.activation = Activation::kSoftplus;
  softplus.activation_alpha = 2.0f;  // beta
  softplus.activation_beta = 20.0f;  // threshold
  spec.layers.push_back(softplus);
  LayerSpec hardsigmoid = conv_layer("conv_hardsigmoid", 4, 4, 1);
  hardsigmoid.activation = Activation::kHardSigmoid;
  spec.layers.push_back(hardsigmoid);
  LayerSpec gelu = conv_layer("conv_gelu", 4, 4, 1);
  gelu.activation = Activation::kGELU;
  spec.layers.push_back(gelu);
  // conv -> BN -> LeakyReLU, not folded: the neuron to run after the norm.
  LayerSpec bn_leaky = mpsb::testing::batch_norm_layer("bn_leaky", 8);
  bn_leaky.activation = Activation::kLeakyReLU;
  bn_leaky.activation_alpha = 0.25f;
  spec.layers.push_back(bn_leaky);
  // What --fold-batchnorm and --legalize record (docs/FORMAT.md).
  LayerSpec folded = conv_layer("conv_folded", 4, 4, 1);
  folded.folded_batchnorm = "bn_gone";
  spec.layers.push_back(folded);
  spec.layers.push_back(mpsb::testing::legalized_conv_layer("conv_legal", 8, 8, 3, 4));
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  const bool kinds = argc == 3 && std::strcmp(argv[2], "kinds") == 0;
  const bool f16_gamma = argc == 3 && std::strcmp(argv[2], "f16_gamma") == 0;
  if (argc != 2 && !kinds && !f16_gamma) {
    std::fprintf(stderr, "usage: write_test_bundle OUT [kinds|f16_gamma]\n");
    return 2;
  }
  mpsb::testing::BundleSpec spec;
  if (kinds) {
    spec = kinds_spec();
  } else if (f16_gamma) {
    spec.layers.push_back(mpsb::testing::batch_norm_layer("bn", 8));
    spec.layers[0].tensors[0].dtype = mpsb::DType::kFloat16;
  } else {
    spec.name = "c_api";
    spec.layers.push_back(mpsb::testing::conv_layer("conv1", 4, 8, 3));
    spec.layers.push_back(mpsb::testing::conv_layer("conv0", 8, 8, 1, 2, false));
    spec.layers.push_back(mpsb::testing::batch_norm_layer("bn1", 8));
  }
  const auto bytes = mpsb::testing::build_bundle(spec);
  mpsb::testing::write_file(argv[1], bytes.data(), bytes.size());
  return 0;
}
