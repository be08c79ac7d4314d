// common/mpsb_text.h and where it is used for names from files: the one
// escaper in mpsbc's diagnostics, terminal widths in mpsb-dump's tables.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "dump.h"
#include "mpsb_text.h"
#include "mpsbc/compile.h"
#include "runtime/test_bundle.h"
#include "util/test_util.h"

namespace mpsb::text {
namespace {

namespace fs = std::filesystem;
using mpsb::testing::TempDir;
using mpsb::testing::write_file;

TEST(Escape, SpellsOutWhatCouldHideOrReorderText) {
  EXPECT_EQ(escape("conv1"), "conv1");
  EXPECT_EQ(escape("\xe5\x8d\xb7\xe7\xa7\xaf"), "\xe5\x8d\xb7\xe7\xa7\xaf");  // 卷积 passes
  EXPECT_EQ(escape("a\xe2\x80\x8b"
                   "b"),
            "a\\u{200b}b");  // zero-width space
  EXPECT_EQ(escape("a\xe2\x80\x8d"
                   "b"),
            "a\\u{200d}b");  // zero-width joiner
  EXPECT_EQ(escape("\xef\xbb\xbf"
                   "bom"),
            "\\u{feff}bom");
  EXPECT_EQ(escape("soft\xc2\xad"
                   "hyphen"),
            "soft\\u{00ad}hyphen");
  EXPECT_EQ(escape("\xe2\x81\xa6"
                   "isolate"),
            "\\u{2066}isolate");
  EXPECT_EQ(escape("tag\xf3\xa0\x80\x81"), "tag\\u{e0001}");
  EXPECT_EQ(escape("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate is not UTF-8
  EXPECT_EQ(escape("a\\b"), "a\\\\b");
  EXPECT_EQ(escape("a\\b", Backslash::kKeep), "a\\b");
  EXPECT_EQ(escape("\\x1b\xe2\x80\xae", Backslash::kKeep), "\\x1b\\u{202e}");
}

TEST(DisplayWidth, CountsTerminalCells) {
  EXPECT_EQ(display_width("conv1"), 5u);
  EXPECT_EQ(display_width("caf\xc3\xa9"), 4u);
  EXPECT_EQ(display_width("\xe5\x8d\xb7\xe7\xa7\xaf"), 4u);  // 卷积: wide
  EXPECT_EQ(display_width("\xef\xbc\xa1"), 2u);              // Ａ fullwidth
  EXPECT_EQ(display_width("\xf0\x9f\x98\x80"), 2u);          // 😀
  EXPECT_EQ(display_width("e\xcc\x81"), 1u);                 // e + combining acute
  EXPECT_EQ(display_width("\xed\x95\x9c"), 2u);              // 한 (Hangul)
  EXPECT_EQ(display_width(escape("a\xe2\x80\x8b"
                                 "b")),
            10u);  // "a\u{200b}b"
}

TEST(DisplayWidth, TruncateNeverSplitsAWideCharacter) {
  const std::string wide = "\xe5\x8d\xb7\xe7\xa7\xaf\xe5\xb1\x82";  // 卷积层, 6 cells
  EXPECT_EQ(truncate_to_width(wide, 6), wide);
  EXPECT_EQ(truncate_to_width(wide, 5), "\xe5\x8d\xb7\xe7\xa7\xaf…");  // 4 + 1
  EXPECT_EQ(truncate_to_width(wide, 4), "\xe5\x8d\xb7…");              // 2 + 1, not 3 + 1
  EXPECT_EQ(truncate_to_width("e\xcc\x81"
                              "e\xcc\x81"
                              "e",
                              3),
            "e\xcc\x81"
            "e\xcc\x81"
            "e");
  EXPECT_EQ(truncate_to_width("e\xcc\x81"
                              "e\xcc\x81"
                              "ee",
                              3),
            "e\xcc\x81"
            "e\xcc\x81…");
}

TEST(Formatters, ShapesBytesAndBFloat16) {
  const std::vector<uint64_t> shape = {16, 3, 3, 3};
  EXPECT_EQ(shape_text(shape, "x"), "16x3x3x3");
  EXPECT_EQ(shape_text(shape, "×"), "16×3×3×3");
  EXPECT_EQ(shape_text(shape, ", "), "16, 3, 3, 3");
  EXPECT_EQ(shape_text({}, "x"), "");
  EXPECT_EQ(human_bytes(0), "0 B");
  EXPECT_EQ(human_bytes(1023), "1023 B");
  EXPECT_EQ(human_bytes(1024), "1.0 KiB");
  EXPECT_EQ(human_bytes(98304), "96.0 KiB");
  EXPECT_EQ(human_bytes(uint64_t{3} << 40), "3.0 TiB");
  EXPECT_EQ(bfloat16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(bfloat16_to_float(0xc040), -3.0f);
  EXPECT_TRUE(std::isinf(bfloat16_to_float(0x7f80)));
}

// mpsbc's messages escape names and bytes from the manifest as mpsb-dump
// does; the Diagnostic's fields keep them exact.
mpsbc::CompileReport check(const TempDir& dir, const std::string& manifest_text) {
  write_file(dir / "m.json", manifest_text);
  mpsbc::CompileOptions options;
  options.manifest_path = (dir / "m.json").string();
  options.output_path = (dir / "out.mpsb").string();
  return mpsbc::compile(options);
}

TEST(DiagnosticsEscape, ABidiOverrideInALayerNameIsSpelledOut) {
  TempDir dir;
  const float slope = 0.25f;
  write_file(dir / "w.bin", &slope, 4);
  const std::string layer = R"({"name": "a)"
                            "\xe2\x80\xae"
                            R"(b", "type": "prelu", "num_channels": 1, "weight": "w.bin"})";
  const auto report =
      check(dir, R"({"format": "mpsb.manifest/1", "layers": [)" + layer + ", " + layer + "]}");
  ASSERT_EQ(report.diagnostics.size(), 1u);
  const mpsbc::Diagnostic& d = report.diagnostics[0];
  EXPECT_EQ(d.message, (dir / "m.json").string() +
                           ": /layers/1/name: duplicate layer name \"a\\u{202e}b\" (first used "
                           "at /layers/0)");
  EXPECT_NE(d.text.find("\xe2\x80\xae"), std::string::npos);  // exact for programs
  // mpsbc --json: the JSON escape, never the raw character.
  const std::string j = mpsbc::report_to_json(report);
  EXPECT_EQ(j.find("\xe2\x80\xae"), std::string::npos) << j;
  EXPECT_NE(j.find(R"x("message": "duplicate layer name \"a\u202eb\" (first used at /layers/0)")x"),
            std::string::npos)
      << j;
}

TEST(DiagnosticsEscape, BytesThatAreNotUtf8NeverReachTheMessage) {
  TempDir dir;
  const auto report = check(dir,
                            "{\"format\":\"mpsb.manifest/1\",\"layers\":[{\"name\":\"a\xff\xfe"
                            "b\",\"type\":\"conv2d\"}]}");
  ASSERT_EQ(report.diagnostics.size(), 1u);
  EXPECT_EQ(report.diagnostics[0].message,
            (dir / "m.json").string() +
                ": invalid JSON: line 1, column 49: syntax error while parsing value - invalid "
                "string: ill-formed UTF-8 byte; last read: '\"a\\xff'");
}

// Table columns line up by terminal cells: wide names take two per
// character, and the cut to 40 cells never splits one.
TEST(DumpWideNames, TableColumnsAlignByDisplayWidth) {
  TempDir dir;
  mpsb::testing::BundleSpec spec;
  const std::string wide = "\xe5\x8d\xb7\xe7\xa7\xaf\xe5\xb1\x82";  // 卷积层
  std::string long_wide;
  for (int i = 0; i < 25; ++i) long_wide += "\xe5\xb1\x82";  // 层 x 25 = 50 cells
  for (const std::string& n :
       {wide, std::string("x"), std::string("\xf0\x9f\x98\x80"), long_wide}) {
    spec.layers.push_back(mpsb::testing::conv_layer(n, 4, 4, 1));
  }
  const std::vector<uint8_t> bytes = mpsb::testing::build_bundle(spec);
  write_file(dir / "w.mpsb", bytes.data(), bytes.size());
  std::ostringstream out, err;
  const std::vector<std::string> args = {"mpsb-dump", (dir / "w.mpsb").string()};
  ASSERT_EQ(mpsb::dump::run_command_line(args, out, err), mpsb::dump::kExitOk) << err.str();
  std::vector<std::string> rows;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("  #  name", 0) == 0 || !rows.empty()) rows.push_back(line);
  }
  ASSERT_EQ(rows.size(), 5u) << out.str();
  std::string cut;
  for (int i = 0; i < 19; ++i) cut += "\xe5\xb1\x82";  // 38 cells, then the ellipsis
  const std::string pad(33, ' ');
  EXPECT_EQ(rows[1].substr(0, rows[1].find("conv2d")), "  0  " + wide + pad + "  ");
  EXPECT_EQ(rows[2].substr(0, rows[2].find("conv2d")), "  1  x" + std::string(38, ' ') + "  ");
  EXPECT_EQ(rows[3].substr(0, rows[3].find("conv2d")),
            "  2  \xf0\x9f\x98\x80" + std::string(37, ' ') + "  ");
  EXPECT_EQ(rows[4].substr(0, rows[4].find("conv2d")), "  3  " + cut + "…" + "  ");
  for (const std::string& row : rows) {
    EXPECT_EQ(display_width(row.substr(0, row.find(row == rows[0] ? "kind" : "conv2d"))), 46u)
        << row;
  }
}

}  // namespace
}  // namespace mpsb::text
