// Where the transposed conv's transform loses time (BENCHMARKS.md, "Where a
// target is missed"): the AVX-512 kernel of compiler/src/layout.cc for the
// 4x4 512->256 transposed conv of the benchmark, and the SSE2 4x4 blocks of
// the levels below it ("sse2:" rows), in variants that change one thing
// each, alternated with memcpy of the same bytes in one process.
// Prints the median GB/s of each and its ratio to memcpy.
//
//   mpsb_convt_probe [--huge] [--trials N]
//
// --huge asks for 2 MiB pages (MADV_HUGEPAGE) and prints how many the
// buffers got. Needs AVX-512F; x86-64 only. The variants that compute the
// real transform are checked against mpsbc::apply first; the two probes
// ("source in L1", "destination fixed") compute garbage on purpose.

#include <sys/mman.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mpsbc/layout.h"
#include "transpose16.h"

namespace {

constexpr int kSp = 16;  // 4x4 kernel positions: one 64-byte line per (i, o)

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + double(t.tv_nsec) * 1e-9;
}

// What a variant changes, as template arguments so that each variant is
// compiled as tightly as the library's kernel: how many output channels one
// pass walks, what is prefetched, and for the probes where the loads or the
// stores go.
struct Variant {
  int channels = 1;           // output channels per pass over the input rows
  int prefetch_next_o = 0;    // prefetch each row's line this many channels on
  int prefetch_ahead = 0;     // prefetch the block this many blocks on, into
  bool ahead_to_l2 = false;   // L1 (prefetcht0) or L2 (prefetcht1)
  bool source_in_l1 = false;  // probe: every block loads the same 16 lines
  bool dest_fixed = false;    // probe: every block stores to the same 16 lines
  int pad = 0;                // extra elements after each input channel's row of the source
};

// dst[o][15 - k][i] = src[i][o][k]; I input, O output channels, one group.
template <Variant v>
__attribute__((target("avx512f"), noinline)) void transform(const float* src, float* dst, int in,
                                                            int out) {
  for (int o0 = 0; o0 < out; o0 += v.channels) {
    for (int i0 = 0; i0 < in; i0 += 16) {
      if constexpr (v.prefetch_ahead != 0) {
        int pi = i0 + 16 * v.prefetch_ahead, po = o0;
        if (pi >= in) pi -= in, po += v.channels;
        for (int i = 0; i < 16 && po < out; ++i) {
          const char* p = reinterpret_cast<const char*>(
              src + size_t(pi + i) * (size_t(out) * kSp + v.pad) + size_t(po) * kSp);
          _mm_prefetch(p, v.ahead_to_l2 ? _MM_HINT_T1 : _MM_HINT_T0);
        }
      }
      for (int o = o0; o < o0 + v.channels; ++o) {
        const int si = v.source_in_l1 ? 0 : i0, so = v.source_in_l1 ? 0 : o;
        __m512 r[16];
        for (int i = 0; i < 16; ++i) {
          const float* p = src + size_t(si + i) * (size_t(out) * kSp + v.pad) + size_t(so) * kSp;
          if constexpr (v.prefetch_next_o != 0) {
            _mm_prefetch(reinterpret_cast<const char*>(p + v.prefetch_next_o * kSp), _MM_HINT_T0);
          }
          r[i] = _mm512_loadu_ps(p);
        }
        mpsbc::transpose16(r);
        const int di = v.dest_fixed ? 0 : i0, d = v.dest_fixed ? 0 : o;
        float* q = dst + (size_t(d) * kSp + kSp - 1) * in + di;
        for (int k = 0; k < 16; ++k) _mm512_storeu_ps(q - ptrdiff_t(k) * in, r[k]);
      }
    }
  }
}

// The same transform in the SSE2 4x4 blocks that the levels below AVX-512
// use (mpsbc's transpose_u32_fixed with kPrefetch): per output channel, 4 input rows
// at a time, each row's 64-byte line read in four 16-byte pieces. Of
// Variant: prefetch_next_o (into L2, as the library does), source_in_l1,
// pad.
template <Variant v>
__attribute__((noinline)) void transform4(const float* src, float* dst, int in, int out) {
  const size_t row = size_t(out) * kSp + v.pad;
  for (int o = 0; o < out; ++o) {
    for (int i0 = 0; i0 < in; i0 += 4) {
      const int si = v.source_in_l1 ? 0 : i0;
      const float* p = src + size_t(si) * row + size_t(o) * kSp;
      if constexpr (v.prefetch_next_o != 0) {
        for (int i = 0; i < 4; ++i) {
          _mm_prefetch(reinterpret_cast<const char*>(p + i * row + v.prefetch_next_o * kSp),
                       _MM_HINT_T1);
        }
      }
      float* q = dst + (size_t(o) * kSp + kSp - 1) * in + i0;
      for (int c = 0; c < kSp; c += 4) {
        __m128 a = _mm_loadu_ps(p + c), b = _mm_loadu_ps(p + row + c);
        __m128 d = _mm_loadu_ps(p + 2 * row + c), e = _mm_loadu_ps(p + 3 * row + c);
        _MM_TRANSPOSE4_PS(a, b, d, e);
        _mm_storeu_ps(q - ptrdiff_t(c) * in, a);
        _mm_storeu_ps(q - ptrdiff_t(c + 1) * in, b);
        _mm_storeu_ps(q - ptrdiff_t(c + 2) * in, d);
        _mm_storeu_ps(q - ptrdiff_t(c + 3) * in, e);
      }
    }
  }
}

