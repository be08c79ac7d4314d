#include "tensor_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <string_view>

#include "checked_math.h"
#include "field_reader.h"
#include "source_file.h"

namespace mpsbc {

using mpsb::DType;
using mpsb::LayerKind;
using mpsb::TensorRole;

namespace {

// Where a tensor path leads outside the manifest's folder, why; else empty.
// Lexical: a symbolic link inside the folder is followed (whoever wrote the
// folder chose it).
std::string outside_reason(const std::string& path_text) {
  const std::filesystem::path p(path_text);
  if (p.is_absolute()) return "is an absolute path";
  const std::filesystem::path normal = p.lexically_normal();
  if (!normal.empty() && *normal.begin() == "..") return "climbs out of the manifest's folder";
  return {};
}

struct NonFinite {
  uint64_t nan = 0, inf = 0;
  uint64_t first = 0;  // element index of the first one
};

// Whether any element has an all-ones exponent (NaN or infinity): one
// branch-free pass the compiler vectorizes, so finite weights — nearly all
// of them — cost about a memory read.
bool any_non_finite(mpsb::DType dtype, const unsigned char* p, size_t elements) {
  unsigned hit = 0;
  if (dtype == DType::kFloat32) {
    for (size_t i = 0; i < elements; ++i) {
      uint32_t v;
      std::memcpy(&v, p + i * 4, 4);
      hit |= (v & 0x7f800000u) == 0x7f800000u;
    }
  } else if (dtype == DType::kFloat16 || dtype == DType::kBFloat16) {
    const uint16_t exp = dtype == DType::kFloat16 ? 0x7c00u : 0x7f80u;
    for (size_t i = 0; i < elements; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, 2);
      hit |= (v & exp) == exp;
    }
  }
  return hit != 0;
}

void count_non_finite(mpsb::DType dtype, const unsigned char* p, size_t elements, uint64_t base,
                      NonFinite* nf) {
  if (!any_non_finite(dtype, p, elements)) return;
  for (size_t i = 0; i < elements; ++i) {
    bool nan = false, inf = false;
    switch (dtype) {
      case DType::kFloat32: {
        uint32_t v;
        std::memcpy(&v, p + i * 4, 4);
        nan = (v & 0x7f800000u) == 0x7f800000u && (v & 0x007fffffu) != 0;
        inf = (v & 0x7fffffffu) == 0x7f800000u;
        break;
      }
      case DType::kFloat16:
      case DType::kBFloat16: {
        uint16_t v;
        std::memcpy(&v, p + i * 2, 2);
        const uint16_t exp = dtype == DType::kFloat16 ? 0x7c00u : 0x7f80u;
        nan = (v & exp) == exp && (v & ~exp & 0x7fffu) != 0;
        inf = (v & 0x7fffu) == exp;
        break;
      }
      case DType::kUInt8:
        return;
    }
    if ((nan || inf) && nf->nan + nf->inf == 0) nf->first = base + i;
    nf->nan += nan;
    nf->inf += inf;
  }
}

// Reads the whole file once and counts NaN and infinite elements. Returns
// false with *error set when the file cannot be read to its end.
bool scan_non_finite(int fd, mpsb::DType dtype, uint64_t size, NonFinite* nf, std::string* error) {
  const size_t elem = mpsb::dtype_size(dtype);
  // Not zeroed: every byte used is read first. A multiple of every element size.
  constexpr size_t kChunk = size_t{1} << 20;
  // (new T[n], not make_unique_for_overwrite: libc++ 14, Xcode's, lacks it.)
  static thread_local const std::unique_ptr<unsigned char[]> buf(new unsigned char[kChunk]);
  for (uint64_t pos = 0; pos < size;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, size - pos));
    const ssize_t n = ::pread(fd, buf.get(), want, static_cast<off_t>(pos));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      *error = std::strerror(errno);
      return false;
    }
    if (n == 0) {
      *error = "the file shrank while being read";
      return false;
    }
    const size_t whole = static_cast<size_t>(n) / elem * elem;
    if (whole == 0) {
      *error = "short read";
      return false;
    }
    count_non_finite(dtype, buf.get(), whole / elem, pos / elem, nf);
    pos += whole;
  }
  return true;
}

}  // namespace

std::string describe_file(const ManifestTensor& t) {
  // The resolved path too when it differs: the manifest's folder is often
  // not the current one.
  std::string file = quote(t.path_text);
  if (t.path.string() != t.path_text) file += " (" + t.path.string() + ")";
  return file;
}

void check_tensor_files(Manifest& manifest, Diagnostics& diag, const TensorFileOptions& options) {
  for (auto& layer : manifest.layers) {
    for (auto& t : layer.tensors) {
      const std::string file = describe_file(t);
      if (!options.allow_outside) {
        if (const std::string why = outside_reason(t.path_text); !why.empty()) {
          diag.error(t.pointer, quote(t.path_text) + " " + why +
                                    "; tensor files must be inside the manifest's folder "
                                    "(--allow-outside accepts it)");
          continue;
        }
      }
      struct stat st;
      std::string error;
      bool not_regular = false;
      const int fd = open_regular(t.path.c_str(), &st, &error, &not_regular);
      if (fd < 0) {
        diag.error(t.pointer,
                   not_regular ? file + " " + error : "cannot open " + file + ": " + error);
        continue;
      }
      const uint64_t found = static_cast<uint64_t>(st.st_size);
      if (found != t.source_size) {
        ::close(fd);
        diag.error(t.pointer, file + ": expected " + std::to_string(t.source_size) + " bytes (" +
                                  shape_text(t.plan.source_shape) + " " +
                                  std::string(mpsb::to_string(t.source_dtype)) + "), found " +
                                  std::to_string(found));
        continue;
      }
      t.identity = FileIdentity::of(st);
      if (!options.allow_non_finite && !options.scan_non_finite) t.scan_on_read = true;
      if (!options.allow_non_finite && options.scan_non_finite) {
        NonFinite nf;
        const bool read = scan_non_finite(fd, t.source_dtype, t.source_size, &nf, &error);
        if (!read) {
          diag.error(t.pointer, "cannot read " + file + ": " + error);
        } else if (nf.nan + nf.inf > 0) {
          diag.error(t.pointer, file + ": " + std::to_string(nf.nan + nf.inf) +
                                    " non-finite values (" + std::to_string(nf.nan) + " NaN, " +
                                    std::to_string(nf.inf) + " infinite; first at element " +
                                    std::to_string(nf.first) +
                                    "); --allow-non-finite accepts them");
        }
      }
      ::close(fd);
    }
  }
}

