// --precision end to end through mpsbc::compile and the runtime: what is
// stored, what MPS is told, what the report says, and the refusals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsb/sources.h"
#include "mpsbc/layout.h"
#include "mpsbc/precision.h"
#include "mpsbc/reference.h"

namespace mpsb::testing {
namespace {

using mpsbc::Precision;

// The source weight of `layer` in stored (OHWI) order.
std::vector<float> stored_order(const ModelBuilder& m, const std::string& layer,
                                const mpsbc::TensorPlan& plan) {
  const auto& src = m.floats(layer + ".weight");
  std::vector<float> out(src.size());
  mpsbc::apply(plan, src.data(), out.data(), sizeof(float));
  return out;
}

class PrecisionCompileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_.add_conv("conv", 16, 32, 3, 3);
    model_.add_conv("dw", 32, 32, 3, 3, 32);
    model_.add_conv_transpose("up", 32, 16, 4);
    model_.add_linear("fc", 16 * 2 * 2, 10, {16, 2, 2});
    model_.write_manifest();
  }

  Result<Bundle> compile_at(Precision p, mpsbc::CompileReport* report = nullptr) {
    auto o = model_.options("p.mpsb");
    o.precision = p;
    auto r = mpsbc::compile(o);
    if (report) *report = r;
    EXPECT_TRUE(r.ok()) << (errors_of(r).empty() ? "" : errors_of(r)[0].message);
    return Bundle::open(model_.path("p.mpsb").string(), {.verify_checksums = true});
  }

  ModelBuilder model_;
};

TEST_F(PrecisionCompileTest, Float16StoresRoundedWeightsAndFloat32Biases) {
  mpsbc::CompileReport report;
  auto b = compile_at(Precision::kFloat16, &report);
  ASSERT_TRUE(b.ok()) << b.message();
  const Layer conv = *b->find("conv");
  const Tensor w = *conv.find(TensorRole::kWeight);
  EXPECT_EQ(w.dtype(), DType::kFloat16);
  EXPECT_EQ(w.source_dtype(), DType::kFloat32);
  EXPECT_EQ(w.size(), 32u * 3 * 3 * 16 * 2);
  EXPECT_EQ(conv.find(TensorRole::kBias)->dtype(), DType::kFloat32);
  const auto want = stored_order(model_, "conv", mpsbc::plan_conv_weight(32, 16, 1, 3, 3));
  const auto* h = static_cast<const uint16_t*>(w.data());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(h[i], mpsbc::float_to_half(want[i])) << i;

  auto src = ConvolutionSource::from(*b, conv);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->data_type(), MPSDataType::kFloat16);
  EXPECT_EQ(src->kernel_weights_data_type(), MPSDataType::kFloat16);
  EXPECT_EQ(src->quantization(), Quantization::kNone);
  // The report and the bundle carry the error float16 introduced.
  EXPECT_GT(conv.weight_error().max_abs, 0.0);
  EXPECT_GT(conv.weight_error().sqnr_db(), 60.0);
  for (const auto& l : report.layers) {
    if (l.name == "conv") {
      EXPECT_EQ(l.precision, "float16");
      EXPECT_DOUBLE_EQ(l.max_abs_error, conv.weight_error().max_abs);
    }
  }
}

TEST_F(PrecisionCompileTest, TransposedConvKeepsFloat32WithANote) {
  mpsbc::CompileReport report;
  auto b = compile_at(Precision::kUInt8Linear, &report);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->find("up")->find(TensorRole::kWeight)->dtype(), DType::kFloat32);
  EXPECT_EQ(b->find("up")->quantization(), Quantization::kNone);
  bool noted = false;
  for (const auto& l : report.layers) {
    if (l.name == "up") {
      EXPECT_EQ(l.precision, "float32");
      noted = l.precision_note.find("MPSCNNConvolutionTranspose") != std::string::npos;
    }
  }
  EXPECT_TRUE(noted);
}

TEST_F(PrecisionCompileTest, Uint8LinearStoresCodesAndPerChannelRanges) {
  auto b = compile_at(Precision::kUInt8Linear);
  ASSERT_TRUE(b.ok()) << b.message();
  const Layer conv = *b->find("conv");
  EXPECT_EQ(conv.quantization(), Quantization::kLinear);
  const Tensor w = *conv.find(TensorRole::kWeight);
  EXPECT_EQ(w.dtype(), DType::kUInt8);
  const Tensor r = *conv.find(TensorRole::kQuantRanges);
  EXPECT_EQ(std::vector<uint64_t>(r.shape().begin(), r.shape().end()),
            (std::vector<uint64_t>{32, 2}));
  auto src = ConvolutionSource::from(*b, conv);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->data_type(), MPSDataType::kUInt8);
  EXPECT_EQ(src->kernel_weights_data_type(), MPSDataType::kFloat16);
  EXPECT_EQ(src->ranges_for_uint8_kernel(), r.data());
  EXPECT_EQ(src->lookup_table_for_uint8_kernel(), nullptr);
  // Dequantized as MPS would, each weight is within half a step of its source.
  const auto want = stored_order(model_, "conv", mpsbc::plan_conv_weight(32, 16, 1, 3, 3));
  auto got = mpsbc::decode_weights(conv);
  ASSERT_TRUE(got.ok());
  const auto* ranges = static_cast<const float*>(r.data());
  const size_t per = want.size() / 32;
  for (size_t i = 0; i < want.size(); ++i) {
    const float step = (ranges[2 * (i / per) + 1] - ranges[2 * (i / per)]) / 255.0f;
    ASSERT_LE(std::fabs((*got)[i] - want[i]), step * 0.5001f) << i;
  }
}

