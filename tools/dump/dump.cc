#include "dump.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "mpsb/bundle.h"
#include "mpsb/fb/bundle_generated.h"
#include "mpsbc/layout.h"

namespace mpsb::dump {
namespace {

using nlohmann::ordered_json;

// ---------------------------------------------------------------------------
// Safe text

// Length of the UTF-8 sequence starting at s[i] and its code point, or 0 when
// the bytes there are not well-formed UTF-8 (overlong forms, surrogates and
// values past U+10FFFF included, as RFC 3629 requires).
size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  size_t n;
  uint32_t v;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if (c >= 0xc2 && c <= 0xdf) {
    n = 2, v = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    n = 3, v = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    n = 4, v = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xc0) != 0x80) return 0;
    v = (v << 6) | (b(k) & 0x3f);
  }
  if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10ffff)) ||
      (v >= 0xd800 && v <= 0xdfff)) {
    return 0;
  }
  *cp = v;
  return n;
}

// C1 controls and the bidi embedding/override/isolate marks (the "Trojan
// Source" characters) plus the line and paragraph separators.
bool invisible_control(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200e || cp == 0x200f || cp == 0x061c ||
         cp == 0x2028 || cp == 0x2029;
}

// ---------------------------------------------------------------------------
// Formatting helpers

std::string hex64(uint64_t v) { return fmt::format("0x{:016x}", v); }

std::string shape_text(std::span<const uint64_t> shape) {
  if (shape.empty()) return "scalar";
  return fmt::format("{}", fmt::join(shape, "x"));
}

// "1.6 KiB" next to a byte count, for humans.
std::string human_bytes(uint64_t n) {
  static constexpr std::array<const char*, 5> kUnits = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < kUnits.size()) v /= 1024, ++u;
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.1f} {}", v, kUnits[u]);
}

// A PyTorch pair as the manifest writes it: "3" when square, else "3,5".
std::string pair_text(uint32_t h, uint32_t w) {
  return h == w ? fmt::format("{}", h) : fmt::format("{},{}", h, w);
}

bool is_conv(LayerKind k) { return k == LayerKind::kConv2d || k == LayerKind::kConvTranspose2d; }
bool is_norm(LayerKind k) {
  return k == LayerKind::kBatchNorm2d || k == LayerKind::kInstanceNorm2d;
}

// "3x3 s2 p1 d1 g1": what a reader checks first against the PyTorch module.
std::string params_text(const Layer& l) {
  if (is_conv(l.kind())) {
    const ConvParams c = l.conv();
    std::string s = fmt::format(
        "{}x{} s{} p{} d{} g{}", c.kernel_h, c.kernel_w, pair_text(c.stride_h, c.stride_w),
        pair_text(c.padding_h, c.padding_w), pair_text(c.dilation_h, c.dilation_w), c.groups);
    if (l.kind() == LayerKind::kConvTranspose2d) {
      s += fmt::format(" op{}", pair_text(c.output_padding_h, c.output_padding_w));
    }
    return s;
  }
  if (l.kind() == LayerKind::kLinear) {
    const LinearParams p = l.linear();
    return p.flattened() ? fmt::format("flatten {}x{}x{}", p.input_c, p.input_h, p.input_w)
                         : std::string("vector");
  }
  if (is_norm(l.kind())) return fmt::format("eps {:g}", l.norm().eps);
  return "";
}

std::string channels_text(const Layer& l) {
  if (is_conv(l.kind())) {
    const ConvParams c = l.conv();
    return fmt::format("{}->{}", c.in_channels, c.out_channels);
  }
  if (l.kind() == LayerKind::kLinear) {
    const LinearParams p = l.linear();
    return fmt::format("{}->{}", p.in_features, p.out_features);
  }
  if (is_norm(l.kind())) return fmt::format("{}", l.norm().num_features);
  return "";
}

std::string activation_text(const Layer& l) {
  if (l.activation() == Activation::kLeakyReLU) {
    return fmt::format("leaky_relu({:g})", l.activation_alpha());
  }
  return std::string(to_string(l.activation()));
}

