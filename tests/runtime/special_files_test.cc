// Opening something that is not a regular file: Bundle::open, the C API and
// mpsb-dump must refuse a FIFO or a device at once (docs/SECURITY.md). A
// blocking open() of a FIFO waits for a writer forever, so these tests run
// under a ctest TIMEOUT (tests/runtime/CMakeLists.txt): a regression fails
// by timeout instead of hanging the suite.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <sstream>
#include <string>

#include "dump.h"
#include "mpsb/bundle.h"
#include "mpsb/mpsb.h"
#include "mpsbc/compile.h"
#include "util/test_util.h"

namespace mpsb {
namespace {

std::string make_fifo(const testing::TempDir& dir) {
  const std::string path = (dir / "model.mpsb").string();
  if (::mkfifo(path.c_str(), 0600) != 0) ADD_FAILURE() << "mkfifo " << path;
  return path;
}

TEST(SpecialFiles, OpenRefusesFifoWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = make_fifo(dir);
  auto r = Bundle::open(fifo);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Error::kIo);
  EXPECT_EQ(r.message(), fifo + ": not a regular file (a FIFO)");
  // With the checksums asked for too.
  EXPECT_EQ(Bundle::open(fifo, {.verify_checksums = true}).message(),
            fifo + ": not a regular file (a FIFO)");
}

TEST(SpecialFiles, OpenRefusesDevicesAndDirectoriesByType) {
  testing::TempDir dir;
  EXPECT_EQ(Bundle::open("/dev/null").message(),
            "/dev/null: not a regular file (a character device)");
  EXPECT_EQ(Bundle::open("/dev/zero").error(), Error::kIo);
  const std::string d = dir.path().string();
  EXPECT_EQ(Bundle::open(d).message(), d + ": not a regular file (a directory)");
}

TEST(SpecialFiles, CApiRefusesFifoWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = make_fifo(dir);
  for (unsigned flags : {0u, unsigned{MPSB_OPEN_VERIFY}}) {
    mpsb_bundle* b = reinterpret_cast<mpsb_bundle*>(&dir);  // must be reset to NULL
    char message[256];
    EXPECT_EQ(mpsb_bundle_open(fifo.c_str(), flags, &b, message, sizeof message), MPSB_ERROR_IO);
    EXPECT_EQ(b, nullptr);
    EXPECT_EQ(std::string(message), fifo + ": not a regular file (a FIFO)");
  }
}

TEST(SpecialFiles, DumpRefusesFifoInEveryModeThatOpensABundle) {
  testing::TempDir dir;
  const std::string fifo = make_fifo(dir);
  for (dump::Mode mode : {dump::Mode::kSummary, dump::Mode::kVerify, dump::Mode::kStats,
                          dump::Mode::kExplain, dump::Mode::kDiff}) {
    dump::Options o;
    o.bundle_path = fifo;
    o.other_path = fifo;
    o.mode = mode;
    std::ostringstream out, err;
    const int rc = dump::run(o, out, err);
    EXPECT_NE(rc, dump::kExitOk) << static_cast<int>(mode);
    EXPECT_NE(err.str().find("not a regular file (a FIFO)"), std::string::npos) << err.str();
  }
}

// `mpsb-dump B --check M` and mpsbc read the manifest through the
// compiler's parser, which opens it non-blocking and fstats it: a FIFO given
// as the manifest is refused, not waited on (the ctest timeout catches a
// hang).
TEST(SpecialFiles, CompilerRefusesFifoManifestWithoutBlocking) {
  testing::TempDir dir;
  const std::string fifo = make_fifo(dir);
  mpsbc::CompileOptions o;
  o.manifest_path = fifo;
  const mpsbc::CompileReport report = mpsbc::check_manifest(o);
  EXPECT_FALSE(report.ok());
  ASSERT_FALSE(report.diagnostics.empty());
  EXPECT_EQ(report.diagnostics[0].text,
            "cannot read the manifest: it is not a regular file (it is a FIFO)");
}

}  // namespace
}  // namespace mpsb
