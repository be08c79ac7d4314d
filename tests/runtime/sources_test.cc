// Data sources of the newer kinds (GroupNormSource, neuron()) on test
// bundles, and every data source after its Bundle has been moved: sources
// hold the mapping, not the Bundle object (mpsb/sources.h), so moving the
// Bundle (construct or assign) leaves them valid. Meant to run under ASan as
// well (build with -DMPSB_SANITIZE=address,undefined), where a source that
// still pointed at the moved-from Bundle would fail.

#include "mpsb/sources.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mpsb/bundle.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

using testing::BundleSpec;
using testing::LayerSpec;
using testing::TensorSpec;

std::vector<uint8_t> float_bytes(const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(float));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

LayerSpec with_activation(LayerSpec l, Activation a, float alpha = 0, float beta = 0) {
  l.activation = a;
  l.activation_alpha = alpha;
  l.activation_beta = beta;
  return l;
}

const std::vector<float> kSlopes = {0.25f, -0.5f, 1.0f, 0.0f, 2.0f, 0.125f, -1.0f, 3.0f};
const std::vector<float> kGamma = {1, 2, 3, 4, 5, 6, 7, 8};
const std::vector<float> kBeta = {-1, -2, -3, -4, -5, -6, -7, -8};

BundleSpec kinds_spec() {
  using testing::conv_layer;
  BundleSpec s;
  LayerSpec gn = testing::group_norm_layer("gn", 8, 4);
  gn.norm.eps = 1e-3f;
  gn.tensors[0].bytes = float_bytes(kGamma);
  gn.tensors[1].bytes = float_bytes(kBeta);
  s.layers.push_back(gn);
  s.layers.push_back(testing::group_norm_layer("gn_plain", 6, 3, false));
  LayerSpec prelu1 = testing::prelu_layer("prelu1", 8, 1);
  prelu1.tensors[0].bytes = float_bytes(std::vector<float>(8, 0.25f));
  s.layers.push_back(prelu1);
  LayerSpec prelu8 = testing::prelu_layer("prelu8", 8, 8);
  prelu8.tensors[0].bytes = float_bytes(kSlopes);
  s.layers.push_back(prelu8);
  LayerSpec fused = with_activation(conv_layer("conv_prelu", 4, 8, 1), Activation::kPReLU);
  TensorSpec slopes;
  slopes.role = TensorRole::kActivationWeight;
  slopes.shape = {8};
  slopes.bytes = float_bytes(kSlopes);
  fused.tensors.push_back(slopes);
  s.layers.push_back(fused);
  s.layers.push_back(conv_layer("conv_none", 4, 4, 1));
  s.layers.push_back(with_activation(conv_layer("conv_relu", 4, 4, 1), Activation::kReLU));
  s.layers.push_back(with_activation(conv_layer("conv_relu6", 4, 4, 1), Activation::kReLU6));
  s.layers.push_back(
      with_activation(conv_layer("conv_leaky", 4, 4, 1), Activation::kLeakyReLU, 0.2f));
  s.layers.push_back(with_activation(conv_layer("conv_sigmoid", 4, 4, 1), Activation::kSigmoid));
  s.layers.push_back(with_activation(conv_layer("conv_tanh", 4, 4, 1), Activation::kTanh));
  s.layers.push_back(with_activation(conv_layer("conv_elu", 4, 4, 1), Activation::kELU, 0.75f));
  s.layers.push_back(
      with_activation(conv_layer("conv_hardsigmoid", 4, 4, 1), Activation::kHardSigmoid));
  s.layers.push_back(
      with_activation(conv_layer("conv_softplus", 4, 4, 1), Activation::kSoftplus, 4.0f, 20.0f));
  s.layers.push_back(with_activation(conv_layer("conv_gelu", 4, 4, 1), Activation::kGELU));
  s.layers.push_back(
      with_activation(testing::linear_layer("fc_elu", 3, 8), Activation::kELU, 1.0f));
  s.layers.push_back(testing::batch_norm_layer("bn", 8));
  // conv -> BN -> activation, not folded: the neuron runs after the norm.
  s.layers.push_back(with_activation(testing::batch_norm_layer("bn_relu", 8), Activation::kReLU));
  s.layers.push_back(
      with_activation(testing::batch_norm_layer("bn_leaky", 8), Activation::kLeakyReLU, 0.1f));
  LayerSpec bn_prelu =
      with_activation(testing::batch_norm_layer("bn_prelu", 8), Activation::kPReLU);
  bn_prelu.tensors.push_back(slopes);
  s.layers.push_back(bn_prelu);
  s.layers.push_back(testing::instance_norm_layer("in", 8));
  return s;
}

