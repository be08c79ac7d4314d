// BufferPlan (mpsb/buffers.h): windows of the data segment for Metal
// no-copy buffers. Every plan is checked by loops written here, not by the
// planner's own arithmetic: each tensor whole inside its window, windows
// page-aligned, within the limit and the segment, and as few as a dynamic
// program over all ways of cutting the tensors into runs allows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "mpsb/buffers.h"
#include "runtime/test_bundle.h"

namespace mpsb {
namespace {

using testing::batch_norm_layer;
using testing::BundleSpec;
using testing::conv_layer;
using testing::linear_layer;

constexpr uint64_t kKiB = 1024;

// Tensors from 32 bytes (a bias of 8) to 144 KiB (a 64 -> 64 3x3 weight),
// most not page multiples, 256-byte aligned in a 16 KiB-aligned segment.
BundleSpec several_tensors() {
  BundleSpec spec;
  spec.segment_alignment = 16 * kKiB;
  spec.tensor_alignment = 256;
  spec.layers.push_back(conv_layer("stem", 3, 16, 3));     // 1728 B + 64 B
  spec.layers.push_back(conv_layer("wide", 64, 64, 3));    // 147456 B + 256 B
  spec.layers.push_back(batch_norm_layer("bn", 64));       // 4 x 256 B
  spec.layers.push_back(conv_layer("mid", 32, 32, 3));     // 36864 B + 128 B
  spec.layers.push_back(conv_layer("point", 8, 8, 1));     // 256 B + 32 B
  spec.layers.push_back(conv_layer("big", 16, 64, 5));     // 102400 B + 256 B
  spec.layers.push_back(linear_layer("fc", 10, 8, 3, 5));  // 4800 B + 40 B
  return spec;
}

struct Opened {
  std::vector<uint8_t> bytes;
  Bundle bundle;
};

Opened open(const BundleSpec& spec) {
  std::vector<uint8_t> bytes = testing::build_bundle(spec);
  auto b = Bundle::from_memory(bytes.data(), bytes.size());
  EXPECT_TRUE(b.ok()) << b.message();
  return {std::move(bytes), std::move(b).value()};
}

struct Extent {
  uint64_t begin, end;
};

// Each tensor's bytes, in segment order.
std::vector<Extent> extents(const Bundle& b) {
  std::vector<Extent> e;
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      e.push_back({l.tensor(j).offset(), l.tensor(j).offset() + l.tensor(j).size()});
    }
  }
  std::sort(e.begin(), e.end(), [](const Extent& a, const Extent& x) { return a.begin < x.begin; });
  return e;
}

// The fewest windows of at most `limit` bytes (whole pages) that hold every
// tensor whole, by trying every cut of the sorted tensors into runs; 0 when
// some tensor cannot fit at all.
size_t fewest_windows(const std::vector<Extent>& e, uint64_t limit, uint64_t page) {
  const uint64_t usable = limit / page * page;
  const size_t none = std::numeric_limits<size_t>::max();
  std::vector<size_t> best(e.size() + 1, none);
  best[0] = 0;
  for (size_t end = 1; end <= e.size(); ++end) {
    for (size_t start = 0; start < end; ++start) {
      const uint64_t first = e[start].begin / page * page;
      const uint64_t last = (e[end - 1].end + page - 1) / page * page;
      if (last - first <= usable && best[start] != none) {
        best[end] = std::min(best[end], best[start] + 1);
      }
    }
  }
  return best[e.size()] == none ? 0 : best[e.size()];
}

