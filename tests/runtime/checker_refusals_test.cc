// One targeted negative test per check of the runtime's Checker
// (runtime/src/checker.cc) and of Bundle::open, from_memory and verify
// (runtime/src/bundle.cc) that the other runtime tests do not reach: each
// case changes one thing in a bundle that opens, and asserts the error code
// and the whole message.
//
// Where each failure path is tested (a `fail(...)` or error return each):
//   checker.cc check_envelope
//     too small, identifier, metadata over 2 GiB, metadata past the end,
//     Verifier                    bundle_test.cc BundleOpen.Rejects*
//   check_bundle
//     format version, segment_alignment, tensor_alignment, segment overlaps
//     the metadata, segment past the end, bytes after the segment
//                                 bundle_test.cc BundleOpen.Rejects*
//     segment not aligned, metadata keys unsorted or repeated   here
//   check_layers
//     empty name or NUL           here
//     duplicate, out of order, index out of range or repeated
//                                 bundle_test.cc BundleOpen.Rejects*
//   check_layer
//     kind/activation/quantization out of range, activation parameters not
//     finite, softplus beta       here
//     fused activation on a kind without one, role the kind lacks, second
//     tensor of a role            kind_table_test.cc
//   check_params
//     conv parameters missing     bundle_test.cc
//     conv zero or not divisible, linear missing or zero, input_shape, norm
//     missing or zero, eps, num_groups (both messages)   here
//     "unknown parameter table": unreachable (every ParamTable is a case
//     and the kind is range-checked before)
//   check_tensor
//     enum out of range, shape rank/zero/count/broadcast   here
//     shape vector not 8-byte aligned   fuzz_regressions_test.cc
//     size not shape x dtype, offset not aligned, outside the segment
//                                 bundle_test.cc
//   check_role: shape, float32-only roles, bfloat16 weight, layouts (also
//     here), transform            kind_table_test.cc
//   check_presence: required role, affine pairs, fused prelu slopes,
//     quantization consistency    kind_table_test.cc
//   bundle.cc Bundle::open: cannot open, file under 12 bytes   here;
//     not a regular file          special_files_test.cc;
//     fstat and mmap failing: not reached (no fault injection)
//   Bundle::from_memory: null data   here
//   Bundle::verify (open with verify_checksums): metadata checksum,
//     non-zero padding, tensor checksum, segment checksum, and the
//     metadata_checksum field absent from the root table   here;
//     "metadata_checksum field is missing": not reachable (FlatBuffers
//     2.0.8 reports success when it mutates an absent field to its
//     default 0; the absent field is refused as a mismatch, tested here)

#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

using testing::BundleSpec;
using testing::LayerSpec;

// Two layers that open: a conv ("c", 4->8, 3x3, bias) and a group norm
// ("g", 8 channels in 4 groups, affine).
BundleSpec base() {
  BundleSpec s;
  s.layers.push_back(testing::conv_layer("c", 4, 8, 3));
  s.layers.push_back(testing::group_norm_layer("g", 8, 4));
  return s;
}

LayerSpec& conv(BundleSpec& s) { return s.layers[0]; }
LayerSpec& group_norm(BundleSpec& s) { return s.layers[1]; }

struct Case {
  const char* name;
  std::function<void(BundleSpec&)> change;
  Error error;
  std::string message;  // after "<memory>: "
};

void run(const Case& c) {
  BundleSpec s = base();
  c.change(s);
  const auto bytes = testing::build_bundle(s);
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok()) << c.name << ": accepted";
  EXPECT_EQ(r.error(), c.error) << c.name << ": " << r.message();
  EXPECT_EQ(r.message(), "<memory>: " + c.message) << c.name;
}

void expect_opens(const char* what, const std::function<void(BundleSpec&)>& change) {
  BundleSpec s = base();
  change(s);
  const auto bytes = testing::build_bundle(s);
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  EXPECT_TRUE(r.ok()) << what << ": " << r.message();
}

TEST(CheckerRefusals, BaseBundleOpens) {
  expect_opens("base", [](BundleSpec&) {});
}

TEST(CheckerRefusals, SegmentNotAlignedToItsAlignment) {
  run({"segment offset 4097", [](BundleSpec& s) { s.segment_offset = 4097; }, Error::kMisaligned,
       "data segment at 4097 size 4096 is not aligned to 4096"});
  run({"segment size 100", [](BundleSpec& s) { s.segment_size = 100; }, Error::kMisaligned,
       "data segment at 4096 size 100 is not aligned to 4096"});
}

