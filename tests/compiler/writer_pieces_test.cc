// Tensors larger than the writer's piece size (this core's L2, within
// 256 KiB..4 MiB) are streamed in pieces
// of output channels, spread over the workers and hashed afterwards. The
// stored bytes must equal the whole-tensor transform and must not depend on
// the number of jobs.

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"
#include "mpsbc/layout.h"

namespace {

using mpsb::testing::ModelBuilder;
using mpsb::testing::read_file;

TEST(WriterPiecesTest, SplitTensorsMatchWholeTensorTransformForAnyJobs) {
  ModelBuilder m;
  m.add_conv("conv", 512, 520, 3, 3);                     // 9.6 MB: 3 pieces or more
  m.add_conv_transpose("up", 768, 512, 4, /*groups=*/2);  // 6.3 MB per group
  m.add_linear("fc", 256 * 6 * 6, 130, {256, 6, 6});      // 4.8 MB: 2 pieces or more
  m.add_linear("vec", 1100, 1000);                        // identity, 4.4 MB
  const mpsbc::TensorPlan plans[] = {
      mpsbc::plan_conv_weight(520, 512, 1, 3, 3),
      mpsbc::plan_conv_transpose_weight(768, 512, 2, 4, 4),
      mpsbc::plan_linear_weight(130, 256 * 6 * 6, std::vector<uint64_t>{256, 6, 6}),
      mpsbc::plan_linear_weight(1000, 1100, {}),
  };
  const char* names[] = {"conv", "up", "fc", "vec"};

  m.write_manifest();
  std::vector<uint8_t> first;
  for (unsigned jobs : {1u, 3u, 0u}) {
    SCOPED_TRACE(jobs);
    auto options = m.options();
    options.jobs = jobs;
    const auto report = mpsbc::compile(options);
    ASSERT_TRUE(report.ok()) << (report.diagnostics.empty() ? std::string("?")
                                                            : report.diagnostics[0].message);
    const auto bytes = read_file(m.path("out.mpsb"));
    if (first.empty()) {
      first = bytes;
    } else {
      EXPECT_TRUE(bytes == first) << "bundle differs from the one compiled with 1 job";
    }
  }

  auto bundle = mpsb::Bundle::open(m.path("out.mpsb").string());
  ASSERT_TRUE(bundle.ok()) << bundle.message();
  ASSERT_TRUE(bundle->verify().ok()) << bundle->verify().message();
  for (size_t i = 0; i < 4; ++i) {
    SCOPED_TRACE(names[i]);
    const auto w = bundle->find(names[i])->find(mpsb::TensorRole::kWeight);
    ASSERT_TRUE(w.has_value());
    const auto& src = m.floats(std::string(names[i]) + ".weight");
    std::vector<float> expected(src.size());
    mpsbc::apply(plans[i], src.data(), expected.data(), sizeof(float));
    ASSERT_EQ(w->size(), expected.size() * sizeof(float));
    EXPECT_EQ(0, std::memcmp(w->data(), expected.data(), w->size()));
  }
}

}  // namespace
