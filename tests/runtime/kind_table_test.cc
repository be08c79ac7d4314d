// The runtime checker against the layer-kind table (mpsb/kinds.h): for every
// kind and every role it has, a layer that stores the role at a wrong
// element type or shape, leaves out what the kind requires, adds a role the
// kind does not have, carries quantization tables its quantization does not
// name, or a fused PReLU's slopes without the activation (and the reverse),
// is refused with its own error code and message. A valid layer of each
// kind, built from the same table, opens first, so every refusal below is
// caused by the one thing each case changes.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/kinds.h"
#include "mpsb/sources.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

using testing::BundleSpec;
using testing::LayerSpec;
using testing::TensorSpec;

constexpr uint32_t kIn = 4, kOut = 8, kKernel = 3, kFeatures = 8, kGroups = 4;
// A linear layer's flattened input [C, H, W].
constexpr uint32_t kLinC = 4, kLinH = 2, kLinW = 3;
// A probe's stored feature map [N][H][W][C].
constexpr uint32_t kProbeN = 2, kProbeH = 3, kProbeW = 5;

// The stored shape the table says a role has in layers built by valid_layer.
std::vector<uint64_t> stored_shape(const KindSpec& kind, StoredShape s) {
  const bool linear = kind.params == ParamTable::kLinear;
  switch (s) {
    case StoredShape::kKernel:
      return linear ? std::vector<uint64_t>{kOut, kLinH, kLinW, kLinC}
                    : std::vector<uint64_t>{kOut, kKernel, kKernel, kIn};
    case StoredShape::kOutChannels:
      return {kOut};
    case StoredShape::kFeatures:
      return {kFeatures};
    case StoredShape::kRanges:
      return {kOut, 2};
    case StoredShape::kLookupTable:
      return {256};
    case StoredShape::kFeatureMap:
      return {kProbeN, kProbeH, kProbeW, kFeatures};
  }
  return {};
}

TensorSpec role_tensor(const KindSpec& kind, const RoleSpec& r) {
  TensorSpec t;
  t.role = r.role;
  t.dtype = DType::kFloat32;
  t.layout = r.stored_layout;
  t.source_layout = r.source_layout;
  t.shape = stored_shape(kind, r.shape);
  // A broadcast stores one source element; every other transform keeps the
  // element count, which is all the checker can see of the source shape.
  if (r.transform == Transform::kBroadcast) {
    t.source_shape = {1};
    t.transform = Transform::kBroadcast;
  } else if (r.shape == StoredShape::kFeatureMap) {
    t.source_shape = {kProbeN, kFeatures, kProbeH, kProbeW};
    t.transform = r.transform;
  } else {
    t.transform = r.transform;
  }
  return t;
}

// A layer of the kind with every required, optional and affine role, float32
// weights, no quantization and no activation.
LayerSpec valid_layer(const KindSpec& kind) {
  LayerSpec l;
  l.name = "layer";
  l.kind = kind.kind;
  switch (kind.params) {
    case ParamTable::kConv:
      l.conv.in_channels = kIn;
      l.conv.out_channels = kOut;
      l.conv.kernel_h = l.conv.kernel_w = kKernel;
      l.conv.padding_h = l.conv.padding_w = 1;
      break;
    case ParamTable::kLinear:
      l.linear.in_features = kLinC * kLinH * kLinW;
      l.linear.out_features = kOut;
      l.linear.input_c = kLinC;
      l.linear.input_h = kLinH;
      l.linear.input_w = kLinW;
      break;
    case ParamTable::kNorm:
      l.norm = {kFeatures, 1e-5f, 0};
      break;
    case ParamTable::kGroupNorm:
      l.norm = {kFeatures, 1e-5f, kGroups};
      break;
    case ParamTable::kChannels:
      l.norm = {kFeatures, 0.0f, 0};
      break;
    case ParamTable::kNone:
      break;
  }
  for (const RoleSpec& r : kind.roles) {
    if (r.presence == Presence::kRequired || r.presence == Presence::kOptional ||
        r.presence == Presence::kAffine) {
      l.tensors.push_back(role_tensor(kind, r));
    }
  }
  return l;
}