TEST(CheckerRefusals, MetadataKeysUnsortedOrRepeated) {
  run({"unsorted",
       [](BundleSpec& s) {
         s.metadata = {{"b", "1"}, {"a", "2"}};
       },
       Error::kUnsortedNames, "metadata keys are not sorted and unique at 'a'"});
  run({"repeated",
       [](BundleSpec& s) {
         s.metadata = {{"a", "1"}, {"a", "2"}};
       },
       Error::kUnsortedNames, "metadata keys are not sorted and unique at 'a'"});
  expect_opens("sorted", [](BundleSpec& s) { s.metadata = {{"a", "1"}, {"b", "2"}}; });
}

TEST(CheckerRefusals, LayerNameEmptyOrWithNul) {
  run({"empty", [](BundleSpec& s) { conv(s).name = ""; }, Error::kBadField,
       "layer 0 has an empty name or a NUL"});
  run({"NUL", [](BundleSpec& s) { conv(s).name = std::string("c\0x", 3); }, Error::kBadField,
       "layer 0 has an empty name or a NUL"});
}

// The batch norm a conv folded is gone from the bundle, so the name may
// match no layer; it must still be a name, and only a conv can fold one.
TEST(CheckerRefusals, FoldedBatchNormEmptyWithNulOrNotOnAConv) {
  run({"empty", [](BundleSpec& s) { conv(s).folded_batchnorm = ""; }, Error::kBadField,
       "layer 'c': folded_batchnorm is empty or has a NUL"});
  run({"NUL", [](BundleSpec& s) { conv(s).folded_batchnorm = std::string("bn\0x", 4); },
       Error::kBadField, "layer 'c': folded_batchnorm is empty or has a NUL"});
  run({"group norm", [](BundleSpec& s) { group_norm(s).folded_batchnorm = "bn"; }, Error::kBadField,
       "layer 'g': a group_norm layer cannot have a batch norm folded into it"});
  expect_opens("names no layer", [](BundleSpec& s) { conv(s).folded_batchnorm = "gone.bn"; });
  BundleSpec s = base();
  conv(s).folded_batchnorm = "enc\x1b[31m.bn";
  const auto bytes = testing::build_bundle(s);
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->find("c")->folded_batchnorm(), "enc\x1b[31m.bn");
  EXPECT_EQ(r->find("g")->folded_batchnorm(), "");
}

TEST(CheckerRefusals, LayerKindActivationOrQuantizationOutOfRange) {
  const std::string msg = "layer 'c': kind, activation or quantization out of range";
  run({"kind",
       [](BundleSpec& s) {
         conv(s).kind = static_cast<LayerKind>(kLayerKindCount);
         conv(s).omit_params = true;  // the builder reads the kind's table
       },
       Error::kBadField, msg});
  run({"activation",
       [](BundleSpec& s) { conv(s).activation = static_cast<Activation>(kActivationCount); },
       Error::kBadField, msg});
  run({"quantization",
       [](BundleSpec& s) { conv(s).quantization = static_cast<Quantization>(kQuantizationCount); },
       Error::kBadField, msg});
}

TEST(CheckerRefusals, ActivationParametersNotFinite) {
  const std::string msg = "layer 'c': activation parameters are not finite";
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf}) {
    run({"alpha",
         [&](BundleSpec& s) {
           conv(s).activation = Activation::kLeakyReLU;
           conv(s).activation_alpha = bad;
         },
         Error::kBadField, msg});
    run({"beta",
         [&](BundleSpec& s) {
           conv(s).activation = Activation::kSoftplus;
           conv(s).activation_alpha = 1.0f;
           conv(s).activation_beta = bad;
         },
         Error::kBadField, msg});
  }
  // Checked whatever the activation: a stray NaN is never stored quietly.
  run({"NaN without activation", [&](BundleSpec& s) { conv(s).activation_alpha = nan; },
       Error::kBadField, msg});
}

