// The representative tensors the layout benchmarks measure
// (bench/layout_bench.cc for time, bench/layout_once.cc for instruction and
// cache-miss counts under callgrind).

#ifndef MPSB_BENCH_LAYOUT_CASES_H_
#define MPSB_BENCH_LAYOUT_CASES_H_

#include <cstdint>
#include <vector>

#include "mpsbc/layout.h"

namespace mpsb::bench {

struct LayoutCase {
  const char* name;
  mpsbc::TensorPlan plan;
};

inline std::vector<LayoutCase> layout_cases() {
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
      // Control for the row above: the same 16x16 blocks and the same
      // stores (per output channel [512][16] -> [16][512]), but each block's
      // source rows are 64 bytes apart instead of 16 KiB.
      {"conv4x4_512to256", mpsbc::plan_conv_weight(256, 512, 1, 4, 4)},
      {"linear_flatten_4096x9216", mpsbc::plan_linear_weight(4096, 9216, chw)},
  };
}

}  // namespace mpsb::bench

#endif  // MPSB_BENCH_LAYOUT_CASES_H_
