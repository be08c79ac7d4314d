// Shared formatting of mpsb-dump: colour, aligned tables, the safe-text
// functions of dump.h (all from the project's one escaper, mpsb_text.h).
#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "dump_internal.h"
#include "mpsb_text.h"

namespace mpsb::dump {

std::string printable(std::string_view text) { return text::escape(text); }

size_t display_width(std::string_view printable_text) {
  return text::display_width(printable_text);
}

std::string truncate_to_width(std::string_view printable_text, size_t max_width) {
  return text::truncate_to_width(printable_text, max_width);
}

namespace detail {

std::string Style::paint(std::string_view code, std::string_view text) const {
  if (!on_ || code.empty() || text.empty()) return std::string(text);
  return fmt::format("\x1b[{}m{}\x1b[0m", code, text);
}

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

std::string hex64(uint64_t v) { return fmt::format("0x{:016x}", v); }

std::string shape_text(std::span<const uint64_t> shape) {
  if (shape.empty()) return "scalar";
  return text::shape_text(shape, "x");
}

void print_table(std::ostream& out, const std::vector<Column>& columns,
                 const std::vector<std::vector<std::string>>& rows, const Style& style) {
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

void Fields::print(std::ostream& out) const {
  size_t w = 0;
  for (const auto& [k, v] : rows_) w = std::max(w, k.size());
  for (const auto& [k, v] : rows_) {
    std::string s(indent_, ' ');
    s += k;
    if (!v.empty()) s.append(w - k.size() + 2, ' ') += v;
    out << s << '\n';
  }
}

std::vector<Layer> network_order(const Bundle& b) {
  std::vector<Layer> layers;
  layers.reserve(b.layer_count());
  for (size_t i = 0; i < b.layer_count(); ++i) layers.push_back(b.layer_in_network_order(i));
  return layers;
}

uint64_t layer_bytes(const Layer& l) {
  uint64_t n = 0;
  for (size_t i = 0; i < l.tensor_count(); ++i) n += l.tensor(i).size();
  return n;
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

void no_such_layer(std::ostream& err, const Options& o, const Bundle& b) {
  err << "mpsb-dump: " << printable(o.bundle_path) << ": no layer named '" << printable(o.layer)
      << "' (" << b.layer_count() << " layers; mpsb-dump without --layer lists them)\n";
}

}  // namespace detail
}  // namespace mpsb::dump