uint64_t layer_bytes(const Layer& l) {
  uint64_t n = 0;
  for (size_t i = 0; i < l.tensor_count(); ++i) n += l.tensor(i).size();
  return n;
}

// ---------------------------------------------------------------------------
// Tables with aligned columns

struct Column {
  std::string title;
  bool right = false;  // numbers read best right-aligned
};

void print_table(std::ostream& out, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(columns.size());
  for (size_t c = 0; c < columns.size(); ++c) width[c] = display_width(columns[c].title);
  for (const auto& row : rows) {
    for (size_t c = 0; c < columns.size(); ++c) {
      width[c] = std::max(width[c], display_width(row[c]));
    }
  }
  const auto line = [&](const std::vector<std::string>& cells) {
    std::string s = " ";
    for (size_t c = 0; c < columns.size(); ++c) {
      const size_t pad = width[c] - display_width(cells[c]);
      const bool last = c + 1 == columns.size();
      s += ' ';
      if (columns[c].right) s.append(pad, ' ');
      s += cells[c];
      if (!columns[c].right && !last) s.append(pad, ' ');
      s += ' ';
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << '\n';
  };
  std::vector<std::string> titles;
  for (const auto& c : columns) titles.push_back(c.title);
  line(titles);
  for (const auto& row : rows) line(row);
}

// Key/value lines with the values in one column.
class Fields {
 public:
  explicit Fields(size_t indent = 0) : indent_(indent) {}
  void add(std::string key, std::string value) {
    rows_.emplace_back(std::move(key), std::move(value));
  }
  void print(std::ostream& out) const {
    size_t w = 0;
    for (const auto& [k, v] : rows_) w = std::max(w, k.size());
    for (const auto& [k, v] : rows_) {
      std::string s(indent_, ' ');
      s += k;
      if (!v.empty()) s.append(w - k.size() + 2, ' ') += v;
      out << s << '\n';
    }
  }

 private:
  size_t indent_;
  std::vector<std::pair<std::string, std::string>> rows_;
};

// ---------------------------------------------------------------------------
// The bundle's header fields that the runtime API does not expose: the two
// digests. Read from the already verified metadata.

struct Digests {
  uint64_t segment_checksum = 0;
  uint64_t metadata_checksum = 0;
};

Digests digests(const Bundle& b) {
  const auto* root = fb::GetSizePrefixedBundle(b.metadata_bytes().data());
  return {root->segment_checksum(), root->metadata_checksum()};
}

std::vector<Layer> network_order(const Bundle& b) {
  std::vector<Layer> layers;
  layers.reserve(b.layer_count());
  for (size_t i = 0; i < b.layer_count(); ++i) layers.push_back(b.layer_in_network_order(i));
  return layers;
}

size_t tensor_count(const Bundle& b) {
  size_t n = 0;
  for (size_t i = 0; i < b.layer_count(); ++i) n += b.layer(i).tensor_count();
  return n;
}

uint64_t tensor_bytes(const Bundle& b) {
  uint64_t n = 0;
  for (size_t i = 0; i < b.layer_count(); ++i) n += layer_bytes(b.layer(i));
  return n;
}

// ---------------------------------------------------------------------------
// Element values

float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf, NaN (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {
    // Subnormal half: normalise into a float's wider exponent range.
    exp = 113;
    while ((mant & 0x400u) == 0) mant <<= 1, --exp;
    bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

float bfloat16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Summary statistics of a tensor's stored values: a quick look at whether
// the weights are plausible (all zeros, NaN, exploding) without extracting.
struct TensorStats {
  bool available = false;  // false for uint8 (quantized codes, not values)
  double min = 0, max = 0, mean = 0, stddev = 0;
  uint64_t zeros = 0, nonfinite = 0;
};

TensorStats tensor_stats(const Tensor& t) {
  TensorStats st;
  const DType d = t.dtype();
  if (d != DType::kFloat32 && d != DType::kFloat16 && d != DType::kBFloat16) return st;
  const std::byte* p = t.bytes().data();
  const uint64_t n = t.element_count();
  // Welford's update: one pass, stable for large tensors.
  double mean = 0, m2 = 0;
  uint64_t finite = 0;
  for (uint64_t i = 0; i < n; ++i) {
    float f;
    if (d == DType::kFloat32) {
      std::memcpy(&f, p + i * 4, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      f = d == DType::kFloat16 ? half_to_float(h) : bfloat16_to_float(h);
    }
    if (!std::isfinite(f)) {
      ++st.nonfinite;
      continue;
    }
    if (f == 0.0f) ++st.zeros;
    const double v = f;
    if (finite == 0) st.min = st.max = v;
    st.min = std::min(st.min, v);
    st.max = std::max(st.max, v);
    ++finite;
    const double delta = v - mean;
    mean += delta / static_cast<double>(finite);
    m2 += delta * (v - mean);
  }
  st.available = true;
  st.mean = mean;
  st.stddev = finite > 0 ? std::sqrt(m2 / static_cast<double>(finite)) : 0.0;
  return st;
}

std::string stats_text(const TensorStats& st) {
  if (!st.available) return "n/a (quantized)";
  std::string s = fmt::format("min {:.6g}, max {:.6g}, mean {:.6g}, std {:.6g}, zeros {}", st.min,
                              st.max, st.mean, st.stddev, st.zeros);
  if (st.nonfinite > 0) s += fmt::format(", NaN/inf {}", st.nonfinite);
  return s;
}

ordered_json stats_json(const TensorStats& st) {
  if (!st.available) return nullptr;
  return {{"min", st.min},    {"max", st.max},     {"mean", st.mean},
          {"std", st.stddev}, {"zeros", st.zeros}, {"nonfinite", st.nonfinite}};
}

// ---------------------------------------------------------------------------
// JSON

ordered_json shape_json(std::span<const uint64_t> shape) {
  return ordered_json(std::vector<uint64_t>(shape.begin(), shape.end()));
}

ordered_json tensor_json(const Tensor& t, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["role"] = to_string(t.role());
  j["dtype"] = to_string(t.dtype());
  j["layout"] = to_string(t.layout());
  j["shape"] = shape_json(t.shape());
  j["source_dtype"] = to_string(t.source_dtype());
  j["source_layout"] = to_string(t.source_layout());
  j["source_shape"] = shape_json(t.source_shape());
  j["transform"] = to_string(t.transform());
  j["offset"] = t.offset();
  j["file_offset"] = segment_offset + t.offset();
  j["size"] = t.size();
  // A string: JSON numbers lose precision past 2^53 in most readers.
  j["checksum"] = hex64(t.checksum());
  if (with_stats) j["stats"] = stats_json(tensor_stats(t));
  return j;
}

ordered_json params_json(const Layer& l) {
  ordered_json j = ordered_json::object();
  if (is_conv(l.kind())) {
    const ConvParams c = l.conv();
    j["in_channels"] = c.in_channels;
    j["out_channels"] = c.out_channels;
    j["kernel_size"] = {c.kernel_h, c.kernel_w};
    j["stride"] = {c.stride_h, c.stride_w};
    j["padding"] = {c.padding_h, c.padding_w};
    j["dilation"] = {c.dilation_h, c.dilation_w};
    j["groups"] = c.groups;
    if (l.kind() == LayerKind::kConvTranspose2d) {
      j["output_padding"] = {c.output_padding_h, c.output_padding_w};
    }
  } else if (l.kind() == LayerKind::kLinear) {
    const LinearParams p = l.linear();
    j["in_features"] = p.in_features;
    j["out_features"] = p.out_features;
    j["input_shape"] =
        p.flattened() ? ordered_json({p.input_c, p.input_h, p.input_w}) : ordered_json(nullptr);
  } else if (is_norm(l.kind())) {
    const NormParams n = l.norm();
    j["num_features"] = n.num_features;
    j["eps"] = n.eps;
  }
  return j;
}

// with_stats reads every weight of the layer; the whole-bundle listing leaves
// it out so that it stays a metadata-only read for any model size.
ordered_json layer_json(const Layer& l, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["index"] = l.index();
  j["name"] = l.name();
  j["kind"] = to_string(l.kind());
  j["activation"] = to_string(l.activation());
  if (l.activation() == Activation::kLeakyReLU) j["activation_alpha"] = l.activation_alpha();
  j["quantization"] = to_string(l.quantization());
  j["params"] = params_json(l);
  j["bytes"] = layer_bytes(l);
  ordered_json tensors = ordered_json::array();
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    tensors.push_back(tensor_json(l.tensor(i), segment_offset, with_stats));
  }
  j["tensors"] = std::move(tensors);
  return j;
}

ordered_json bundle_json(const std::string& path, const Bundle& b) {
  const Digests d = digests(b);
  ordered_json j;
  j["file"] = path;
  j["file_size"] = b.file().size();
  j["name"] = b.name();
  j["format_version"] = b.format_version();
  j["producer"] = b.producer();
  ordered_json meta = ordered_json::object();
  for (size_t i = 0; i < b.metadata_count(); ++i) {
    const auto [k, v] = b.metadata(i);
    meta[std::string(k)] = v;
  }
  j["metadata"] = std::move(meta);
  j["metadata_size"] = b.metadata_bytes().size();
  j["metadata_checksum"] = hex64(d.metadata_checksum);
  j["segment_alignment"] = b.segment_alignment();
  j["tensor_alignment"] = b.tensor_alignment();
  j["segment_offset"] = b.segment_offset();
  j["segment_size"] = b.segment().size();
  j["segment_checksum"] = hex64(d.segment_checksum);
  j["layer_count"] = b.layer_count();
  j["tensor_count"] = tensor_count(b);
  j["tensor_bytes"] = tensor_bytes(b);
  ordered_json layers = ordered_json::array();
  for (const Layer& l : network_order(b))
    layers.push_back(layer_json(l, b.segment_offset(), false));
  j["layers"] = std::move(layers);
  return j;
}

void print_json(std::ostream& out, const ordered_json& j) {
  // Names come from the file. ensure_ascii escapes every non-ASCII code point
  // (C1 controls and bidi overrides included) as \uXXXX, so the JSON is as
  // safe to show on a terminal as the text output, and every JSON reader
  // still gets the exact name back. Bytes that are not UTF-8 are replaced
  // rather than thrown on.
  out << j.dump(2, ' ', true, ordered_json::error_handler_t::replace) << '\n';
}

// ---------------------------------------------------------------------------
// Text

void print_summary(std::ostream& out, const std::string& path, const Bundle& b) {
  const Digests d = digests(b);
  Fields f;
  f.add("file", printable(path));
  f.add("name", printable(b.name()));
  f.add("format version", fmt::format("{}", b.format_version()));
  f.add("producer", printable(b.producer()));
  for (size_t i = 0; i < b.metadata_count(); ++i) {
    const auto [k, v] = b.metadata(i);
    f.add(i == 0 ? "metadata" : "", fmt::format("{} = {}", printable(k), printable(v)));
  }
  if (b.metadata_count() == 0) f.add("metadata", "(none)");
  f.add("file size", fmt::format("{} ({})", b.file().size(), human_bytes(b.file().size())));
  f.add("metadata size",
        fmt::format("{}, checksum {}", b.metadata_bytes().size(), hex64(d.metadata_checksum)));
  f.add("layers", fmt::format("{}", b.layer_count()));
  f.add("tensors", fmt::format("{}", tensor_count(b)));
  f.add("tensor bytes", fmt::format("{} ({})", tensor_bytes(b), human_bytes(tensor_bytes(b))));
  f.add("alignment",
        fmt::format("segment {}, tensor {}", b.segment_alignment(), b.tensor_alignment()));
  f.add("segment", fmt::format("offset {}, size {}, checksum {}", b.segment_offset(),
                               b.segment().size(), hex64(d.segment_checksum)));
  f.print(out);
  out << '\n';

  std::vector<std::vector<std::string>> rows;
  for (const Layer& l : network_order(b)) {
    const std::optional<Tensor> w = l.find(TensorRole::kWeight);
    rows.push_back(
        {fmt::format("{}", l.index()), printable(l.name()), std::string(to_string(l.kind())),
         channels_text(l), params_text(l), activation_text(l), w ? shape_text(w->shape()) : "-",
         w ? std::string(to_string(w->layout())) : "-",
         w ? std::string(to_string(w->dtype())) : "-", fmt::format("{}", layer_bytes(l))});
  }
  print_table(out,
              {{"#", true},
               {"name"},
               {"kind"},
               {"channels"},
               {"params"},
               {"act"},
               {"weight"},
               {"layout"},
               {"dtype"},
               {"bytes", true}},
              rows);
}

void print_layer(std::ostream& out, const Bundle& b, const Layer& l) {
  Fields f;
  f.add("layer", printable(l.name()));
  f.add("index", fmt::format("{}", l.index()));
  f.add("kind", std::string(to_string(l.kind())));
  if (is_conv(l.kind())) {
    const ConvParams c = l.conv();
    f.add("in_channels", fmt::format("{}", c.in_channels));
    f.add("out_channels", fmt::format("{}", c.out_channels));
    f.add("kernel_size", fmt::format("[{}, {}]", c.kernel_h, c.kernel_w));
    f.add("stride", fmt::format("[{}, {}]", c.stride_h, c.stride_w));
    f.add("padding", fmt::format("[{}, {}]", c.padding_h, c.padding_w));
    f.add("dilation", fmt::format("[{}, {}]", c.dilation_h, c.dilation_w));
    f.add("groups", fmt::format("{}", c.groups));
    if (l.kind() == LayerKind::kConvTranspose2d) {
      f.add("output_padding", fmt::format("[{}, {}]", c.output_padding_h, c.output_padding_w));
    }
  } else if (l.kind() == LayerKind::kLinear) {
    const LinearParams p = l.linear();
    f.add("in_features", fmt::format("{}", p.in_features));
    f.add("out_features", fmt::format("{}", p.out_features));
    f.add("input_shape", p.flattened()
                             ? fmt::format("[{}, {}, {}]", p.input_c, p.input_h, p.input_w)
                             : std::string("none (vector input)"));
  } else if (is_norm(l.kind())) {
    const NormParams n = l.norm();
    f.add("num_features", fmt::format("{}", n.num_features));
    f.add("eps", fmt::format("{:g}", n.eps));
  }
  f.add("activation", activation_text(l));
  f.add("quantization", std::string(to_string(l.quantization())));
  f.add("tensors", fmt::format("{} ({} bytes)", l.tensor_count(), layer_bytes(l)));
  f.print(out);
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    const Tensor t = l.tensor(i);
    out << '\n' << printable(l.name()) << '.' << to_string(t.role()) << '\n';
    Fields tf(2);
    tf.add("stored", fmt::format("{} {} {}", to_string(t.dtype()), to_string(t.layout()),
                                 shape_text(t.shape())));
    tf.add("source", fmt::format("{} {} {}", to_string(t.source_dtype()),
                                 to_string(t.source_layout()), shape_text(t.source_shape())));
    tf.add("transform", std::string(to_string(t.transform())));
    tf.add("elements", fmt::format("{}", t.element_count()));
    tf.add("offset",
           fmt::format("{} (file offset {})", t.offset(), b.segment_offset() + t.offset()));
    tf.add("size", fmt::format("{}", t.size()));
    tf.add("checksum", hex64(t.checksum()));
    tf.add("values", stats_text(tensor_stats(t)));
    tf.print(out);
  }
}

// ---------------------------------------------------------------------------
// Extract

std::optional<TensorRole> parse_role(std::string_view name) {
  // Role names come from the runtime's to_string, the one list of them.
  for (int r = 0; r <= static_cast<int>(TensorRole::kQuantLookupTable); ++r) {
    const auto role = static_cast<TensorRole>(r);
    if (to_string(role) == name) return role;
  }
  return std::nullopt;
}

std::string role_names() {
  std::vector<std::string_view> names;
  for (int r = 0; r <= static_cast<int>(TensorRole::kQuantLookupTable); ++r) {
    names.push_back(to_string(static_cast<TensorRole>(r)));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

// The stored elements converted to the source dtype, still in stored order.
// Only widening conversions are possible: they give back the stored values
// exactly, which equal the source values only when nothing was rounded.
bool to_source_dtype(const Tensor& t, std::vector<std::byte>* out, std::string* why) {
  const auto bytes = t.bytes();
  if (t.dtype() == t.source_dtype()) {
    out->assign(bytes.begin(), bytes.end());
    return true;
  }
  const bool widen = t.source_dtype() == DType::kFloat32 &&
                     (t.dtype() == DType::kFloat16 || t.dtype() == DType::kBFloat16);
  if (!widen) {
    *why = fmt::format(
        "stored as {} from a {} source; only float16 and bfloat16 can be "
        "converted back to float32",
        to_string(t.dtype()), to_string(t.source_dtype()));
    return false;
  }
  const uint64_t n = t.element_count();
  out->resize(n * sizeof(float));
  for (uint64_t i = 0; i < n; ++i) {
    uint16_t v;
    std::memcpy(&v, bytes.data() + i * 2, 2);  // little-endian file, little-endian host
    const float f = t.dtype() == DType::kFloat16 ? half_to_float(v) : bfloat16_to_float(v);
    std::memcpy(out->data() + i * sizeof f, &f, sizeof f);
  }
  return true;
}

bool write_all(int fd, const std::byte* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// Writes `data` to `path` through a temporary file in the same folder, then
// renames it over `path`: readers see the old file or the whole new one,
// never a partial tensor, and a failure leaves any old file untouched.
bool write_atomically(const std::string& path, std::span<const std::byte> data, std::string* why) {
  const std::filesystem::path target(path);
  const std::filesystem::path dir =
      target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  // O_EXCL with a per-process, per-call name instead of mkstemp: mkstemp
  // makes the file 0600, and fixing that needs umask(), which is process-wide
  // and racy. open() with 0666 applies the umask like any other new file.
  static std::atomic<uint64_t> counter{0};
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = (dir / fmt::format(".{}.tmp.{}.{}", target.filename().string(), ::getpid(),
                             counter.fetch_add(1)))
              .string();
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    *why =
        fmt::format("cannot create a temporary file in {}: {}", dir.string(), std::strerror(errno));
    return false;
  }
  bool ok = write_all(fd, data.data(), data.size()) && ::fsync(fd) == 0;
  int saved = errno;
  if (::close(fd) != 0 && ok) ok = false, saved = errno;
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) ok = false, saved = errno;
  if (!ok) {
    ::unlink(tmp.c_str());
    *why = fmt::format("cannot write {}: {}", path, std::strerror(saved));
    return false;
  }
  // Make the rename itself durable; failure here loses nothing already written.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

int extract(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err) {
  const std::string& file = o.bundle_path;
  const size_t dot = o.tensor.rfind('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == o.tensor.size()) {
    err << "mpsb-dump: --extract wants LAYER.ROLE (e.g. conv1.weight), got '" << printable(o.tensor)
        << "'\n";
    return kExitUsage;
  }
  const std::string_view layer_name = std::string_view(o.tensor).substr(0, dot);
  const std::string_view role_name = std::string_view(o.tensor).substr(dot + 1);
  const std::optional<TensorRole> role = parse_role(role_name);
  if (!role) {
    err << "mpsb-dump: unknown tensor role '" << printable(role_name)
        << "' (roles: " << role_names() << ")\n";
    return kExitUsage;
  }
  const std::optional<Layer> layer = b.find(layer_name);
  if (!layer) {
    err << "mpsb-dump: " << printable(file) << ": no layer named '" << printable(layer_name)
        << "'\n";
    return kExitFailure;
  }
  const std::optional<Tensor> t = layer->find(*role);
  if (!t) {
    std::vector<std::string_view> has;
    for (size_t i = 0; i < layer->tensor_count(); ++i)
      has.push_back(to_string(layer->tensor(i).role()));
    err << "mpsb-dump: " << printable(file) << ": layer '" << printable(layer_name) << "' has no "
        << role_name << " tensor (it has: " << fmt::format("{}", fmt::join(has, ", ")) << ")\n";
    return kExitFailure;
  }
  // Giving back bytes that no longer match their checksum would hand a
  // corrupt tensor to the user as if it were the original.
  if (const Status s = b.verify_layer(*layer); !s.ok()) {
    err << "mpsb-dump: " << s.message() << '\n';
    return kExitFailure;
  }
  std::string why;
  const std::optional<mpsbc::TensorPlan> plan = mpsbc::plan_from_stored(
      t->transform(), t->source_layout(), t->source_shape(), t->layout(), t->shape(), &why);
  if (!plan) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor)
        << ": cannot invert the stored layout: " << why << '\n';
    return kExitFailure;
  }
  std::vector<std::byte> stored;
  if (!to_source_dtype(*t, &stored, &why)) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor) << ": " << why << '\n';
    return kExitFailure;
  }
  std::vector<std::byte> source(stored.size());
  mpsbc::invert(*plan, stored.data(), source.data(), dtype_size(t->source_dtype()));

  const std::string what =
      fmt::format("{}: {} {} {}, {} bytes", printable(o.tensor), to_string(t->source_dtype()),
                  to_string(t->source_layout()), shape_text(t->source_shape()), source.size());
  if (t->dtype() != t->source_dtype()) {
    err << "mpsb-dump: note: " << printable(o.tensor) << " is stored as " << to_string(t->dtype())
        << "; the " << to_string(t->source_dtype())
        << " values written are the stored (rounded) ones\n";
  }
  if (o.output == "-") {
    out.write(reinterpret_cast<const char*>(source.data()),
              static_cast<std::streamsize>(source.size()));
    out.flush();
    if (!out) {
      err << "mpsb-dump: cannot write " << what << " to standard output\n";
      return kExitFailure;
    }
    return kExitOk;
  }
  if (!write_atomically(o.output, source, &why)) {
    err << "mpsb-dump: " << printable(why) << '\n';
    return kExitFailure;
  }
  out << "wrote " << what << " to " << printable(o.output) << '\n';
  return kExitOk;
}

}  // namespace

