// Helpers shared by the fuzz targets.
#ifndef MPSB_TESTS_FUZZ_FUZZ_UTIL_H_
#define MPSB_TESTS_FUZZ_FUZZ_UTIL_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mpsb::fuzz {

// An in-memory file (memfd) that the file-based entry points (Bundle::open,
// the C API, mpsb-dump) can open by path, rewritten for every input. Cheaper
// than a file on disk and never left behind.
class MemFile {
 public:
  MemFile() {
    fd_ = ::memfd_create("mpsb-fuzz", MFD_CLOEXEC);
    if (fd_ < 0) {
      std::perror("memfd_create");
      std::abort();
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  ~MemFile() { ::close(fd_); }

  // Replaces the contents with `data`. Aborts on failure: a fuzzer that
  // silently tests stale bytes would report nonsense.
  void set(const uint8_t* data, size_t size) {
    if (::ftruncate(fd_, 0) != 0) std::abort();
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::pwrite(fd_, data + done, size - done, static_cast<off_t>(done));
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
  }
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Where touch() leaves its sums, so the compiler cannot drop the loads.
inline volatile unsigned g_sink;
inline volatile float g_float_sink;

// Reads `n` bytes at `p` so that ASan sees every access.
inline void touch(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  unsigned sum = 0;
  for (size_t i = 0; i < n; ++i) sum += b[i];
  g_sink = g_sink + sum;
}

// Reads `n` floats at `p` as an MPS kernel would (float loads, so UBSan
// also checks alignment).
inline void touch_floats(const float* p, size_t n) {
  float sum = 0;
  for (size_t i = 0; i < n; ++i) sum += p[i];
  g_float_sink = g_float_sink + sum;
}

}  // namespace mpsb::fuzz

#endif  // MPSB_TESTS_FUZZ_FUZZ_UTIL_H_