BundleSpec with(const LayerSpec& l) {
  BundleSpec s;
  s.layers.push_back(l);
  // Probe layers live in probe files, which name their model bundle.
  if (l.kind == LayerKind::kProbe) s.metadata = {{"mpsb.probes_for", "0123456789abcdef"}};
  return s;
}

Result<Bundle> open_spec(const BundleSpec& s, std::vector<uint8_t>* bytes) {
  *bytes = testing::build_bundle(s);
  return Bundle::from_memory(bytes->data(), bytes->size());
}

std::string describe(const KindSpec& kind, const std::string& what) {
  return std::string(kind.name) + ": " + what;
}

void expect_opens(const LayerSpec& l, const std::string& what) {
  std::vector<uint8_t> bytes;
  auto r = open_spec(with(l), &bytes);
  EXPECT_TRUE(r.ok()) << what << ": " << r.message();
}

void expect_refused(const LayerSpec& l, Error want, const std::string& phrase,
                    const std::string& what) {
  std::vector<uint8_t> bytes;
  auto r = open_spec(with(l), &bytes);
  ASSERT_FALSE(r.ok()) << what << ": accepted, want " << to_string(want);
  EXPECT_EQ(r.error(), want) << what << ": " << r.message();
  EXPECT_NE(r.message().find(phrase), std::string::npos)
      << what << ": message lacks '" << phrase << "': " << r.message();
}

TensorSpec* find_role(LayerSpec* l, TensorRole role) {
  for (TensorSpec& t : l->tensors) {
    if (t.role == role) return &t;
  }
  return nullptr;
}

const RoleSpec* find_presence(const KindSpec& kind, Presence p) {
  for (const RoleSpec& r : kind.roles) {
    if (r.presence == p) return &r;
  }
  return nullptr;
}

TEST(KindTable, ValidLayerOfEveryKindOpens) {
  for (const KindSpec& kind : kKinds) {
    expect_opens(valid_layer(kind), describe(kind, "valid layer"));
    // And with every optional role left out (affine pairs both out).
    LayerSpec bare = valid_layer(kind);
    std::erase_if(bare.tensors, [&](const TensorSpec& t) {
      const Presence p = role_spec(kind.kind, t.role)->presence;
      return p == Presence::kOptional || p == Presence::kAffine;
    });
    expect_opens(bare, describe(kind, "without optional roles"));
  }
}

// The heap over-read: a norm γ stored at fewer bytes than the
// number_of_feature_channels floats the data source promises.
TEST(KindTable, NormGammaMustBeFloat32) {
  for (LayerKind k : {LayerKind::kBatchNorm2d, LayerKind::kInstanceNorm2d, LayerKind::kGroupNorm}) {
    const KindSpec& kind = kind_spec(k);
    LayerSpec half = valid_layer(kind);
    find_role(&half, TensorRole::kWeight)->dtype = DType::kFloat16;
    expect_refused(half, Error::kSizeMismatch,
                   "tensor 0: weight must be float32 (MPS reads float*)",
                   describe(kind, "float16 gamma [C]"));

    // uint8 γ with a LookupTable quantization and its 256-entry table, the
    // table first and last.
    TensorSpec table;
    table.role = TensorRole::kQuantLookupTable;
    table.layout = TensorLayout::kLookupTable;
    table.source_layout = TensorLayout::kLookupTable;
    table.shape = {256};
    LayerSpec lut = valid_layer(kind);
    lut.quantization = Quantization::kLookupTable;
    find_role(&lut, TensorRole::kWeight)->dtype = DType::kUInt8;
    lut.tensors.push_back(table);
    expect_refused(lut, Error::kSizeMismatch,
                   "tensor 0: weight must be float32 (MPS reads float*), found uint8",
                   describe(kind, "uint8 gamma with a lookup table after it"));
    LayerSpec lut_first = lut;
    std::rotate(lut_first.tensors.begin(), lut_first.tensors.end() - 1, lut_first.tensors.end());
    expect_refused(
        lut_first, Error::kBadField,
        "tensor 0: a " + std::string(kind.name) + " layer has no quant_lookup_table tensor",
        describe(kind, "uint8 gamma with a lookup table before it"));
  }
}

