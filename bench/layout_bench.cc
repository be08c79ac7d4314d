// Layout transform throughput (GB/s of tensor bytes) for representative
// tensors: the compiler's blocked transform (mpsbc::apply) at the best
// vector level this CPU has ("fast") and at each lower one (sse2, avx2,
// ...), memcpy of the same bytes (the limit) and the four-nested-loop
// reorder written by hand (what apps do today). scripts/bench.sh runs it
// with repetitions and prints medians and ratios.

#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "layout_cases.h"
#include "mpsbc/layout.h"
#include "naive_reorder.h"

namespace {

// 64-byte aligned, as the compiler's piece buffers are
// (compiler/src/bundle_writer.cc).
struct Free {
  void operator()(float* p) const { std::free(p); }
};
using Floats = std::unique_ptr<float[], Free>;

Floats aligned_floats(uint64_t n) {
  return Floats(static_cast<float*>(std::aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64)));
}

struct Buffers {
  Floats src, dst;
  explicit Buffers(uint64_t n) : src(aligned_floats(n)), dst(aligned_floats(n)) {
    std::mt19937 rng(1);
    std::uniform_real_distribution<float> u(-1, 1);
    for (uint64_t k = 0; k < n; ++k) src[k] = u(rng);
    std::memset(dst.get(), 0, n * sizeof(float));  // fault the pages in
  }
};

enum Method { kFast, kMemcpy, kNaive, kLevel };

// kFast and kLevel run apply() at `level` (kFast: the best one).
void run(benchmark::State& state, const mpsbc::TensorPlan& plan, Method method, mpsbc::Isa level) {
  const uint64_t n = plan.element_count();
  Buffers b(n);
  mpsbc::set_max_isa(level);
  for (auto _ : state) {
    switch (method) {
      case kFast:
      case kLevel:
        mpsbc::apply(plan, b.src.get(), b.dst.get(), sizeof(float));
        break;
      case kMemcpy:
        std::memcpy(b.dst.get(), b.src.get(), n * sizeof(float));
        break;
      case kNaive:
        mpsb::bench::naive_reorder(plan, b.src.get(), b.dst.get());
        break;
    }
    benchmark::DoNotOptimize(b.dst.get());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(n * sizeof(float)));
  state.counters["tensor_bytes"] = double(n * sizeof(float));
}

const int registered = [] {
  // The levels below the best one this CPU has, for comparison.
  const mpsbc::Isa best = mpsbc::max_isa();
  for (const auto& c : mpsb::bench::layout_cases()) {
    auto add = [&](const std::string& label, Method m, mpsbc::Isa level) {
      benchmark::RegisterBenchmark(
          (std::string("transform/") + c.name + "/" + label).c_str(),
          [plan = c.plan, m, level](benchmark::State& s) { run(s, plan, m, level); })
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.2);
    };
    add("fast", kFast, best);
    add("memcpy", kMemcpy, best);
    add("naive", kNaive, best);
    for (mpsbc::Isa level : {mpsbc::Isa::kScalar, mpsbc::Isa::kSse2, mpsbc::Isa::kAvx2}) {
      // Only levels this CPU has below its best (on arm64: scalar).
      if (level != best && mpsbc::set_max_isa(level) == level) {
        add(mpsbc::isa_name(level), kLevel, level);
      }
    }
    mpsbc::set_max_isa(best);
  }
  return 0;
}();

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("mpsb_isa", mpsbc::isa_name(mpsbc::max_isa()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