bool read_floats(const std::filesystem::path& path, uint64_t count, std::vector<float>* out,
                 std::string* error) {
  struct stat st;
  bool not_regular = false;
  const int fd = open_regular(path.c_str(), &st, error, &not_regular);
  if (fd < 0) {
    *error = not_regular ? quote(path.string()) + " " + *error
                         : "cannot read " + quote(path.string()) + ": " + *error;
    return false;
  }
  const uint64_t size = uint64_t(st.st_size);
  if (count > UINT64_MAX / 4 || size != count * 4) {
    ::close(fd);
    *error = quote(path.string()) + ": expected " + std::to_string(count) + " float32 values (" +
             std::to_string(count * 4) + " bytes), found " + std::to_string(size) + " bytes";
    return false;
  }
  out->resize(static_cast<size_t>(count));
  auto* dst = reinterpret_cast<char*>(out->data());
  size_t done = 0;
  while (done < size) {
    const ssize_t n = ::pread(fd, dst + done, size_t(size) - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  ::close(fd);
  if (done != size) {
    *error = "cannot read " + quote(path.string());
    return false;
  }
  return true;
}

// A whole tensor's source values as floats, in source (PyTorch) order.
bool read_tensor_floats(const ManifestTensor& t, std::vector<float>* out, std::string* error) {
  const uint64_t count = t.plan.source_element_count();
  if (!t.synthesized.empty()) {
    *out = t.synthesized;
    return true;
  }
  const std::string changed =
      describe_file(t) + " changed since it was checked (replaced or rewritten); compile again";
  struct stat st;
  bool not_regular = false;
  const int fd = open_regular(t.path.c_str(), &st, error, &not_regular);
  if (fd < 0) {
    *error = not_regular ? changed : "cannot open " + describe_file(t) + ": " + *error;
    return false;
  }
  std::vector<unsigned char> raw(static_cast<size_t>(t.source_size));
  size_t done = 0;
  while (done < raw.size()) {
    const ssize_t n = ::pread(fd, raw.data() + done, raw.size() - done, off_t(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += size_t(n);
  }
  struct stat after;
  const bool same = ::fstat(fd, &after) == 0 &&
                    (!t.identity.recorded ||
                     (FileIdentity::of(st) == t.identity && FileIdentity::of(after) == t.identity));
  ::close(fd);
  if (!same || done != raw.size()) {
    *error = changed;
    return false;
  }
  if (t.scan_on_read) {
    NonFiniteCount nf;
    count_non_finite(raw.data(), t.source_dtype, count, 0, &nf);
    if (nf.count() > 0) {
      *error = describe_file(t) + ": " + non_finite_text(nf) + "; --allow-non-finite accepts them";
      return false;
    }
  }
  out->resize(static_cast<size_t>(count));
  to_float(t.source_dtype, raw.data(), out->data(), out->size());
  return true;
}

void check_probe_files(const Manifest& manifest, Diagnostics& diag, bool allow_outside) {
  for (const auto& layer : manifest.layers) {
    if (!layer.probe) continue;
    const Probe& p = *layer.probe;
    for (int k = 0; k < 2; ++k) {
      const auto& path = k == 0 ? p.input : p.output;
      const auto& text = k == 0 ? p.input_text : p.output_text;
      const auto& shape = k == 0 ? p.input_shape : p.output_shape;
      const uint64_t want = *checked_product(shape) * 4;
      const std::string at = p.pointer + (k == 0 ? "/input" : "/output");
      // The tensors' folder rule, decided from the text alone: nothing about
      // a file outside the folder (not even whether it exists) may reach a
      // message.
      if (!allow_outside) {
        if (const std::string why = outside_reason(text); !why.empty()) {
          diag.error(at, quote(text) + " " + why +
                             "; probe files must be inside the manifest's folder "
                             "(--allow-outside accepts it)");
          continue;
        }
      }
      struct stat st;
      std::string error;
      bool not_regular = false;
      const int fd = open_regular(path.c_str(), &st, &error, &not_regular);
      if (fd >= 0) ::close(fd);
      const uint64_t size = uint64_t(st.st_size);
      if (fd < 0) {
        diag.error(at, not_regular ? quote(path.string()) + " " + error
                                   : "cannot open " + quote(path.string()) + ": " + error);
      } else if (size != want) {
        diag.error(at, quote(path.string()) + ": expected " + std::to_string(want) + " bytes (" +
                           shape_text(shape) + " float32), found " + std::to_string(size));
      }
    }
  }
}

}  // namespace mpsbc