TEST(CheckerRefusals, SoftplusBetaNotPositive) {
  // 1e-39: positive, but MPS's a = 1/beta would be infinite.
  for (float beta : {0.0f, -0.0f, -1.0f, 1e-39f}) {
    run({"beta",
         [&](BundleSpec& s) {
           conv(s).activation = Activation::kSoftplus;
           conv(s).activation_alpha = beta;
           conv(s).activation_beta = 20.0f;
         },
         Error::kBadField, "layer 'c': softplus beta must be > 0"});
  }
  expect_opens("beta 0.5", [](BundleSpec& s) {
    conv(s).activation = Activation::kSoftplus;
    conv(s).activation_alpha = 0.5f;
  });
}

TEST(CheckerRefusals, TensorLayoutsOtherThanTheKindsTable) {
  run({"stored layout",
       [](BundleSpec& s) { conv(s).tensors[0].layout = TensorLayout::kLookupTable; },
       Error::kBadField,
       "layer 'c' tensor 0: weight layouts oihw -> lookup_table are not oihw -> ohwi"});
  run({"source layout",
       [](BundleSpec& s) { conv(s).tensors[0].source_layout = TensorLayout::kRanges; },
       Error::kBadField, "layer 'c' tensor 0: weight layouts ranges -> ohwi are not oihw -> ohwi"});
}

TEST(CheckerRefusals, ConvParametersZeroOrNotDivisibleByGroups) {
  const std::string msg = "layer 'c': conv parameters are zero or not divisible by groups";
  const std::vector<std::function<void(ConvParams&)>> changes = {
      [](ConvParams& p) { p.in_channels = 0; }, [](ConvParams& p) { p.out_channels = 0; },
      [](ConvParams& p) { p.kernel_h = 0; },    [](ConvParams& p) { p.kernel_w = 0; },
      [](ConvParams& p) { p.stride_h = 0; },    [](ConvParams& p) { p.stride_w = 0; },
      [](ConvParams& p) { p.dilation_h = 0; },  [](ConvParams& p) { p.dilation_w = 0; },
      [](ConvParams& p) { p.groups = 0; },      [](ConvParams& p) { p.groups = 3; },
      [](ConvParams& p) { p.groups = 8; },  // divides out (8), not in (4)
  };
  for (const auto& change : changes) {
    run({"conv", [&](BundleSpec& s) { change(conv(s).conv); }, Error::kBadField, msg});
  }
}

// A conv stored dense (mpsbc --legalize): exactly groups 1, legalized_groups
// > 1 dividing the channels, a ConvGroupedToDense weight from [O][I/g][kH][kW].
void legalized(BundleSpec& s) { conv(s) = testing::legalized_conv_layer("c", 4, 8, 3, 2); }

TEST(CheckerRefusals, LegalizedConvOpens) {
  expect_opens("legalized groups 2", legalized);
  expect_opens("legalized groups 4 (depthwise, multiplier 2)",
               [](BundleSpec& s) { conv(s) = testing::legalized_conv_layer("c", 4, 8, 3, 4); });
}

TEST(CheckerRefusals, LegalizedGroupsWithoutADenseWeight) {
  run({"plain weight", [](BundleSpec& s) { conv(s).legalized_groups = 2; }, Error::kBadField,
       "layer 'c': legalized_groups is set but the weight is not stored grouped-to-dense"});
}

TEST(CheckerRefusals, DenseWeightWithoutLegalizedGroups) {
  run({"legalized_groups 0",
       [](BundleSpec& s) {
         legalized(s);
         conv(s).legalized_groups = 0;
       },
       Error::kBadField, "layer 'c': weight is stored grouped-to-dense but legalized_groups is 0"});
}

TEST(CheckerRefusals, LegalizedConvWithGroupsOtherThanOne) {
  run({"conv groups 2",
       [](BundleSpec& s) {
         legalized(s);
         conv(s).conv.groups = 2;
         conv(s).tensors[0].shape = {8, 3, 3, 2};
         conv(s).tensors[0].source_shape = {8, 1, 3, 3};
       },
       Error::kBadField,
       "layer 'c': legalized_groups 2 with conv groups 2 (a legalized conv is stored with "
       "groups 1)"});
}

TEST(CheckerRefusals, LegalizedGroupsOneOrNotDividing) {
  for (uint32_t g : {1u, 3u, 8u}) {
    run({"legalized_groups",
         [&](BundleSpec& s) {
           legalized(s);
           conv(s).legalized_groups = g;
         },
         Error::kBadField,
         "layer 'c': legalized_groups " + std::to_string(g) +
             " is not > 1 or does not divide the channels"});
  }
}

