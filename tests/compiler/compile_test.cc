// Successful compiles: determinism, alignment, padding, and what the runtime
// reads back from the bundle.

#include "mpsbc/compile.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "bundle_plan.h"
#include "bundle_writer.h"
#include "manifest.h"
#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"
#include "tensor_files.h"

#define XXH_INLINE_ALL
#include "xxhash.h"

namespace {

using mpsb::testing::list_dir;
using mpsb::testing::ModelBuilder;
using mpsb::testing::read_file;

// A small network touching every conv variant and the other layer kinds.
void add_mixed_layers(ModelBuilder& m) {
  m.add_conv("stem", 3, 16, 3, 3);
  m.add_conv("dw", 16, 16, 3, 3, 16, false)["stride"] = 2;
  m.add_conv("grouped", 16, 32, 1, 1, 2);
  auto& dilated = m.add_conv("dilated", 32, 8, 3, 5);
  dilated["dilation"] = {2, 3};
  dilated["padding"] = {2, 6};
  dilated["activation"] = "leaky_relu";
  dilated["negative_slope"] = 0.2;
  m.add_batch_norm("bn", 8);
  m.add_conv_transpose("up", 8, 8, 3, 2);  // 4 channels per group, as MPS needs
  m.add_linear("fc", 4 * 3 * 2, 10, {4, 3, 2});
  m.add_linear("head", 10, 5);
}

const mpsb::fb::Bundle* root_of(const std::vector<uint8_t>& file) {
  return mpsb::fb::GetSizePrefixedBundle(file.data());
}

// Direct OIHW -> OHWI by the definition, independent of the layout module.
std::vector<float> hand_ohwi(const std::vector<float>& w, uint64_t o, uint64_t ig, uint64_t kh,
                             uint64_t kw) {
  std::vector<float> out(w.size());
  size_t k = 0;
  for (uint64_t a = 0; a < o; ++a)
    for (uint64_t h = 0; h < kh; ++h)
      for (uint64_t x = 0; x < kw; ++x)
        for (uint64_t i = 0; i < ig; ++i) out[k++] = w[((a * ig + i) * kh + h) * kw + x];
  return out;
}

std::vector<float> floats_of(const mpsb::Tensor& t) {
  std::vector<float> v(t.size() / sizeof(float));
  std::memcpy(v.data(), t.data(), t.size());
  return v;
}

TEST(CompileTest, SameInputsGiveIdenticalBytes) {
  ModelBuilder m;
  add_mixed_layers(m);
  ASSERT_TRUE(m.compile("a.mpsb").ok());
  ASSERT_TRUE(m.compile("b.mpsb").ok());
  EXPECT_EQ(read_file(m.path("a.mpsb")), read_file(m.path("b.mpsb")));
}

TEST(CompileTest, JobsDoNotChangeBytes) {
  ModelBuilder m;
  add_mixed_layers(m);
  m.write_manifest();
  std::vector<uint8_t> first;
  for (unsigned jobs : {1u, 2u, 3u, 0u, 64u}) {
    SCOPED_TRACE(jobs);
    auto options = m.options("out.mpsb");
    options.jobs = jobs;
    ASSERT_TRUE(mpsbc::compile(options).ok());
    const auto bytes = read_file(m.path("out.mpsb"));
    if (first.empty()) {
      first = bytes;
    } else {
      EXPECT_EQ(bytes, first);
    }
  }
}

TEST(CompileTest, OffsetsAndSizesFollowTheAlignments) {
  for (auto [segment, tensor] :
       {std::pair<uint64_t, uint64_t>{16384, 256}, {4096, 64}, {65536, 65536}, {16, 16}}) {
    SCOPED_TRACE(::testing::Message() << segment << "/" << tensor);
    ModelBuilder m;
    add_mixed_layers(m);
    m.write_manifest();
    auto options = m.options();
    options.segment_alignment = segment;
    options.tensor_alignment = tensor;
    const auto report = mpsbc::compile(options);
    ASSERT_TRUE(report.ok());
    const auto file = read_file(m.path("out.mpsb"));
    const auto* root = root_of(file);
    EXPECT_EQ(root->segment_alignment(), segment);
    EXPECT_EQ(root->tensor_alignment(), tensor);
    EXPECT_EQ(root->segment_offset() % segment, 0u);
    EXPECT_EQ(root->segment_size() % segment, 0u);
    EXPECT_EQ(file.size() % segment, 0u);
    EXPECT_EQ(file.size(), root->segment_offset() + root->segment_size());
    EXPECT_EQ(report.file_size, file.size());
    uint32_t prefix;
    std::memcpy(&prefix, file.data(), 4);
    EXPECT_GE(root->segment_offset(), 4u + prefix);

    // Every byte outside the metadata and the tensors is zero.
    std::vector<bool> used(file.size(), false);
    for (size_t i = 0; i < 4u + prefix; ++i) used[i] = true;
    for (const auto* layer : *root->layers()) {
      for (const auto* t : *layer->tensors()) {
        EXPECT_EQ(t->offset() % tensor, 0u) << layer->name()->str();
        ASSERT_LE(t->offset() + t->size(), root->segment_size());
        for (uint64_t i = 0; i < t->size(); ++i)
          used[root->segment_offset() + t->offset() + i] = true;
      }
    }
    for (size_t i = 0; i < file.size(); ++i) {
      if (!used[i]) {
        ASSERT_EQ(file[i], 0) << "byte " << i;
      }
    }
  }
}

TEST(CompileTest, ChecksumsCoverTheStoredBytes) {
  ModelBuilder m;
  add_mixed_layers(m);
  ASSERT_TRUE(m.compile().ok());
  auto file = read_file(m.path("out.mpsb"));
  const auto* root = root_of(file);
  for (const auto* layer : *root->layers()) {
    for (const auto* t : *layer->tensors()) {
      EXPECT_EQ(t->checksum(),
                XXH3_64bits(file.data() + root->segment_offset() + t->offset(), t->size()));
    }
  }
  EXPECT_EQ(root->segment_checksum(),
            XXH3_64bits(file.data() + root->segment_offset(), root->segment_size()));
  // The metadata digest is taken with its own 8 bytes zeroed.
  uint32_t prefix;
  std::memcpy(&prefix, file.data(), 4);
  const uint64_t recorded = root->metadata_checksum();
  ASSERT_TRUE(mpsb::fb::GetMutableSizePrefixedBundle(file.data())->mutate_metadata_checksum(0));
  EXPECT_EQ(recorded, XXH3_64bits(file.data(), 4u + prefix));
}

TEST(CompileTest, LayersAreSortedByNameAndKeepManifestIndex) {
  ModelBuilder m;
  // Byte order: 'B' (0x42) < 'a' < 'b' < "\xc3\xa9" (é).
  m.add_conv("b", 4, 4, 1, 1);
  m.add_conv("\xc3\xa9", 4, 4, 1, 1);
  m.add_conv("a", 4, 4, 1, 1);
  m.add_conv("B", 4, 4, 1, 1);
  m.manifest()["name"] = "sorted";
  m.manifest()["metadata"] = {{"zeta", "1"}, {"alpha", "2"}};
  ASSERT_TRUE(m.compile().ok());
  const auto file = read_file(m.path("out.mpsb"));
  const auto* root = root_of(file);
  std::vector<std::pair<std::string, uint32_t>> layers;
  for (const auto* l : *root->layers()) layers.emplace_back(l->name()->str(), l->index());
  EXPECT_EQ(layers, (std::vector<std::pair<std::string, uint32_t>>{
                        {"B", 3}, {"a", 2}, {"b", 0}, {"\xc3\xa9", 1}}));
  ASSERT_NE(root->layers()->LookupByKey("a"), nullptr);
  EXPECT_EQ(root->layers()->LookupByKey("a")->index(), 2u);
  EXPECT_EQ(root->name()->str(), "sorted");
  EXPECT_EQ(root->producer()->str(), mpsbc::producer_string());
  ASSERT_EQ(root->metadata()->size(), 2u);
  EXPECT_EQ(root->metadata()->Get(0)->key()->str(), "alpha");
  EXPECT_EQ(root->metadata()->Get(1)->key()->str(), "zeta");
  // The segment holds tensors in manifest order: "b" first.
  EXPECT_EQ(root->layers()->LookupByKey("b")->tensors()->Get(0)->offset(), 0u);
}

TEST(CompileTest, RuntimeOpensBundleWithHandTransformedWeights) {
  ModelBuilder m;
  add_mixed_layers(m);
  ASSERT_TRUE(m.compile().ok());
  mpsb::OpenOptions open_options;
  open_options.verify_checksums = true;
  auto bundle = mpsb::Bundle::open(m.path("out.mpsb").string(), open_options);
  ASSERT_TRUE(bundle.ok()) << bundle.message();
  ASSERT_TRUE(bundle->verify().ok());
  EXPECT_EQ(bundle->layer_count(), 8u);
  EXPECT_EQ(bundle->layer_in_network_order(0).name(), "stem");

  struct Conv {
    const char* name;
    uint64_t out, ig, kh, kw;
  };
  for (const Conv& c : {Conv{"stem", 16, 3, 3, 3}, Conv{"dw", 16, 1, 3, 3},
                        Conv{"grouped", 32, 8, 1, 1}, Conv{"dilated", 8, 32, 3, 5}}) {
    SCOPED_TRACE(c.name);
    auto layer = bundle->find(c.name);
    ASSERT_TRUE(layer.has_value());
    EXPECT_EQ(layer->kind(), mpsb::LayerKind::kConv2d);
    auto w = layer->find(mpsb::TensorRole::kWeight);
    ASSERT_TRUE(w.has_value());
    EXPECT_EQ(w->layout(), mpsb::TensorLayout::kOHWI);
    EXPECT_EQ(std::vector<uint64_t>(w->shape().begin(), w->shape().end()),
              (std::vector<uint64_t>{c.out, c.kh, c.kw, c.ig}));
    EXPECT_EQ(std::vector<uint64_t>(w->source_shape().begin(), w->source_shape().end()),
              (std::vector<uint64_t>{c.out, c.ig, c.kh, c.kw}));
    EXPECT_EQ(floats_of(*w),
              hand_ohwi(m.floats(std::string(c.name) + ".weight"), c.out, c.ig, c.kh, c.kw));
  }
  // Depthwise: OHWI with I/g == 1 keeps the source bytes.
  EXPECT_EQ(floats_of(*bundle->find("dw")->find(mpsb::TensorRole::kWeight)), m.floats("dw.weight"));
  EXPECT_FALSE(bundle->find("dw")->find(mpsb::TensorRole::kBias).has_value());
  EXPECT_EQ(floats_of(*bundle->find("stem")->find(mpsb::TensorRole::kBias)), m.floats("stem.bias"));

  const auto dilated = bundle->find("dilated")->conv();
  EXPECT_EQ(dilated.dilation_h, 2u);
  EXPECT_EQ(dilated.dilation_w, 3u);
  EXPECT_EQ(dilated.padding_w, 6u);
  EXPECT_EQ(bundle->find("dilated")->activation(), mpsb::Activation::kLeakyReLU);
  EXPECT_FLOAT_EQ(bundle->find("dilated")->activation_alpha(), 0.2f);
  EXPECT_EQ(bundle->find("grouped")->conv().groups, 2u);

  const auto up = bundle->find("up");
  EXPECT_EQ(up->kind(), mpsb::LayerKind::kConvTranspose2d);
  EXPECT_EQ(up->conv().output_padding_h, 1u);
  const auto fc = bundle->find("fc")->linear();
  EXPECT_TRUE(fc.flattened());
  EXPECT_EQ(fc.input_c, 4u);
  EXPECT_EQ(bundle->find("bn")->tensor_count(), 4u);
  EXPECT_FLOAT_EQ(bundle->find("bn")->norm().eps, 1e-5f);
}

TEST(CompileTest, DilationDoesNotChangeStoredBytes) {
  ModelBuilder m;
  m.add_conv("c", 8, 8, 3, 3);
  ASSERT_TRUE(m.compile("plain.mpsb").ok());
  m.layer(0)["dilation"] = 2;
  ASSERT_TRUE(m.compile("dilated.mpsb").ok());
  auto plain = mpsb::Bundle::open(m.path("plain.mpsb").string());
  auto dilated = mpsb::Bundle::open(m.path("dilated.mpsb").string());
  ASSERT_TRUE(plain.ok() && dilated.ok());
  auto a = plain->find("c")->find(mpsb::TensorRole::kWeight);
  auto b = dilated->find("c")->find(mpsb::TensorRole::kWeight);
  EXPECT_EQ(floats_of(*a), floats_of(*b));
  EXPECT_EQ(dilated->find("c")->conv().dilation_h, 2u);
}

TEST(CompileTest, ReplacesOldBundleAndLeavesNoTemporaryFile) {
  ModelBuilder m;
  m.add_conv("c", 4, 4, 1, 1);
  ASSERT_TRUE(m.compile().ok());
  const auto first = read_file(m.path("out.mpsb"));
  m.add_conv("d", 4, 8, 1, 1);
  ASSERT_TRUE(m.compile().ok());
  EXPECT_NE(read_file(m.path("out.mpsb")), first);
  for (const auto& name : list_dir(m.dir())) EXPECT_EQ(name.find(".tmp-"), std::string::npos);
}

TEST(CompileTest, CheckReportsTheSameSizesAsCompile) {
  ModelBuilder m;
  add_mixed_layers(m);
  const auto compiled = m.compile();
  ASSERT_TRUE(compiled.ok());
  const auto checked = mpsbc::check_manifest(m.options());
  ASSERT_TRUE(checked.ok());
  EXPECT_EQ(checked.file_size, compiled.file_size);
  EXPECT_EQ(checked.segment_offset, compiled.segment_offset);
  EXPECT_EQ(checked.tensor_bytes, compiled.tensor_bytes);
  ASSERT_EQ(checked.layers.size(), 8u);
  EXPECT_EQ(checked.layers[0].name, "stem");
  EXPECT_EQ(checked.layers[0].kind, "conv2d");
  EXPECT_EQ(checked.layers[0].bytes, (16u * 3 * 3 * 3 + 16) * 4);
  EXPECT_EQ(checked.layers[0].tensor_count, 2u);
}

TEST(CompileTest, JsonReportParses) {
  ModelBuilder m;
  add_mixed_layers(m);
  const auto report = m.compile();
  const auto j = nlohmann::json::parse(mpsbc::report_to_json(report));
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["layers"].size(), 8u);
  EXPECT_EQ(j["file_size"].get<uint64_t>(), report.file_size);
}