TEST(KindTable, EveryRoleAtAWrongDTypeIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (const RoleSpec& r : kind.roles) {
      if (r.presence == Presence::kQuantized || r.presence == Presence::kFusedPReLU) continue;
      const std::string role(to_string(r.role));
      if (r.dtype == StoredDType::kFloat32) {
        for (DType bad : {DType::kFloat16, DType::kBFloat16, DType::kUInt8}) {
          LayerSpec l = valid_layer(kind);
          find_role(&l, r.role)->dtype = bad;
          expect_refused(
              l, Error::kSizeMismatch,
              role + " must be float32 (MPS reads float*), found " + std::string(to_string(bad)),
              describe(kind, role + " as " + std::string(to_string(bad))));
        }
      } else {
        LayerSpec bf16 = valid_layer(kind);
        find_role(&bf16, r.role)->dtype = DType::kBFloat16;
        expect_refused(bf16, Error::kBadField,
                       "bfloat16 weights (MPS takes float32, float16, uint8)",
                       describe(kind, role + " as bfloat16"));
        LayerSpec half = valid_layer(kind);
        find_role(&half, r.role)->dtype = DType::kFloat16;
        expect_opens(half, describe(kind, role + " as float16"));
      }
    }
  }
}

TEST(KindTable, EveryRoleAtAWrongShapeIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (const RoleSpec& r : kind.roles) {
      const std::string role(to_string(r.role));
      LayerSpec base = valid_layer(kind);
      // Roles not in the valid layer are added as the layer they need.
      if (r.presence == Presence::kQuantized) {
        base.quantization =
            r.role == TensorRole::kQuantRanges ? Quantization::kLinear : Quantization::kLookupTable;
        find_role(&base, TensorRole::kWeight)->dtype = DType::kUInt8;
        base.tensors.push_back(role_tensor(kind, r));
      } else if (r.presence == Presence::kFusedPReLU) {
        base.activation = Activation::kPReLU;
        base.tensors.push_back(role_tensor(kind, r));
      }
      expect_opens(base, describe(kind, role + " at its shape"));
      const auto mutate = [&](auto change, const std::string& what) {
        LayerSpec l = base;
        TensorSpec* t = find_role(&l, r.role);
        change(&t->shape);
        // The source keeps the stored element count, so only the stored
        // shape is wrong (a broadcast keeps its one source element).
        if (t->transform != Transform::kBroadcast) t->source_shape.clear();
        expect_refused(l, Error::kSizeMismatch, role + " shape does not match the layer",
                       describe(kind, role + " " + what));
      };
      mutate([](std::vector<uint64_t>* s) { s->front() += 1; }, "with a larger first dimension");
      mutate([](std::vector<uint64_t>* s) { s->push_back(1); }, "with an extra dimension of 1");
      if (r.shape == StoredShape::kKernel) {
        mutate([](std::vector<uint64_t>* s) { std::swap((*s)[1], (*s)[3]); }, "in another order");
      }
    }
  }
}

TEST(KindTable, EveryRequiredRoleMissingIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (const RoleSpec& r : kind.roles) {
      const std::string role(to_string(r.role));
      LayerSpec l = valid_layer(kind);
      if (r.presence == Presence::kRequired) {
        std::erase_if(l.tensors, [&](const TensorSpec& t) { return t.role == r.role; });
        expect_refused(l, Error::kBadField,
                       ": has no " + role + " tensor (a " + std::string(kind.name) + " needs one)",
                       describe(kind, "without " + role));
      } else if (r.presence == Presence::kAffine) {
        std::erase_if(l.tensors, [&](const TensorSpec& t) { return t.role == r.role; });
        expect_refused(l, Error::kBadField, "affine weight and bias come in pairs",
                       describe(kind, "affine pair without " + role));
      }
    }
  }
}