TEST(CheckerRefusals, LegalizedSourceShapeOtherThanTheGroups) {
  // [8][1][3][3] is the source of 4 groups, not of the 2 recorded.
  run({"source of 4 groups",
       [](BundleSpec& s) {
         legalized(s);
         conv(s).tensors[0].source_shape = {8, 1, 3, 3};
       },
       Error::kSizeMismatch,
       "layer 'c': legalized weight source shape [8, 1, 3, 3] is not [8, 2, 3, 3]"});
  // As many source elements as stored: no zeros added, not a dense form.
  run({"source as large as stored",
       [](BundleSpec& s) {
         legalized(s);
         conv(s).tensors[0].source_shape = {8, 4, 3, 3};
       },
       Error::kBadField,
       "layer 'c' tensor 0: shape is empty, has a zero or overflows, or differs in element count "
       "from its source shape"});
}

TEST(CheckerRefusals, LegalizedOnANonConvLayer) {
  run({"group norm", [](BundleSpec& s) { group_norm(s).legalized_groups = 2; }, Error::kBadField,
       "layer 'g': legalized_groups on a layer that is not a conv2d or conv_transpose2d"});
}

// A transposed conv stored dense (mpsbc --legalize): groups 1,
// legalized_groups > 1 dividing the channels, a
// ConvTransposeGroupedToDenseRotated weight from [I][O/g][kH][kW].
void legalized_t(BundleSpec& s) {
  conv(s) = testing::legalized_conv_transpose_layer("c", 4, 8, 3, 2, 2);
}

TEST(CheckerRefusals, LegalizedConvTransposeOpens) {
  expect_opens("legalized transposed groups 2", legalized_t);
  expect_opens("legalized transposed groups 4", [](BundleSpec& s) {
    conv(s) = testing::legalized_conv_transpose_layer("c", 4, 8, 3, 2, 4);
  });
}

TEST(CheckerRefusals, DenseTransposedWeightWithoutLegalizedGroups) {
  run({"legalized_groups 0",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).legalized_groups = 0;
       },
       Error::kBadField, "layer 'c': weight is stored grouped-to-dense but legalized_groups is 0"});
}

TEST(CheckerRefusals, LegalizedConvTransposeWithGroupsOtherThanOne) {
  run({"conv groups 2",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).conv.groups = 2;
         conv(s).tensors[0].shape = {8, 3, 3, 2};
         conv(s).tensors[0].source_shape = {4, 2, 3, 3};
       },
       Error::kBadField,
       "layer 'c': legalized_groups 2 with conv groups 2 (a legalized conv is stored with "
       "groups 1)"});
}

TEST(CheckerRefusals, LegalizedConvTransposeGroupsNotDividing) {
  run({"legalized_groups 3",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).legalized_groups = 3;
       },
       Error::kBadField,
       "layer 'c': legalized_groups 3 is not > 1 or does not divide the channels"});
}

TEST(CheckerRefusals, LegalizedConvTransposeSourceShapeOtherThanTheGroups) {
  // [4][2][3][3] is the source of 4 groups, not of the 2 recorded.
  run({"source of 4 groups",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).tensors[0].source_shape = {4, 2, 3, 3};
       },
       Error::kSizeMismatch,
       "layer 'c': legalized weight source shape [4, 2, 3, 3] is not [4, 4, 3, 3]"});
  // A conv2d's [O][I/g][kH][kW] source is not a transposed conv's.
  run({"conv2d source order",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).tensors[0].source_shape = {8, 2, 3, 3};
       },
       Error::kSizeMismatch,
       "layer 'c': legalized weight source shape [8, 2, 3, 3] is not [4, 4, 3, 3]"});
}

TEST(CheckerRefusals, LegalizedWithTheOtherKindsDenseTransform) {
  run({"conv2d with the transposed dense transform",
       [](BundleSpec& s) {
         legalized(s);
         conv(s).tensors[0].transform = Transform::kConvTransposeGroupedToDenseRotated;
       },
       Error::kBadField,
       "layer 'c' tensor 0: transform conv_transpose_grouped_to_dense_rotated does not apply to a "
       "weight tensor"});
  run({"conv_transpose2d with the conv2d dense transform",
       [](BundleSpec& s) {
         legalized_t(s);
         conv(s).tensors[0].transform = Transform::kConvGroupedToDense;
       },
       Error::kBadField,
       "layer 'c' tensor 0: transform conv_grouped_to_dense does not apply to a weight tensor"});
}