// `channels` output channels per pass, but one channel at a time over each
// run of `rows` input rows: the second channel's source lines sit next to
// the first's (the same 128-byte pairs), while only one channel's 16
// destination rows are being extended at a time.
template <int kChannels, int kRows>
__attribute__((target("avx512f"), noinline)) void transform_runs(const float* src, float* dst,
                                                                 int in, int out) {
  for (int o0 = 0; o0 < out; o0 += kChannels) {
    for (int r0 = 0; r0 < in; r0 += kRows) {
      for (int o = o0; o < o0 + kChannels; ++o) {
        for (int i0 = r0; i0 < r0 + kRows; i0 += 16) {
          __m512 r[16];
          for (int i = 0; i < 16; ++i)
            r[i] = _mm512_loadu_ps(src + (size_t(i0 + i) * out + o) * kSp);
          mpsbc::transpose16(r);
          float* q = dst + (size_t(o) * kSp + kSp - 1) * in + i0;
          for (int k = 0; k < 16; ++k) _mm512_storeu_ps(q - ptrdiff_t(k) * in, r[k]);
        }
      }
    }
  }
}

// Copies each pass's strided lines into a contiguous buffer first, then
// transposes from there.
__attribute__((target("avx512f"), noinline)) void transform_staged(int channels, const float* src,
                                                                   float* dst, int in, int out) {
  static std::vector<float> stage;
  stage.resize(size_t(channels) * in * kSp);
  for (int o0 = 0; o0 < out; o0 += channels) {
    for (int i = 0; i < in; ++i) {
      for (int c = 0; c < channels; ++c) {
        _mm512_storeu_ps(&stage[(size_t(c) * in + i) * kSp],
                         _mm512_loadu_ps(src + (size_t(i) * out + o0 + c) * kSp));
      }
    }
    for (int c = 0; c < channels; ++c) {
      for (int i0 = 0; i0 < in; i0 += 16) {
        __m512 r[16];
        for (int i = 0; i < 16; ++i)
          r[i] = _mm512_loadu_ps(&stage[(size_t(c) * in + i0 + i) * kSp]);
        mpsbc::transpose16(r);
        float* q = dst + (size_t(o0 + c) * kSp + kSp - 1) * in + i0;
        for (int k = 0; k < 16; ++k) _mm512_storeu_ps(q - ptrdiff_t(k) * in, r[k]);
      }
    }
  }
}

float* buffer(size_t bytes, bool huge) {
  const size_t size = (bytes + (2u << 20) - 1) & ~size_t((2u << 20) - 1);
  void* p = std::aligned_alloc(2u << 20, size);
  if (p == nullptr) std::abort();
  if (huge) madvise(p, size, MADV_HUGEPAGE);
  std::memset(p, 0, size);
  return static_cast<float*>(p);
}

}  // namespace

