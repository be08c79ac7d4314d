// Text and number helpers shared by the runtime, the compiler and mpsb-dump:
// one name escaper, one terminal display width, one shape formatter, one
// byte-size formatter, one bfloat16 decoder and the minimum tensor alignment.
//
// Header-only and internal: it is an include directory of the three at build
// time only and is not installed (cmake/MpsbInstall.cmake installs the
// runtime's public headers alone). Pure functions; thread-safe.

#ifndef MPSB_COMMON_MPSB_TEXT_H_
#define MPSB_COMMON_MPSB_TEXT_H_

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace mpsb::text {

// The smallest tensor alignment a bundle may declare (docs/FORMAT.md): the
// compiler refuses to write less and the runtime refuses to open less.
inline constexpr uint64_t kMinTensorAlignment = 16;

// The metadata key of a probe file (docs/FORMAT.md §8): the model bundle's
// segment_checksum as 16 lowercase hex digits, written by the compiler,
// checked by the runtime and matched by mpsb-dump --check.
inline constexpr const char* kProbesForKey = "mpsb.probes_for";
inline std::string probes_for_value(uint64_t segment_checksum) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(segment_checksum));
  return buf;
}

// A bfloat16 is the top half of a float32: widening is exact.
inline float bfloat16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Length of the UTF-8 sequence starting at s[i] and its code point, or 0 when
// the bytes there are not well-formed UTF-8 (overlong forms, surrogates and
// values past U+10FFFF included, as RFC 3629 requires). REQUIRES: i < size.
inline size_t utf8_sequence(std::string_view s, size_t i, uint32_t* cp) {
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

// Code points that show nothing yet change what is shown around them: C1
// controls, the bidi embedding/override/isolate marks and directional marks
// (the "Trojan Source" characters), the line and paragraph separators, and
// the zero-width and other format characters (Unicode category Cf: soft
// hyphen, zero-width space/joiners, word joiner, invisible operators, BOM,
// interlinear annotation marks, tag characters).
inline bool invisible(uint32_t cp) {
  return (cp >= 0x80 && cp <= 0x9f) || cp == 0xad || cp == 0x061c || cp == 0x180e ||
         (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
         (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb) ||
         (cp >= 0x1d173 && cp <= 0x1d17a) || (cp >= 0xe0000 && cp <= 0xe007f);
}

// Text read from a file made safe to print on a terminal: control
// characters, backslashes, bytes that are not UTF-8 and the invisible code
// points above become escapes (\n, \\, \x1b, \xff, \u{202e}), so a crafted
// name cannot move the cursor, recolour the terminal, hide itself or reorder
// what is shown around it. Other UTF-8 passes through.
//
// kKeep leaves backslashes as they are, for text whose backslashes already
// start escapes (a runtime message with its names escaped, a JSON-quoted
// name): escaping it again changes only what is still unsafe.
enum class Backslash { kEscape, kKeep };
inline std::string escape(std::string_view text, Backslash backslash = Backslash::kEscape) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto hex_byte = [](std::string* s, unsigned v) {
    *s += "\\x";
    *s += kHex[(v >> 4) & 15];
    *s += kHex[v & 15];
  };
  std::string s;
  s.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(text, i, &cp);
    if (n == 0) {
      hex_byte(&s, static_cast<unsigned char>(text[i]));
      ++i;
      continue;
    }
    if (cp == '\\') {
      s += backslash == Backslash::kEscape ? "\\\\" : "\\";
    } else if (cp == '\n') {
      s += "\\n";
    } else if (cp == '\t') {
      s += "\\t";
    } else if (cp == '\r') {
      s += "\\r";
    } else if (cp < 0x20 || cp == 0x7f) {
      hex_byte(&s, cp);
    } else if (invisible(cp)) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "\\u{%04x}", static_cast<unsigned>(cp));
      s += buf;
    } else {
      s.append(text.substr(i, n));
    }
    i += n;
  }
  return s;
}

