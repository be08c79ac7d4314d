#include "field_reader.h"

#include <cmath>

#include "mpsb_text.h"

namespace mpsbc {

using mpsb::DType;

namespace {

// RFC 6901: '~' and '/' inside a reference token are escaped.
std::string escape_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') {
      out += "~0";
    } else if (c == '/') {
      out += "~1";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

std::string child(std::string_view pointer, std::string_view key) {
  return std::string(pointer) + "/" + escape_token(key);
}

std::string child(std::string_view pointer, size_t index) {
  return std::string(pointer) + "/" + std::to_string(index);
}

// A value as quoted in "found ..." messages. Containers are summarized, not
// dumped: they may be large or deeply nested.
std::string describe(const json& v) {
  auto clip = [](std::string s) {
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
  };
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return v.get<bool>() ? "true" : "false";
    case json::value_t::string:
      return "string " + clip(v.dump(-1, ' ', false, json::error_handler_t::replace));
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return clip(v.dump());
    case json::value_t::array:
      return v.empty() ? "an empty array" : "an array of " + std::to_string(v.size()) + " elements";
    case json::value_t::object:
      return "an object";
    case json::value_t::binary:
    case json::value_t::discarded:
      break;
  }
  return "an unsupported value";
}

std::string quote(std::string_view s) { return json(std::string(s)).dump(); }

bool is_negative_zero(const json& v) {
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>() == 0;
  if (v.is_number_float()) {
    const double d = v.get<double>();
    return d == 0.0 && std::signbit(d);
  }
  return false;
}

std::string shape_text(const std::vector<uint64_t>& shape) {
  return mpsb::text::shape_text(shape, "×");
}

std::optional<DType> parse_dtype(std::string_view s) {
  if (s == "float32") return DType::kFloat32;
  if (s == "float16") return DType::kFloat16;
  if (s == "bfloat16") return DType::kBFloat16;
  return std::nullopt;
}

}  // namespace mpsbc