int main(int argc, char** argv) {
  bool huge = false;
  int trials = 11;
  for (int a = 1; a < argc; ++a) {
    if (std::string(argv[a]) == "--huge") {
      huge = true;
    } else if (std::string(argv[a]) == "--trials" && a + 1 < argc) {
      trials = std::max(1, std::atoi(argv[++a]));
    } else {
      std::fprintf(stderr, "usage: mpsb_convt_probe [--huge] [--trials N]\n");
      return 2;
    }
  }
  if (mpsbc::max_isa() != mpsbc::Isa::kAvx512) {
    std::fprintf(stderr, "mpsb_convt_probe: needs AVX-512F (this CPU: %s)\n",
                 mpsbc::isa_name(mpsbc::max_isa()));
    return 1;
  }
  const int in = 512, out = 256;
  const mpsbc::TensorPlan plan = mpsbc::plan_conv_transpose_weight(in, out, 1, 4, 4);
  const size_t n = plan.element_count(), bytes = n * sizeof(float);
  float* src = buffer(bytes, huge);
  float* dst = buffer(bytes, huge);
  float* want = buffer(bytes, huge);
  std::mt19937 rng(1);
  for (size_t k = 0; k < n; ++k) src[k] = float(rng());
  mpsbc::apply(plan, src, want, sizeof(float));
  // The same source with 64 bytes after each input channel's row, so that
  // rows are no longer a multiple of 4 KiB apart.
  constexpr int kPad = 16;
  float* padded = buffer(bytes + size_t(in) * kPad * sizeof(float), huge);
  for (int i = 0; i < in; ++i) {
    std::memcpy(padded + size_t(i) * (size_t(out) * kSp + kPad), src + size_t(i) * out * kSp,
                size_t(out) * kSp * sizeof(float));
  }

  struct Row {
    const char* name;
    bool exact;  // computes the real transform
    std::function<void()> run;
  };
  auto run = [&](auto f) { return [=] { f(src, dst, in, out); }; };
  auto run_padded = [&](auto f) { return [=] { f(padded, dst, in, out); }; };
  const std::vector<Row> rows = {
      {"memcpy", false, [&] { std::memcpy(dst, src, bytes); }},
      {"mpsbc::apply", true, [&] { mpsbc::apply(plan, src, dst, sizeof(float)); }},
      {"1 channel/pass, no prefetch", true, run(transform<Variant{}>)},
      {"1 channel, prefetch next channel", true, run(transform<Variant{.prefetch_next_o = 1}>)},
      {"1 channel, prefetch 2 blocks on (L1)", true, run(transform<Variant{.prefetch_ahead = 2}>)},
      {"1 channel, prefetch 8 blocks on (L1)", true, run(transform<Variant{.prefetch_ahead = 8}>)},
      {"1 channel, prefetch 2 blocks on (L2)", true,
       run(transform<Variant{.prefetch_ahead = 2, .ahead_to_l2 = true}>)},
      {"2 channels/pass", true, run(transform<Variant{.channels = 2}>)},
      {"4 channels/pass", true, run(transform<Variant{.channels = 4}>)},
      {"8 channels/pass", true, run(transform<Variant{.channels = 8}>)},
      {"16 channels/pass", true, run(transform<Variant{.channels = 16}>)},
      {"2 channels, runs of 64 rows", true, run(transform_runs<2, 64>)},
      {"2 channels, runs of 128 rows", true, run(transform_runs<2, 128>)},
      {"4 channels, runs of 64 rows", true, run(transform_runs<4, 64>)},
      {"padded rows, no prefetch", true, run_padded(transform<Variant{.pad = kPad}>)},
      {"padded rows, prefetch next channel", true,
       run_padded(transform<Variant{.prefetch_next_o = 1, .pad = kPad}>)},
      {"padded rows, prefetch 2 blocks on", true,
       run_padded(transform<Variant{.prefetch_ahead = 2, .pad = kPad}>)},
      {"padded rows, prefetch 4 blocks on", true,
       run_padded(transform<Variant{.prefetch_ahead = 4, .pad = kPad}>)},
      {"staged, 1 channel", true, [&] { transform_staged(1, src, dst, in, out); }},
      {"staged, 4 channels", true, [&] { transform_staged(4, src, dst, in, out); }},
      {"probe: source in L1", false, run(transform<Variant{.source_in_l1 = true}>)},
      {"probe: destination fixed", false, run(transform<Variant{.dest_fixed = true}>)},
      {"sse2: mpsbc::apply at sse2", true,
       [&] {
         mpsbc::set_max_isa(mpsbc::Isa::kSse2);
         mpsbc::apply(plan, src, dst, sizeof(float));
         mpsbc::set_max_isa(mpsbc::Isa::kAvx512);
       }},
      {"sse2: no prefetch", true, run(transform4<Variant{}>)},
      {"sse2: prefetch 2 channels on (L2)", true, run(transform4<Variant{.prefetch_next_o = 2}>)},
      {"sse2: padded rows, no prefetch", true, run_padded(transform4<Variant{.pad = kPad}>)},
      {"sse2: padded rows, prefetch 2 on (L2)", true,
       run_padded(transform4<Variant{.prefetch_next_o = 2, .pad = kPad}>)},
      {"sse2 probe: source in L1", false, run(transform4<Variant{.source_in_l1 = true}>)},
  };
  for (const Row& r : rows) {
    if (!r.exact) continue;
    std::memset(dst, 0, bytes);
    r.run();
    if (std::memcmp(dst, want, bytes) != 0) {
      std::fprintf(stderr, "mpsb_convt_probe: %s computes a different transform\n", r.name);
      return 1;
    }
  }
  std::vector<std::vector<double>> gbs(rows.size());
  const int reps = 24;
  for (int t = 0; t < trials; ++t) {
    for (size_t k = 0; k < rows.size(); ++k) {
      const double t0 = cpu_seconds();
      for (int r = 0; r < reps; ++r) {
        rows[k].run();
        asm volatile("" ::: "memory");
      }
      gbs[k].push_back(double(bytes) * reps / (cpu_seconds() - t0) / 1e9);
    }
  }
  if (huge) {
    if (FILE* f = std::fopen("/proc/self/smaps_rollup", "r")) {
      char line[256];
      while (std::fgets(line, sizeof line, f)) {
        if (std::strstr(line, "AnonHugePages")) std::printf("%s", line);
      }
      std::fclose(f);
    }
  }
  std::printf("transposed conv 4x4 512->256 (%.2f MB), median of %d trials of %d calls\n",
              double(bytes) / 1e6, trials, reps);
  double limit = 0;
  for (size_t k = 0; k < rows.size(); ++k) {
    std::sort(gbs[k].begin(), gbs[k].end());
    const double m = gbs[k][gbs[k].size() / 2];
    if (k == 0) limit = m;
    std::printf("  %-40s %6.1f GB/s  %.2fx memcpy\n", rows[k].name, m, m / limit);
  }
  return 0;
}
