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
#include "mpsbc/compile.h"
#include "mpsbc/layout.h"
#include "mpsbc/precision.h"
#include "mpsbc/reference.h"

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
// Colour

// SGR colours for text output. Off unless the user asked for colour or stdout
// is a terminal; every coloured piece is also readable without it.
class Style {
 public:
  explicit Style(bool on) : on_(on) {}
  bool on() const { return on_; }
  // `text` wrapped in SGR `code` ("1" bold, "2" dim, "31" red, ...).
  std::string paint(std::string_view code, std::string_view text) const {
    if (!on_ || code.empty() || text.empty()) return std::string(text);
    return fmt::format("\x1b[{}m{}\x1b[0m", code, text);
  }
  std::string bold(std::string_view t) const { return paint("1", t); }
  std::string dim(std::string_view t) const { return paint("2", t); }
  std::string red(std::string_view t) const { return paint("31", t); }
  std::string green(std::string_view t) const { return paint("32", t); }
  std::string yellow(std::string_view t) const { return paint("33", t); }

 private:
  bool on_;
};

bool use_color(const Options& o) {
  switch (o.color) {
    case ColorMode::kAlways:
      return true;
    case ColorMode::kNever:
      return false;
    case ColorMode::kAuto: {
      const char* no_color = std::getenv("NO_COLOR");
      return o.out_is_terminal && (no_color == nullptr || *no_color == '\0');
    }
  }
  return false;
}

// Widest name shown in a table cell; --layer and --json show names whole.
constexpr size_t kMaxNameWidth = 40;

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
  Column(const char* t, bool r = false, std::string c = {})
      : title(t), right(r), color(std::move(c)) {}
  std::string title;
  bool right = false;  // numbers read best right-aligned
  std::string color;   // SGR code for the cells (not the title), "" for none
};