// Terminal cells a code point takes: 2 for East Asian Wide and Fullwidth
// characters and emoji presentation (Unicode 15, UAX #11), 0 for combining
// marks and variation selectors, 1 otherwise. Control and format characters
// never reach this: escape() spells them out.
inline int cell_width(uint32_t cp) {
  struct Range {
    uint32_t first, last;
  };
  static constexpr Range kZero[] = {
      {0x0300, 0x036f}, {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x0610, 0x061a}, {0x064b, 0x065f},
      {0x0670, 0x0670}, {0x06d6, 0x06dc}, {0x0e31, 0x0e31}, {0x0e34, 0x0e3a}, {0x1ab0, 0x1aff},
      {0x1dc0, 0x1dff}, {0x20d0, 0x20ff}, {0xfe00, 0xfe0f}, {0xfe20, 0xfe2f}, {0xe0100, 0xe01ef},
  };
  static constexpr Range kWide[] = {
      {0x1100, 0x115f},   {0x231a, 0x231b},   {0x2329, 0x232a},   {0x23e9, 0x23ec},
      {0x23f0, 0x23f0},   {0x23f3, 0x23f3},   {0x25fd, 0x25fe},   {0x2614, 0x2615},
      {0x2648, 0x2653},   {0x267f, 0x267f},   {0x2693, 0x2693},   {0x26a1, 0x26a1},
      {0x26aa, 0x26ab},   {0x26bd, 0x26be},   {0x26c4, 0x26c5},   {0x26ce, 0x26ce},
      {0x26d4, 0x26d4},   {0x26ea, 0x26ea},   {0x26f2, 0x26f3},   {0x26f5, 0x26f5},
      {0x26fa, 0x26fa},   {0x26fd, 0x26fd},   {0x2705, 0x2705},   {0x270a, 0x270b},
      {0x2728, 0x2728},   {0x274c, 0x274c},   {0x274e, 0x274e},   {0x2753, 0x2755},
      {0x2757, 0x2757},   {0x2795, 0x2797},   {0x27b0, 0x27b0},   {0x27bf, 0x27bf},
      {0x2b1b, 0x2b1c},   {0x2b50, 0x2b50},   {0x2b55, 0x2b55},   {0x2e80, 0x303e},
      {0x3041, 0x33ff},   {0x3400, 0x4dbf},   {0x4e00, 0x9fff},   {0xa000, 0xa4cf},
      {0xa960, 0xa97f},   {0xac00, 0xd7a3},   {0xf900, 0xfaff},   {0xfe10, 0xfe19},
      {0xfe30, 0xfe6f},   {0xff00, 0xff60},   {0xffe0, 0xffe6},   {0x16fe0, 0x16fe4},
      {0x17000, 0x18aff}, {0x1b000, 0x1b2ff}, {0x1f004, 0x1f004}, {0x1f0cf, 0x1f0cf},
      {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f251}, {0x1f300, 0x1f64f},
      {0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb}, {0x1f900, 0x1f9ff}, {0x1fa70, 0x1faff},
      {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
  };
  for (const Range& r : kZero) {
    if (cp >= r.first && cp <= r.last) return 0;
  }
  for (const Range& r : kWide) {
    if (cp >= r.first && cp <= r.last) return 2;
  }
  return 1;
}

// Terminal cells that escape()d text takes (an escape is ASCII, one cell per
// character; stray bytes that are not UTF-8 count one each).
inline size_t display_width(std::string_view escaped) {
  size_t w = 0;
  for (size_t i = 0; i < escaped.size();) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(escaped, i, &cp);
    if (n == 0) {
      ++w, ++i;
      continue;
    }
    w += static_cast<size_t>(cell_width(cp));
    i += n;
  }
  return w;
}

// `escaped` cut to at most `max_width` cells, ending in "…" when it was cut
// (max_width >= 1). Never splits a code point or a wide character.
inline std::string truncate_to_width(std::string_view escaped, size_t max_width) {
  if (display_width(escaped) <= max_width) return std::string(escaped);
  size_t w = 0, i = 0;
  while (i < escaped.size()) {
    uint32_t cp = 0;
    size_t n = utf8_sequence(escaped, i, &cp);
    const size_t cw = n == 0 ? 1 : static_cast<size_t>(cell_width(cp));
    if (n == 0) n = 1;
    if (w + cw > max_width - 1) break;
    w += cw;
    i += n;
  }
  // Combining marks that follow the last kept character belong to it.
  while (i < escaped.size()) {
    uint32_t cp = 0;
    const size_t n = utf8_sequence(escaped, i, &cp);
    if (n == 0 || cell_width(cp) != 0) break;
    i += n;
  }
  return std::string(escaped.substr(0, i)) + "…";
}

// The dimensions joined by `separator`: "3x4" (mpsb-dump), "3×4" (manifest
// messages), "2, 3, 4" (the runtime, inside brackets). Empty for a scalar.
inline std::string shape_text(std::span<const uint64_t> shape, std::string_view separator) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += separator;
    s += std::to_string(shape[i]);
  }
  return s;
}

// "1.6 KiB": a byte count for humans, in binary units, "12 B" below 1 KiB.
inline std::string human_bytes(uint64_t n) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) v /= 1024, ++u;
  char buf[48];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

// What mpsbc and mpsb-dump say about the modules of a PyTorch model that a
// bundle lacks (Bundle.skipped_modules), given as {name, type} pairs:
// "3 modules of the PyTorch model are not in this bundle: a (Hardswish),
// b (SiLU), <root> (LSTM)". The model itself has the name "" and shows as
// <root>, as tools/export names it. Names are escaped. Empty for none.
inline std::string skipped_modules_text(
    std::span<const std::pair<std::string_view, std::string_view>> modules) {
  if (modules.empty()) return {};
  std::string s = std::to_string(modules.size()) +
                  (modules.size() == 1 ? " module of the PyTorch model is"
                                       : " modules of the PyTorch model are") +
                  " not in this bundle: ";
  for (size_t i = 0; i < modules.size(); ++i) {
    if (i) s += ", ";
    s += modules[i].first.empty() ? std::string("<root>") : escape(modules[i].first);
    s += " (" + escape(modules[i].second) + ")";
  }
  return s;
}

}  // namespace mpsb::text

#endif  // MPSB_COMMON_MPSB_TEXT_H_
