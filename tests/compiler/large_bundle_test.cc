// A bundle over 4 GiB: four ~1.1 GiB tensors, one per transform, so the last
// tensors' offsets pass 2^32. Compiles with the real mpsbc (peak RSS measured
// through getrusage), opens, verifies every checksum, and inverts every
// tensor back to its source bytes. Takes minutes and ~10 GB of disk, so it
// runs only with MPSB_LONG_TESTS=1 (CTest label "long").

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsbc/layout.h"
#include "util/test_util.h"

namespace {

namespace fs = std::filesystem;

// Element e of tensor t: a cheap hash, so a misplaced element shows. Bit 30
// (the exponent's top bit) is cleared so every value is a finite float: the
// compiler refuses NaN and infinity.
uint32_t value(uint32_t t, uint64_t e) {
  uint64_t x = (e + 1) * 0x9E3779B97F4A7C15ull + t * 0xD1B54A32D192ED03ull;
  x ^= x >> 29;
  return uint32_t(x * 0xBF58476D1CE4E5B9ull >> 32) & 0xBFFFFFFFu;
}

void write_tensor(const fs::path& p, uint32_t t, uint64_t count) {
  std::FILE* f = std::fopen(p.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::vector<uint32_t> buf(uint64_t{1} << 24);
  for (uint64_t e = 0; e < count;) {
    const uint64_t n = std::min<uint64_t>(buf.size(), count - e);
    for (uint64_t i = 0; i < n; ++i) buf[i] = value(t, e + i);
    ASSERT_EQ(std::fwrite(buf.data(), 4, n, f), n);
    e += n;
  }
  ASSERT_EQ(std::fclose(f), 0);
}

// Runs argv, returns the exit status; *max_rss_kib gets the child's peak RSS.
int run(const std::vector<std::string>& argv, long* max_rss_kib) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  struct rusage ru;
  ::wait4(pid, &status, 0, &ru);
  *max_rss_kib = ru.ru_maxrss;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(LargeBundleTest, OverFourGiBCompilesOpensVerifiesAndExtracts) {
  const char* long_tests = std::getenv("MPSB_LONG_TESTS");
  if (!long_tests || std::string(long_tests) != "1") {
    GTEST_SKIP() << "set MPSB_LONG_TESTS=1 to run (builds a ~4.7 GB bundle)";
  }
  mpsb::testing::TempDir dir;
  struct Spec {
    const char* name;
    nlohmann::json layer;
    mpsbc::TensorPlan plan;
  };
  const std::vector<uint64_t> chw = {1024, 16, 16};
  std::vector<Spec> specs = {
      {"conv",
       {{"type", "conv2d"}, {"in_channels", 4000}, {"out_channels", 8192}, {"kernel_size", 3}},
       mpsbc::plan_conv_weight(8192, 4000, 1, 3, 3)},
      {"up",
       {{"type", "conv_transpose2d"},
        {"in_channels", 8192},
        {"out_channels", 4504},
        {"kernel_size", 4},
        {"groups", 2}},
       mpsbc::plan_conv_transpose_weight(8192, 4504, 2, 4, 4)},
      {"fc",
       {{"type", "linear"},
        {"in_features", 1024 * 16 * 16},
        {"out_features", 1150},
        {"input_shape", {1024, 16, 16}}},
       mpsbc::plan_linear_weight(1150, 1024 * 16 * 16, chw)},
      {"vec",
       {{"type", "linear"}, {"in_features", 18000}, {"out_features", 16384}},
       mpsbc::plan_linear_weight(16384, 18000, {})},
  };
  nlohmann::json manifest = {{"format", "mpsb.manifest/1"}, {"name", "large"}, {"layers", {}}};
  for (uint32_t t = 0; t < specs.size(); ++t) {
    auto layer = specs[t].layer;
    layer["name"] = specs[t].name;
    layer["weight"] = std::string(specs[t].name) + ".bin";
    manifest["layers"].push_back(layer);
    write_tensor(dir / (std::string(specs[t].name) + ".bin"), t, specs[t].plan.element_count());
    if (HasFatalFailure()) return;
  }
  // The last layer's bias lies past 4 GiB: its offset needs 64 bits.
  manifest["layers"][3]["bias"] = "vec.bias.bin";
  write_tensor(dir / "vec.bias.bin", 4, 16384);
  std::ofstream(dir / "manifest.json") << manifest.dump(1);

  const auto start = std::chrono::steady_clock::now();
  long rss_kib = 0;
  const fs::path bundle_path = dir / "large.mpsb";
  ASSERT_EQ(
      run({MPSBC_BINARY, "compile", (dir / "manifest.json").string(), "-o", bundle_path.string()},
          &rss_kib),
      0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("compile: %.1f s, peak RSS %.1f MiB, bundle %llu bytes\n", seconds,
              double(rss_kib) / 1024, (unsigned long long)fs::file_size(bundle_path));
  RecordProperty("compile_seconds", std::to_string(seconds));
  RecordProperty("compile_peak_rss_kib", std::to_string(rss_kib));
  // Bounded memory: pieces of at most 4 MiB per worker, not whole tensors.
  EXPECT_LT(rss_kib, 256 * 1024);

  auto bundle = mpsb::Bundle::open(bundle_path.string());
  ASSERT_TRUE(bundle.ok()) << bundle.message();
  EXPECT_GT(bundle->file().size(), uint64_t{1} << 32);
  // The last weight ends past 4 GiB.
  const auto last = bundle->find("vec")->find(mpsb::TensorRole::kWeight);
  EXPECT_GT(bundle->segment_offset() + last->offset() + last->size(), uint64_t{1} << 32);
  ASSERT_TRUE(bundle->verify().ok()) << bundle->verify().message();

  for (uint32_t t = 0; t < specs.size(); ++t) {
    SCOPED_TRACE(specs[t].name);
    const auto w = bundle->find(specs[t].name)->find(mpsb::TensorRole::kWeight);
    ASSERT_TRUE(w.has_value());
    const uint64_t n = specs[t].plan.element_count();
    ASSERT_EQ(w->size(), n * 4);
    // Extract: stored -> source order, then every element against its value.
    // Uninitialised; new T[n] as libc++ 14 has no make_unique_for_overwrite.
    std::unique_ptr<uint32_t[]> back(new uint32_t[n]);
    mpsbc::invert(specs[t].plan, w->data(), back.get(), 4);
    uint64_t bad = 0;
    for (uint64_t e = 0; e < n; ++e) bad += back[e] != value(t, e);
    EXPECT_EQ(bad, 0u);
    bundle->purge(*w);
  }
  const auto bias = bundle->find("vec")->find(mpsb::TensorRole::kBias);
  ASSERT_TRUE(bias.has_value());
  EXPECT_GT(bundle->segment_offset() + bias->offset(), uint64_t{1} << 32);
  std::vector<uint32_t> bias_back(16384);
  mpsbc::invert(mpsbc::plan_vector(16384), bias->data(), bias_back.data(), 4);
  for (uint64_t e = 0; e < bias_back.size(); ++e) ASSERT_EQ(bias_back[e], value(4, e));
}

}  // namespace