// What every plan must satisfy, checked tensor by tensor.
void expect_valid(const Bundle& b, const BufferPlan& plan, uint64_t limit, uint64_t page) {
  const uint64_t segment_size = b.segment().size();
  for (const BufferWindow& w : plan.windows()) {
    EXPECT_EQ(w.offset % page, 0u);
    EXPECT_EQ(w.length % page, 0u);
    EXPECT_GT(w.length, 0u);
    EXPECT_LE(w.length, limit);
    EXPECT_LE(w.offset + w.length, segment_size);
  }
  for (size_t k = 1; k < plan.windows().size(); ++k) {
    const BufferWindow& prev = plan.windows()[k - 1];
    const BufferWindow& cur = plan.windows()[k];
    EXPECT_GT(cur.offset, prev.offset);
    // Overlap of at most the page two neighbouring tensors share.
    EXPECT_GE(cur.offset + page, prev.offset + prev.length);
  }
  std::vector<bool> used(plan.windows().size(), false);
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      const Tensor t = l.tensor(j);
      const TensorPlacement p = plan.placement(i, j);
      ASSERT_LT(p.window, plan.windows().size()) << l.name() << " tensor " << j;
      const BufferWindow& w = plan.windows()[p.window];
      used[p.window] = true;
      EXPECT_GE(t.offset(), w.offset) << l.name() << " tensor " << j;
      EXPECT_LE(t.offset() + t.size(), w.offset + w.length) << l.name() << " tensor " << j;
      EXPECT_EQ(w.offset + p.offset, t.offset()) << l.name() << " tensor " << j;
      EXPECT_EQ(b.segment().data() + w.offset + p.offset, t.bytes().data());
    }
  }
  for (size_t k = 0; k < used.size(); ++k) EXPECT_TRUE(used[k]) << "window " << k << " unused";
}

TEST(BufferPlan, WindowsHoldEveryTensorForLimitsFrom16KiBToAboveTheFile) {
  const Opened o = open(several_tensors());
  const std::vector<Extent> e = extents(o.bundle);
  const uint64_t page = 16 * kKiB;
  size_t planned = 0, refused = 0;
  std::vector<uint64_t> limits;
  for (uint64_t limit = 16 * kKiB; limit <= 2 * o.bytes.size(); limit += 8 * kKiB) {
    limits.push_back(limit);
    limits.push_back(limit + 1000);  // not a page multiple: rounds down
  }
  for (uint64_t limit : limits) {
    SCOPED_TRACE("limit " + std::to_string(limit));
    const size_t fewest = fewest_windows(e, limit, page);
    auto plan = BufferPlan::make(o.bundle, limit, page);
    if (fewest == 0) {
      ++refused;
      EXPECT_EQ(plan.error(), Error::kTooLarge) << plan.message();
      continue;
    }
    ++planned;
    ASSERT_TRUE(plan.ok()) << plan.message();
    EXPECT_EQ(plan->usable_length(), limit / page * page);
    expect_valid(o.bundle, *plan, limit, page);
    EXPECT_EQ(plan->windows().size(), fewest);
  }
  // Both outcomes were exercised: limits below the widest tensor's pages
  // (160 KiB) are refused, the rest planned.
  EXPECT_GT(refused, 0u);
  EXPECT_GT(planned, 0u);
}

TEST(BufferPlan, OneWindowWhenTheLimitExceedsTheFile) {
  const Opened o = open(several_tensors());
  auto plan = BufferPlan::make(o.bundle, 4 * o.bytes.size(), 16 * kKiB);
  ASSERT_TRUE(plan.ok()) << plan.message();
  ASSERT_EQ(plan->windows().size(), 1u);
  const std::vector<Extent> e = extents(o.bundle);
  EXPECT_EQ(plan->windows()[0].offset, 0u);
  EXPECT_EQ(plan->windows()[0].length, (e.back().end + 16 * kKiB - 1) / (16 * kKiB) * (16 * kKiB));
  expect_valid(o.bundle, *plan, 4 * o.bytes.size(), 16 * kKiB);
}

TEST(BufferPlan, SmallerPagesThanTheSegmentAlignmentWork) {
  const Opened o = open(several_tensors());
  for (uint64_t page : {uint64_t{4096}, uint64_t{8192}, uint64_t{16384}}) {
    SCOPED_TRACE("page " + std::to_string(page));
    const uint64_t limit = 200 * kKiB;
    auto plan = BufferPlan::make(o.bundle, limit, page);
    ASSERT_TRUE(plan.ok()) << plan.message();
    expect_valid(o.bundle, *plan, limit, page);
    EXPECT_EQ(plan->windows().size(), fewest_windows(extents(o.bundle), limit, page));
  }
}