TEST(CheckerRefusals, DenseTransformOnABias) {
  run({"bias",
       [](BundleSpec& s) {
         conv(s).tensors[1].transform = Transform::kConvGroupedToDense;
         conv(s).tensors[1].source_shape = {4};
       },
       Error::kBadField,
       "layer 'c' tensor 1: transform conv_grouped_to_dense does not apply to a bias tensor"});
}

TEST(CheckerRefusals, LinearParametersMissingOrZero) {
  const auto linear = [](BundleSpec& s) -> LayerSpec& {
    s.layers[0] = testing::linear_layer("c", 5, 4, 2, 3);
    return s.layers[0];
  };
  expect_opens("linear", [&](BundleSpec& s) { linear(s); });
  const std::string msg = "layer 'c': linear parameters missing or zero";
  run({"missing", [&](BundleSpec& s) { linear(s).omit_params = true; }, Error::kBadField, msg});
  run({"in 0", [&](BundleSpec& s) { linear(s).linear.in_features = 0; }, Error::kBadField, msg});
  run({"out 0", [&](BundleSpec& s) { linear(s).linear.out_features = 0; }, Error::kBadField, msg});
}

TEST(CheckerRefusals, LinearInputShapeNotMultiplyingToInFeatures) {
  const std::string msg = "layer 'c': input_shape does not multiply to in_features";
  const auto linear = [](BundleSpec& s) -> LayerSpec& {
    s.layers[0] = testing::linear_layer("c", 5, 4, 2, 3);
    return s.layers[0];
  };
  run({"product", [&](BundleSpec& s) { linear(s).linear.in_features = 25; }, Error::kBadField,
       msg});
  run({"zero dim", [&](BundleSpec& s) { linear(s).linear.input_h = 0; }, Error::kBadField, msg});
}

TEST(CheckerRefusals, NormParametersMissingOrZero) {
  const std::string msg = "layer 'g': norm parameters missing or zero";
  run({"missing", [](BundleSpec& s) { group_norm(s).omit_params = true; }, Error::kBadField, msg});
  run({"zero", [](BundleSpec& s) { group_norm(s).norm.num_features = 0; }, Error::kBadField, msg});
  // The same check guards batch norm, instance norm and prelu.
  run({"batch norm",
       [](BundleSpec& s) {
         group_norm(s) = testing::batch_norm_layer("g", 8);
         group_norm(s).omit_params = true;
       },
       Error::kBadField, msg});
  run({"prelu",
       [](BundleSpec& s) {
         group_norm(s) = testing::prelu_layer("g", 8, 1);
         group_norm(s).omit_params = true;
       },
       Error::kBadField, msg});
}

