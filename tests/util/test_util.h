// Helpers shared by the tests: scratch folders and file I/O.
#ifndef MPSB_TESTS_TEST_UTIL_H_
#define MPSB_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace mpsb::testing {

// A fresh, empty folder under the system temp dir, removed with the object.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

std::vector<uint8_t> read_file(const std::filesystem::path& p);
void write_file(const std::filesystem::path& p, const void* data, size_t size);
void write_file(const std::filesystem::path& p, const std::string& text);
template <typename T>
void write_vector(const std::filesystem::path& p, const std::vector<T>& v) {
  write_file(p, v.data(), v.size() * sizeof(T));
}
// Deterministic pseudo-random floats in [-1, 1).
std::vector<float> random_floats(size_t n, uint32_t seed);

}  // namespace mpsb::testing

#endif  // MPSB_TESTS_TEST_UTIL_H_