TEST(BufferPlan, RefusesATensorLongerThanTheLimitNamingIt) {
  const Opened o = open(several_tensors());
  // "wide"'s weight, 147456 bytes at a 256-aligned offset, covers 10 or 11
  // pages of 16 KiB: more than 128 KiB.
  auto plan = BufferPlan::make(o.bundle, 128 * kKiB, 16 * kKiB);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error(), Error::kTooLarge);
  const std::string& m = plan.message();
  EXPECT_NE(m.find("<memory>: layer 'wide' tensor 0 (weight, 147456 bytes"), std::string::npos)
      << m;
  EXPECT_NE(m.find("more than the buffer limit 131072"), std::string::npos) << m;
  EXPECT_NE(m.find("16384-byte pages"), std::string::npos) << m;
}

TEST(BufferPlan, RefusesPageSizesThatAreNotPowersOfTwo) {
  const Opened o = open(several_tensors());
  for (uint64_t page : {uint64_t{0}, uint64_t{3}, uint64_t{12288}, uint64_t{16385}}) {
    auto plan = BufferPlan::make(o.bundle, 1 << 20, page);
    ASSERT_FALSE(plan.ok()) << page;
    EXPECT_EQ(plan.error(), Error::kInvalidArgument);
    EXPECT_EQ(plan.message(), "page size " + std::to_string(page) + " is not a power of two");
  }
}

TEST(BufferPlan, RefusesPagesLargerThanTheSegmentAlignment) {
  BundleSpec spec = several_tensors();
  spec.segment_alignment = 4096;
  const Opened o = open(spec);
  auto plan = BufferPlan::make(o.bundle, 1 << 20, 16 * kKiB);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error(), Error::kMisaligned);
  EXPECT_NE(plan.message().find(
                "<memory>: segment alignment 4096 is not a multiple of the page size 16384"),
            std::string::npos)
      << plan.message();
  EXPECT_TRUE(BufferPlan::make(o.bundle, 1 << 20, 4096).ok());
}

TEST(BufferPlan, RefusesALimitBelowOnePage) {
  const Opened o = open(several_tensors());
  auto plan = BufferPlan::make(o.bundle, 16 * kKiB - 1, 16 * kKiB);
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.error(), Error::kInvalidArgument);
  EXPECT_EQ(plan.message(), "buffer limit 16383 is less than one page (16384 bytes)");
}

TEST(BufferPlan, NeighboursSharingAPageGiveOverlappingWindows) {
  // A weight and a bias of 20 KiB each: the bias starts at 20 KiB, inside
  // the weight's second page. Each fits 32 KiB of pages, both together do
  // not, so the two windows share the page [16 KiB, 32 KiB).
  BundleSpec spec;
  spec.segment_alignment = 16 * kKiB;
  spec.layers.push_back(linear_layer("a", 5120, 1));
  const Opened o = open(spec);
  auto plan = BufferPlan::make(o.bundle, 32 * kKiB, 16 * kKiB);
  ASSERT_TRUE(plan.ok()) << plan.message();
  expect_valid(o.bundle, *plan, 32 * kKiB, 16 * kKiB);
  ASSERT_EQ(plan->windows().size(), 2u);
  EXPECT_EQ(plan->windows()[0].offset, 0u);
  EXPECT_EQ(plan->windows()[0].length, 32 * kKiB);
  EXPECT_EQ(plan->windows()[1].offset, 16 * kKiB);
  EXPECT_EQ(plan->windows()[1].length, 32 * kKiB);
  EXPECT_EQ(plan->placement(0, 1).window, 1u);
  EXPECT_EQ(plan->placement(0, 1).offset, 4 * kKiB);
}

}  // namespace
}  // namespace mpsb
