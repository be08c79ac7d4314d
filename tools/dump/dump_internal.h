// What the mode files of mpsb-dump share: colour, aligned tables, the
// kind-dependent text (from the layer-kind table, mpsb/kinds.h), element
// values and statistics, and the JSON builders. Private to tools/dump.

#ifndef MPSB_TOOLS_DUMP_DUMP_INTERNAL_H_
#define MPSB_TOOLS_DUMP_DUMP_INTERNAL_H_

#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dump.h"
#include "mpsb/bundle.h"

namespace mpsb::dump::detail {

using nlohmann::ordered_json;

// ---------------------------------------------------------------------------
// format.cc: colour, tables, small formatters, bundle-wide counts

// SGR colours for text output. Off unless the user asked for colour or stdout
// is a terminal; every coloured piece is also readable without it.
class Style {
 public:
  explicit Style(bool on) : on_(on) {}
  bool on() const { return on_; }
  // `text` wrapped in SGR `code` ("1" bold, "2" dim, "31" red, ...).
  std::string paint(std::string_view code, std::string_view text) const;
  std::string bold(std::string_view t) const { return paint("1", t); }
  std::string dim(std::string_view t) const { return paint("2", t); }
  std::string red(std::string_view t) const { return paint("31", t); }
  std::string green(std::string_view t) const { return paint("32", t); }
  std::string yellow(std::string_view t) const { return paint("33", t); }

 private:
  bool on_;
};

bool use_color(const Options& o);

// Widest name shown in a table cell; --layer and --json show names whole.
inline constexpr size_t kMaxNameWidth = 40;

std::string hex64(uint64_t v);
// "16x3x3x3"; "scalar" for rank 0.
std::string shape_text(std::span<const uint64_t> shape);

struct Column {
  Column(const char* t, bool r = false, std::string c = {})
      : title(t), right(r), color(std::move(c)) {}
  std::string title;
  bool right = false;  // numbers read best right-aligned
  std::string color;   // SGR code for the cells (not the title), "" for none
};

// Cells must be printable() text; columns are aligned by display width.
void print_table(std::ostream& out, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows,
                 const Style& style = Style(false));

// Key/value lines with the values in one column.
class Fields {
 public:
  explicit Fields(size_t indent = 0) : indent_(indent) {}
  void add(std::string key, std::string value) {
    rows_.emplace_back(std::move(key), std::move(value));
  }
  void print(std::ostream& out) const;

 private:
  size_t indent_;
  std::vector<std::pair<std::string, std::string>> rows_;
};

std::vector<Layer> network_order(const Bundle& b);
uint64_t layer_bytes(const Layer& l);
size_t tensor_count(const Bundle& b);
uint64_t tensor_bytes(const Bundle& b);

// "no layer named 'x' (N layers; ...)" for --layer and --stats --layer.
void no_such_layer(std::ostream& err, const Options& o, const Bundle& b);

// ---------------------------------------------------------------------------
// kind_text.cc: what a layer's kind shows, from kind_spec(kind).params

std::string channels_text(const Layer& l);  // "3->16", "32"
std::string params_text(const Layer& l);    // "3x3 s2 p1 d1 g1", "eps 1e-05"
// "relu", "leaky_relu(0.01)", "softplus(1, 20)": the values in the table.
std::string activation_text(const Layer& l);
// --layer: the kind's parameter fields, then the activation and its named
// parameters.
void add_param_fields(Fields* f, const Layer& l);
void add_activation_fields(Fields* f, const Layer& l);
// The weight or bias of a conv that folded a batch norm (Layer.
// folded_batchnorm): its values are not the source tensor's.
bool holds_folded_values(const Layer& l, const Tensor& t);
ordered_json params_json(const Layer& l);
// {"alpha": 1.0}: the activation's parameters by PyTorch's names.
ordered_json activation_params_json(const Layer& l);
// The first activation parameter (leaky_relu's slope, elu's alpha, ...), or
// null when the activation has none.
ordered_json activation_alpha_json(const Layer& l);

// ---------------------------------------------------------------------------
// stats.cc: element values and statistics

// Element i of a tensor as a double: floats decoded, uint8 as its raw code.
double element(DType d, const std::byte* p, uint64_t i);

inline constexpr size_t kHistogramBins = 16;

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

TensorStats tensor_stats(const Tensor& t);
// The histogram between bars, so empty bins at either end stay visible.
std::string histogram_cell(const TensorStats& st, const Style& style);
std::string stats_text(const TensorStats& st);
ordered_json stats_json(const TensorStats& st);

// ---------------------------------------------------------------------------
// json.cc

// The first keys of every document: what schema and which kind of document.
ordered_json document(std::string_view kind);
ordered_json shape_json(std::span<const uint64_t> shape);
// What a tensor is, apart from its role and where it is in the file (also
// what --diff compares of it).
ordered_json tensor_fields(const Tensor& t);
ordered_json weight_error_json(const Layer& l);
// with_stats reads every weight of the layer; the whole-bundle listing leaves
// it out so that it stays a metadata-only read for any model size.
ordered_json layer_json(const Layer& l, uint64_t segment_offset, bool with_stats);
// The bundle's metadata key/value pairs as one JSON object, in key order.
ordered_json metadata_json(const Bundle& b);
ordered_json skipped_modules_json(const Bundle& b);
ordered_json bundle_json(const std::string& path, const Bundle& b, bool with_stats);
void print_json(std::ostream& out, const ordered_json& j);

// ---------------------------------------------------------------------------
// extract.cc

// "weight, bias, ...": every tensor role, from the runtime's to_string.
std::string role_names();

// ---------------------------------------------------------------------------
// One function per mode, each in its own file. Those given a Bundle get it
// opened; run() (run.cc) reports a bundle that does not open.

int run_summary(const Options& o, const Bundle& b, std::ostream& out, const Style& style);
int run_layer(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
              const Style& style);
int run_stats(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
              const Style& style);
int run_explain(const Options& o, const Bundle& b, std::ostream& out, const Style& style);
int run_extract(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err);
int run_verify(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
               const Style& style);
int run_diff(const Options& o, std::ostream& out, std::ostream& err, const Style& style);
int run_check(const Options& o, std::ostream& out, std::ostream& err, const Style& style);
int run_buffers(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
                const Style& style);

}  // namespace mpsb::dump::detail

#endif  // MPSB_TOOLS_DUMP_DUMP_INTERNAL_H_
