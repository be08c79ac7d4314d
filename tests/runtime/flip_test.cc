// Deep verify catches any single changed byte: every byte of the first
// 16 KiB (metadata and the zero padding after it) and every 97th byte of
// the data segment (tensors and their padding), of the example model as
// mpsbc compiles it and of a bundle with every layer kind, is changed in
// turn; each change must be refused by open or reported by verify() (C++
// and C API), never accepted and never a crash. A file one byte shorter or
// longer is refused by open itself.
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

extern char** environ;

namespace mpsb {
namespace {

using testing::read_file;
using testing::TempDir;
using testing::write_file;

constexpr size_t kHead = 16384;
constexpr size_t kDataStride = 97;

struct Tally {
  size_t flips = 0, refused = 0, reported = 0;
};

// Changes byte `pos` by `mask` in place and back; fails the test if the
// change is accepted.
void flip_and_check(std::vector<uint8_t>& bytes, size_t pos, uint8_t mask, Tally* tally) {
  bytes[pos] ^= mask;
  ++tally->flips;
  auto r = Bundle::from_memory(bytes.data(), bytes.size());
  if (!r.ok()) {
    ++tally->refused;
  } else if (!r->verify().ok()) {
    ++tally->reported;
  } else {
    ADD_FAILURE() << "byte " << pos << " ^ 0x" << std::hex << int(mask)
                  << " was accepted by open and verify";
  }
  bytes[pos] ^= mask;
}

Tally flip_everything(std::vector<uint8_t> bytes) {
  Tally tally;
  {
    auto r = Bundle::from_memory(bytes.data(), bytes.size(), {.verify_checksums = true});
    EXPECT_TRUE(r.ok()) << r.message();
    if (!r.ok()) return tally;
    EXPECT_GE(r->segment_offset(), kHead) << "the first 16 KiB should be metadata and padding";
  }
  for (size_t pos = 0; pos < kHead && pos < bytes.size(); ++pos) {
    flip_and_check(bytes, pos, 0xff, &tally);
    flip_and_check(bytes, pos, 0x01, &tally);  // the smallest change too
  }
  for (size_t pos = kHead; pos < bytes.size(); pos += kDataStride) {
    flip_and_check(bytes, pos, 0xff, &tally);
  }
  flip_and_check(bytes, bytes.size() - 1, 0x80, &tally);  // the very last byte
  return tally;
}

// The same through files and the C API, for a sample of positions; plus the
// file one byte shorter and one byte longer.
void check_files(const std::vector<uint8_t>& good, const std::string& dir) {
  const std::string path = dir + "/flipped.mpsb";
  char message[512];
  std::vector<size_t> positions;
  for (size_t pos = 0; pos < good.size(); pos += 127) positions.push_back(pos);
  size_t checked = 0;
  for (size_t pos : positions) {
    std::vector<uint8_t> bytes = good;
    bytes[pos] ^= 0xff;
    write_file(path, bytes.data(), bytes.size());
    mpsb_bundle* b = nullptr;
    const mpsb_status s = mpsb_bundle_open(path.c_str(), 0, &b, message, sizeof message);
    if (s == MPSB_OK) {
      EXPECT_NE(mpsb_bundle_verify(b, message, sizeof message), MPSB_OK) << "byte " << pos;
    }
    mpsb_bundle_free(b);
    // Opening with MPSB_OPEN_VERIFY refuses it outright.
    EXPECT_NE(mpsb_bundle_open(path.c_str(), MPSB_OPEN_VERIFY, &b, message, sizeof message),
              MPSB_OK)
        << "byte " << pos;
    EXPECT_EQ(b, nullptr);
    ++checked;
  }
  EXPECT_GT(checked, 50u);

  std::vector<uint8_t> shorter(good.begin(), good.end() - 1);
  write_file(path, shorter.data(), shorter.size());
  auto r = Bundle::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kTruncated) << r.message();

  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  write_file(path, longer.data(), longer.size());
  r = Bundle::open(path);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kBadSegment) << r.message();
  EXPECT_NE(r.message().find("1 bytes after the data segment"), std::string::npos);

  // A file cut at the end of its metadata (a download that stopped early).
  auto good_open = Bundle::from_memory(good.data(), good.size());
  ASSERT_TRUE(good_open.ok());
  std::vector<uint8_t> cut(good.begin(), good.begin() + good_open->segment_offset());
  write_file(path, cut.data(), cut.size());
  EXPECT_EQ(Bundle::open(path).error(), Error::kTruncated);
}

void report(const char* what, const Tally& t) {
  std::printf("%s: %zu byte changes, %zu refused by open, %zu reported by verify, 0 accepted\n",
              what, t.flips, t.refused, t.reported);
  ::testing::Test::RecordProperty(std::string(what) + "_flips", static_cast<int>(t.flips));
}

TEST(FlipTest, EveryByteOfTheCompiledExampleIsCovered) {
  TempDir dir;
  const std::string out = (dir / "tiny_cnn.mpsb").string();
  std::vector<std::string> args = {MPSBC_BINARY, "compile", MPSB_EXAMPLE_MANIFEST, "-q", "-o", out};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid;
  ASSERT_EQ(posix_spawn(&pid, MPSBC_BINARY, nullptr, nullptr, argv.data(), environ), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "mpsbc failed: " << status;
  const std::vector<uint8_t> bytes = read_file(out);
  const Tally t = flip_everything(bytes);
  EXPECT_EQ(t.flips, t.refused + t.reported);
  report("tiny_cnn", t);
  check_files(bytes, dir.path().string());
}

TEST(FlipTest, EveryByteOfABundleWithEveryLayerKindIsCovered) {
  testing::BundleSpec spec;
  spec.segment_alignment = 16384;
  spec.metadata = {{"license", "MIT"}, {"note", "flip test"}};
  spec.layers.push_back(testing::conv_layer("conv", 4, 8, 3));
  spec.layers.push_back(testing::conv_layer("dw", 8, 8, 3, 8));
  spec.layers.push_back(testing::batch_norm_layer("bn", 8));
  spec.layers.push_back(testing::instance_norm_layer("in", 8));
  spec.layers.push_back(testing::instance_norm_layer("in_plain", 8, false));
  spec.layers.push_back(testing::conv_transpose_layer("up", 8, 4, 3, 2));
  spec.layers.push_back(testing::linear_layer("fc_flat", 3, 4, 2, 2));
  spec.layers.push_back(testing::linear_layer("fc", 2, 3));
  const std::vector<uint8_t> bytes = testing::build_bundle(spec);
  const Tally t = flip_everything(bytes);
  EXPECT_EQ(t.flips, t.refused + t.reported);
  report("every_kind", t);
  TempDir dir;
  check_files(bytes, dir.path().string());
}

}  // namespace
}  // namespace mpsb
