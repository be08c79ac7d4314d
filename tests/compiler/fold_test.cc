// --fold-batchnorm and the activation after a batch norm: a batch_norm2d
// takes the fused-activation fields a conv takes; without folding the bundle
// keeps it on the norm (neuron() serves it, to run after MPS's batch norm),
// with folding it moves onto the folded conv. A conv that already applies an
// activation is not folded (conv -> act -> BN is not conv -> BN -> act).

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsb/sources.h"
#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace {

using mpsb::Activation;
using mpsb::LayerKind;
using mpsb::TensorRole;
using mpsb::testing::errors_of;
using mpsb::testing::ModelBuilder;

// conv "c" (2 -> 4, 3x3) and a batch norm "bn" over its 4 channels that
// follows it; running_var positive so the fold is defined.
void add_conv_bn(ModelBuilder& m) {
  m.add_conv("c", 2, 4, 3, 3);
  auto& bn = m.add_batch_norm("bn", 4);
  bn["follows"] = "c";
  mpsb::testing::write_vector(m.path("bn.running_var.bin"),
                              std::vector<float>{0.5f, 1.0f, 2.0f, 4.0f});
}

mpsb::Bundle open_output(const ModelBuilder& m, const std::string& name = "out.mpsb") {
  auto b = mpsb::Bundle::open(m.path(name).string());
  EXPECT_TRUE(b.ok()) << b.message();
  return std::move(*b);
}

std::string all_errors(const mpsbc::CompileReport& r) {
  std::string s;
  for (const auto& d : errors_of(r)) s += d.message + "\n";
  return s;
}

TEST(FoldActivation, BatchNormKeepsItsActivationWhenNotFolded) {
  ModelBuilder m;
  add_conv_bn(m);
  m.layer(1)["activation"] = "leaky_relu";
  m.layer(1)["negative_slope"] = 0.125;
  const auto r = m.compile();
  ASSERT_TRUE(r.ok()) << all_errors(r);
  const mpsb::Bundle b = open_output(m);
  ASSERT_EQ(b.layer_count(), 2u);
  const auto bn = b.find("bn");
  ASSERT_TRUE(bn);
  EXPECT_EQ(bn->activation(), Activation::kLeakyReLU);
  EXPECT_FLOAT_EQ(bn->activation_alpha(), 0.125f);
  EXPECT_EQ(b.find("c")->activation(), Activation::kNone);
  // The neuron an app runs after MPSCNNBatchNormalization: ReLU (type 1)
  // with a = negative_slope (MPSCNNNeuronType.h).
  const auto n = mpsb::neuron(*bn);
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(n->mps_neuron_type, 1);
  EXPECT_FLOAT_EQ(n->a, 0.125f);
}

TEST(FoldActivation, FoldMovesTheActivationOntoTheConv) {
  ModelBuilder m;
  add_conv_bn(m);
  m.layer(1)["activation"] = "relu";
  m.write_manifest();
  auto o = m.options();
  o.fold_batchnorm = true;
  const auto r = mpsbc::compile(o);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  const mpsb::Bundle b = open_output(m);
  ASSERT_EQ(b.layer_count(), 1u);
  EXPECT_FALSE(b.find("bn"));
  const auto c = b.find("c");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->activation(), Activation::kReLU);
  const auto n = mpsb::neuron(*c);
  ASSERT_TRUE(n.ok()) << n.message();
  EXPECT_EQ(n->mps_neuron_type, 1);
  EXPECT_FLOAT_EQ(n->a, 0.0f);
}