TEST(CheckerRefusals, NormEpsNotAFinitePositiveNumber) {
  for (float eps : {0.0f, -1e-5f, std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    run({"eps", [&](BundleSpec& s) { group_norm(s).norm.eps = eps; }, Error::kBadField,
         "layer 'g': eps must be a finite number > 0"});
  }
  // A prelu layer's NormParams carry its channels only; eps is unused.
  expect_opens("prelu eps 0",
               [](BundleSpec& s) { group_norm(s) = testing::prelu_layer("g", 8, 1); });
}

TEST(CheckerRefusals, NumGroupsRules) {
  for (uint32_t groups : {0u, 3u, 16u}) {
    run({"group norm", [&](BundleSpec& s) { group_norm(s).norm.num_groups = groups; },
         Error::kBadField, "layer 'g': num_groups is zero or does not divide num_features"});
  }
  for (uint32_t groups : {1u, 2u, 8u}) {
    expect_opens("groups", [&](BundleSpec& s) { group_norm(s).norm.num_groups = groups; });
  }
  const std::string msg = "layer 'g': num_groups is set on a layer without groups";
  run({"batch norm",
       [](BundleSpec& s) {
         group_norm(s) = testing::batch_norm_layer("g", 8);
         group_norm(s).norm.num_groups = 2;
       },
       Error::kBadField, msg});
  run({"instance norm",
       [](BundleSpec& s) {
         group_norm(s) = testing::instance_norm_layer("g", 8);
         group_norm(s).norm.num_groups = 1;
       },
       Error::kBadField, msg});
  run({"prelu",
       [](BundleSpec& s) {
         group_norm(s) = testing::prelu_layer("g", 8, 8);
         group_norm(s).norm.num_groups = 8;
       },
       Error::kBadField, msg});
}

TEST(CheckerRefusals, TensorEnumOutOfRange) {
  const std::string msg = "layer 'c' tensor 1: an enum field is out of range";
  run({"role",
       [](BundleSpec& s) { conv(s).tensors[1].role = static_cast<TensorRole>(kTensorRoleCount); },
       Error::kBadField, msg});
  run({"dtype",
       [](BundleSpec& s) {
         conv(s).tensors[1].dtype = static_cast<DType>(kDTypeCount);
         conv(s).tensors[1].bytes = std::vector<uint8_t>(32, 0);
       },
       Error::kBadField, msg});
  run({"layout",
       [](BundleSpec& s) {
         conv(s).tensors[1].layout = static_cast<TensorLayout>(kTensorLayoutCount);
       },
       Error::kBadField, msg});
  run({"source layout",
       [](BundleSpec& s) {
         conv(s).tensors[1].source_layout = static_cast<TensorLayout>(kTensorLayoutCount);
       },
       Error::kBadField, msg});
  run({"transform",
       [](BundleSpec& s) {
         conv(s).tensors[1].transform = static_cast<Transform>(kTransformCount);
       },
       Error::kBadField, msg});
}

TEST(CheckerRefusals, TensorShapeRankCountOrBroadcastSource) {
  const std::string msg =
      "layer 'c' tensor 1: shape is empty, has a zero or overflows, or differs in element count "
      "from its source shape";
  run({"rank 9", [](BundleSpec& s) { conv(s).tensors[1].shape = {8, 1, 1, 1, 1, 1, 1, 1, 1}; },
       Error::kBadField, msg});
  run({"source rank 9",
       [](BundleSpec& s) { conv(s).tensors[1].source_shape = {8, 1, 1, 1, 1, 1, 1, 1, 1}; },
       Error::kBadField, msg});
  run({"overflow",
       [](BundleSpec& s) {
         conv(s).tensors[1].shape = {uint64_t{1} << 32, uint64_t{1} << 32};
         conv(s).tensors[1].bytes = std::vector<uint8_t>(32, 0);
       },
       Error::kBadField, msg});
  run({"source count differs", [](BundleSpec& s) { conv(s).tensors[1].source_shape = {9}; },
       Error::kBadField, msg});
  run({"broadcast from 2",
       [](BundleSpec& s) {
         conv(s).tensors[1].transform = Transform::kBroadcast;
         conv(s).tensors[1].source_shape = {2};
       },
       Error::kBadField, msg});
}

// --- Bundle::open, from_memory and verify (runtime/src/bundle.cc) -----------

TEST(OpenRefusals, MissingFile) {
  testing::TempDir dir;
  const std::string path = (dir / "absent.mpsb").string();
  auto r = Bundle::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kIo);
  EXPECT_EQ(r.message(), path + ": cannot open: " + std::strerror(ENOENT));
}

TEST(OpenRefusals, FileUnderTwelveBytes) {
  // Bundle::open refuses it before mapping; from_memory reaches the
  // checker's own test of the same size (bundle_test.cc).
  testing::TempDir dir;
  const std::string path = (dir / "short.mpsb").string();
  const uint8_t bytes[11] = {};
  testing::write_file(path, bytes, sizeof bytes);
  auto r = Bundle::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTruncated);
  EXPECT_EQ(r.message(), path + ": file is 11 bytes, too small for an mpsb bundle");
}

TEST(OpenRefusals, NullDataWithASize) {
  auto r = Bundle::from_memory(nullptr, 64);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kInvalidArgument);
  EXPECT_EQ(r.message(), "<memory>: null data");
}

// Opens `bytes` with verify_checksums after `corrupt` changed them.
void expect_verify_refuses(const std::function<void(std::vector<uint8_t>&, const Bundle&)>& corrupt,
                           Error error, const std::string& message) {
  std::vector<uint8_t> bytes = testing::build_bundle(base());
  {
    auto clean = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
    ASSERT_TRUE(clean.ok()) << clean.message();
    corrupt(bytes, *clean);
  }
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok()) << message;
  EXPECT_EQ(r.error(), error) << r.message();
  EXPECT_EQ(r.message(), message);
  // Without the deep check the same bytes open: only verify() looks there.
  EXPECT_TRUE(Bundle::from_memory(bytes.data(), bytes.size()).ok());
}