TEST(KindTable, EveryRoleTheKindDoesNotHaveIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (size_t i = 0; i < kTensorRoleCount; ++i) {
      const auto role = static_cast<TensorRole>(i);
      if (role_spec(kind.kind, role)) continue;
      LayerSpec l = valid_layer(kind);
      TensorSpec t;
      t.role = role;
      t.shape = {kFeatures};
      l.tensors.push_back(t);
      expect_refused(l, Error::kBadField,
                     "a " + std::string(kind.name) + " layer has no " +
                         std::string(to_string(role)) + " tensor",
                     describe(kind, "with a " + std::string(to_string(role)) + " tensor"));
    }
  }
}

TEST(KindTable, EveryRoleTwiceIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (const RoleSpec& r : kind.roles) {
      if (r.presence == Presence::kQuantized || r.presence == Presence::kFusedPReLU) continue;
      LayerSpec l = valid_layer(kind);
      l.tensors.push_back(*find_role(&l, r.role));
      expect_refused(l, Error::kBadField,
                     "second tensor with role " + std::string(to_string(r.role)),
                     describe(kind, std::string(to_string(r.role)) + " twice"));
    }
  }
}

TEST(KindTable, EveryRoleWithAnotherKindsTransformIsRefused) {
  for (const KindSpec& kind : kKinds) {
    for (const RoleSpec& r : kind.roles) {
      if (r.presence == Presence::kQuantized || r.presence == Presence::kFusedPReLU) continue;
      for (size_t i = 1; i < kTransformCount; ++i) {
        const auto transform = static_cast<Transform>(i);
        if (transform == r.transform) continue;
        // A conv or transposed conv weight may be stored dense with
        // legalized_groups: its rules are tested in checker_refusals_test.cc.
        const bool dense = transform == Transform::kConvGroupedToDense ||
                           transform == Transform::kConvTransposeGroupedToDenseRotated;
        if (transform == Transform::kConvGroupedToDense &&
            r.transform == Transform::kConvOIHWToOHWI) {
          continue;
        }
        if (transform == Transform::kConvTransposeGroupedToDenseRotated &&
            r.transform == Transform::kConvTransposeToOHWIRotated) {
          continue;
        }
        LayerSpec l = valid_layer(kind);
        TensorSpec* t = find_role(&l, r.role);
        t->transform = transform;
        // A broadcast needs a one-element source to pass the tensor checks, a
        // dense form fewer source elements than stored.
        t->source_shape = transform == Transform::kBroadcast || dense ? std::vector<uint64_t>{1}
                                                                      : std::vector<uint64_t>{};
        expect_refused(l, Error::kBadField,
                       "transform " + std::string(to_string(transform)) + " does not apply to a " +
                           std::string(to_string(r.role)) + " tensor",
                       describe(kind, std::string(to_string(r.role)) + " with " +
                                          std::string(to_string(transform))));
      }
    }
  }
}

