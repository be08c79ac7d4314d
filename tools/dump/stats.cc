// --stats: value statistics and a histogram of every tensor (or of one
// layer's), and the element decoding the other modes share.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "dump_internal.h"
#include "mpsb_text.h"
#include "mpsbc/precision.h"

namespace mpsb::dump::detail {

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
      return d == DType::kFloat16 ? mpsbc::half_to_float(h) : text::bfloat16_to_float(h);
    }
    case DType::kUInt8:
      return static_cast<double>(static_cast<uint8_t>(p[i]));
  }
  return 0;
}

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
namespace {
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

}  // namespace

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

int run_stats(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
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

}  // namespace mpsb::dump::detail
