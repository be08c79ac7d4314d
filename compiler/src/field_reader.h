// Reading one JSON object of a manifest field by field, each problem
// reported at its JSON pointer (RFC 6901), and the helpers the messages use.
// Internal to the compiler.

#ifndef MPSBC_FIELD_READER_H_
#define MPSBC_FIELD_READER_H_

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "diagnostics.h"
#include "manifest.h"

namespace mpsbc {

using nlohmann::json;

// "/layers/3" + "kernel_size" -> "/layers/3/kernel_size" ('~' and '/' escaped).
std::string child(std::string_view pointer, std::string_view key);
std::string child(std::string_view pointer, size_t index);
// A value as quoted in "found ..." messages; containers are summarized.
std::string describe(const json& v);
// A string as a JSON string literal.
std::string quote(std::string_view s);
// An integral zero written with a sign ("-0"): nlohmann stores it as a
// signed integer 0 or as the float -0.0.
bool is_negative_zero(const json& v);
// "3×4×5".
std::string shape_text(const std::vector<uint64_t>& shape);
std::optional<mpsb::DType> parse_dtype(std::string_view s);

// The field an unknown `key` was probably meant to be, out of the fields the
// object takes (`known`: the names mpsb/kinds.h lists for the kind, or the
// format's own keys): the closest by edit distance (case-insensitive, a swap
// of two letters counting one), or the field a common other spelling
// stands for (gamma for weight, running_variance for running_var, ...).
// Empty when none is close.
std::string closest_field(std::string_view key, const std::set<std::string>& known);

inline constexpr uint64_t kMaxU32 = std::numeric_limits<uint32_t>::max();

struct Pair {
  uint32_t h = 0, w = 0;
};

// Reads the fields of one JSON object, reporting each problem at its JSON
// pointer. Remembers which keys were read so that the rest can be reported:
// a misspelt "padidng" would otherwise silently mean padding 0.
class FieldReader {
 public:
  FieldReader(const json& object, std::string pointer, std::string what, Diagnostics& diag)
      : object_(object), pointer_(std::move(pointer)), what_(std::move(what)), diag_(diag) {}

  const std::string& pointer() const { return pointer_; }
  std::string at(std::string_view key) const { return child(pointer_, key); }
  bool failed() const { return failed_; }
  void error(std::string_view key, std::string_view text) {
    failed_ = true;
    diag_.error(at(key), text);
  }

  // The member, or nullptr when absent. Marks the key as known.
  const json* find(std::string_view key) {
    known_.insert(std::string(key));
    auto it = object_.find(key);
    return it == object_.end() ? nullptr : &*it;
  }

  // Marks keys that are accepted and have no effect on the bundle.
  void ignore(std::initializer_list<std::string_view> keys) {
    for (auto k : keys) known_.insert(std::string(k));
  }

  // A required unsigned integer in [min, 2^32 - 1] (the schema stores uint).
  std::optional<uint32_t> required_uint(std::string_view key, uint64_t min) {
    const json* v = find(key);
    if (!v) {
      error(key, "missing; " + what_ + " needs " + expect_uint(min));
      return std::nullopt;
    }
    return read_uint(*v, at(key), min);
  }

  std::optional<uint32_t> optional_uint(std::string_view key, uint32_t fallback, uint64_t min) {
    const json* v = find(key);
    if (!v) return fallback;
    return read_uint(*v, at(key), min);
  }

  // An int or [h, w], as PyTorch's _pair accepts.
  std::optional<Pair> pair(std::string_view key, std::optional<Pair> fallback, uint64_t min) {
    const json* v = find(key);
    if (!v) {
      if (fallback) return fallback;
      error(key, "missing; " + what_ +
                     " needs an integer or [h, w] of integers >= " + std::to_string(min));
      return std::nullopt;
    }
    if (v->is_array()) {
      if (v->size() != 2) {
        error(key, "expected [h, w] with 2 integers, found " + describe(*v));
        return std::nullopt;
      }
      auto h = read_uint((*v)[0], child(at(key), 0), min);
      auto w = read_uint((*v)[1], child(at(key), 1), min);
      if (!h || !w) return std::nullopt;
      return Pair{*h, *w};
    }
    if (v->is_string()) {
      // PyTorch also takes padding="same"/"valid"; the exporter resolves it.
      error(key, "expected an integer or [h, w], found " + describe(*v) +
                     " (string forms are not supported: give the numbers)");
      return std::nullopt;
    }
    if (!v->is_number()) {
      error(key, "expected an integer or [h, w], found " + describe(*v));
      return std::nullopt;
    }
    auto n = read_uint(*v, at(key), min);
    if (!n) return std::nullopt;
    return Pair{*n, *n};
  }