// Quantization tables exactly where the layer's quantization says.
TEST(KindTable, QuantizationTablesOnlyWhereTheQuantizationSays) {
  for (const KindSpec& kind : kKinds) {
    const RoleSpec* ranges_role = role_spec(kind.kind, TensorRole::kQuantRanges);
    const RoleSpec* table_role = role_spec(kind.kind, TensorRole::kQuantLookupTable);
    if (!ranges_role || !table_role) {
      // A kind without quantization refuses any quantization.
      for (Quantization q : {Quantization::kLinear, Quantization::kLookupTable}) {
        LayerSpec l = valid_layer(kind);
        l.quantization = q;
        expect_refused(l, Error::kBadField,
                       "quantization " + std::string(to_string(q)) +
                           " does not match its weight dtype and quantization tables",
                       describe(kind, "quantization " + std::string(to_string(q))));
      }
      continue;
    }
    const TensorSpec ranges = role_tensor(kind, *ranges_role);
    const TensorSpec table = role_tensor(kind, *table_role);
    struct Case {
      const char* what;
      Quantization q;
      DType weight;
      bool ranges, table, ok;
    };
    const Case cases[] = {
        {"uint8 linear with ranges", Quantization::kLinear, DType::kUInt8, true, false, true},
        {"uint8 lookup table with a table", Quantization::kLookupTable, DType::kUInt8, false, true,
         true},
        {"ranges without quantization", Quantization::kNone, DType::kFloat32, true, false, false},
        {"a table without quantization", Quantization::kNone, DType::kFloat32, false, true, false},
        {"uint8 weight without quantization", Quantization::kNone, DType::kUInt8, false, false,
         false},
        {"linear on a float32 weight", Quantization::kLinear, DType::kFloat32, true, false, false},
        {"linear without ranges", Quantization::kLinear, DType::kUInt8, false, false, false},
        {"linear with a table", Quantization::kLinear, DType::kUInt8, false, true, false},
        {"linear with ranges and a table", Quantization::kLinear, DType::kUInt8, true, true, false},
        {"lookup table with ranges", Quantization::kLookupTable, DType::kUInt8, true, false, false},
        {"lookup table without a table", Quantization::kLookupTable, DType::kUInt8, false, false,
         false},
        {"lookup table on a float16 weight", Quantization::kLookupTable, DType::kFloat16, false,
         true, false},
    };
    for (const Case& c : cases) {
      LayerSpec l = valid_layer(kind);
      l.quantization = c.q;
      find_role(&l, TensorRole::kWeight)->dtype = c.weight;
      if (c.ranges) l.tensors.push_back(ranges);
      if (c.table) l.tensors.push_back(table);
      if (c.ok) {
        expect_opens(l, describe(kind, c.what));
      } else {
        expect_refused(l, Error::kBadField,
                       "quantization " + std::string(to_string(c.q)) +
                           " does not match its weight dtype and quantization tables",
                       describe(kind, c.what));
      }
    }
  }
}

// A fused PReLU's slopes come exactly with the activation.
TEST(KindTable, FusedPReLUSlopesExactlyWithTheActivation) {
  for (const KindSpec& kind : kKinds) {
    const RoleSpec* slopes = find_presence(kind, Presence::kFusedPReLU);
    if (!kind.fused_activation) {
      ASSERT_EQ(slopes, nullptr) << kind.name;
      LayerSpec l = valid_layer(kind);
      l.activation = Activation::kPReLU;
      expect_refused(
          l, Error::kBadField,
          "a " + std::string(kind.name) + " layer takes no fused activation, found prelu",
          describe(kind, "fused prelu"));
      continue;
    }
    ASSERT_NE(slopes, nullptr) << kind.name;
    LayerSpec both = valid_layer(kind);
    both.activation = Activation::kPReLU;
    both.tensors.push_back(role_tensor(kind, *slopes));
    expect_opens(both, describe(kind, "prelu with its slopes"));

    LayerSpec without_slopes = valid_layer(kind);
    without_slopes.activation = Activation::kPReLU;
    expect_refused(without_slopes, Error::kBadField,
                   "a fused prelu needs its activation_weight tensor, and only it",
                   describe(kind, "prelu without slopes"));
    for (Activation other : {Activation::kNone, Activation::kReLU, Activation::kELU}) {
      LayerSpec without_prelu = valid_layer(kind);
      without_prelu.activation = other;
      without_prelu.activation_alpha = 1.0f;
      without_prelu.tensors.push_back(role_tensor(kind, *slopes));
      expect_refused(without_prelu, Error::kBadField,
                     "a fused prelu needs its activation_weight tensor, and only it",
                     describe(kind, "slopes with " + std::string(to_string(other))));
    }
  }
}

// Every fused activation the table lists opens on every kind that takes one
// and is refused on every kind that does not.
TEST(KindTable, FusedActivationsOnlyOnKindsThatTakeThem) {
  for (const KindSpec& kind : kKinds) {
    for (const ActivationSpec& a : kActivations) {
      if (a.activation == Activation::kNone || a.activation == Activation::kPReLU) continue;
      LayerSpec l = valid_layer(kind);
      l.activation = a.activation;
      l.activation_alpha = a.param_defaults[0];
      l.activation_beta = a.param_defaults[1];
      if (kind.fused_activation) {
        expect_opens(l, describe(kind, std::string(a.name)));
      } else {
        expect_refused(l, Error::kBadField,
                       "layer takes no fused activation, found " + std::string(a.name),
                       describe(kind, std::string(a.name)));
      }
    }
  }
}

