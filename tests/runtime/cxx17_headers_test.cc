// The public headers that do not need C++20, compiled as C++17 (this file's
// target sets CXX_STANDARD 17) and used against the runtime built as C++20:
// apps on older toolchains can take the C API (mpsb.h) and the error and
// type names through them. bundle.h and sources.h need C++20: their API
// takes and returns std::span.

#include <cstdio>
#include <cstring>
#include <string_view>

#include "mpsb/mpsb.h"
#include "mpsb/result.h"
#include "mpsb/types.h"

#if __cplusplus != 201703L
#error "this test must be compiled as C++17"
#endif

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

}  // namespace

int main() {
  const mpsb::Result<int> good(7);
  expect(good.ok() && *good == 7 && good.error() == mpsb::Error::kOk, "Result holds a value");
  const mpsb::Result<int> bad(mpsb::Error::kTruncated, "x.mpsb: 3 bytes");
  expect(!bad.ok() && bad.error() == mpsb::Error::kTruncated && bad.message() == "x.mpsb: 3 bytes",
         "Result holds an error");
  expect(mpsb::to_string(mpsb::Error::kTruncated) == "truncated", "error names");
  expect(mpsb::dtype_size(mpsb::DType::kFloat16) == 2, "dtype_size");
  expect(std::strcmp(mpsb_error_string(int(mpsb::Error::kTruncated)), "truncated") == 0,
         "C API error string");
  expect(std::string_view(mpsb_version_string()).size() > 0, "C API version string");
  std::printf("%s\n", failures == 0 ? "C++17 headers: ok" : "C++17 headers: FAILED");
  return failures == 0 ? 0 : 1;
}
