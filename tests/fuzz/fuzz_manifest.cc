// Fuzzes the manifest parser and validator: each input is written as
// manifest.json into a scratch folder that also holds small valid tensor
// files (w.bin: 72 float32 = a 4x2x3x3 conv weight; b.bin: 4 float32;
// h.bin: 72 float16; n.bin: 4 float32 with a NaN and an Inf), then
// mpsbc::check_manifest validates it (and every .bin it names) and the
// report is rendered as JSON. Nothing is written besides the manifest.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "mpsbc/compile.h"

namespace {

std::string g_dir;
std::string g_manifest;

void write_or_die(const std::string& path, const void* data, size_t size) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) std::abort();
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::write(fd, p, size);
    if (n <= 0) std::abort();
    p += n;
    size -= static_cast<size_t>(n);
  }
  ::close(fd);
}

void remove_dir() {
  std::error_code ec;
  std::filesystem::remove_all(g_dir, ec);
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // /dev/shm when there is one: the manifest is rewritten for every input.
  const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  std::string pattern = std::string(base) + "/mpsb-fuzz-manifest-XXXXXX";
  if (!::mkdtemp(pattern.data())) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_dir = pattern;
  g_manifest = g_dir + "/manifest.json";
  std::atexit(remove_dir);
  std::vector<float> w(72), b(4);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) / 64.0f - 0.5f;
  for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
  write_or_die(g_dir + "/w.bin", w.data(), w.size() * 4);
  write_or_die(g_dir + "/b.bin", b.data(), b.size() * 4);
  std::vector<uint16_t> h(72, 0x3c00);  // 1.0 in float16
  write_or_die(g_dir + "/h.bin", h.data(), h.size() * 2);
  const std::vector<float> n = {1.0f, std::numeric_limits<float>::quiet_NaN(),
                                std::numeric_limits<float>::infinity(), 0.0f};
  write_or_die(g_dir + "/n.bin", n.data(), n.size() * 4);
  std::filesystem::create_directory(g_dir + "/dir.bin");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  write_or_die(g_manifest, data, size);
  mpsbc::CompileOptions options;
  options.manifest_path = g_manifest;
  options.output_path = g_dir + "/never-written.mpsb";
  const mpsbc::CompileReport report = mpsbc::check_manifest(options);
  if (!report.ok()) {
    bool has_error = false;
    for (const auto& d : report.diagnostics) {
      has_error = has_error || d.severity == mpsbc::Diagnostic::Severity::kError;
    }
    if (!has_error) {
      std::fprintf(stderr, "failed without an error diagnostic\n");
      std::abort();
    }
  }
  const std::string json = mpsbc::report_to_json(report);
  if (json.empty()) std::abort();
  return 0;
}
