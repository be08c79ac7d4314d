// No lost or partial output: a compile killed with SIGKILL in the middle of
// writing leaves the old bundle byte-identical; a full disk (RLIMIT_FSIZE)
// gives a clear error and leaves the target and the folder as they were;
// the temporary files a killed compile leaves are removed by the next
// compile into that folder, and nothing else is.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "bundle_writer.h"
#include "model_builder.h"
#include "mpsb/bundle.h"
#include "mpsbc/compile.h"

namespace {

using mpsb::testing::errors_of;
using mpsb::testing::list_dir;
using mpsb::testing::ModelBuilder;
using mpsb::testing::read_file;

// Runs mpsbc with `args` in a child; `limit_file_size` > 0 sets RLIMIT_FSIZE
// (with SIGXFSZ ignored, so writes fail with EFBIG instead of killing it).
// stderr goes to `err_path`.
pid_t spawn_mpsbc(const std::vector<std::string>& args, const std::string& err_path,
                  rlim_t limit_file_size = 0) {
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Child: only async-signal-safe calls until exec.
  const int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) ::dup2(fd, 2);
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) ::dup2(null, 1);
  if (limit_file_size > 0) {
    ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {limit_file_size, limit_file_size};
    ::setrlimit(RLIMIT_FSIZE, &rl);
  }
  std::vector<char*> argv;
  static std::string binary = MPSBC_BINARY;
  argv.push_back(binary.data());
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  ::execv(binary.c_str(), argv.data());
  ::_exit(127);
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

std::vector<std::string> temp_files(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& name : list_dir(dir)) {
    if (name.find(".tmp-") != std::string::npos) out.push_back(name);
  }
  return out;
}

// A model of about `megabytes` MB of float32 weights in 4 linear layers.
// The values repeat a 1 MiB random block: writing them is what takes the
// time, not making them.
void add_big_model(ModelBuilder& m, uint64_t megabytes) {
  const uint64_t out = 4096, in = megabytes * (1u << 20) / 4 / 4 / out;
  const std::vector<float> block = mpsb::testing::random_floats(1u << 18, 7);
  for (int i = 0; i < 4; ++i) {
    const std::string name = "fc" + std::to_string(i);
    m.manifest()["layers"].push_back({{"name", name},
                                      {"type", "linear"},
                                      {"in_features", in},
                                      {"out_features", out},
                                      {"weight", name + ".weight.bin"}});
    std::FILE* f = std::fopen(m.path(name + ".weight.bin").c_str(), "wb");
    ASSERT_NE(f, nullptr);
    for (uint64_t left = in * out; left > 0;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, block.size()));
      ASSERT_EQ(std::fwrite(block.data(), 4, n, f), n);
      left -= n;
    }
    std::fclose(f);
  }
}

// An old, valid bundle at `name` in the model's folder, from a small model
// in a subfolder; returns its bytes.
std::vector<uint8_t> old_bundle(const ModelBuilder& m, const std::string& name) {
  ModelBuilder small;
  small.add_conv("old", 4, 8, 3, 3);
  EXPECT_TRUE(small.compile("old.mpsb").ok());
  std::filesystem::copy_file(small.path("old.mpsb"), m.path(name));
  return read_file(m.path(name));
}

