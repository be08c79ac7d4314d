// Error codes and Result<T>, the only way the runtime reports failure.
//
// No exception crosses the public API. A Result holds either a value or an
// Error with a message that names the file and the place. Thread-safe as
// values: a Result is not shared.

#ifndef MPSB_RESULT_H_
#define MPSB_RESULT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mpsb {

// Stable numeric values: the C API returns them unchanged.
enum class Error : int {
  kOk = 0,
  // Caller errors.
  kInvalidArgument = 1,
  kNotFound = 2,
  kWrongLayerKind = 3,
  // File errors: the bytes are not a valid bundle.
  kTruncated = 10,
  kBadIdentifier = 11,
  kVerifierFailed = 12,
  kTooLarge = 13,
  kUnsupportedVersion = 14,
  kBadSegment = 15,
  kTensorOutOfRange = 16,
  kSizeMismatch = 17,
  kMisaligned = 18,
  kDuplicateName = 19,
  kUnsortedNames = 20,
  kBadField = 21,
  kChecksumMismatch = 22,
  kNonZeroPadding = 23,
  // System errors.
  kIo = 30,
  kMapFailed = 31,
};

// "ok", "truncated", "bad identifier", ...
std::string_view to_string(Error e);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error error, std::string message) : state_(Failure{error, std::move(message)}) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // REQUIRES: ok()
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  // Error::kOk when ok().
  Error error() const { return ok() ? Error::kOk : std::get<1>(state_).error; }
  // Empty when ok().
  const std::string& message() const {
    static const std::string kEmpty;
    return ok() ? kEmpty : std::get<1>(state_).message;
  }

 private:
  struct Failure {
    Error error;
    std::string message;
  };
  std::variant<T, Failure> state_;
};

// For calls that return nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace mpsb

#endif  // MPSB_RESULT_H_