TEST(FoldActivation, FoldMovesPReLUSlopesOntoTheConv) {
  ModelBuilder m;
  add_conv_bn(m);
  m.layer(1)["activation"] = "prelu";
  m.layer(1)["num_parameters"] = 4;
  m.layer(1)["activation_weight"] = "bn.slopes.bin";
  const std::vector<float> slopes = {0.25f, -0.5f, 1.0f, 2.0f};
  mpsb::testing::write_vector(m.path("bn.slopes.bin"), slopes);
  for (bool fold : {false, true}) {
    m.write_manifest();
    auto o = m.options();
    o.fold_batchnorm = fold;
    const auto r = mpsbc::compile(o);
    ASSERT_TRUE(r.ok()) << all_errors(r);
    const mpsb::Bundle b = open_output(m);
    const auto l = b.find(fold ? "c" : "bn");
    ASSERT_TRUE(l);
    EXPECT_EQ(l->activation(), Activation::kPReLU);
    EXPECT_EQ(b.find("c")->activation(), fold ? Activation::kPReLU : Activation::kNone);
    const auto n = mpsb::neuron(*l);
    ASSERT_TRUE(n.ok()) << n.message();
    ASSERT_EQ(n->count, 4u);
    EXPECT_EQ(std::vector<float>(n->data, n->data + 4), slopes) << "fold " << fold;
  }
}

TEST(FoldActivation, ConvWithAnActivationBeforeTheBatchNormIsRefused) {
  ModelBuilder m;
  add_conv_bn(m);
  m.layer(0)["activation"] = "relu";
  m.layer(1)["activation"] = "relu";
  m.write_manifest();
  auto o = m.options();
  o.fold_batchnorm = true;
  const auto r = mpsbc::compile(o);
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput);
  const auto errors = errors_of(r);
  ASSERT_EQ(errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(errors[0].pointer, "/layers/1/follows");
  EXPECT_EQ(errors[0].text, "\"c\" applies an activation before the batch norm");
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
}

TEST(FoldActivation, BatchNormActivationIsValidatedLikeAConvs) {
  struct Case {
    const char* field;
    nlohmann::json value;
    const char* pointer;
    const char* text;
  };
  const Case cases[] = {
      {"activation", "swish", "/layers/1/activation", "expected one of \"none\", \"relu\""},
      {"threshold", 3, "/layers/1/threshold", "expected a number >= 15"},
  };
  for (const Case& c : cases) {
    ModelBuilder m;
    add_conv_bn(m);
    if (std::string(c.field) == "threshold") m.layer(1)["activation"] = "softplus";
    m.layer(1)[c.field] = c.value;
    const auto r = m.compile();
    EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput) << c.field;
    const auto errors = errors_of(r);
    ASSERT_EQ(errors.size(), 1u) << all_errors(r);
    EXPECT_EQ(errors[0].pointer, c.pointer);
    EXPECT_NE(errors[0].text.find(c.text), std::string::npos) << errors[0].text;
  }
}

// Layer.folded_batchnorm names the batch norm in each folded conv, and the
// compile report says which went where; an unfolded bundle records none.
TEST(FoldRecord, BundleAndReportNameTheBatchNormOfEachFoldedConv) {
  ModelBuilder m;
  add_conv_bn(m);
  m.add_conv("d", 4, 4, 1, 1, 1, false);
  m.add_batch_norm("d_bn", 4)["follows"] = "d";
  mpsb::testing::write_vector(m.path("d_bn.running_var.bin"),
                              std::vector<float>{1.0f, 1.0f, 1.0f, 1.0f});
  m.write_manifest();
  auto o = m.options();
  o.fold_batchnorm = true;
  const auto r = mpsbc::compile(o);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  const mpsb::Bundle b = open_output(m);
  ASSERT_EQ(b.layer_count(), 2u);
  EXPECT_EQ(b.find("c")->folded_batchnorm(), "bn");
  EXPECT_EQ(b.find("d")->folded_batchnorm(), "d_bn");
  ASSERT_EQ(r.layers.size(), 2u);
  EXPECT_EQ(r.layers[0].folded_batchnorm, "bn");
  EXPECT_EQ(r.layers[1].folded_batchnorm, "d_bn");
  const auto j = nlohmann::json::parse(mpsbc::report_to_json(r));
  EXPECT_EQ(j["layers"][0]["folded_batchnorm"], "bn");
  EXPECT_EQ(j["layers"][1]["folded_batchnorm"], "d_bn");

  const auto plain = m.compile("plain.mpsb");
  ASSERT_TRUE(plain.ok()) << all_errors(plain);
  const mpsb::Bundle p = open_output(m, "plain.mpsb");
  for (const char* name : {"c", "bn", "d", "d_bn"}) {
    EXPECT_EQ(p.find(name)->folded_batchnorm(), "") << name;
  }
  EXPECT_FALSE(nlohmann::json::parse(mpsbc::report_to_json(plain))["layers"][0].contains(
      "folded_batchnorm"));
}