void print_table(std::ostream& out, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows,
                 const Style& style = Style(false)) {
  std::vector<size_t> width(columns.size());
  for (size_t c = 0; c < columns.size(); ++c) width[c] = display_width(columns[c].title);
  for (const auto& row : rows) {
    for (size_t c = 0; c < columns.size(); ++c) {
      width[c] = std::max(width[c], display_width(row[c]));
    }
  }
  // Colour goes around the cell text only, after the widths are measured,
  // so the columns line up with and without it.
  const auto line = [&](const std::vector<std::string>& cells, bool title) {
    std::string s = " ";
    for (size_t c = 0; c < columns.size(); ++c) {
      const size_t pad = width[c] - display_width(cells[c]);
      const bool last = c + 1 == columns.size();
      s += ' ';
      if (columns[c].right) s.append(pad, ' ');
      s += title ? style.bold(cells[c]) : style.paint(columns[c].color, cells[c]);
      if (!columns[c].right && !last) s.append(pad, ' ');
      s += ' ';
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    out << s << '\n';
  };
  std::vector<std::string> titles;
  for (const auto& c : columns) titles.push_back(c.title);
  line(titles, true);
  for (const auto& row : rows) line(row, false);
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

using mpsbc::bfloat16_to_float;
using mpsbc::half_to_float;

// Element i of a tensor as a double: floats decoded, uint8 as its raw code.
double element(DType d, const std::byte* p, uint64_t i) {
  switch (d) {
    case DType::kFloat32: {
      float f;
      std::memcpy(&f, p + i * 4, 4);  // little-endian file, little-endian host
      return f;
    }
    case DType::kFloat16:
    case DType::kBFloat16: {
      uint16_t h;
      std::memcpy(&h, p + i * 2, 2);
      return d == DType::kFloat16 ? half_to_float(h) : bfloat16_to_float(h);
    }
    case DType::kUInt8:
      return static_cast<double>(static_cast<uint8_t>(p[i]));
  }
  return 0;
}

constexpr size_t kHistogramBins = 16;

// Summary statistics of a tensor's stored values: a quick look at whether
// the weights are plausible (all zeros, NaN, exploding) without extracting.
struct TensorStats {
  // uint8 tensors hold quantization codes (0..255), not weight values; the
  // statistics are then of the codes.
  bool codes = false;
  uint64_t elements = 0;
  uint64_t finite = 0;  // min, max, mean, std and the histogram are of these
  double min = 0, max = 0, mean = 0, stddev = 0;
  uint64_t zeros = 0, nan = 0, inf = 0;
  // kHistogramBins equal-width bins from min to max (a constant tensor puts
  // everything in the first).
  std::array<uint64_t, kHistogramBins> histogram{};
};

TensorStats tensor_stats(const Tensor& t) {
  TensorStats st;
  const DType d = t.dtype();
  st.codes = d == DType::kUInt8;
  st.elements = t.element_count();
  const std::byte* p = t.bytes().data();
  // Welford's update: one pass, stable for large tensors.
  double mean = 0, m2 = 0;
  for (uint64_t i = 0; i < st.elements; ++i) {
    const double v = element(d, p, i);
    if (std::isnan(v)) {
      ++st.nan;
      continue;
    }
    if (std::isinf(v)) {
      ++st.inf;
      continue;
    }
    if (v == 0.0) ++st.zeros;
    if (st.finite == 0) st.min = st.max = v;
    st.min = std::min(st.min, v);
    st.max = std::max(st.max, v);
    ++st.finite;
    const double delta = v - mean;
    mean += delta / static_cast<double>(st.finite);
    m2 += delta * (v - mean);
  }
  st.mean = mean;
  st.stddev = st.finite > 0 ? std::sqrt(m2 / static_cast<double>(st.finite)) : 0.0;
  // Second pass for the histogram, now that the range is known.
  const double range = st.max - st.min;
  for (uint64_t i = 0; i < st.elements && st.finite > 0; ++i) {
    const double v = element(d, p, i);
    if (!std::isfinite(v)) continue;
    size_t bin = 0;
    if (range > 0) {
      bin = static_cast<size_t>((v - st.min) / range * double(kHistogramBins));
      bin = std::min(bin, kHistogramBins - 1);
    }
    ++st.histogram[bin];
  }
  return st;
}

// One character per bin, ▁ to █ scaled to the fullest bin; an empty bin is
// a space, so a gap in the distribution stays visible.
std::string histogram_text(const TensorStats& st) {
  static constexpr std::array<std::string_view, 8> kBars = {"▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"};
  const uint64_t top = *std::max_element(st.histogram.begin(), st.histogram.end());
  std::string s;
  for (const uint64_t n : st.histogram) {
    if (n == 0 || top == 0) {
      s += ' ';
    } else {
      s += kBars[static_cast<size_t>(std::min<uint64_t>((n * 7) / top, 7))];
    }
  }
  return s;
}

// `histogram_text` between bars, so empty bins at either end stay visible.
std::string histogram_cell(const TensorStats& st, const Style& style) {
  if (st.finite == 0) return "-";
  return "|" + style.paint("36", histogram_text(st)) + "|";
}

std::string stats_text(const TensorStats& st) {
  std::string s = st.codes ? "uint8 codes: " : "";
  if (st.finite == 0) {
    s += "no finite values";
  } else {
    s += fmt::format("min {:.6g}, max {:.6g}, mean {:.6g}, std {:.6g}", st.min, st.max, st.mean,
                     st.stddev);
  }
  s += fmt::format(", zeros {}, NaN {}, inf {}", st.zeros, st.nan, st.inf);
  return s;
}

ordered_json stats_json(const TensorStats& st) {
  ordered_json j;
  j["of"] = st.codes ? "uint8_codes" : "values";
  j["elements"] = st.elements;
  j["min"] = st.finite ? ordered_json(st.min) : ordered_json(nullptr);
  j["max"] = st.finite ? ordered_json(st.max) : ordered_json(nullptr);
  j["mean"] = st.finite ? ordered_json(st.mean) : ordered_json(nullptr);
  j["std"] = st.finite ? ordered_json(st.stddev) : ordered_json(nullptr);
  j["zeros"] = st.zeros;
  j["nan"] = st.nan;
  j["inf"] = st.inf;
  j["histogram"] = st.histogram;
  return j;
}

// ---------------------------------------------------------------------------
// JSON

ordered_json shape_json(std::span<const uint64_t> shape) {
  return ordered_json(std::vector<uint64_t>(shape.begin(), shape.end()));
}

// What a tensor is, apart from its role and where it is in the file (also
// what --diff compares of it).
ordered_json tensor_fields(const Tensor& t) {
  ordered_json j;
  j["dtype"] = to_string(t.dtype());
  j["layout"] = to_string(t.layout());
  j["shape"] = shape_json(t.shape());
  j["source_dtype"] = to_string(t.source_dtype());
  j["source_layout"] = to_string(t.source_layout());
  j["source_shape"] = shape_json(t.source_shape());
  j["transform"] = to_string(t.transform());
  return j;
}

ordered_json tensor_json(const Tensor& t, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["role"] = to_string(t.role());
  j.update(tensor_fields(t));
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
// What the weight's precision cost, as the compiler measured it against the
// float32 weight; null for layers without a weight or stored exactly.
ordered_json weight_error_json(const Layer& l) {
  const Layer::WeightError e = l.weight_error();
  if (!l.find(TensorRole::kWeight) || e.signal_energy == 0 || e.exact()) return nullptr;
  return {{"max_abs", e.max_abs}, {"sqnr_db", e.sqnr_db()}};
}

ordered_json layer_json(const Layer& l, uint64_t segment_offset, bool with_stats) {
  ordered_json j;
  j["index"] = l.index();
  j["name"] = l.name();
  j["kind"] = to_string(l.kind());
  j["activation"] = to_string(l.activation());
  // Always present, so every layer object has the same keys.
  j["activation_alpha"] = l.activation() == Activation::kLeakyReLU
                              ? ordered_json(l.activation_alpha())
                              : ordered_json(nullptr);
  j["quantization"] = to_string(l.quantization());
  j["weight_error"] = weight_error_json(l);
  j["params"] = params_json(l);
  j["bytes"] = layer_bytes(l);
  ordered_json tensors = ordered_json::array();
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    tensors.push_back(tensor_json(l.tensor(i), segment_offset, with_stats));
  }
  j["tensors"] = std::move(tensors);
  return j;
}

// The first keys of every document: what schema and which kind of document.
ordered_json document(std::string_view kind) {
  ordered_json j;
  j["schema"] = kJsonSchema;
  j["document"] = kind;
  return j;
}

ordered_json bundle_json(const std::string& path, const Bundle& b, bool with_stats) {
  const Digests d = digests(b);
  ordered_json j = document(with_stats ? "stats" : "bundle");
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
    layers.push_back(layer_json(l, b.segment_offset(), with_stats));
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

void print_summary(std::ostream& out, const std::string& path, const Bundle& b,
                   const Style& style) {
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
        {fmt::format("{}", l.index()), truncate_to_width(printable(l.name()), kMaxNameWidth),
         std::string(to_string(l.kind())), channels_text(l), params_text(l), activation_text(l),
         w ? shape_text(w->shape()) : "-", w ? std::string(to_string(w->layout())) : "-",
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
              rows, style);
}

void print_layer(std::ostream& out, const Bundle& b, const Layer& l, const Style& style) {
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
  if (const Layer::WeightError e = l.weight_error(); !e.exact()) {
    f.add("weight error", fmt::format("max abs {:.3g}, SQNR {:.1f} dB (vs the float32 weight)",
                                      e.max_abs, e.sqnr_db()));
  }
  f.add("tensors", fmt::format("{} ({} bytes)", l.tensor_count(), layer_bytes(l)));
  f.print(out);
  for (size_t i = 0; i < l.tensor_count(); ++i) {
    const Tensor t = l.tensor(i);
    out << '\n'
        << style.bold(fmt::format("{}.{}", printable(l.name()), to_string(t.role()))) << '\n';
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
    const TensorStats st = tensor_stats(t);
    tf.add("values", stats_text(st));
    if (st.finite > 0) {
      tf.add("histogram", fmt::format("{}  {} bins over [{:.6g}, {:.6g}]",
                                      histogram_cell(st, style), kHistogramBins, st.min, st.max));
    }
    tf.print(out);
  }
}

// ---------------------------------------------------------------------------
// Stats

int print_stats(std::ostream& out, const Options& o, const Bundle& b, std::ostream& err,
                const Style& style) {
  std::vector<Layer> layers;
  if (o.layer.empty()) {
    layers = network_order(b);
  } else {
    const std::optional<Layer> l = b.find(o.layer);
    if (!l) {
      err << "mpsb-dump: " << printable(o.bundle_path) << ": no layer named '" << printable(o.layer)
          << "' (" << b.layer_count() << " layers; mpsb-dump without --layer lists them)\n";
      return kExitFailure;
    }
    layers.push_back(*l);
  }
  if (o.json) {
    if (o.layer.empty()) {
      print_json(out, bundle_json(o.bundle_path, b, true));
    } else {
      ordered_json j = document("layer");
      j.update(layer_json(layers[0], b.segment_offset(), true));
      print_json(out, j);
    }
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows;
  bool any_codes = false;
  for (const Layer& l : layers) {
    for (size_t i = 0; i < l.tensor_count(); ++i) {
      const Tensor t = l.tensor(i);
      const TensorStats st = tensor_stats(t);
      any_codes = any_codes || st.codes;
      const auto num = [&](double v) {
        return st.finite ? fmt::format("{:.4g}", v) : std::string("-");
      };
      rows.push_back(
          {truncate_to_width(fmt::format("{}.{}", printable(l.name()), to_string(t.role())),
                             kMaxNameWidth + 8),
           fmt::format("{}{}", to_string(t.dtype()), st.codes ? "*" : ""),
           fmt::format("{}", st.elements), num(st.min), num(st.max), num(st.mean), num(st.stddev),
           fmt::format("{}", st.zeros), fmt::format("{}", st.nan), fmt::format("{}", st.inf),
           histogram_cell(st, style)});
    }
  }
  print_table(out,
              {{"tensor"},
               {"dtype"},
               {"elements", true},
               {"min", true},
               {"max", true},
               {"mean", true},
               {"std", true},
               {"zeros", true},
               {"NaN", true},
               {"inf", true},
               {"histogram (min to max)"}},
              rows, style);
  if (any_codes) {
    out << "\n* uint8: statistics of the stored quantization codes (0..255), not of the "
           "weight values\n";
  }
  return kExitOk;
}

// ---------------------------------------------------------------------------
// Diff

// One field that differs, values as JSON so that any field type prints.
struct FieldChange {
  std::string field;
  ordered_json a, b;
};

enum class Change { kAdded, kRemoved, kChanged };

std::string_view to_string(Change s) {
  switch (s) {
    case Change::kAdded:
      return "added";
    case Change::kRemoved:
      return "removed";
    case Change::kChanged:
      return "changed";
  }
  return "changed";
}

struct DataDiff {
  uint64_t elements = 0;
  uint64_t differing = 0;
  // Largest |a - b| over the element pairs where both are finite.
  double max_abs_diff = 0;
};

struct TensorDiff {
  std::string role;
  Change status = Change::kChanged;
  std::vector<FieldChange> fields;
  bool bytes_differ = false;
  // Set when the stored shapes are equal and both dtypes are floats (or
  // both uint8): then the values were compared element by element.
  std::optional<DataDiff> data;
};

struct LayerDiff {
  std::string name;
  std::string kind;  // in B, or in A when removed
  Change status = Change::kChanged;
  std::vector<FieldChange> fields;
  std::vector<TensorDiff> tensors;
};

struct BundleDiff {
  std::vector<FieldChange> header;
  std::vector<LayerDiff> layers;
  size_t layers_added = 0, layers_removed = 0, layers_changed = 0;
  size_t tensors_added = 0, tensors_removed = 0, tensors_changed = 0;
  bool identical() const { return header.empty() && layers.empty(); }
};

// Adds a FieldChange for every key of the flat objects `a` and `b` whose
// values differ; nested objects are compared key by key as "outer.inner".
void diff_fields(const ordered_json& a, const ordered_json& b, const std::string& prefix,
                 std::vector<FieldChange>* out) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : a.items()) keys.push_back(k);
  for (const auto& [k, v] : b.items()) {
    if (!a.contains(k)) keys.push_back(k);
  }
  for (const std::string& k : keys) {
    const ordered_json va = a.contains(k) ? a.at(k) : ordered_json(nullptr);
    const ordered_json vb = b.contains(k) ? b.at(k) : ordered_json(nullptr);
    if (va.is_object() && vb.is_object()) {
      diff_fields(va, vb, prefix + k + ".", out);
    } else if (va != vb) {
      out->push_back({prefix + k, va, vb});
    }
  }
}

// What the diff compares of a layer: everything but its tensors and bytes.
ordered_json layer_fields(const Layer& l) {
  ordered_json j;
  j["index"] = l.index();
  j["kind"] = to_string(l.kind());
  j["activation"] = to_string(l.activation());
  j["activation_alpha"] = l.activation_alpha();
  j["quantization"] = to_string(l.quantization());
  j["weight_error"] = weight_error_json(l);
  j["params"] = params_json(l);
  return j;
}

bool is_float(DType d) { return d != DType::kUInt8; }

std::optional<TensorDiff> diff_tensor(const Tensor& a, const Tensor& b) {
  TensorDiff d;
  d.role = to_string(a.role());
  diff_fields(tensor_fields(a), tensor_fields(b), "", &d.fields);
  const auto ba = a.bytes(), bb = b.bytes();
  d.bytes_differ = ba.size() != bb.size() || std::memcmp(ba.data(), bb.data(), ba.size()) != 0;
  const bool same_shape = std::ranges::equal(a.shape(), b.shape());
  if (same_shape && is_float(a.dtype()) == is_float(b.dtype()) &&
      (d.bytes_differ || a.dtype() != b.dtype())) {
    DataDiff dd;
    dd.elements = a.element_count();
    for (uint64_t i = 0; i < dd.elements; ++i) {
      const double x = element(a.dtype(), ba.data(), i);
      const double y = element(b.dtype(), bb.data(), i);
      if (x == y || (std::isnan(x) && std::isnan(y))) continue;
      ++dd.differing;
      if (std::isfinite(x) && std::isfinite(y)) {
        dd.max_abs_diff = std::max(dd.max_abs_diff, std::fabs(x - y));
      }
    }
    d.data = dd;
  }
  if (d.fields.empty() && !d.bytes_differ) return std::nullopt;
  return d;
}

BundleDiff diff_bundles(const Bundle& a, const Bundle& b) {
  BundleDiff d;
  const auto header = [](const Bundle& x) {
    ordered_json j;
    j["name"] = x.name();
    j["format_version"] = x.format_version();
    j["producer"] = x.producer();
    ordered_json meta = ordered_json::object();
    for (size_t i = 0; i < x.metadata_count(); ++i) {
      const auto [k, v] = x.metadata(i);
      meta[std::string(k)] = v;
    }
    j["metadata"] = std::move(meta);
    j["segment_alignment"] = x.segment_alignment();
    j["tensor_alignment"] = x.tensor_alignment();
    return j;
  };
  diff_fields(header(a), header(b), "", &d.header);

  // B's network order first, so the listing reads like the new model; then
  // what B no longer has, in A's order.
  for (const Layer& lb : network_order(b)) {
    const std::optional<Layer> la = a.find(lb.name());
    LayerDiff ld;
    ld.name = lb.name();
    ld.kind = to_string(lb.kind());
    if (!la) {
      ld.status = Change::kAdded;
      ++d.layers_added;
      d.layers.push_back(std::move(ld));
      continue;
    }
    diff_fields(layer_fields(*la), layer_fields(lb), "", &ld.fields);
    for (size_t i = 0; i < lb.tensor_count(); ++i) {
      const Tensor tb = lb.tensor(i);
      const std::optional<Tensor> ta = la->find(tb.role());
      if (!ta) {
        TensorDiff added;
        added.role = to_string(tb.role());
        added.status = Change::kAdded;
        ld.tensors.push_back(std::move(added));
        ++d.tensors_added;
      } else if (std::optional<TensorDiff> td = diff_tensor(*ta, tb)) {
        ld.tensors.push_back(std::move(*td));
        ++d.tensors_changed;
      }
    }
    for (size_t i = 0; i < la->tensor_count(); ++i) {
      const Tensor ta = la->tensor(i);
      if (!lb.find(ta.role())) {
        TensorDiff removed;
        removed.role = to_string(ta.role());
        removed.status = Change::kRemoved;
        ld.tensors.push_back(std::move(removed));
        ++d.tensors_removed;
      }
    }
    if (!ld.fields.empty() || !ld.tensors.empty()) {
      ++d.layers_changed;
      d.layers.push_back(std::move(ld));
    }
  }
  for (const Layer& la : network_order(a)) {
    if (b.find(la.name())) continue;
    LayerDiff ld;
    ld.name = la.name();
    ld.kind = to_string(la.kind());
    ld.status = Change::kRemoved;
    ++d.layers_removed;
    d.layers.push_back(std::move(ld));
  }
  return d;
}

// A JSON value for a text line: strings from the file escaped, numbers as
// JSON writes them.
std::string value_text(const ordered_json& v) {
  if (v.is_null()) return "(none)";
  if (v.is_string()) return "\"" + printable(v.get<std::string>()) + "\"";
  return printable(v.dump(-1, ' ', false, ordered_json::error_handler_t::replace));
}

std::string changes_text(const std::vector<FieldChange>& fields) {
  std::vector<std::string> parts;
  for (const FieldChange& f : fields) {
    parts.push_back(
        fmt::format("{} {} -> {}", printable(f.field), value_text(f.a), value_text(f.b)));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string data_text(const TensorDiff& t) {
  if (t.data) {
    if (t.data->differing == 0) {
      return t.bytes_differ ? "bytes differ, values equal" : "values equal";
    }
    return fmt::format("{} of {} elements differ, max abs diff {:.6g}", t.data->differing,
                       t.data->elements, t.data->max_abs_diff);
  }
  if (!t.bytes_differ) return "bytes equal";
  return "bytes differ (not compared by value: shapes or dtypes differ)";
}

void print_diff(std::ostream& out, const Options& o, const BundleDiff& d, const Style& style) {
  out << style.red("--- " + printable(o.bundle_path)) << '\n'
      << style.green("+++ " + printable(o.other_path)) << '\n';
  if (d.identical()) {
    out << "no differences\n";
    return;
  }
  for (const FieldChange& f : d.header) {
    out << style.yellow("~") << " bundle " << printable(f.field) << ": " << value_text(f.a)
        << " -> " << value_text(f.b) << '\n';
  }
  for (const LayerDiff& l : d.layers) {
    const std::string name = printable(l.name);
    switch (l.status) {
      case Change::kAdded:
        out << style.green("+ layer " + name) << " (" << l.kind << ")\n";
        continue;
      case Change::kRemoved:
        out << style.red("- layer " + name) << " (" << l.kind << ")\n";
        continue;
      case Change::kChanged:
        out << style.yellow("~") << " layer " << name << " (" << l.kind << ")";
        if (!l.fields.empty()) out << ": " << changes_text(l.fields);
        out << '\n';
        break;
    }
    for (const TensorDiff& t : l.tensors) {
      const std::string tname = name + "." + t.role;
      switch (t.status) {
        case Change::kAdded:
          out << "    " << style.green("+ tensor " + tname) << '\n';
          break;
        case Change::kRemoved:
          out << "    " << style.red("- tensor " + tname) << '\n';
          break;
        case Change::kChanged:
          out << "    " << style.yellow("~") << " tensor " << tname << ": ";
          if (!t.fields.empty()) out << changes_text(t.fields) << "; ";
          out << data_text(t) << '\n';
          break;
      }
    }
  }
  out << fmt::format(
      "layers: {} added, {} removed, {} changed; tensors: {} added, {} removed, {} "
      "changed\n",
      d.layers_added, d.layers_removed, d.layers_changed, d.tensors_added, d.tensors_removed,
      d.tensors_changed);
}

ordered_json changes_json(const std::vector<FieldChange>& fields) {
  ordered_json j = ordered_json::array();
  for (const FieldChange& f : fields) j.push_back({{"field", f.field}, {"a", f.a}, {"b", f.b}});
  return j;
}

ordered_json diff_json(const Options& o, const BundleDiff& d) {
  ordered_json j = document("diff");
  j["a"] = o.bundle_path;
  j["b"] = o.other_path;
  j["identical"] = d.identical();
  j["header"] = changes_json(d.header);
  ordered_json layers = ordered_json::array();
  for (const LayerDiff& l : d.layers) {
    ordered_json lj;
    lj["name"] = l.name;
    lj["kind"] = l.kind;
    lj["status"] = to_string(l.status);
    lj["changes"] = changes_json(l.fields);
    ordered_json tensors = ordered_json::array();
    for (const TensorDiff& t : l.tensors) {
      ordered_json tj;
      tj["role"] = t.role;
      tj["status"] = to_string(t.status);
      tj["changes"] = changes_json(t.fields);
      tj["bytes_differ"] = t.status == Change::kChanged && t.bytes_differ;
      if (t.data) {
        tj["data"] = {{"elements", t.data->elements},
                      {"differing", t.data->differing},
                      {"max_abs_diff", t.data->max_abs_diff}};
      } else {
        tj["data"] = nullptr;
      }
      tensors.push_back(std::move(tj));
    }
    lj["tensors"] = std::move(tensors);
    layers.push_back(std::move(lj));
  }
  j["layers"] = std::move(layers);
  j["summary"] = {{"layers_added", d.layers_added},       {"layers_removed", d.layers_removed},
                  {"layers_changed", d.layers_changed},   {"tensors_added", d.tensors_added},
                  {"tensors_removed", d.tensors_removed}, {"tensors_changed", d.tensors_changed}};
  return j;
}

int run_diff(const Options& o, std::ostream& out, std::ostream& err, const Style& style) {
  Result<Bundle> a = Bundle::open(o.bundle_path);
  if (!a.ok()) {
    err << "mpsb-dump: " << printable(a.message()) << '\n';
    return kExitDiffTrouble;
  }
  Result<Bundle> b = Bundle::open(o.other_path);
  if (!b.ok()) {
    err << "mpsb-dump: " << printable(b.message()) << '\n';
    return kExitDiffTrouble;
  }
  const BundleDiff d = diff_bundles(a.value(), b.value());
  if (o.json) {
    print_json(out, diff_json(o, d));
  } else {
    print_diff(out, o, d, style);
  }
  return d.identical() ? kExitOk : kExitDifferent;
}

// ---------------------------------------------------------------------------
// Explain

// One byte range of the file and what it holds. Tensor regions also name
// their layer and role.
struct Region {
  Region(uint64_t o, uint64_t s, std::string k, std::string d, int dp = 0)
      : offset(o), size(s), kind(std::move(k)), description(std::move(d)), depth(dp) {}
  uint64_t offset = 0, size = 0;
  std::string kind;         // stable id, see docs/DUMP_JSON.md
  std::string description;  // for humans; names from the file are raw here
  int depth = 0;            // 1 for what lies inside the data segment
  std::optional<std::string> layer, role;
};

uint32_t read_u32(std::span<const std::byte> s, uint64_t at) {
  uint32_t v = 0;
  if (at <= s.size() && s.size() - at >= 4) std::memcpy(&v, s.data() + at, 4);
  return v;
}

uint16_t read_u16(std::span<const std::byte> s, uint64_t at) {
  uint16_t v = 0;
  if (at <= s.size() && s.size() - at >= 2) std::memcpy(&v, s.data() + at, 2);
  return v;
}

uint64_t nonzero_bytes(std::span<const std::byte> s, uint64_t begin, uint64_t end) {
  uint64_t n = 0;
  for (uint64_t i = begin; i < end && i < s.size(); ++i) n += s[i] != std::byte{0};
  return n;
}

std::string padding_text(std::string_view what, uint64_t nonzero) {
  return nonzero == 0 ? fmt::format("{} (all zero)", what)
                      : fmt::format("{} ({} NON-ZERO bytes)", what, nonzero);
}

std::vector<Region> explain_regions(const Bundle& b) {
  const std::span<const std::byte> file = b.file();
  const uint64_t meta_end = b.metadata_bytes().size();
  std::vector<Region> regions;

  // The FlatBuffer's fixed head (docs/FORMAT.md): the size prefix, then the
  // buffer proper, whose offsets count from byte 4.
  const uint32_t prefix = read_u32(file, 0);
  const uint32_t root_offset = read_u32(file, 4);
  const uint64_t root = 4 + uint64_t(root_offset);
  std::vector<Region> meta;
  meta.push_back({0, 4, "size_prefix",
                  fmt::format("size prefix: {}, the FlatBuffer that follows ends at 0x{:x}", prefix,
                              4 + uint64_t(prefix))});
  meta.push_back(
      {4, 4, "root_offset",
       fmt::format("root offset: {}, root table (Bundle) at 0x{:x}", root_offset, root)});
  meta.push_back({8, 4, "file_identifier",
                  fmt::format("file identifier \"{}\"",
                              printable(std::string_view(
                                  reinterpret_cast<const char*>(file.data()) + 8, 4)))});
  // A table starts with a signed offset back to its vtable: vtable = table -
  // soffset. The vtable holds its own size, the table's size, then one slot
  // per field. Bundle::open verified all of it.
  const auto soffset = static_cast<int32_t>(read_u32(file, root));
  const uint64_t vtable = root - static_cast<uint64_t>(static_cast<int64_t>(soffset));
  const uint16_t vtable_size = read_u16(file, vtable);
  const uint16_t table_size = read_u16(file, vtable + 2);
  if (vtable <= meta_end && meta_end - vtable >= vtable_size && vtable_size >= 4) {
    meta.push_back({vtable, vtable_size, "root_vtable",
                    fmt::format("vtable of the root table: {} bytes, {} field slots", vtable_size,
                                (vtable_size - 4) / 2)});
  }
  if (root <= meta_end && meta_end - root >= table_size) {
    meta.push_back({root, table_size, "root_table",
                    fmt::format("root table (Bundle): {} bytes of scalars and offsets, vtable at "
                                "0x{:x}",
                                table_size, vtable)});
  }
  std::sort(meta.begin(), meta.end(),
            [](const Region& x, const Region& y) { return x.offset < y.offset; });
  uint64_t at = 0;
  for (Region& r : meta) {
    if (r.offset > at && at == 12 && nonzero_bytes(file, at, r.offset) == 0 && r.offset - at < 8) {
      // The builder writes back to front and aligns what it writes last, the
      // root's vtable: zeros between the identifier and it are that padding.
      regions.emplace_back(at, r.offset - at, "metadata_padding", "alignment padding (all zero)");
    } else if (r.offset > at) {
      regions.emplace_back(at, r.offset - at, "metadata",
                           "metadata: layer and tensor tables, vectors, strings");
    }
    at = std::max(at, r.offset + r.size);
    regions.push_back(std::move(r));
  }
  if (at < meta_end) {
    regions.push_back(
        {at, meta_end - at, "metadata", "metadata: layer and tensor tables, vectors, strings"});
  }
  const uint64_t seg = b.segment_offset();
  if (seg > meta_end) {
    regions.push_back(
        {meta_end, seg - meta_end, "padding",
         padding_text(fmt::format("padding from the end of the metadata to the segment "
                                  "alignment ({})",
                                  b.segment_alignment()),
                      nonzero_bytes(file, meta_end, seg))});
  }
  const uint64_t seg_size = b.segment().size();
  regions.push_back({seg, seg_size, "segment",
                     fmt::format("data segment: {} tensors, tensor alignment {}", tensor_count(b),
                                 b.tensor_alignment())});

  struct Placed {
    uint64_t offset, size;
    std::string layer, role, text;
  };
  std::vector<Placed> tensors;
  for (const Layer& l : network_order(b)) {
    for (size_t i = 0; i < l.tensor_count(); ++i) {
      const Tensor t = l.tensor(i);
      tensors.push_back({t.offset(), t.size(), std::string(l.name()),
                         std::string(to_string(t.role())),
                         fmt::format("{} {} {}", to_string(t.dtype()), to_string(t.layout()),
                                     shape_text(t.shape()))});
    }
  }
  std::stable_sort(tensors.begin(), tensors.end(),
                   [](const Placed& x, const Placed& y) { return x.offset < y.offset; });
  uint64_t pos = 0;  // segment-relative
  for (const Placed& t : tensors) {
    if (t.offset > pos) {
      regions.push_back(
          {seg + pos, t.offset - pos, "tensor_padding",
           padding_text("alignment padding", nonzero_bytes(file, seg + pos, seg + t.offset)), 1});
    }
    Region r{seg + t.offset, t.size, "tensor",
             fmt::format("[{}, {}) {}.{} {}", t.offset, t.offset + t.size, t.layer, t.role, t.text),
             1};
    r.layer = t.layer;
    r.role = t.role;
    regions.push_back(std::move(r));
    pos = std::max(pos, t.offset + t.size);
  }
  if (pos < seg_size) {
    regions.push_back({seg + pos, seg_size - pos, "trailing_padding",
                       padding_text(fmt::format("trailing padding to the segment alignment ({})",
                                                b.segment_alignment()),
                                    nonzero_bytes(file, seg + pos, seg + seg_size)),
                       1});
  }
  return regions;
}

constexpr size_t kExplainHeadBytes = 32;

// xxd-style lines: offset, 16 bytes in hex, the printable ASCII.
void print_hex(std::ostream& out, std::span<const std::byte> bytes, const Style& style) {
  for (size_t line = 0; line < bytes.size(); line += 16) {
    std::string hex, ascii;
    for (size_t i = line; i < line + 16; ++i) {
      if (i == line + 8) hex += ' ';
      if (i < bytes.size()) {
        const auto c = static_cast<unsigned char>(bytes[i]);
        hex += fmt::format("{:02x} ", c);
        ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
      } else {
        hex += "   ";
      }
    }
    out << "  " << style.dim(fmt::format("{:08x}", line)) << "  " << hex << " " << ascii << '\n';
  }
}

int print_explain(std::ostream& out, const Options& o, const Bundle& b, const Style& style) {
  const std::span<const std::byte> file = b.file();
  const std::vector<Region> regions = explain_regions(b);
  const auto head = file.first(std::min<size_t>(kExplainHeadBytes, file.size()));
  if (o.json) {
    ordered_json j = document("explain");
    j["file"] = o.bundle_path;
    j["file_size"] = file.size();
    std::string hex;
    for (const std::byte c : head) hex += fmt::format("{:02x}", static_cast<unsigned>(c));
    j["head"] = hex;
    ordered_json rs = ordered_json::array();
    for (const Region& r : regions) {
      ordered_json rj;
      rj["offset"] = r.offset;
      rj["size"] = r.size;
      rj["region"] = r.kind;
      rj["description"] = r.description;
      rj["layer"] = r.layer ? ordered_json(*r.layer) : ordered_json(nullptr);
      rj["role"] = r.role ? ordered_json(*r.role) : ordered_json(nullptr);
      rs.push_back(std::move(rj));
    }
    j["regions"] = std::move(rs);
    print_json(out, j);
    return kExitOk;
  }
  Fields f;
  f.add("file", printable(o.bundle_path));
  f.add("file size", fmt::format("{} (0x{:x})", file.size(), file.size()));
  f.print(out);
  out << '\n' << style.bold(fmt::format("first {} bytes", head.size())) << '\n';
  print_hex(out, head, style);
  out << '\n';
  std::vector<std::vector<std::string>> rows;
  for (const Region& r : regions) {
    std::string what(size_t(r.depth) * 2, ' ');
    // The description holds raw names; only the tensor lines have any.
    what += r.kind == "tensor" ? truncate_to_width(printable(r.description), 100) : r.description;
    rows.push_back({fmt::format("0x{:08x}", r.offset), fmt::format("0x{:08x}", r.offset + r.size),
                    fmt::format("{}", r.size), what});
  }
  rows.push_back({fmt::format("0x{:08x}", file.size()), "", "", "end of file"});
  print_table(out, {{"offset", false, "2"}, {"end", false, "2"}, {"size", true}, {"region"}}, rows,
              style);
  return kExitOk;
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
// The dtype --extract writes when --as does not say: the source's when the
// stored values convert back to it exactly (same type, or float16/bfloat16
// widened to float32), otherwise the stored type (float16 rounded from
// float32). uint8 codes have no default: they mean nothing without their
// ranges or table.
std::optional<DType> default_extract_dtype(const Tensor& t) {
  if (t.dtype() == DType::kUInt8) return std::nullopt;
  if (t.dtype() == DType::kFloat32) return t.source_dtype();
  return t.dtype();
}

// The tensor's values in stored order as `want`: uint8 dequantized the way
// MPS does (through the layer's ranges or lookup table) or left as codes;
// floats widened exactly or rounded to nearest even.
bool stored_values_as(const Layer& layer, const Tensor& t, DType want, std::vector<std::byte>* out,
                      std::string* why) {
  const auto bytes = t.bytes();
  if (want == t.dtype()) {
    out->assign(bytes.begin(), bytes.end());
    return true;
  }
  const uint64_t n = t.element_count();
  std::vector<float> values(static_cast<size_t>(n));
  if (t.dtype() == DType::kUInt8) {
    auto decoded = mpsbc::decode_weights(layer);
    if (!decoded.ok() || t.role() != TensorRole::kWeight) {
      *why = "uint8 values can only be dequantized for a layer's weight";
      return false;
    }
    values = std::move(decoded).value();
  } else {
    mpsbc::to_float(t.dtype(), bytes.data(), values.data(), values.size());
  }
  out->resize(static_cast<size_t>(n * dtype_size(want)));
  switch (want) {
    case DType::kFloat32:
      std::memcpy(out->data(), values.data(), out->size());
      return true;
    case DType::kFloat16:
      for (size_t i = 0; i < values.size(); ++i) {
        const uint16_t h = mpsbc::float_to_half(values[i]);
        std::memcpy(out->data() + 2 * i, &h, 2);
      }
      return true;
    case DType::kBFloat16:
      for (size_t i = 0; i < values.size(); ++i) {
        // Exact for values that were bfloat16 to begin with (the only ones
        // a bundle widens); round to nearest even otherwise.
        uint32_t b;
        std::memcpy(&b, &values[i], 4);
        const uint16_t h = uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
        std::memcpy(out->data() + 2 * i, &h, 2);
      }
      return true;
    case DType::kUInt8:
      break;
  }
  *why = fmt::format("{} values cannot be written as {}", to_string(t.dtype()), to_string(want));
  return false;
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
  const std::optional<DType> want = o.as ? o.as : default_extract_dtype(*t);
  if (!want) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor)
        << " is stored as uint8 codes; choose --as float32 (dequantized as MPS does) or --as "
           "uint8 (the codes)\n";
    return kExitUsage;
  }
  std::vector<std::byte> stored;
  if (!stored_values_as(*layer, *t, *want, &stored, &why)) {
    err << "mpsb-dump: " << printable(file) << ": " << printable(o.tensor) << ": " << why << '\n';
    return kExitFailure;
  }
  std::vector<std::byte> source(stored.size());
  mpsbc::invert(*plan, stored.data(), source.data(), dtype_size(*want));

  const std::string what =
      fmt::format("{}: {} {} {}, {} bytes", printable(o.tensor), to_string(*want),
                  to_string(t->source_layout()), shape_text(t->source_shape()), source.size());
  if (t->dtype() != t->source_dtype() && *want != t->source_dtype()) {
    // Not the bytes the exporter wrote: say what they are instead.
    err << "mpsb-dump: note: " << printable(o.tensor) << " was " << to_string(t->source_dtype())
        << " and is stored as " << to_string(t->dtype()) << "; writing the stored values as "
        << to_string(*want) << "\n";
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

std::string truncate_to_width(std::string_view text, size_t max_width) {
  if (display_width(text) <= max_width) return std::string(text);
  // Keep max_width - 1 code points, then the ellipsis.
  size_t kept = 0, i = 0;
  for (; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xc0) == 0x80) continue;
    if (kept == max_width - 1) break;
    ++kept;
  }
  return std::string(text.substr(0, i)) + "…";
}

namespace {

constexpr std::string_view kFooter = R"(Examples:
  mpsb-dump model.mpsb                        summary and layer table
  mpsb-dump model.mpsb --layer conv1          every field of one layer
  mpsb-dump model.mpsb --stats                min/max/mean/std/zeros/NaN/inf and a histogram per tensor
  mpsb-dump model.mpsb --json | jq .layers    JSON (schema mpsb.dump/1, docs/DUMP_JSON.md)
  mpsb-dump --diff old.mpsb new.mpsb          what changed between two exports
  mpsb-dump model.mpsb --explain              the file's bytes and regions, offset by offset
  mpsb-dump model.mpsb --extract conv1.weight -o w.bin
  mpsb-dump model.mpsb --verify

Exit codes: 0 ok; 1 invalid or unreadable bundle, unknown layer or tensor,
write failed; 2 bad command line. With --diff: 0 identical, 1 different,
2 trouble (as diff(1)).)";

}  // namespace

std::optional<Options> parse_args(std::span<const std::string> args, std::ostream& out,
                                  std::ostream& err, int* exit_code) {
  Options o;
  CLI::App app{
      "Shows what is inside an mpsb bundle, checks it, compares two, and gives tensors back in "
      "PyTorch layout.",
      args.empty() ? "mpsb-dump" : args[0]};
  app.footer(std::string(kFooter));
  std::vector<std::string> files;
  app.add_option("bundle", files, "The .mpsb file (two with --diff: A B)")
      ->required()
      ->expected(1, 2)
      ->type_name("BUNDLE");
  auto* json = app.add_flag("--json", o.json,
                            "Machine-readable output (schema mpsb.dump/1, see docs/DUMP_JSON.md)");
  auto* layer = app.add_option("--layer", o.layer, "Show every field of layer NAME and its tensors")
                    ->type_name("NAME");
  bool stats = false, diff = false, explain = false, verify = false;
  auto* stats_flag = app.add_flag(
      "--stats", stats,
      "Per tensor: min, max, mean, std, zeros, NaN, inf and a histogram (reads every weight; "
      "with --layer, that layer only)");
  auto* diff_flag = app.add_flag(
      "--diff", diff,
      "Compare bundles A and B: layers and tensors added, removed or changed, and by how much");
  auto* explain_flag = app.add_flag(
      "--explain", explain, "Annotated listing of the file's first bytes and regions, by offset");
  auto* extract =
      app.add_option("--extract", o.tensor,
                     "Write tensor LAYER.ROLE (role: weight, bias, running_mean, running_var) "
                     "back in PyTorch layout and dtype")
          ->type_name("LAYER.ROLE");
  std::string as;
  auto* as_option =
      app.add_option("--as", as,
                     "With --extract: write as this dtype (float32 widens float16 and "
                     "dequantizes uint8; uint8 writes the codes)")
          ->check(CLI::IsMember({"float32", "float16", "bfloat16", "uint8"}))
          ->type_name("DTYPE");
  auto* output = app.add_option("-o,--output", o.output, "Output file for --extract ('-': stdout)")
                     ->type_name("FILE");
  auto* verify_flag =
      app.add_flag("--verify", verify, "Check every checksum (reads the whole file)");
  auto* check =
      app.add_option("--check", o.manifest,
                     "Run every layer that has a probe in MANIFEST (tools/export writes them) on "
                     "the CPU reference with this bundle's weights and compare with PyTorch")
          ->type_name("MANIFEST");
  auto* tolerance = app.add_option("--check-tolerance", o.check_tolerance,
                                   "With --check: largest max|ours - PyTorch| / max|PyTorch|")
                        ->capture_default_str();
  auto* fold = app.add_flag("--fold-batchnorm", o.fold_batchnorm,
                            "With --check: the bundle was compiled with --fold-batchnorm");
  tolerance->needs(check);
  fold->needs(check);
  check->excludes(layer)->excludes(extract)->excludes(verify_flag)->excludes(stats_flag);
  std::string color = "auto";
  app.add_option("--color", color,
                 "Colour text output: auto (on a terminal unless NO_COLOR is set), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->type_name("WHEN")
      ->capture_default_str();
  extract->needs(output);
  as_option->needs(extract);
  output->needs(extract);
  extract->excludes(layer)->excludes(json)->excludes(verify_flag)->excludes(stats_flag);
  verify_flag->excludes(layer)->excludes(json)->excludes(stats_flag);
  diff_flag->excludes(layer)->excludes(extract)->excludes(verify_flag)->excludes(stats_flag);
  explain_flag->excludes(layer)
      ->excludes(extract)
      ->excludes(verify_flag)
      ->excludes(stats_flag)
      ->excludes(diff_flag);

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
  if (diff && files.size() != 2) {
    err << "mpsb-dump: --diff compares two bundles: mpsb-dump --diff A.mpsb B.mpsb\n"
        << "Run with --help for more information.\n";
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  if (!diff && files.size() != 1) {
    err << "mpsb-dump: one bundle expected, got " << files.size()
        << " (two only with --diff)\nRun with --help for more information.\n";
    *exit_code = kExitUsage;
    return std::nullopt;
  }
  o.bundle_path = files[0];
  if (diff) o.other_path = files[1];
  o.color = color == "always"  ? ColorMode::kAlways
            : color == "never" ? ColorMode::kNever
                               : ColorMode::kAuto;
  if (!as.empty()) {
    o.as = as == "float32"   ? DType::kFloat32
           : as == "float16" ? DType::kFloat16
           : as == "uint8"   ? DType::kUInt8
                             : DType::kBFloat16;
  }
  if (!o.manifest.empty()) {
    o.mode = Mode::kCheck;
  } else if (!o.tensor.empty()) {
    o.mode = Mode::kExtract;
  } else if (verify) {
    o.mode = Mode::kVerify;
  } else if (diff) {
    o.mode = Mode::kDiff;
  } else if (explain) {
    o.mode = Mode::kExplain;
  } else if (stats) {
    o.mode = Mode::kStats;
  } else if (*layer) {
    o.mode = Mode::kLayer;
  }
  *exit_code = kExitOk;
  return o;
}

// --check: the compiler's check, on a bundle that already exists.
int run_check(const Options& o, std::ostream& out, std::ostream& err, const Style& style) {
  mpsbc::CompileOptions options;
  options.manifest_path = o.manifest;
  options.check_tolerance = o.check_tolerance;
  options.fold_batchnorm = o.fold_batchnorm;
  const mpsbc::CompileReport report = mpsbc::check_bundle(o.bundle_path, options);
  for (const auto& d : report.diagnostics) err << "mpsb-dump: " << printable(d.message) << '\n';
  if (o.json) {
    ordered_json j = document("check");
    j["bundle"] = o.bundle_path;
    j["manifest"] = o.manifest;
    j["passed"] = report.ok();
    j["layers"] = ordered_json::array();
    for (const auto& c : report.checks) {
      j["layers"].push_back({{"layer", c.layer},
                             {"expected_from", c.expected_from},
                             {"max_abs_error", c.max_abs_error},
                             {"max_rel_error", c.max_rel_error},
                             {"tolerance", c.tolerance},
                             {"passed", c.passed}});
    }
    print_json(out, j);
  } else {
    size_t width = 5;
    for (const auto& c : report.checks) width = std::max(width, display_width(printable(c.layer)));
    out << fmt::format("{:<{}}  {:>12}  {:>12}  {}\n", "layer", width, "max abs err", "max rel err",
                       "check");
    for (const auto& c : report.checks) {
      const std::string name = printable(c.layer);
      out << name << std::string(width - display_width(name), ' ')
          << fmt::format("  {:>12.3e}  {:>12.3e}  ", c.max_abs_error, c.max_rel_error)
          << (c.passed ? style.green("ok") : style.red("FAILED")) << '\n';
    }
    out << (report.ok() ? style.green("OK") : style.red("FAILED")) << ": " << report.checks.size()
        << " layers checked against " << printable(o.manifest) << '\n';
  }
  return report.ok() ? kExitOk : kExitFailure;
}

int run(const Options& o, std::ostream& out, std::ostream& err) {
  const Style style(use_color(o) && !o.json);
  if (o.mode == Mode::kDiff) {
    try {
      return run_diff(o, out, err, style);
    } catch (const std::exception& e) {
      err << "mpsb-dump: " << e.what() << '\n';
      return kExitDiffTrouble;
    }
  }
  if (o.mode == Mode::kCheck) return run_check(o, out, err, style);
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
          print_json(out, bundle_json(o.bundle_path, b, false));
        } else {
          print_summary(out, o.bundle_path, b, style);
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
          ordered_json j = document("layer");
          j.update(layer_json(*l, b.segment_offset(), true));
          print_json(out, j);
        } else {
          print_layer(out, b, *l, style);
        }
        return kExitOk;
      }
      case Mode::kStats:
        return print_stats(out, o, b, err, style);
      case Mode::kExplain:
        return print_explain(out, o, b, style);
      case Mode::kExtract:
        return extract(o, b, out, err);
      case Mode::kVerify: {
        const Status s = b.verify();
        if (!s.ok()) {
          out << style.red("FAILED") << ": " << printable(o.bundle_path) << '\n';
          err << "mpsb-dump: " << printable(s.message()) << '\n';
          return kExitFailure;
        }
        out << style.green("OK") << ": " << printable(o.bundle_path) << " (" << b.layer_count()
            << " layers, " << tensor_count(b) << " tensors, every checksum matches)\n";
        return kExitOk;
      }
      case Mode::kDiff:
      case Mode::kCheck:
        break;
    }
  } catch (const std::exception& e) {
    // Only allocation or stream failures can land here.
    err << "mpsb-dump: " << printable(o.bundle_path) << ": " << e.what() << '\n';
    return kExitFailure;
  }
  return kExitUsage;
}

int run_command_line(std::span<const std::string> args, std::ostream& out, std::ostream& err,
                     bool out_is_terminal) {
  int code = kExitOk;
  std::optional<Options> o = parse_args(args, out, err, &code);
  if (!o) return code;
  o->out_is_terminal = out_is_terminal;
  return run(*o, out, err);
}

}  // namespace mpsb::dump