TEST(CompileTest, TensorPathsMayBeObjectsAndAbsolute) {
  ModelBuilder m;
  m.add_conv("c", 4, 4, 1, 1);
  m.layer(0)["weight"] = {{"path", m.path("c.weight.bin").string()}, {"dtype", "float32"}};
  // Absolute paths leave the manifest's folder: refused unless allowed.
  ASSERT_FALSE(m.compile().ok());
  m.write_manifest();
  auto options = m.options();
  options.allow_outside = true;
  ASSERT_TRUE(mpsbc::compile(options).ok());
  auto bundle = mpsb::Bundle::open(m.path("out.mpsb").string());
  ASSERT_TRUE(bundle.ok()) << bundle.message();
}

}  // namespace

namespace {

// A .bin that changes between validation and writing fails the write phase:
// the temporary file goes, the old bundle stays.
TEST(WriterTest, InputChangedDuringWriteLeavesOldBundle) {
  ModelBuilder m;
  m.add_conv("a", 4, 8, 3, 3);
  m.add_conv("b", 8, 8, 3, 3);
  ASSERT_TRUE(m.compile("out.mpsb").ok());
  const auto old_bytes = read_file(m.path("out.mpsb"));

  const std::string manifest_path = m.options().manifest_path;
  mpsbc::Diagnostics diag(manifest_path);
  bool io_error = false;
  auto manifest = mpsbc::parse_manifest(manifest_path, diag, &io_error);
  ASSERT_TRUE(manifest.has_value());
  mpsbc::check_tensor_files(*manifest, diag);
  mpsbc::BundlePlan plan;
  ASSERT_TRUE(mpsbc::plan_bundle(*manifest, 16384, 256, &plan, diag));
  mpsbc::Metadata metadata;
  ASSERT_TRUE(mpsbc::build_metadata(*manifest, plan, &metadata, diag));
  ASSERT_FALSE(diag.has_errors());

  std::filesystem::resize_file(m.path("b.weight.bin"), 8);
  bool io_failure = true;
  mpsbc::WriteOptions write;
  write.jobs = 2;
  EXPECT_FALSE(mpsbc::write_bundle(*manifest, plan, std::move(metadata),
                                   m.path("out.mpsb").string(), write, diag, &io_failure));
  EXPECT_FALSE(io_failure);
  ASSERT_TRUE(diag.has_errors());
  EXPECT_EQ(diag.all().back().pointer, "/layers/1/weight");
  EXPECT_NE(diag.all().back().text.find("changed while compiling"), std::string::npos);
  EXPECT_EQ(read_file(m.path("out.mpsb")), old_bytes);
  for (const auto& name : list_dir(m.dir())) EXPECT_EQ(name.find(".tmp-"), std::string::npos);
}

}  // namespace