  // A finite number that fits a float; `positive` also rejects <= 0 and
  // values that round to 0 as float.
  std::optional<float> number(std::string_view key, float fallback, bool positive) {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) {
      error(key, "expected a number, found " + describe(*v));
      return std::nullopt;
    }
    const double d = v->get<double>();
    if (!std::isfinite(d) || std::fabs(d) > double(std::numeric_limits<float>::max())) {
      error(key, "expected a finite number within float range, found " + describe(*v));
      return std::nullopt;
    }
    const float f = static_cast<float>(d);
    if (positive && !(f > 0.0f)) {
      error(key, "expected a number > 0 (as float32), found " + describe(*v));
      return std::nullopt;
    }
    return f;
  }

  std::optional<bool> boolean(std::string_view key) {
    const json* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) {
      error(key, "expected true or false, found " + describe(*v));
      return std::nullopt;
    }
    return v->get<bool>();
  }

  // A tensor entry: a path string or {"path": ..., "dtype": ...}. Absent or
  // null gives nullopt; `*present` tells a broken entry from an absent one.
  std::optional<ManifestTensor> tensor(std::string_view key, mpsb::TensorRole role,
                                       const std::filesystem::path& folder, bool required,
                                       bool* present) {
    *present = false;
    const json* v = find(key);
    if (!v || v->is_null()) {
      if (required) error(key, "missing; " + what_ + " needs a tensor file");
      return std::nullopt;
    }
    *present = true;
    ManifestTensor t;
    t.role = role;
    t.pointer = at(key);
    const json* path = v;
    std::string path_pointer = t.pointer;
    if (v->is_object()) {
      FieldReader sub(*v, t.pointer, "a tensor", diag_);
      path = sub.find("path");
      path_pointer = sub.at("path");
      if (!path) {
        error(key, "missing \"path\" in tensor object");
        return std::nullopt;
      }
      if (const json* dt = sub.find("dtype")) {
        std::optional<mpsb::DType> parsed;
        if (dt->is_string()) parsed = parse_dtype(dt->get_ref<const std::string&>());
        if (!parsed) {
          failed_ = true;
          diag_.error(sub.at("dtype"),
                      "expected \"float32\", \"float16\" or \"bfloat16\", found " + describe(*dt));
          return std::nullopt;
        }
        t.source_dtype = *parsed;
      }
      sub.report_unknown();
    } else if (!v->is_string()) {
      error(key,
            "expected a path string or {\"path\": ..., \"dtype\": ...}, found " + describe(*v));
      return std::nullopt;
    }
    if (!path->is_string()) {
      failed_ = true;
      diag_.error(path_pointer, "expected a path string, found " + describe(*path));
      return std::nullopt;
    }
    t.path_text = path->get<std::string>();
    if (t.path_text.empty() || t.path_text.find('\0') != std::string::npos) {
      failed_ = true;
      diag_.error(path_pointer, "expected a non-empty file path, found " + describe(*path));
      return std::nullopt;
    }
    std::filesystem::path p(t.path_text);
    t.path = p.is_absolute() ? p : folder / p;
    t.dtype = t.source_dtype;
    return t;
  }

  // Public for array elements, which have no key of their own.
  std::optional<uint32_t> read_uint(const json& v, const std::string& pointer, uint64_t min) {
    const char* problem = nullptr;
    uint64_t n = 0;
    if (v.is_number_unsigned()) {
      n = v.get<uint64_t>();
      if (n < min) problem = "too small";
      if (n > kMaxU32) problem = "too large";
    } else if (is_negative_zero(v)) {
      if (n < min) problem = "too small";  // "-0" is 0
    } else if (v.is_number_integer()) {
      problem = "negative";
    } else {
      problem = "wrong type";
    }
    if (problem) {
      failed_ = true;
      std::string range = expect_uint(min);
      if (v.is_number_unsigned() && n > kMaxU32) range = "an integer <= " + std::to_string(kMaxU32);
      diag_.error(pointer, "expected " + range + ", found " + describe(v));
      return std::nullopt;
    }
    return static_cast<uint32_t>(n);
  }

  // Every key of the object that no find() or ignore() asked for: an error
  // (a warning under --allow-unknown-fields), with the field probably meant.
  void report_unknown() {
    std::vector<std::string> unknown;
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (!known_.count(it.key())) unknown.push_back(it.key());
    }
    std::sort(unknown.begin(), unknown.end());
    for (const auto& k : unknown) {
      const std::string meant = closest_field(k, known_);
      diag_.unknown_field(at(k), "unknown field for " + what_,
                          meant.empty() ? "" : "did you mean " + quote(meant) + "?");
    }
  }

 private:
  static std::string expect_uint(uint64_t min) {
    return min == 0 ? "an integer >= 0" : "an integer >= " + std::to_string(min);
  }

  const json& object_;
  std::string pointer_;
  std::string what_;
  Diagnostics& diag_;
  std::set<std::string> known_;
  bool failed_ = false;
};

}  // namespace mpsbc

#endif  // MPSBC_FIELD_READER_H_
