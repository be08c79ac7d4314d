// A folder of small files as one fuzz input, for the targets that need a
// manifest with .bin files beside it (fuzz_compile) or a bundle with a
// manifest (fuzz_dump_check). An input is a sequence of records
//   NAME '\n' SIZE (4 bytes, little-endian) BYTES
// A SIZE past the end takes what is left; a record whose NAME is not a plain
// file name (1 to 32 of [A-Za-z0-9._-], not "." or "..") is skipped, so no
// input can write outside the scratch folder. make_fuzz_seeds writes seeds
// in this form.
#ifndef MPSB_TESTS_FUZZ_FUZZ_FILES_H_
#define MPSB_TESTS_FUZZ_FUZZ_FILES_H_

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace mpsb::fuzz {

struct FuzzFile {
  std::string name;
  std::vector<uint8_t> bytes;
};

inline bool plain_file_name(const std::string& n) {
  if (n.empty() || n.size() > 32 || n == "." || n == "..") return false;
  for (char c : n) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

inline std::vector<FuzzFile> parse_files(const uint8_t* data, size_t size) {
  std::vector<FuzzFile> files;
  size_t at = 0;
  while (at < size) {
    size_t nl = at;
    while (nl < size && data[nl] != '\n') ++nl;
    std::string name(reinterpret_cast<const char*>(data + at), nl - at);
    at = nl + 1;
    if (at + 4 > size) break;
    const uint32_t n = uint32_t{data[at]} | uint32_t{data[at + 1]} << 8 |
                       uint32_t{data[at + 2]} << 16 | uint32_t{data[at + 3]} << 24;
    at += 4;
    const size_t take = n < size - at ? n : size - at;
    if (plain_file_name(name)) {
      files.push_back({std::move(name), std::vector<uint8_t>(data + at, data + at + take)});
    }
    at += take;
  }
  return files;
}

inline std::vector<uint8_t> serialize_files(const std::vector<FuzzFile>& files) {
  std::vector<uint8_t> out;
  for (const FuzzFile& f : files) {
    out.insert(out.end(), f.name.begin(), f.name.end());
    out.push_back('\n');
    const auto n = static_cast<uint32_t>(f.bytes.size());
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(n >> (8 * i)));
    out.insert(out.end(), f.bytes.begin(), f.bytes.end());
  }
  return out;
}

// A scratch folder (under /dev/shm when there is one) that holds exactly
// one input's files at a time; removed at exit.
class ScratchFolder {
 public:
  ScratchFolder() {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string pattern = std::string(base) + "/mpsb-fuzz-XXXXXX";
    if (!::mkdtemp(pattern.data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = pattern;
  }
  ScratchFolder(const ScratchFolder&) = delete;
  ScratchFolder& operator=(const ScratchFolder&) = delete;
  ~ScratchFolder() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  // Empties the folder (what the last input and the compiler left there),
  // then writes `files`. Aborts on failure: stale files would make the
  // fuzzer report nonsense.
  void replace(const std::vector<FuzzFile>& files) {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_)) {
      std::filesystem::remove_all(e.path(), ec);
      if (ec) std::abort();
    }
    for (const FuzzFile& f : files) {
      const std::string p = path_ + "/" + f.name;
      const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) std::abort();
      size_t done = 0;
      while (done < f.bytes.size()) {
        const ssize_t n = ::write(fd, f.bytes.data() + done, f.bytes.size() - done);
        if (n <= 0) std::abort();
        done += static_cast<size_t>(n);
      }
      ::close(fd);
    }
  }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// A custom-mutator step for folder inputs: one file's bytes changed, the
// rest kept, so that the record structure survives mutation. The options
// record gets a new byte; another file is first offered to
// `mutate_file(file, seed)`, which returns false when it leaves the file to
// plain byte mutation (which may grow it by half). Falls back to byte
// mutation of the whole input when it holds no file or the result would
// exceed max_size.
template <typename ByteMutator, typename FileMutator>
size_t mutate_folder(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                     ByteMutator&& mutate_bytes, FileMutator&& mutate_file) {
  std::vector<FuzzFile> files = parse_files(data, size);
  if (files.empty() || seed % 16 == 0) return mutate_bytes(data, size, max_size);
  FuzzFile& f = files[(seed >> 4) % files.size()];
  if (f.name == "options") {
    f.bytes.assign(1, static_cast<uint8_t>(seed >> 8));
  } else if (!mutate_file(f, seed)) {
    const size_t n = f.bytes.size();
    f.bytes.resize(n + n / 2 + 16);
    f.bytes.resize(mutate_bytes(f.bytes.data(), n, f.bytes.size()));
  }
  const std::vector<uint8_t> out = serialize_files(files);
  if (out.size() > max_size) return mutate_bytes(data, size, max_size);
  std::copy(out.begin(), out.end(), data);
  return out.size();
}

// The options record's first byte, 0 without one.
inline uint8_t options_byte(const std::vector<FuzzFile>& files) {
  for (const FuzzFile& f : files) {
    if (f.name == "options" && !f.bytes.empty()) return f.bytes[0];
  }
  return 0;
}

}  // namespace mpsb::fuzz

#endif  // MPSB_TESTS_FUZZ_FUZZ_FILES_H_
