// The structure-aware mutator of fuzz_bundle_fields and fuzz_dump_check
// (bundle_fields.h), tested in the ordinary build: what it decodes encodes
// to a bundle that opens and verifies, its mutants mostly pass the
// FlatBuffers Verifier and a good share open (so the fuzzing reaches the
// semantic checks and the data sources), and between them they use every
// value of every enum and one past the last, so a value added to the schema
// is fuzzed without touching the mutator.
#include "fuzz/bundle_fields.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <vector>

#include "mpsb/bundle.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

std::vector<uint8_t> every_kind() {
  testing::BundleSpec s;
  s.segment_alignment = 64;
  s.tensor_alignment = 16;
  s.layers.push_back(testing::conv_layer("conv", 4, 8, 3));
  s.layers.push_back(testing::batch_norm_layer("bn", 8));
  s.layers.push_back(testing::instance_norm_layer("in", 8));
  s.layers.push_back(testing::conv_transpose_layer("up", 8, 4, 3, 2));
  s.layers.push_back(testing::linear_layer("fc", 3, 4, 2, 2));
  return testing::build_bundle(s);
}

// A stand-in for libFuzzer's byte mutator: changes one byte.
size_t flip_one(uint8_t* data, size_t size, size_t) {
  if (size > 0) data[(size * 7 + 3) % size] ^= 0x5a;
  return size;
}

TEST(BundleFields, DecodeThenEncodeGivesABundleThatVerifies) {
  const auto bytes = every_kind();
  const auto fields = fuzz::decode_bundle(bytes.data(), bytes.size());
  ASSERT_TRUE(fields.has_value());
  ASSERT_EQ(fields->layers.size(), 5u);
  const auto again = fuzz::encode_bundle(*fields);
  auto b = Bundle::from_memory(again.data(), again.size(), {.verify_checksums = true});
  ASSERT_TRUE(b.ok()) << b.message();
  EXPECT_EQ(b->layer_count(), 5u);
  EXPECT_EQ(b->find("conv")->conv().padding_h, 1u);
  EXPECT_FALSE(fuzz::decode_bundle(bytes.data(), 11).has_value());
}

TEST(BundleFields, MutantsReachTheSemanticChecksAndEveryEnumValue) {
  const auto seed = every_kind();
  constexpr int kMutants = 4000;
  int verified = 0, opened = 0;
  std::set<int> kinds, activations, quantizations, roles, dtypes, layouts, transforms;
  for (int i = 0; i < kMutants; ++i) {
    auto fields = fuzz::decode_bundle(seed.data(), seed.size());
    ASSERT_TRUE(fields.has_value());
    fuzz::FieldMutator(static_cast<uint32_t>(i)).mutate(*fields, flip_one);
    const auto bytes = fuzz::encode_bundle(*fields);
    const auto back = fuzz::decode_bundle(bytes.data(), bytes.size());
    if (!back) continue;
    ++verified;
    if (Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true}).ok()) {
      ++opened;
    }
    for (const auto& l : back->layers) {
      kinds.insert(l.kind), activations.insert(l.activation);
      quantizations.insert(l.quantization);
      for (const auto& t : l.tensors) {
        roles.insert(t.role), dtypes.insert(t.dtype), layouts.insert(t.layout);
        transforms.insert(t.transform);
      }
    }
  }
  std::printf("%d mutants: %d pass the verifier, %d open and verify\n", kMutants, verified, opened);
  EXPECT_GE(verified, kMutants * 9 / 10);
  EXPECT_GE(opened, kMutants / 5);
  EXPECT_LT(opened, kMutants) << "every mutant opened: nothing hostile was made";
  auto every_value = [](const std::set<int>& seen, int max) {
    for (int v = 0; v <= max + 1; ++v) {
      if (!seen.count(v)) return false;
    }
    return true;
  };
  EXPECT_TRUE(every_value(kinds, static_cast<int>(fb::LayerKind::MAX)));
  EXPECT_TRUE(every_value(activations, static_cast<int>(fb::Activation::MAX)));
  EXPECT_TRUE(every_value(quantizations, static_cast<int>(fb::Quantization::MAX)));
  EXPECT_TRUE(every_value(roles, static_cast<int>(fb::TensorRole::MAX)));
  EXPECT_TRUE(every_value(dtypes, static_cast<int>(fb::DType::MAX)));
  EXPECT_TRUE(every_value(layouts, static_cast<int>(fb::TensorLayout::MAX)));
  EXPECT_TRUE(every_value(transforms, static_cast<int>(fb::Transform::MAX)));
}

}  // namespace
}  // namespace mpsb
