// Opening the files a manifest names (.bin tensors, probes) without trusting
// the path twice: open with O_NONBLOCK, so that a FIFO or a device cannot
// block mpsbc, fstat the descriptor before reading anything, refuse what is
// not a regular file, and remember the file's identity so that a later open
// by the same path can tell a swapped or rewritten file (docs/SECURITY.md).
// Also the NaN/infinity count the compiler applies to the bytes it reads.

#ifndef MPSBC_SOURCE_FILE_H_
#define MPSBC_SOURCE_FILE_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "mpsb/types.h"

namespace mpsbc {

// What identifies one version of a file: a swap gives another inode, an
// in-place rewrite another modification or change time.
struct FileIdentity {
  uint64_t device = 0, inode = 0, size = 0;
  int64_t mtime_sec = 0, mtime_nsec = 0, ctime_sec = 0, ctime_nsec = 0;
  bool recorded = false;

  static FileIdentity of(const struct stat& st) {
    FileIdentity id;
    id.device = uint64_t(st.st_dev);
    id.inode = uint64_t(st.st_ino);
    id.size = uint64_t(st.st_size);
    id.mtime_sec = int64_t(st.st_mtim.tv_sec);
    id.mtime_nsec = int64_t(st.st_mtim.tv_nsec);
    id.ctime_sec = int64_t(st.st_ctim.tv_sec);
    id.ctime_nsec = int64_t(st.st_ctim.tv_nsec);
    id.recorded = true;
    return id;
  }
  bool operator==(const FileIdentity&) const = default;
};

// Opens `path` read-only and non-blocking and fstats the descriptor. Returns
// the descriptor (the caller closes it), or -1 with *error set to
// strerror's text (*not_regular false), or to what the file is instead,
// e.g. "is not a regular file (it is a FIFO)" (*not_regular true; closed
// before any read).
inline int open_regular(const char* path, struct stat* st, std::string* error, bool* not_regular) {
  *not_regular = false;
  const int fd = ::open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    *error = std::strerror(errno);
    return -1;
  }
  if (::fstat(fd, st) != 0) {
    *error = std::strerror(errno);
    ::close(fd);
    return -1;
  }
  if (!S_ISREG(st->st_mode)) {
    const char* kind = S_ISDIR(st->st_mode)                           ? " (it is a directory)"
                       : S_ISFIFO(st->st_mode)                        ? " (it is a FIFO)"
                       : S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode) ? " (it is a device)"
                       : S_ISSOCK(st->st_mode)                        ? " (it is a socket)"
                                                                      : "";
    *error = std::string("is not a regular file") + kind;
    *not_regular = true;
    ::close(fd);
    return -1;
  }
  return fd;
}

// NaN and infinities among float32, float16 or bfloat16 elements.
struct NonFiniteCount {
  uint64_t nan = 0, inf = 0;
  uint64_t first = UINT64_MAX;  // element index of the first one

  uint64_t count() const { return nan + inf; }
  void add(const NonFiniteCount& o) {
    nan += o.nan;
    inf += o.inf;
    if (o.first < first) first = o.first;
  }
};

// Counts the non-finite values among `n` elements of `dtype` at `data`,
// numbering them from `first_index`. uint8 has none.
inline void count_non_finite(const void* data, mpsb::DType dtype, uint64_t n, uint64_t first_index,
                             NonFiniteCount* out) {
  const auto* p = static_cast<const unsigned char*>(data);
  auto note = [&](uint64_t i, bool nan) {
    (nan ? out->nan : out->inf) += 1;
    if (first_index + i < out->first) out->first = first_index + i;
  };
  switch (dtype) {
    case mpsb::DType::kFloat32: {
      // All-ones exponent: one test per element over the whole run first
      // (vectorizes), the detail only when one is there.
      uint32_t any = 0;
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, p + 4 * i, 4);
        any |= uint32_t((b & 0x7f800000u) == 0x7f800000u);
      }
      if (!any) return;
      for (uint64_t i = 0; i < n; ++i) {
        uint32_t b;
        std::memcpy(&b, p + 4 * i, 4);
        if ((b & 0x7f800000u) == 0x7f800000u) note(i, (b & 0x007fffffu) != 0);
      }
      return;
    }
    case mpsb::DType::kFloat16:
    case mpsb::DType::kBFloat16: {
      const uint16_t exp = dtype == mpsb::DType::kFloat16 ? 0x7c00 : 0x7f80;
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        if ((h & exp) == exp) note(i, (h & uint16_t(~exp & 0x7fff)) != 0);
      }
      return;
    }
    case mpsb::DType::kUInt8:
      return;
  }
}

// "3 non-finite values (2 NaN, 1 infinite; first at element 17)".
inline std::string non_finite_text(const NonFiniteCount& nf) {
  return std::to_string(nf.count()) + " non-finite values (" + std::to_string(nf.nan) + " NaN, " +
         std::to_string(nf.inf) + " infinite; first at element " + std::to_string(nf.first) + ")";
}

}  // namespace mpsbc

#endif  // MPSBC_SOURCE_FILE_H_
