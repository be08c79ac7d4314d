// A .bin changed between validation and writing (docs/SECURITY.md, "Never
// re-trust a path"): replaced by a FIFO, by another file, or rewritten in
// place, with NaN or with finite values. Each must fail the compile with a
// clear error, write nothing and leave the old bundle at the output path
// byte-identical; none may hang. The hook runs after validation and before
// the first .bin is read for the bundle.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "compile_hooks.h"
#include "model_builder.h"
#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace {

using mpsb::testing::errors_of;
using mpsb::testing::list_dir;
using mpsb::testing::ModelBuilder;
using mpsb::testing::read_file;

struct Race {
  const char* name;
  // Changes the model folder's "c.weight.bin" (2x4x3x3 float32).
  std::function<void(const ModelBuilder&)> change;
};

std::vector<float> weights_with_nan() {
  std::vector<float> w(2 * 4 * 3 * 3, 0.5f);
  w[5] = std::nanf("");
  return w;
}

const Race kRaces[] = {
    {"ReplacedByFifo",
     [](const ModelBuilder& m) {
       std::filesystem::remove(m.path("c.weight.bin"));
       ASSERT_EQ(::mkfifo(m.path("c.weight.bin").c_str(), 0600), 0);
     }},
    {"ReplacedByAnotherFile",
     [](const ModelBuilder& m) {
       // Same size, finite, renamed over: another inode.
       mpsb::testing::write_vector(m.path("other.bin"), std::vector<float>(72, 0.25f));
       std::filesystem::rename(m.path("other.bin"), m.path("c.weight.bin"));
     }},
    {"RewrittenInPlaceWithNaN",
     [](const ModelBuilder& m) {
       const auto w = weights_with_nan();
       const int fd = ::open(m.path("c.weight.bin").c_str(), O_WRONLY);
       ASSERT_GE(fd, 0);
       ASSERT_EQ(::pwrite(fd, w.data(), w.size() * 4, 0), ssize_t(w.size() * 4));
       ::close(fd);
     }},
    {"RewrittenInPlaceFinite",
     [](const ModelBuilder& m) {
       const std::vector<float> w(72, 0.125f);
       const int fd = ::open(m.path("c.weight.bin").c_str(), O_WRONLY);
       ASSERT_GE(fd, 0);
       ASSERT_EQ(::pwrite(fd, w.data(), w.size() * 4, 0), ssize_t(w.size() * 4));
       ::close(fd);
     }},
};

class InputRace : public ::testing::TestWithParam<Race> {};

TEST_P(InputRace, FailsAndKeepsTheOldBundle) {
  for (const unsigned jobs : {1u, 4u}) {
    ModelBuilder m;
    m.add_conv("c", 4, 2, 3, 3);
    m.write_manifest();
    // Dated in the past: a rewrite now moves the modification time even on a
    // file system whose clock tick is coarser than the test.
    const struct timespec old_times[2] = {{1000000000, 0}, {1000000000, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, m.path("c.weight.bin").c_str(), old_times, 0), 0);
    ASSERT_TRUE(m.compile().ok());
    const auto old_bundle = read_file(m.path("out.mpsb"));
    auto options = m.options();
    options.jobs = jobs;
    mpsbc::CompileHooks hooks;
    hooks.before_stream = [&] { GetParam().change(m); };
    const auto before = list_dir(m.dir());

    const mpsbc::CompileReport r = mpsbc::compile_with_hooks(options, hooks);
    EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput) << jobs;
    const auto errors = errors_of(r);
    ASSERT_EQ(errors.size(), 1u) << jobs;
    EXPECT_EQ(errors[0].pointer, "/layers/0/weight");
    EXPECT_EQ(errors[0].text,
              "\"c.weight.bin\" changed since it was checked (replaced or rewritten); compile "
              "again");
    EXPECT_EQ(read_file(m.path("out.mpsb")), old_bundle) << jobs;
    EXPECT_EQ(list_dir(m.dir()), before) << jobs;  // no temporary left behind
  }
}

INSTANTIATE_TEST_SUITE_P(Changes, InputRace, ::testing::ValuesIn(kRaces),
                         [](const auto& p) { return std::string(p.param.name); });

// `mpsbc compile` scans for NaN and infinities in the writer's read of the
// bytes that land (validation only stats the .bin): the same error, with
// counts, and nothing written.
TEST(InputRace, NaNIsFoundInTheBytesThatLand) {
  ModelBuilder m;
  m.add_conv("c", 4, 2, 3, 3);
  mpsb::testing::write_vector(m.path("c.weight.bin"), weights_with_nan());
  m.write_manifest();
  const mpsbc::CompileReport r = m.compile();
  EXPECT_EQ(r.exit_code, mpsbc::ExitCode::kBadInput);
  const auto errors = errors_of(r);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].pointer, "/layers/0/weight");
  EXPECT_NE(errors[0].text.find("1 non-finite values (1 NaN, 0 infinite; first at element 5); "
                                "--allow-non-finite accepts them"),
            std::string::npos)
      << errors[0].text;
  EXPECT_FALSE(std::filesystem::exists(m.path("out.mpsb")));
}

}  // namespace