uint32_t metadata_size(const std::vector<uint8_t>& bytes) {
  uint32_t n = 0;
  std::memcpy(&n, bytes.data(), 4);
  return n;
}

TEST(VerifyRefusals, MetadataChecksum) {
  BundleSpec s = base();
  s.metadata_checksum = 1;
  const auto bytes = testing::build_bundle(s);
  ASSERT_TRUE(Bundle::from_memory(bytes.data(), bytes.size()).ok());
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kChecksumMismatch);
  EXPECT_EQ(r.message(), "<memory>: metadata checksum mismatch (bytes 0.." +
                             std::to_string(4 + metadata_size(bytes)) + " are corrupt)");
}

TEST(VerifyRefusals, MetadataChecksumFieldAbsent) {
  // Another writer may leave the field out of the root table: its vtable
  // slot (field id 10, after the vtable's two uint16 sizes) reads 0. The
  // Verifier accepts that (the field is not required). verify() then reads
  // the default 0 and refuses the digest; its own "metadata_checksum field
  // is missing" is not reached: FlatBuffers 2.0.8's mutate of an absent
  // field to its default (0) reports success.
  std::vector<uint8_t> bytes = testing::build_bundle(base());
  const auto u32 = [&](size_t at) {
    uint32_t v = 0;
    std::memcpy(&v, bytes.data() + at, 4);
    return v;
  };
  const size_t table = 4 + u32(4);  // after the size prefix: the root offset
  int32_t back = 0;
  std::memcpy(&back, bytes.data() + table, 4);
  const size_t slot = static_cast<size_t>(static_cast<int64_t>(table) - back) + 4 + 2 * 10;
  bytes[slot] = bytes[slot + 1] = 0;
  ASSERT_TRUE(Bundle::from_memory(bytes.data(), bytes.size()).ok());
  auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kChecksumMismatch);
  EXPECT_EQ(r.message(), "<memory>: metadata checksum mismatch (bytes 0.." +
                             std::to_string(4 + metadata_size(bytes)) + " are corrupt)");
}

TEST(VerifyRefusals, NonZeroPaddingBeforeTheSegment) {
  // The builder is deterministic: the byte 3 past the metadata is padding.
  const uint64_t at = 4 + metadata_size(testing::build_bundle(base())) + 3;
  expect_verify_refuses([&](std::vector<uint8_t>& bytes, const Bundle&) { bytes[at] = 0x5a; },
                        Error::kNonZeroPadding,
                        "<memory>: padding byte at offset " + std::to_string(at) + " is not zero");
}

TEST(VerifyRefusals, TensorChecksum) {
  expect_verify_refuses(
      [](std::vector<uint8_t>& bytes, const Bundle& b) {
        const Tensor w = *b.find("g")->find(TensorRole::kBias);
        bytes[b.segment_offset() + w.offset()] ^= 0x01;
      },
      Error::kChecksumMismatch,
      "<memory>: layer 'g' tensor bias: checksum mismatch (the data is corrupt)");
}

TEST(VerifyRefusals, SegmentChecksum) {
  // The last byte of the file is padding after the last tensor: only the
  // segment checksum covers it.
  expect_verify_refuses(
      [](std::vector<uint8_t>& bytes, const Bundle&) { bytes.back() = 0x01; },
      Error::kChecksumMismatch,
      "<memory>: data segment checksum mismatch (padding or tensor bytes are corrupt)");
}

// A probe file (docs/FORMAT.md §7): one probe layer "c" whose input is a
// [2, 4, 3, 5] map stored NHWC and whose output is a Linear's [2, 6].
BundleSpec probe_file() {
  BundleSpec s;
  s.metadata = {{"mpsb.probes_for", "0123456789abcdef"}};
  LayerSpec l;
  l.name = "c";
  l.kind = LayerKind::kProbe;
  testing::TensorSpec in;
  in.role = TensorRole::kProbeInput;
  in.layout = TensorLayout::kNHWC;
  in.source_layout = TensorLayout::kNCHW;
  in.transform = Transform::kNCHWToNHWC;
  in.source_shape = {2, 4, 3, 5};
  in.shape = {2, 3, 5, 4};
  testing::TensorSpec out = in;
  out.role = TensorRole::kProbeOutput;
  out.transform = Transform::kIdentity;
  out.source_shape = {2, 6};
  out.shape = {2, 1, 1, 6};
  l.tensors = {in, out};
  s.layers.push_back(l);
  return s;
}