// --fold-batchnorm that folds nothing says so, and why.
TEST(FoldRecord, FoldingNothingIsAWarningThatSaysWhy) {
  struct Case {
    const char* what;
    bool batch_norm;
    std::string want;
  };
  const Case cases[] = {
      {"no batch norm", false, "--fold-batchnorm folded nothing: the manifest has no batch_norm2d"},
      {"no follows", true,
       "--fold-batchnorm folded nothing: no batch_norm2d names the conv it follows "
       "(\"follows\"); the exporter writes it only where a BatchNorm2d is fed directly by a "
       "conv"},
  };
  for (const Case& c : cases) {
    ModelBuilder m;
    m.add_conv("c", 2, 4, 3, 3);
    if (c.batch_norm) m.add_batch_norm("bn", 4);
    m.write_manifest();
    auto o = m.options();
    o.fold_batchnorm = true;
    const auto r = mpsbc::compile(o);
    ASSERT_TRUE(r.ok()) << all_errors(r);
    std::vector<std::string> warnings;
    for (const auto& d : r.diagnostics) {
      if (d.severity == mpsbc::Diagnostic::Severity::kWarning) warnings.push_back(d.text);
    }
    EXPECT_EQ(warnings, std::vector<std::string>{c.want}) << c.what;
    // mpsbc check folds (and warns) the same way.
    const auto checked = mpsbc::check_manifest(o);
    ASSERT_TRUE(checked.ok()) << all_errors(checked);
    ASSERT_EQ(checked.diagnostics.size(), 1u) << c.what;
    EXPECT_EQ(checked.diagnostics[0].text, c.want);
  }
}

// --check of an existing bundle reads from the bundle which batch norms
// were folded: no flag needed, and a batch norm the bundle folded but this
// manifest does not let fold is reported as folded, not as missing.
TEST(FoldRecord, CheckOfAFoldedBundleKnowsWhatWasFolded) {
  ModelBuilder m;
  add_conv_bn(m);
  // A probe for the batch norm: input and output [1, 4, 5, 5].
  m.write_floats("bn.in.bin", 100);
  m.write_floats("bn.out.bin", 100);
  m.layer(1)["probe"] = {{"input", "bn.in.bin"},
                         {"input_shape", {1, 4, 5, 5}},
                         {"output", "bn.out.bin"},
                         {"output_shape", {1, 4, 5, 5}}};
  m.write_manifest();
  auto o = m.options();
  o.fold_batchnorm = true;
  ASSERT_TRUE(mpsbc::compile(o).ok());

  // The same manifest, without the flag: bn folds as the bundle says, and
  // is then checked through c, which has no probe of its own.
  o.fold_batchnorm = false;
  const auto same = mpsbc::check_bundle(o.output_path, o);
  EXPECT_TRUE(errors_of(same).empty()) << all_errors(same);

  m.layer(1).erase("follows");
  m.write_manifest();
  const auto r = mpsbc::check_bundle(o.output_path, o);
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kCheckFailed);
  const auto errors = errors_of(r);
  ASSERT_EQ(errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(errors[0].pointer, "/layers/1");
  EXPECT_EQ(errors[0].text,
            "--check: the bundle has no layer bn; it was folded into c (--fold-batchnorm), but "
            "in this manifest it follows no conv");
}

}  // namespace