Result<Bundle> open_bytes(const std::vector<uint8_t>& b) {
  return Bundle::from_memory(b.data(), b.size());
}

std::vector<float> floats_at(const float* p, size_t n) {
  return p ? std::vector<float>(p, p + n) : std::vector<float>{};
}

TEST(GroupNormSource, ServesTheLayersGroupsEpsAndAffineVectors) {
  const auto bytes = testing::build_bundle(kinds_spec());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  auto gn = GroupNormSource::from(*b, *b->find("gn"));
  ASSERT_TRUE(gn.ok()) << gn.message();
  EXPECT_EQ(gn->label(), "gn");
  EXPECT_EQ(gn->number_of_feature_channels(), 8u);
  EXPECT_EQ(gn->number_of_groups(), 4u);
  EXPECT_EQ(gn->epsilon(), 1e-3f);
  EXPECT_EQ(floats_at(gn->gamma(), 8), kGamma);
  EXPECT_EQ(floats_at(gn->beta(), 8), kBeta);
  EXPECT_EQ(static_cast<const void*>(gn->gamma()),
            b->find("gn")->find(TensorRole::kWeight)->data());
  EXPECT_TRUE(gn->load());
  gn->purge();

  auto plain = GroupNormSource::from(*b, *b->find("gn_plain"));
  ASSERT_TRUE(plain.ok()) << plain.message();
  EXPECT_EQ(plain->number_of_feature_channels(), 6u);
  EXPECT_EQ(plain->number_of_groups(), 3u);
  EXPECT_EQ(plain->gamma(), nullptr);
  EXPECT_EQ(plain->beta(), nullptr);
}

TEST(GroupNormSource, RefusesOtherKinds) {
  const auto bytes = testing::build_bundle(kinds_spec());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  for (const char* name : {"in", "bn", "prelu1", "conv_none"}) {
    auto r = GroupNormSource::from(*b, *b->find(name));
    ASSERT_FALSE(r.ok()) << name;
    EXPECT_EQ(r.error(), Error::kWrongLayerKind);
    EXPECT_NE(r.message().find("not a group_norm"), std::string::npos) << r.message();
  }
  auto in = InstanceNormSource::from(*b, *b->find("gn"));
  EXPECT_EQ(in.error(), Error::kWrongLayerKind);
}

// What MPS must be given for each PyTorch activation, written out from
// MPSCNNNeuronType.h (f(x) with a, b) and PyTorch's definitions, not taken
// from the library: ReLU 1 (a 0); ReLUN 11 (a 0, b 6) for ReLU6; ReLU 1 with
// a = negative_slope for LeakyReLU; Sigmoid 3; TanH 5 (a 1, b 1); ELU 9
// (a = alpha); HardSigmoid 4 (a 1/6, b 1/2: PyTorch's x/6 + 1/2 clamped to
// [0, 1]); SoftPlus 7 (a = 1/beta, b = beta: PyTorch's
// 1/beta·log(1 + exp(beta·x))); GeLU 15; PReLU 10 with one slope per channel.
TEST(Neuron, GivesMPSTypeAndParametersForEveryActivation) {
  struct Want {
    const char* layer;
    Activation activation;
    int32_t type;
    float a, b;
  };
  const Want wants[] = {
      {"conv_none", Activation::kNone, 0, 0, 0},
      {"conv_relu", Activation::kReLU, 1, 0, 0},
      {"conv_relu6", Activation::kReLU6, 11, 0, 6},
      {"conv_leaky", Activation::kLeakyReLU, 1, 0.2f, 0},
      {"conv_sigmoid", Activation::kSigmoid, 3, 0, 0},
      {"conv_tanh", Activation::kTanh, 5, 1, 1},
      {"conv_elu", Activation::kELU, 9, 0.75f, 0},
      {"conv_hardsigmoid", Activation::kHardSigmoid, 4, 1.0f / 6.0f, 0.5f},
      {"conv_softplus", Activation::kSoftplus, 7, 0.25f, 4.0f},
      {"conv_gelu", Activation::kGELU, 15, 0, 0},
      {"fc_elu", Activation::kELU, 9, 1.0f, 0},
      {"bn", Activation::kNone, 0, 0, 0},
      {"bn_relu", Activation::kReLU, 1, 0, 0},
      {"bn_leaky", Activation::kLeakyReLU, 1, 0.1f, 0},
  };
  const auto bytes = testing::build_bundle(kinds_spec());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  for (const Want& w : wants) {
    auto n = neuron(*b->find(w.layer));
    ASSERT_TRUE(n.ok()) << w.layer << ": " << n.message();
    EXPECT_EQ(n->activation, w.activation) << w.layer;
    EXPECT_EQ(n->mps_neuron_type, w.type) << w.layer;
    EXPECT_FLOAT_EQ(n->a, w.a) << w.layer;
    EXPECT_FLOAT_EQ(n->b, w.b) << w.layer;
    EXPECT_EQ(n->data, nullptr) << w.layer;
    EXPECT_EQ(n->count, 0u) << w.layer;
  }
}

