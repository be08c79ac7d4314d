// Many threads open and read the same bundle file at once, and many threads
// share one open bundle: the runtime keeps no mutable state after open, so
// under ThreadSanitizer (scripts/sanitize.sh builds build-tsan) this must
// report no race. Also run in the normal suites.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsb/sources.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

constexpr int kThreads = 12;
constexpr int kRounds = 20;

std::vector<uint8_t> every_kind() {
  testing::BundleSpec spec;
  spec.layers.push_back(testing::conv_layer("conv", 16, 32, 3));
  spec.layers.push_back(testing::conv_layer("dw", 32, 32, 3, 32));
  spec.layers.push_back(testing::batch_norm_layer("bn", 32));
  spec.layers.push_back(testing::instance_norm_layer("in", 32));
  spec.layers.push_back(testing::conv_transpose_layer("up", 32, 16, 3, 2));
  spec.layers.push_back(testing::linear_layer("fc", 10, 16, 4, 4));
  return testing::build_bundle(spec);
}

// Everything a consumer reads; returns false on any inconsistency.
bool read_everything(const Bundle& b) {
  float sum = 0;
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    if (!b.find(l.name()) || b.layer_in_network_order(l.index()).name() != l.name()) return false;
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      const Tensor t = l.tensor(j);
      b.load(t);
      for (std::byte x : t.bytes()) sum += static_cast<float>(x);
    }
    if (auto c = ConvolutionSource::from(b, l); c.ok()) {
      c->load();
      if (const float* bias = c->bias_terms()) sum += bias[c->output_feature_channels() - 1];
      c->purge();
    }
    if (auto n = BatchNormSource::from(b, l); n.ok()) sum += n->mean()[0] + n->variance()[0];
    if (auto n = InstanceNormSource::from(b, l); n.ok() && n->gamma()) sum += n->gamma()[0];
    if (!b.verify_layer(l).ok()) return false;
  }
  return b.verify().ok() && sum == sum;
}

bool read_with_c_api(const mpsb_bundle* b) {
  for (size_t i = 0; i < mpsb_bundle_layer_count(b); ++i) {
    const mpsb_layer* l = mpsb_bundle_layer(b, i);
    if (mpsb_bundle_find_layer(b, mpsb_layer_name(b, l)) != l) return false;
    mpsb_conv_descriptor conv;
    mpsb_norm_descriptor norm;
    (void)mpsb_layer_conv_descriptor(b, l, &conv);
    (void)mpsb_layer_norm_descriptor(b, l, &norm);
    mpsb_layer_load(b, l);
    mpsb_layer_purge(b, l);
  }
  return mpsb_bundle_verify(b, nullptr, 0) == MPSB_OK;
}

TEST(Concurrency, ManyThreadsOpenAndReadTheSameFile) {
  testing::TempDir dir;
  const auto bytes = every_kind();
  const std::string path = (dir / "shared.mpsb").string();
  testing::write_file(path, bytes.data(), bytes.size());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int k = 0; k < kRounds; ++k) {
        if (i % 2 == 0) {
          auto b = Bundle::open(path, {.verify_checksums = k % 4 == 0});
          if (!b.ok() || !read_everything(*b)) ++failures;
        } else {
          mpsb_bundle* b = nullptr;
          if (mpsb_bundle_open(path.c_str(), 0, &b, nullptr, 0) != MPSB_OK || !read_with_c_api(b)) {
            ++failures;
          }
          mpsb_bundle_free(b);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST(Concurrency, ManyThreadsShareOneOpenBundle) {
  testing::TempDir dir;
  const auto bytes = every_kind();
  const std::string path = (dir / "shared.mpsb").string();
  testing::write_file(path, bytes.data(), bytes.size());
  auto b = Bundle::open(path);
  ASSERT_TRUE(b.ok()) << b.message();
  mpsb_bundle* c = nullptr;
  ASSERT_EQ(mpsb_bundle_open(path.c_str(), 0, &c, nullptr, 0), MPSB_OK);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int k = 0; k < kRounds; ++k) {
        if (!read_everything(*b) || !read_with_c_api(c)) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  mpsb_bundle_free(c);
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace mpsb