void run_probe_file(const Case& c) {
  BundleSpec s = probe_file();
  c.change(s);
  const auto bytes = testing::build_bundle(s);
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_FALSE(r.ok()) << c.name << ": accepted";
  EXPECT_EQ(r.error(), c.error) << c.name << ": " << r.message();
  EXPECT_EQ(r.message(), "<memory>: " + c.message) << c.name;
}

TEST(CheckerRefusals, ProbeFileOpens) {
  const auto bytes = testing::build_bundle(probe_file());
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  ASSERT_TRUE(r.ok()) << r.message();
  EXPECT_EQ(r->layer(0).kind(), LayerKind::kProbe);
}

TEST(CheckerRefusals, ProbeFileRules) {
  run_probe_file({"no mpsb.probes_for", [](BundleSpec& s) { s.metadata.clear(); }, Error::kBadField,
                  "probe layers in a bundle without metadata mpsb.probes_for"});
  run_probe_file({"not hex",
                  [](BundleSpec& s) {
                    s.metadata = {{"mpsb.probes_for", "0123456789ABCDEF"}};
                  },
                  Error::kBadField,
                  "metadata mpsb.probes_for is '0123456789ABCDEF', not 16 lowercase hex digits"});
  run_probe_file({"too short",
                  [](BundleSpec& s) {
                    s.metadata = {{"mpsb.probes_for", "12"}};
                  },
                  Error::kBadField,
                  "metadata mpsb.probes_for is '12', not 16 lowercase hex digits"});
  run_probe_file({"a model layer in a probe file",
                  [](BundleSpec& s) { s.layers.push_back(testing::conv_layer("d", 4, 8, 3)); },
                  Error::kBadField,
                  "a probe file (metadata mpsb.probes_for) holds 1 layers that are not probes"});
  run_probe_file({"a parameter table",
                  [](BundleSpec& s) { s.layers[0].conv = base().layers[0].conv; }, Error::kBadField,
                  "layer 'c': a probe layer has no parameter table"});
}

TEST(CheckerRefusals, ProbeFeatureMapRules) {
  run_probe_file({"other batch",
                  [](BundleSpec& s) {
                    s.layers[0].tensors[1].source_shape = {3, 6};
                    s.layers[0].tensors[1].shape = {3, 1, 1, 6};
                  },
                  Error::kSizeMismatch,
                  "layer 'c' tensor 1: probe_output shape does not match the layer "
                  "([2, 1, 1, 6] expected, found [3, 1, 1, 6])"});
  run_probe_file({"NCHW with identity",
                  [](BundleSpec& s) { s.layers[0].tensors[0].transform = Transform::kIdentity; },
                  Error::kBadField,
                  "layer 'c' tensor 0: probe_input from a [N, C, H, W] source needs transform "
                  "nchw_to_nhwc"});
  run_probe_file({"[N, F] permuted",
                  [](BundleSpec& s) { s.layers[0].tensors[1].transform = Transform::kNCHWToNHWC; },
                  Error::kBadField,
                  "layer 'c' tensor 1: probe_output from a [N, F] source needs transform "
                  "identity, not nchw_to_nhwc"});
  run_probe_file({"not permuted",
                  [](BundleSpec& s) {
                    s.layers[0].tensors[0].shape = {2, 4, 3, 5};
                  },
                  Error::kSizeMismatch,
                  "layer 'c' tensor 0: probe_input shape does not match the layer ([2, 3, 5, 4] "
                  "expected, found [2, 4, 3, 5])"});
  run_probe_file({"float16", [](BundleSpec& s) { s.layers[0].tensors[0].dtype = DType::kFloat16; },
                  Error::kSizeMismatch,
                  "layer 'c' tensor 0: probe_input must be float32 (MPS reads float*), found "
                  "float16"});
  run_probe_file({"without output", [](BundleSpec& s) { s.layers[0].tensors.pop_back(); },
                  Error::kBadField, "layer 'c': has no probe_output tensor (a probe needs one)"});
}

}  // namespace
}  // namespace mpsb