TEST_F(PrecisionCompileTest, Uint8LutStoresCodesAndATable) {
  auto b = compile_at(Precision::kUInt8Lut);
  ASSERT_TRUE(b.ok()) << b.message();
  const Layer fc = *b->find("fc");
  EXPECT_EQ(fc.quantization(), Quantization::kLookupTable);
  const Tensor table = *fc.find(TensorRole::kQuantLookupTable);
  EXPECT_EQ(table.element_count(), 256u);
  const auto* t = static_cast<const float*>(table.data());
  EXPECT_TRUE(std::is_sorted(t, t + 256));
  auto src = ConvolutionSource::from(*b, fc);
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->lookup_table_for_uint8_kernel(), t);
  EXPECT_GT(fc.weight_error().sqnr_db(), 30.0);
}

// --allow-non-finite with uint8: a weight holding NaN and infinities
// compiles (no undefined conversion; UBSan checks under scripts/sanitize.sh)
// and stores the codes docs/LAYERS.md documents: NaN and -infinity the row's
// min, +infinity its max.
TEST_F(PrecisionCompileTest, NonFiniteWeightsStoreDocumentedUint8Codes) {
  ModelBuilder m;
  m.add_conv("c", 1, 2, 1, 1, 1, false);
  const std::vector<float> w = {std::nanf(""), INFINITY};  // [2, 1, 1, 1]: one value per row
  write_vector(m.path("c.weight.bin"), w);
  m.write_manifest();
  for (const Precision p : {Precision::kUInt8Linear, Precision::kUInt8Lut}) {
    auto o = m.options("nf.mpsb");
    o.precision = p;
    o.allow_non_finite = true;
    const auto r = mpsbc::compile(o);
    ASSERT_TRUE(r.ok()) << (errors_of(r).empty() ? "" : errors_of(r)[0].message);
    auto b = Bundle::open(m.path("nf.mpsb").string(), {.verify_checksums = true});
    ASSERT_TRUE(b.ok()) << b.message();
    const Tensor t = *b->find("c")->find(TensorRole::kWeight);
    const auto* codes = static_cast<const uint8_t*>(t.data());
    EXPECT_EQ(codes[0], 0) << to_string(p);
    EXPECT_EQ(codes[1], p == Precision::kUInt8Linear ? 255 : 0) << to_string(p);
  }
}

TEST_F(PrecisionCompileTest, DepthwiseTakesFloat16InsteadOfUint8) {
  mpsbc::CompileReport report;
  auto b = compile_at(Precision::kUInt8Lut, &report);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->find("dw")->find(TensorRole::kWeight)->dtype(), DType::kFloat16);
  EXPECT_EQ(b->find("dw")->quantization(), Quantization::kNone);
  bool noted = false;
  for (const auto& d : report.diagnostics) {
    noted = noted || (d.pointer == "/layers/1" && d.text.find("depthwise") != std::string::npos);
  }
  EXPECT_TRUE(noted);
}

TEST_F(PrecisionCompileTest, LayerPrecisionOverridesTheDefault) {
  model_.layer(0)["precision"] = "float32";
  model_.layer(3)["precision"] = "uint8-linear";
  model_.write_manifest();
  auto b = compile_at(Precision::kFloat16);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->find("conv")->find(TensorRole::kWeight)->dtype(), DType::kFloat32);
  EXPECT_EQ(b->find("fc")->quantization(), Quantization::kLinear);
}

TEST_F(PrecisionCompileTest, UnknownLayerPrecisionIsAnError) {
  model_.layer(0)["precision"] = "int4";
  model_.write_manifest();
  const auto r = mpsbc::compile(model_.options("p.mpsb"));
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput);
  ASSERT_FALSE(errors_of(r).empty());
  EXPECT_EQ(errors_of(r)[0].pointer, "/layers/0/precision");
}

