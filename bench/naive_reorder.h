// The reorder apps write by hand today: four nested loops with the index
// arithmetic of docs/FORMAT.md §3, one element at a time. The benchmarks
// measure the compiler's blocked transforms (mpsbc::apply) against it, and
// tests/compiler/layout_fast_test.cc checks them against it, for any element
// size.

#ifndef MPSB_BENCH_NAIVE_REORDER_H_
#define MPSB_BENCH_NAIVE_REORDER_H_

#include <cstdint>

#include "mpsbc/layout.h"

namespace mpsb::bench {

template <typename T>
void naive_reorder(const mpsbc::TensorPlan& p, const T* src, T* dst) {
  const auto& s = p.source_shape;
  const auto& d = p.stored_shape;
  switch (p.transform) {
    case mpsb::Transform::kIdentity:
      for (uint64_t k = 0; k < p.element_count(); ++k) dst[k] = src[k];
      return;
    case mpsb::Transform::kBroadcast:
      for (uint64_t k = 0; k < p.element_count(); ++k) dst[k] = src[0];
      return;
    case mpsb::Transform::kConvOIHWToOHWI: {
      const uint64_t O = s[0], I = s[1], H = s[2], W = s[3];
      for (uint64_t o = 0; o < O; ++o)
        for (uint64_t h = 0; h < H; ++h)
          for (uint64_t w = 0; w < W; ++w)
            for (uint64_t i = 0; i < I; ++i)
              dst[((o * H + h) * W + w) * I + i] = src[((o * I + i) * H + h) * W + w];
      return;
    }
    case mpsb::Transform::kNCHWToNHWC: {
      const uint64_t N = s[0], C = s[1], H = s[2], W = s[3];
      for (uint64_t n = 0; n < N; ++n)
        for (uint64_t h = 0; h < H; ++h)
          for (uint64_t w = 0; w < W; ++w)
            for (uint64_t c = 0; c < C; ++c)
              dst[((n * H + h) * W + w) * C + c] = src[((n * C + c) * H + h) * W + w];
      return;
    }
    case mpsb::Transform::kConvTransposeToOHWIRotated: {
      const uint64_t Og = s[1], H = s[2], W = s[3], Ig = d[3], G = s[0] / Ig;
      for (uint64_t g = 0; g < G; ++g)
        for (uint64_t o = 0; o < Og; ++o)
          for (uint64_t h = 0; h < H; ++h)
            for (uint64_t w = 0; w < W; ++w)
              for (uint64_t i = 0; i < Ig; ++i)
                dst[(((g * Og + o) * H + h) * W + w) * Ig + i] =
                    src[((g * Ig + i) * Og + o) * H * W + (H - 1 - h) * W + (W - 1 - w)];
      return;
    }
    case mpsb::Transform::kConvGroupedToDense: {
      const uint64_t O = s[0], Ig = s[1], H = s[2], W = s[3], I = d[3], Og = O / (I / Ig);
      for (uint64_t k = 0; k < p.element_count(); ++k) dst[k] = T{0};
      for (uint64_t o = 0; o < O; ++o)
        for (uint64_t h = 0; h < H; ++h)
          for (uint64_t w = 0; w < W; ++w)
            for (uint64_t i = 0; i < Ig; ++i)
              dst[((o * H + h) * W + w) * I + o / Og * Ig + i] =
                  src[((o * Ig + i) * H + h) * W + w];
      return;
    }
    case mpsb::Transform::kConvTransposeGroupedToDenseRotated: {
      const uint64_t I = s[0], Og = s[1], H = s[2], W = s[3], O = d[0], Ig = I / (O / Og);
      for (uint64_t k = 0; k < p.element_count(); ++k) dst[k] = T{0};
      for (uint64_t o = 0; o < O; ++o)
        for (uint64_t h = 0; h < H; ++h)
          for (uint64_t w = 0; w < W; ++w)
            for (uint64_t i = 0; i < Ig; ++i)
              dst[((o * H + h) * W + w) * I + o / Og * Ig + i] =
                  src[((o / Og * Ig + i) * Og + o % Og) * H * W + (H - 1 - h) * W + (W - 1 - w)];
      return;
    }
    case mpsb::Transform::kLinearFlattenToOHWC: {
      const uint64_t O = d[0], H = d[1], W = d[2], C = d[3];
      for (uint64_t o = 0; o < O; ++o)
        for (uint64_t h = 0; h < H; ++h)
          for (uint64_t w = 0; w < W; ++w)
            for (uint64_t c = 0; c < C; ++c)
              dst[((o * H + h) * W + w) * C + c] = src[o * C * H * W + (c * H + h) * W + w];
      return;
    }
  }
}

}  // namespace mpsb::bench

#endif  // MPSB_BENCH_NAIVE_REORDER_H_
