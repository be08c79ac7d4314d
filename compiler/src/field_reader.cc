#include "field_reader.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <utility>

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

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Optimal string alignment distance: insertions, deletions, substitutions
// and swaps of two neighbours each cost 1 ("padidng" is 1 from "padding").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// Other spellings of the manifest's field names, as they appear in PyTorch
// state dicts and modules, TensorFlow/Keras and older model files. Only
// suggested where the object takes the field (the kind's table decides).
constexpr std::pair<std::string_view, std::string_view> kAliases[] = {
    {"gamma", "weight"},
    {"scale", "weight"},
    {"weights", "weight"},
    {"beta", "bias"},
    {"shift", "bias"},
    {"offset", "bias"},
    {"mean", "running_mean"},
    {"moving_mean", "running_mean"},
    {"var", "running_var"},
    {"variance", "running_var"},
    {"running_variance", "running_var"},
    {"moving_var", "running_var"},
    {"moving_variance", "running_var"},
    {"epsilon", "eps"},
    {"kernel", "kernel_size"},
    {"kernel_shape", "kernel_size"},
    {"ksize", "kernel_size"},
    {"pad", "padding"},
    {"pads", "padding"},
    {"strides", "stride"},
    {"dilations", "dilation"},
    {"group", "groups"},
    {"groups", "num_groups"},
    {"num_groups", "groups"},
    {"num_channels", "num_features"},
    {"num_features", "num_channels"},
    {"channels", "num_channels"},
    {"channels", "num_features"},
    {"in_channels", "in_features"},
    {"out_channels", "out_features"},
    {"in_features", "in_channels"},
    {"out_features", "out_channels"},
    {"act", "activation"},
    {"nonlinearity", "activation"},
    {"slope", "negative_slope"},
    {"alpha", "negative_slope"},
    {"slopes", "activation_weight"},
    {"prelu_weight", "activation_weight"},
    {"shape", "input_shape"},
    {"file", "path"},
    {"type", "dtype"},
    {"version", "format"},
    {"skipped_modules", "skipped"},
    {"unsupported", "skipped"},
};

}  // namespace

std::string closest_field(std::string_view key, const std::set<std::string>& known) {
  const std::string k = lower(key);
  for (const auto& [alias, field] : kAliases) {
    if (alias == k && known.count(std::string(field))) return std::string(field);
  }
  // Close enough to be a typo: one edit in a short name, two in a longer
  // one, and never most of the name.
  const size_t limit = k.size() <= 4 ? 1 : 2;
  std::string best;
  size_t best_distance = limit + 1;
  for (const std::string& f : known) {
    // Also keeps a hostile megabyte-long key from costing a megabyte table.
    if (std::max(k.size(), f.size()) - std::min(k.size(), f.size()) > limit) continue;
    const size_t d = edit_distance(k, lower(f));
    if (d < best_distance && d < f.size()) {
      best = f;
      best_distance = d;
    }
  }
  return best;
}

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