TEST(OutputSafety, SigkillMidWriteLeavesOldBundleByteIdentical) {
  ModelBuilder m;
  add_big_model(m, 200);
  const std::string manifest = m.write_manifest().string();
  const auto before = old_bundle(m, "model.mpsb");
  const std::string err = m.path("err.txt").string();

  const pid_t pid =
      spawn_mpsbc({"compile", manifest, "-o", m.path("model.mpsb").string(), "--jobs", "2"}, err);
  // Wait until the writer has created its temporary file (validation, which
  // reads every .bin, comes first), then give it ~50 ms of writing.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool writing = false;
  while (!writing && std::chrono::steady_clock::now() < deadline) {
    writing = !temp_files(m.dir()).empty();
    if (!writing) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_TRUE(writing) << "mpsbc never started writing";
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  ASSERT_EQ(wait_exit_code(pid), -SIGKILL) << "mpsbc finished before it could be killed";

  // The old bundle is untouched and still opens; the killed run's
  // temporary file is the only trace.
  EXPECT_EQ(read_file(m.path("model.mpsb")), before);
  auto opened = mpsb::Bundle::open(m.path("model.mpsb").string(), {.verify_checksums = true});
  EXPECT_TRUE(opened.ok()) << opened.message();
  const auto leftovers = temp_files(m.dir());
  ASSERT_EQ(leftovers.size(), 1u);
  EXPECT_EQ(leftovers[0].rfind(".model.mpsb.tmp-" + std::to_string(pid) + "-", 0), 0u)
      << leftovers[0];

  // The next compile into the folder (of another, small model into another
  // name) does not touch it: it is another output's temporary.
  ModelBuilder small;
  small.add_conv("small", 4, 4, 1, 1);
  small.write_manifest();
  auto options = small.options();
  options.output_path = m.path("other.mpsb").string();
  ASSERT_TRUE(mpsbc::compile(options).ok());
  EXPECT_EQ(temp_files(m.dir()), leftovers);
  // A compile into the same output removes it, the killer's pid being gone.
  options.output_path = m.path("model.mpsb").string();
  ASSERT_TRUE(mpsbc::compile(options).ok());
  EXPECT_TRUE(temp_files(m.dir()).empty());
}

TEST(OutputSafety, FullDiskGivesClearErrorAndLeavesTargetUntouched) {
  ModelBuilder m;
  m.add_conv("a", 16, 64, 3, 3);
  m.add_conv("b", 64, 64, 3, 3);  // about 184 KiB of weights
  const std::string manifest = m.write_manifest().string();
  const auto before = old_bundle(m, "model.mpsb");
  const auto files = list_dir(m.dir());
  const std::string err = m.path("err.txt").string();

  // 64 KiB may be written per file: the old bundle fits, the new one not.
  const pid_t pid =
      spawn_mpsbc({"compile", manifest, "-o", m.path("model.mpsb").string()}, err, 64 * 1024);
  EXPECT_EQ(wait_exit_code(pid), static_cast<int>(mpsbc::ExitCode::kIo));
  const auto message = read_file(err);
  const std::string text(message.begin(), message.end());
  EXPECT_NE(text.find(m.path("model.mpsb").string() + ": cannot "), std::string::npos) << text;
  EXPECT_NE(text.find("File too large"), std::string::npos) << text;
  EXPECT_EQ(read_file(m.path("model.mpsb")), before);
  auto after = list_dir(m.dir());
  std::erase(after, "err.txt");
  EXPECT_EQ(after, files);
}

TEST(OutputSafety, FullDiskForANewOutputLeavesNothing) {
  ModelBuilder m;
  m.add_conv("a", 16, 64, 3, 3);
  const std::string manifest = m.write_manifest().string();
  const auto files = list_dir(m.dir());
  const pid_t pid = spawn_mpsbc({"compile", manifest, "-o", m.path("new.mpsb").string()},
                                m.path("err.txt").string(), 16 * 1024);
  EXPECT_EQ(wait_exit_code(pid), static_cast<int>(mpsbc::ExitCode::kIo));
  auto after = list_dir(m.dir());
  std::erase(after, "err.txt");
  EXPECT_EQ(after, files);
}

// A pid that is certainly not running: a child that has exited and been
// reaped (pids are not reused that fast).
pid_t dead_pid() {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

void touch(const std::filesystem::path& p, std::chrono::seconds age = std::chrono::seconds(0)) {
  mpsb::testing::write_file(p, std::string("partial"));
  if (age.count() > 0) {
    struct timeval times[2];
    ::gettimeofday(&times[0], nullptr);
    times[0].tv_sec -= age.count();
    times[1] = times[0];
    ::utimes(p.c_str(), times);
  }
}

TEST(OutputSafety, StaleTemporaryFilesAreRemovedAndNothingElse) {
  ModelBuilder m;
  m.add_conv("c", 4, 4, 1, 1);
  const std::string dead = std::to_string(dead_pid());
  const std::string self = std::to_string(::getpid());
  const auto hours = [](int h) { return std::chrono::seconds(h * 3600); };
  // Removed: a dead writer's, and a live pid's that is hours old (the pid
  // may have been reused).
  touch(m.path(".out.mpsb.tmp-" + dead + "-aB3xYz"));
  touch(m.path(".out.mpsb.tmp-" + self + "-Qq1234"), hours(2));
  // Kept: a live writer's young file, other outputs' temporaries, names
  // that only look similar, a directory and a symlink with the pattern.
  touch(m.path(".out.mpsb.tmp-" + self + "-abcdef"));
  touch(m.path(".other.mpsb.tmp-" + dead + "-abcdef"));
  touch(m.path(".out.mpsb.tmp-" + dead + "-abc"));
  touch(m.path(".out.mpsb.tmp-" + dead + "-abcdefg"));
  touch(m.path(".out.mpsb.tmp-x" + dead + "-abcdef"));
  touch(m.path("out.mpsb.tmp-" + dead + "-abcdef"));
  touch(m.path(".out.mpsb.tmp-abcdef"), hours(2));  // no pid: not this writer's pattern
  std::filesystem::create_directory(m.path(".out.mpsb.tmp-" + dead + "-dir123"));
  std::filesystem::create_symlink("c.weight.bin", m.path(".out.mpsb.tmp-" + dead + "-link12"));
  auto expected = list_dir(m.dir());
  std::erase(expected, ".out.mpsb.tmp-" + dead + "-aB3xYz");
  std::erase(expected, ".out.mpsb.tmp-" + self + "-Qq1234");

  ASSERT_TRUE(m.compile("out.mpsb").ok());
  auto after = list_dir(m.dir());
  std::erase(after, "out.mpsb");
  std::erase(after, "manifest.json");
  std::erase(expected, "manifest.json");
  EXPECT_EQ(after, expected);
  EXPECT_TRUE(std::filesystem::exists(m.path("c.weight.bin")));  // the symlink's target
  // Nothing left to remove now.
  EXPECT_EQ(mpsbc::remove_stale_temp_files(m.path("out.mpsb").string()), 0u);
}

}  // namespace