std::string printable(std::string_view text) {
  std::string s;
  s.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(text, i, &cp);
    if (n == 0) {
      s += fmt::format("\\x{:02x}", static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    if (cp == '\\') {
      s += "\\\\";
    } else if (cp == '\n') {
      s += "\\n";
    } else if (cp == '\t') {
      s += "\\t";
    } else if (cp == '\r') {
      s += "\\r";
    } else if (cp < 0x20 || cp == 0x7f) {
      s += fmt::format("\\x{:02x}", cp);
    } else if (invisible_control(cp)) {
      s += fmt::format("\\u{{{:04x}}}", cp);
    } else {
      s.append(text.substr(i, n));
    }
    i += n;
  }
  return s;
}

size_t display_width(std::string_view text) {
  // Counts code points: continuation bytes (10xxxxxx) add no column. Wide
  // East Asian glyphs take two columns on most terminals; layer names are
  // rarely such, and a slightly ragged column is harmless.
  return static_cast<size_t>(std::count_if(text.begin(), text.end(), [](char c) {
    return (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  }));
}

std::optional<Options> parse_args(std::span<const std::string> args, std::ostream& out,
                                  std::ostream& err, int* exit_code) {
  Options o;
  CLI::App app{
      "Shows what is inside an mpsb bundle, checks it, and gives tensors back in PyTorch "
      "layout.",
      args.empty() ? "mpsb-dump" : args[0]};
  app.add_option("bundle", o.bundle_path, "The .mpsb file")->required();
  auto* json = app.add_flag("--json", o.json,
                            "Machine-readable output: every layer and tensor (with --layer: "
                            "that layer only)");
  auto* layer = app.add_option("--layer", o.layer, "Show every field of layer NAME and its tensors")
                    ->type_name("NAME");
  auto* extract =
      app.add_option("--extract", o.tensor,
                     "Write tensor LAYER.ROLE (role: weight, bias, running_mean, running_var) "
                     "back in PyTorch layout and dtype")
          ->type_name("LAYER.ROLE");
  auto* output = app.add_option("-o,--output", o.output, "Output file for --extract ('-': stdout)")
                     ->type_name("FILE");
  bool verify = false;
  auto* verify_flag =
      app.add_flag("--verify", verify, "Check every checksum (reads the whole file)");
  extract->needs(output);
  output->needs(extract);
  extract->excludes(layer)->excludes(json)->excludes(verify_flag);
  verify_flag->excludes(layer)->excludes(json);

  std::vector<const char*> argv;
  argv.reserve(args.size() + 1);
  if (args.empty()) argv.push_back("mpsb-dump");
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e, out, err);
    *exit_code = code == 0 ? kExitOk : kExitUsage;
    return std::nullopt;
  }
  if (!o.tensor.empty()) {
    o.mode = Mode::kExtract;
  } else if (verify) {
    o.mode = Mode::kVerify;
  } else if (*layer) {
    o.mode = Mode::kLayer;
  }
  *exit_code = kExitOk;
  return o;
}