TEST(Neuron, PReLUSlopesOfALayerAndOfAFusedActivation) {
  const auto bytes = testing::build_bundle(kinds_spec());
  auto b = open_bytes(bytes);
  ASSERT_TRUE(b.ok()) << b.message();
  struct Want {
    const char* layer;
    std::vector<float> slopes;
  };
  for (const Want& w : {Want{"prelu1", std::vector<float>(8, 0.25f)}, Want{"prelu8", kSlopes},
                        Want{"conv_prelu", kSlopes}, Want{"bn_prelu", kSlopes}}) {
    auto n = neuron(*b->find(w.layer));
    ASSERT_TRUE(n.ok()) << w.layer << ": " << n.message();
    EXPECT_EQ(n->activation, Activation::kPReLU) << w.layer;
    EXPECT_EQ(n->mps_neuron_type, 10) << w.layer;
    ASSERT_EQ(n->count, 8u) << w.layer;
    EXPECT_EQ(floats_at(n->data, n->count), w.slopes) << w.layer;
  }
  for (const char* name : {"gn", "gn_plain", "in"}) {
    auto n = neuron(*b->find(name));
    ASSERT_FALSE(n.ok()) << name;
    EXPECT_EQ(n.error(), Error::kWrongLayerKind) << name;
  }
}

// Every source made from the first Bundle, read after the Bundle has been
// moved (construct and assign) and the moved-from object destroyed.
struct AllSources {
  ConvolutionSource conv, fused, linear;
  BatchNormSource bn;
  InstanceNormSource in;
  GroupNormSource gn;
  Neuron prelu, fused_prelu;

  static AllSources from(const Bundle& b) {
    return {*ConvolutionSource::from(b, *b.find("conv_none")),
            *ConvolutionSource::from(b, *b.find("conv_prelu")),
            *ConvolutionSource::from(b, *b.find("fc_elu")),
            *BatchNormSource::from(b, *b.find("bn")),
            *InstanceNormSource::from(b, *b.find("in")),
            *GroupNormSource::from(b, *b.find("gn")),
            *neuron(*b.find("prelu8")),
            *neuron(*b.find("conv_prelu"))};
  }
};

