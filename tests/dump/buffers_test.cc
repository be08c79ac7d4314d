// mpsb-dump --buffers on the example model (compiled here by mpsbc): the
// plan it prints is checked against the bundle's own tensor table, and the
// exit codes of its refusals.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "dump.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace mpsb::dump {
namespace {

using mpsb::testing::TempDir;
using nlohmann::json;

struct Outcome {
  int code = -1;
  std::string out, err;
};

Outcome dump(std::vector<std::string> args) {
  args.insert(args.begin(), "mpsb-dump");
  std::ostringstream out, err;
  Outcome r;
  r.code = run_command_line(args, out, err);
  r.out = out.str();
  r.err = err.str();
  return r;
}

class DumpBuffersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    bundle_ = (dir_->path() / "tiny_cnn.mpsb").string();
    mpsbc::CompileOptions options;
    options.manifest_path = MPSB_EXAMPLE_MANIFEST;
    options.output_path = bundle_;
    ASSERT_TRUE(mpsbc::compile(options).ok());
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  static TempDir* dir_;
  static std::string bundle_;
};
TempDir* DumpBuffersTest::dir_ = nullptr;
std::string DumpBuffersTest::bundle_;

// Every limit from one page to above the file: the JSON plan holds every
// tensor of the bundle exactly once, whole, at its own segment offset.
TEST_F(DumpBuffersTest, JsonPlanPlacesEveryTensorOnceInsideItsWindow) {
  auto opened = Bundle::open(bundle_);
  ASSERT_TRUE(opened.ok()) << opened.message();
  const Bundle& b = *opened;
  std::map<std::pair<std::string, uint64_t>, uint64_t> want;  // (layer, tensor) -> offset
  uint64_t widest = 0;
  for (size_t i = 0; i < b.layer_count(); ++i) {
    const Layer l = b.layer(i);
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      want[{std::string(l.name()), j}] = l.tensor(j).offset();
    }
  }
  for (uint64_t page : {uint64_t{4096}, uint64_t{16384}}) {
    for (uint64_t limit = page; limit <= 2 * b.file().size(); limit += page) {
      SCOPED_TRACE("page " + std::to_string(page) + " limit " + std::to_string(limit));
      const Outcome r = dump({bundle_, "--buffers", std::to_string(limit), "--page-size",
                              std::to_string(page), "--json"});
      if (r.code == kExitFailure) {
        EXPECT_NE(r.err.find("more than the buffer limit " + std::to_string(limit)),
                  std::string::npos)
            << r.err;
        EXPECT_TRUE(r.out.empty());
        continue;
      }
      ASSERT_EQ(r.code, kExitOk) << r.err;
      widest = std::max(widest, limit);
      const json j = json::parse(r.out);
      EXPECT_EQ(j.at("document"), "buffers");
      EXPECT_EQ(j.at("page_size"), page);
      EXPECT_EQ(j.at("max_buffer_length"), limit);
      std::map<std::pair<std::string, uint64_t>, uint64_t> got;
      for (const json& w : j.at("windows")) {
        const uint64_t offset = w.at("offset"), length = w.at("length");
        EXPECT_EQ(offset % page, 0u);
        EXPECT_EQ(length % page, 0u);
        EXPECT_LE(length, limit);
        EXPECT_LE(offset + length, b.segment().size());
        EXPECT_EQ(w.at("file_offset").get<uint64_t>(), b.segment_offset() + offset);
        EXPECT_FALSE(w.at("tensors").empty());
        for (const json& t : w.at("tensors")) {
          const uint64_t at = t.at("offset"), size = t.at("size");
          EXPECT_LE(at + size, length);
          const auto key =
              std::make_pair(t.at("layer").get<std::string>(), t.at("tensor").get<uint64_t>());
          EXPECT_EQ(got.count(key), 0u) << key.first << " placed twice";
          got[key] = offset + at;
        }
      }
      EXPECT_EQ(got, want);
    }
  }
  // The widest limit planned is above the file: the loop did plan.
  EXPECT_GE(widest, b.file().size());
}

TEST_F(DumpBuffersTest, TextPlanListsWindowsAndTheirTensors) {
  const Outcome r = dump({bundle_, "--buffers", "64K"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("buffer limit  65536 (64.0 KiB)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("page size     16384"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("window  offset  length  layer"), std::string::npos) << r.out;
}

TEST_F(DumpBuffersTest, SizesTakeBinarySuffixes) {
  const Outcome k = dump({bundle_, "--buffers", "64k", "--json"});
  const Outcome bytes = dump({bundle_, "--buffers", "65536", "--json"});
  ASSERT_EQ(k.code, kExitOk) << k.err;
  EXPECT_EQ(k.out, bytes.out);
  const Outcome g = dump({bundle_, "--buffers", "1G", "--page-size", "4K", "--json"});
  ASSERT_EQ(g.code, kExitOk) << g.err;
  EXPECT_EQ(json::parse(g.out).at("max_buffer_length"), uint64_t{1} << 30);
  EXPECT_EQ(json::parse(g.out).at("page_size"), 4096u);
}

TEST_F(DumpBuffersTest, RefusalsHaveTheirExitCodes) {
  // A tensor wider than the limit, or pages larger than the segment
  // alignment: the bundle cannot be planned (1).
  Outcome r = dump({bundle_, "--buffers", "16K"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find("tensor 0 (weight, "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("more than the buffer limit 16384"), std::string::npos) << r.err;
  r = dump({bundle_, "--buffers", "1M", "--page-size", "64K"});
  EXPECT_EQ(r.code, kExitFailure);
  EXPECT_NE(r.err.find("segment alignment 16384 is not a multiple of the page size 65536"),
            std::string::npos)
      << r.err;
  // Bad command lines (2).
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{bundle_, "--buffers", "12Q"},
                                             {bundle_, "--buffers", "-1"},
                                             {bundle_, "--buffers", "99999999999999999999"},
                                             {bundle_, "--buffers", "1M", "--page-size", "3000"},
                                             {bundle_, "--buffers", "1M", "--page-size", "0"},
                                             {bundle_, "--buffers", "8K"},
                                             {bundle_, "--page-size", "4096"},
                                             {bundle_, "--buffers", "1M", "--stats"}}) {
    SCOPED_TRACE(::testing::PrintToString(args));
    r = dump(args);
    EXPECT_EQ(r.code, kExitUsage) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // A file that is not a bundle (1), as every mode.
  r = dump({(dir_->path() / "missing.mpsb").string(), "--buffers", "1M"});
  EXPECT_EQ(r.code, kExitFailure);
}

}  // namespace
}  // namespace mpsb::dump