int run(const Options& o, std::ostream& out, std::ostream& err) {
  Result<Bundle> opened = Bundle::open(o.bundle_path);
  if (!opened.ok()) {
    // The runtime's message names the file and what is wrong with it.
    err << "mpsb-dump: " << printable(opened.message()) << '\n';
    if (o.mode == Mode::kVerify) out << "FAILED: " << printable(o.bundle_path) << '\n';
    return kExitFailure;
  }
  const Bundle& b = opened.value();
  try {
    switch (o.mode) {
      case Mode::kSummary:
        if (o.json) {
          print_json(out, bundle_json(o.bundle_path, b));
        } else {
          print_summary(out, o.bundle_path, b);
        }
        return kExitOk;
      case Mode::kLayer: {
        const std::optional<Layer> l = b.find(o.layer);
        if (!l) {
          err << "mpsb-dump: " << printable(o.bundle_path) << ": no layer named '"
              << printable(o.layer) << "' (" << b.layer_count()
              << " layers; mpsb-dump without --layer lists them)\n";
          return kExitFailure;
        }
        if (o.json) {
          print_json(out, layer_json(*l, b.segment_offset(), true));
        } else {
          print_layer(out, b, *l);
        }
        return kExitOk;
      }
      case Mode::kExtract:
        return extract(o, b, out, err);
      case Mode::kVerify: {
        const Status s = b.verify();
        if (!s.ok()) {
          out << "FAILED: " << printable(o.bundle_path) << '\n';
          err << "mpsb-dump: " << printable(s.message()) << '\n';
          return kExitFailure;
        }
        out << "OK: " << printable(o.bundle_path) << " (" << b.layer_count() << " layers, "
            << tensor_count(b) << " tensors, every checksum matches)\n";
        return kExitOk;
      }
    }
  } catch (const std::exception& e) {
    // Only allocation or stream failures can land here.
    err << "mpsb-dump: " << printable(o.bundle_path) << ": " << e.what() << '\n';
    return kExitFailure;
  }
  return kExitUsage;
}

int run_command_line(std::span<const std::string> args, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  const std::optional<Options> o = parse_args(args, out, err, &code);
  return o ? run(*o, out, err) : code;
}

}  // namespace mpsb::dump