TEST_F(PrecisionCompileTest, Float16OverflowIsAnErrorUnlessAllowed) {
  // Two weights beyond float16's largest finite value, 65504.
  std::vector<float> w = model_.floats("conv.weight");
  w[3] = 70000.0f;
  w[9] = -1e6f;
  mpsb::testing::write_vector(model_.path("conv.weight.bin"), w);
  auto o = model_.options("p.mpsb");
  o.precision = Precision::kFloat16;
  auto r = mpsbc::compile(o);
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput);
  ASSERT_FALSE(errors_of(r).empty());
  EXPECT_NE(errors_of(r)[0].text.find("layer conv: 2 weights overflow float16"), std::string::npos)
      << errors_of(r)[0].message;
  EXPECT_FALSE(std::filesystem::exists(model_.path("p.mpsb")));

  o.allow_overflow = true;
  r = mpsbc::compile(o);
  ASSERT_TRUE(r.ok());
  auto b = Bundle::open(model_.path("p.mpsb").string());
  ASSERT_TRUE(b.ok());
  const auto w16 = b->find("conv")->find(TensorRole::kWeight);
  const auto* h = static_cast<const uint16_t*>(w16->data());
  size_t clamped = 0;
  for (size_t i = 0; i < w16->element_count(); ++i) clamped += (h[i] & 0x7fff) == 0x7bff;
  EXPECT_EQ(clamped, 2u);
  for (const auto& l : r.layers) {
    if (l.name == "conv") {
      EXPECT_EQ(l.half_overflow, 2u);
    }
  }
}

TEST_F(PrecisionCompileTest, HalfAndBFloat16SourcesAreReadExactly) {
  // The conv's weight as float16 and as bfloat16 files; float32 storage
  // widens both exactly.
  const auto& src = model_.floats("conv.weight");
  std::vector<uint16_t> half(src.size()), bf(src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    half[i] = mpsbc::float_to_half(src[i]);
    uint32_t bits;
    std::memcpy(&bits, &src[i], 4);
    bf[i] = uint16_t(bits >> 16);
  }
  for (const char* dtype : {"float16", "bfloat16"}) {
    SCOPED_TRACE(dtype);
    const bool is_half = std::string(dtype) == "float16";
    mpsb::testing::write_vector(model_.path("w16.bin"), is_half ? half : bf);
    model_.layer(0)["weight"] = {{"path", "w16.bin"}, {"dtype", dtype}};
    model_.write_manifest();
    auto b = compile_at(Precision::kFloat32);
    ASSERT_TRUE(b.ok());
    const Tensor w = *b->find("conv")->find(TensorRole::kWeight);
    EXPECT_EQ(w.dtype(), DType::kFloat32);
    EXPECT_EQ(w.source_dtype(), is_half ? DType::kFloat16 : DType::kBFloat16);
    std::vector<float> widened(src.size());
    mpsbc::to_float(is_half ? DType::kFloat16 : DType::kBFloat16,
                    is_half ? static_cast<const void*>(half.data()) : bf.data(), widened.data(),
                    widened.size());
    std::vector<float> want(src.size());
    mpsbc::apply(mpsbc::plan_conv_weight(32, 16, 1, 3, 3), widened.data(), want.data(), 4);
    EXPECT_EQ(std::memcmp(w.data(), want.data(), want.size() * 4), 0);
  }
}

TEST_F(PrecisionCompileTest, SameBytesWhateverTheJobCount) {
  // 9.4 MB of float32: the writer splits it into pieces over the workers.
  model_.add_conv("big", 512, 512, 3, 3);
  model_.write_manifest();
  for (Precision p : {Precision::kFloat16, Precision::kUInt8Linear, Precision::kUInt8Lut}) {
    SCOPED_TRACE(std::string(mpsbc::to_string(p)));
    std::vector<std::vector<uint8_t>> outputs;
    for (unsigned jobs : {1u, 3u}) {
      auto o = model_.options("j.mpsb");
      o.precision = p;
      o.jobs = jobs;
      ASSERT_TRUE(mpsbc::compile(o).ok());
      outputs.push_back(read_file(model_.path("j.mpsb")));
    }
    EXPECT_EQ(outputs[0], outputs[1]);
    if (p != Precision::kUInt8Linear) continue;
    // Pieces quantize with the ranges of their own rows: the codes equal a
    // quantization of the whole tensor at once.
    auto b = Bundle::open(model_.path("j.mpsb").string());
    ASSERT_TRUE(b.ok());
    const auto want = stored_order(model_, "big", mpsbc::plan_conv_weight(512, 512, 1, 3, 3));
    std::vector<uint8_t> q(want.size());
    std::vector<float> ranges(512 * 2);
    mpsbc::quantize_linear(want.data(), 512, want.size() / 512, q.data(), ranges.data());
    const Tensor w = *b->find("big")->find(TensorRole::kWeight);
    EXPECT_EQ(std::memcmp(w.data(), q.data(), q.size()), 0);
  }
}

}  // namespace
}  // namespace mpsb::testing