// Every served pointer covers what it promises: on each valid layer, every
// float pointer a source hands out lies inside the segment with room for
// the count the source states.
TEST(KindTable, ServedPointersCoverWhatTheyPromise) {
  for (const KindSpec& kind : kKinds) {
    LayerSpec spec = valid_layer(kind);
    if (kind.fused_activation) {
      spec.activation = Activation::kPReLU;
      spec.tensors.push_back(role_tensor(kind, *find_presence(kind, Presence::kFusedPReLU)));
    }
    std::vector<uint8_t> bytes;
    auto r = open_spec(with(spec), &bytes);
    ASSERT_TRUE(r.ok()) << kind.name << ": " << r.message();
    const Bundle& b = *r;
    const auto* seg = b.segment().data();
    const auto covers = [&](const void* p, uint64_t floats) {
      const auto* q = static_cast<const std::byte*>(p);
      return p != nullptr && q >= seg && floats * 4 <= b.segment().size() &&
             static_cast<uint64_t>(q - seg) <= b.segment().size() - floats * 4;
    };
    const Layer layer = b.layer(0);
    switch (kind.served) {
      case Served::kConvolution: {
        auto s = ConvolutionSource::from(b, layer);
        ASSERT_TRUE(s.ok()) << s.message();
        EXPECT_TRUE(covers(s->bias_terms(), s->output_feature_channels())) << kind.name;
        EXPECT_EQ(s->weights_tensor().size(),
                  uint64_t{4} * kOut *
                      (kind.params == ParamTable::kLinear ? kLinC * kLinH * kLinW
                                                          : kKernel * kKernel * kIn))
            << kind.name;
        break;
      }
      case Served::kBatchNorm: {
        auto s = BatchNormSource::from(b, layer);
        ASSERT_TRUE(s.ok()) << s.message();
        const uint32_t n = s->number_of_feature_channels();
        for (const float* p : {s->gamma(), s->beta(), s->mean(), s->variance()}) {
          EXPECT_TRUE(covers(p, n)) << kind.name;
        }
        break;
      }
      case Served::kInstanceNorm: {
        auto s = InstanceNormSource::from(b, layer);
        ASSERT_TRUE(s.ok()) << s.message();
        EXPECT_TRUE(covers(s->gamma(), s->number_of_feature_channels()));
        EXPECT_TRUE(covers(s->beta(), s->number_of_feature_channels()));
        break;
      }
      case Served::kGroupNorm: {
        auto s = GroupNormSource::from(b, layer);
        ASSERT_TRUE(s.ok()) << s.message();
        EXPECT_TRUE(covers(s->gamma(), s->number_of_feature_channels()));
        EXPECT_TRUE(covers(s->beta(), s->number_of_feature_channels()));
        break;
      }
      case Served::kNeuron:
        break;
      case Served::kNotServed:
        // A probe file's layer is check data: no MPS object takes it.
        EXPECT_EQ(ConvolutionSource::from(b, layer).error(), Error::kWrongLayerKind) << kind.name;
        EXPECT_EQ(BatchNormSource::from(b, layer).error(), Error::kWrongLayerKind) << kind.name;
        EXPECT_EQ(neuron(layer).error(), Error::kWrongLayerKind) << kind.name;
        break;
    }
    if (kind.fused_activation || kind.served == Served::kNeuron) {
      auto n = neuron(layer);
      ASSERT_TRUE(n.ok()) << n.message();
      EXPECT_EQ(n->count, kind.served == Served::kNeuron ? kFeatures : kOut) << kind.name;
      EXPECT_TRUE(covers(n->data, n->count)) << kind.name;
    }
  }
}

}  // namespace
}  // namespace mpsb
