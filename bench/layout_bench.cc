// Layout transform throughput (GB/s of tensor bytes) for representative
// tensors: the compiler's blocked transform (mpsbc::apply), memcpy of the
// same bytes (the limit) and the four-nested-loop reorder written by hand
// (what apps do today). scripts/bench.sh runs it with repetitions and prints
// medians and ratios.

#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "mpsbc/layout.h"
#include "naive_reorder.h"

namespace {

struct Case {
  const char* name;
  mpsbc::TensorPlan plan;
};

std::vector<Case> cases() {
  const std::vector<uint64_t> chw = {256, 6, 6};
  return {
      {"conv3x3_c64", mpsbc::plan_conv_weight(64, 64, 1, 3, 3)},
      {"conv3x3_c256", mpsbc::plan_conv_weight(256, 256, 1, 3, 3)},
      {"conv3x3_c512", mpsbc::plan_conv_weight(512, 512, 1, 3, 3)},
      {"conv3x3_c1024", mpsbc::plan_conv_weight(1024, 1024, 1, 3, 3)},
      {"conv1x1_2048x512", mpsbc::plan_conv_weight(2048, 512, 1, 1, 1)},
      {"stem7x7_64x3", mpsbc::plan_conv_weight(64, 3, 1, 7, 7)},
      {"depthwise3x3_c1024", mpsbc::plan_conv_weight(1024, 1024, 1024, 3, 3)},
      {"convT4x4_512to256", mpsbc::plan_conv_transpose_weight(512, 256, 1, 4, 4)},
      {"linear_flatten_4096x9216", mpsbc::plan_linear_weight(4096, 9216, chw)},
  };
}

struct Buffers {
  std::vector<float> src, dst;
  explicit Buffers(uint64_t n) : src(n), dst(n) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    for (auto& v : src) v = u(rng);
    std::memset(dst.data(), 0, n * sizeof(float));  // fault the pages in
  }
};

void run(benchmark::State& state, const mpsbc::TensorPlan& plan, int method) {
  const uint64_t n = plan.element_count();
  Buffers b(n);
  for (auto _ : state) {
    switch (method) {
      case 0:
        mpsbc::apply(plan, b.src.data(), b.dst.data(), sizeof(float));
        break;
      case 1:
        std::memcpy(b.dst.data(), b.src.data(), n * sizeof(float));
        break;
      case 2:
        mpsb::bench::naive_reorder(plan, b.src.data(), b.dst.data());
        break;
    }
    benchmark::DoNotOptimize(b.dst.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n * sizeof(float)));
  state.counters["tensor_bytes"] = double(n * sizeof(float));
}

const int registered = [] {
  for (const Case& c : cases()) {
    const char* methods[] = {"fast", "memcpy", "naive"};
    for (int m = 0; m < 3; ++m) {
      benchmark::RegisterBenchmark((std::string("transform/") + c.name + "/" + methods[m]).c_str(),
                                   [plan = c.plan, m](benchmark::State& s) { run(s, plan, m); })
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.2);
    }
  }
  return 0;
}();

}  // namespace

BENCHMARK_MAIN();