// The bytes each source serves, compared with the file's own bytes.
void expect_sources_read(const AllSources& s, const std::vector<uint8_t>& file, const Bundle& now) {
  const auto in_file = [&](const void* p, size_t n) {
    // Bundles from memory point into `file` itself.
    const auto* q = static_cast<const uint8_t*>(p);
    return p != nullptr && q >= file.data() && q + n <= file.data() + file.size();
  };
  for (const ConvolutionSource* c : {&s.conv, &s.fused, &s.linear}) {
    EXPECT_TRUE(c->load());
    c->purge();
    EXPECT_TRUE(in_file(c->weights(), c->weights_tensor().size())) << c->label();
    EXPECT_TRUE(in_file(c->bias_terms(), c->output_feature_channels() * 4)) << c->label();
    EXPECT_EQ(std::memcmp(c->weights(), now.find(c->label())->find(TensorRole::kWeight)->data(),
                          c->weights_tensor().size()),
              0);
    EXPECT_EQ(c->label(), now.find(c->label())->name());
  }
  EXPECT_TRUE(s.bn.load());
  s.bn.purge();
  for (const float* p : {s.bn.gamma(), s.bn.beta(), s.bn.mean(), s.bn.variance()}) {
    EXPECT_TRUE(in_file(p, 8 * 4));
  }
  EXPECT_EQ(s.bn.label(), "bn");
  EXPECT_TRUE(s.in.load());
  s.in.purge();
  EXPECT_TRUE(in_file(s.in.gamma(), 8 * 4) && in_file(s.in.beta(), 8 * 4));
  EXPECT_TRUE(s.gn.load());
  s.gn.purge();
  EXPECT_EQ(floats_at(s.gn.gamma(), 8), kGamma);
  EXPECT_EQ(floats_at(s.gn.beta(), 8), kBeta);
  EXPECT_EQ(s.gn.label(), "gn");
  EXPECT_EQ(floats_at(s.prelu.data, s.prelu.count), kSlopes);
  EXPECT_EQ(floats_at(s.fused_prelu.data, s.fused_prelu.count), kSlopes);
}

TEST(SourcesAfterMove, MoveConstructedBundle) {
  const auto bytes = testing::build_bundle(kinds_spec());
  auto first = std::make_unique<Bundle>(open_bytes(bytes).value());
  const AllSources sources = AllSources::from(*first);
  Bundle moved(std::move(*first));
  first.reset();  // the moved-from object is gone
  expect_sources_read(sources, bytes, moved);
}

TEST(SourcesAfterMove, MoveAssignedBundle) {
  const auto bytes = testing::build_bundle(kinds_spec());
  const auto other_bytes = testing::build_bundle(kinds_spec());
  auto first = std::make_unique<Bundle>(open_bytes(bytes).value());
  const AllSources sources = AllSources::from(*first);
  Bundle target = open_bytes(other_bytes).value();
  target = std::move(*first);
  first.reset();
  expect_sources_read(sources, bytes, target);
}

// The same for a file mapping (Bundle::open), where load and purge are real
// madvise calls over the mapping.
TEST(SourcesAfterMove, MappedBundleMovedTwice) {
  const auto bytes = testing::build_bundle(kinds_spec());
  testing::TempDir dir;
  const std::string path = (dir.path() / "kinds.mpsb").string();
  testing::write_file(path, bytes.data(), bytes.size());
  auto opened = Bundle::open(path);
  ASSERT_TRUE(opened.ok()) << opened.message();
  auto first = std::make_unique<Bundle>(std::move(opened).value());
  const AllSources sources = AllSources::from(*first);
  auto second = std::make_unique<Bundle>(std::move(*first));
  first.reset();
  Bundle third = open_bytes(bytes).value();
  third = std::move(*second);
  second.reset();
  // Pointers now point into the file mapping, not `bytes`: compare values.
  for (const ConvolutionSource* c : {&sources.conv, &sources.fused, &sources.linear}) {
    EXPECT_TRUE(c->load());
    c->purge();
    const Tensor w = *third.find(c->label())->find(TensorRole::kWeight);
    EXPECT_EQ(c->weights(), w.data());
    EXPECT_EQ(c->label(), third.find(c->label())->name());
  }
  EXPECT_TRUE(sources.bn.load());
  sources.bn.purge();
  EXPECT_EQ(static_cast<const void*>(sources.bn.mean()),
            third.find("bn")->find(TensorRole::kRunningMean)->data());
  EXPECT_TRUE(sources.in.load());
  sources.in.purge();
  EXPECT_TRUE(sources.gn.load());
  sources.gn.purge();
  EXPECT_EQ(floats_at(sources.gn.gamma(), 8), kGamma);
  EXPECT_EQ(floats_at(sources.prelu.data, sources.prelu.count), kSlopes);
  EXPECT_EQ(floats_at(sources.fused_prelu.data, sources.fused_prelu.count), kSlopes);
}

}  // namespace
}  // namespace mpsb
