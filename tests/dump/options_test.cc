// The option matrix of mpsb-dump: every mode against every flag, as the
// table of tools/dump/options.h says, plus combinations written out by hand
// so that a wrong table fails too.
#include "options.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "dump.h"

namespace mpsb::dump {
namespace {

struct Parsed {
  int code = -1;
  std::string out, err;
  std::optional<Options> options;
};

Parsed parse(std::vector<std::string> args) {
  args.insert(args.begin(), "mpsb-dump");
  std::ostringstream out, err;
  Parsed p;
  p.options = parse_args(args, out, err, &p.code);
  p.out = out.str();
  p.err = err.str();
  return p;
}

// The flag as a command line gives it, with its example argument.
void append(std::vector<std::string>* args, Flag f) {
  const FlagSpec& s = flag_spec(f);
  args->emplace_back(s.name);
  if (!s.example.empty()) args->emplace_back(s.example);
}

const ModeSpec* selected_by(Flag f) {
  for (const ModeSpec& m : kModes) {
    if (m.has_selector && m.selector == f) return &m;
  }
  return nullptr;
}

// m.mpsb, the mode's selector and the flags the mode needs.
std::vector<std::string> mode_command(const ModeSpec& m) {
  std::vector<std::string> args = {"m.mpsb"};
  if (m.has_selector) append(&args, m.selector);
  for (const FlagSpec& f : kFlags) {
    if (m.needs & flag_bit(f.flag)) append(&args, f.flag);
  }
  return args;
}

TEST(DumpOptionMatrix, EveryModeAloneParsesToItself) {
  for (const ModeSpec& m : kModes) {
    const auto args = mode_command(m);
    SCOPED_TRACE(::testing::PrintToString(args));
    const Parsed p = parse(args);
    ASSERT_EQ(p.code, kExitOk) << p.err;
    EXPECT_EQ(p.options->mode, m.mode);
  }
}

TEST(DumpOptionMatrix, EveryFlagWithEveryModeIsTakenOrRefusedNamingBoth) {
  for (const ModeSpec& m : kModes) {
    for (const FlagSpec& f : kFlags) {
      if (m.has_selector && f.flag == m.selector) continue;
      if (m.needs & flag_bit(f.flag)) continue;
      auto args = mode_command(m);
      append(&args, f.flag);
      // A second mode's selector comes with what that mode needs, so that
      // only the combination can be at fault.
      const ModeSpec* other = selected_by(f.flag);
      for (const FlagSpec& n : kFlags) {
        if (other && (other->needs & flag_bit(n.flag)) && !(m.needs & flag_bit(n.flag))) {
          append(&args, n.flag);
        }
      }
      SCOPED_TRACE(::testing::PrintToString(args));
      const Parsed p = parse(args);
      // A flag that selects another mode is fine only when one of the two
      // modes takes the other's selector (--stats takes --layer as its
      // filter), and the one that takes it wins; the summary has no
      // selector, so any selector gives its own mode.
      Mode want = m.mode;
      bool ok = mode_takes(m, f.flag);
      if (other) {
        if (!m.has_selector || mode_takes(*other, m.selector)) ok = true, want = other->mode;
      }
      if (ok) {
        EXPECT_EQ(p.code, kExitOk) << p.err;
        if (p.options) {
          EXPECT_EQ(p.options->mode, want);
        }
        continue;
      }
      EXPECT_EQ(p.code, kExitUsage);
      EXPECT_TRUE(p.out.empty()) << p.out;
      EXPECT_NE(p.err.find(f.name), std::string::npos) << p.err;
      if (m.has_selector) {
        EXPECT_NE(p.err.find(flag_spec(m.selector).name), std::string::npos) << p.err;
      }
    }
  }
}

TEST(DumpOptionMatrix, AModeWithoutWhatItNeedsIsRefused) {
  for (const ModeSpec& m : kModes) {
    for (const FlagSpec& f : kFlags) {
      if (!(m.needs & flag_bit(f.flag))) continue;
      std::vector<std::string> args = {"m.mpsb"};
      append(&args, m.selector);
      SCOPED_TRACE(::testing::PrintToString(args));
      const Parsed p = parse(args);
      EXPECT_EQ(p.code, kExitUsage);
      EXPECT_NE(p.err.find(f.name), std::string::npos) << p.err;
      EXPECT_NE(p.err.find(flag_spec(m.selector).name), std::string::npos) << p.err;
    }
  }
}

// Written out independently of the table: if the table said any of these
// made sense, this fails.
TEST(DumpOptionMatrix, KnownBadCombinationsAreRefusedNamingBothFlags) {
  struct Bad {
    std::vector<std::string> args;
    std::string first, second;
  };
  const std::vector<Bad> bad = {
      {{"x.mpsb", "--explain", "--check", "m.json"}, "--explain", "--check"},
      {{"x.mpsb", "--verify", "--json"}, "--verify", "--json"},
      {{"x.mpsb", "--verify", "--layer", "a"}, "--verify", "--layer"},
      {{"x.mpsb", "--extract", "a.weight", "-o", "w", "--json"}, "--extract", "--json"},
      {{"x.mpsb", "--extract", "a.weight", "-o", "w", "--layer", "a"}, "--extract", "--layer"},
      {{"x.mpsb", "--stats", "--extract", "a.weight", "-o", "w"}, "--stats", "--extract"},
      {{"x.mpsb", "--explain", "--stats"}, "--explain", "--stats"},
      {{"x.mpsb", "--explain", "--layer", "a"}, "--explain", "--layer"},
      {{"x.mpsb", "y.mpsb", "--diff", "--stats"}, "--diff", "--stats"},
      {{"x.mpsb", "y.mpsb", "--diff", "--layer", "a"}, "--diff", "--layer"},
      {{"x.mpsb", "--check", "m.json", "--stats"}, "--check", "--stats"},
      {{"x.mpsb", "--check", "m.json", "--verify"}, "--check", "--verify"},
      {{"x.mpsb", "--check", "m.json", "--as", "float32"}, "--check", "--as"},
      {{"x.mpsb", "--extract", "a.weight", "-o", "w", "--fold-batchnorm"},
       "--extract",
       "--fold-batchnorm"},
      {{"x.mpsb", "--as", "float16"}, "--as", "--extract"},
      {{"x.mpsb", "-o", "w.bin"}, "--output", "--extract"},
      {{"x.mpsb", "--extract", "a.weight"}, "--extract", "--output"},
      {{"x.mpsb", "--check-tolerance", "1e-3"}, "--check-tolerance", "--check"},
      {{"x.mpsb", "--layer", "a", "--fold-batchnorm"}, "--fold-batchnorm", "--check"},
      {{"x.mpsb", "--allow-unknown-fields"}, "--allow-unknown-fields", "--check"},
      {{"x.mpsb", "--stats", "--allow-unknown-fields"}, "--stats", "--allow-unknown-fields"},
  };
  for (const Bad& b : bad) {
    SCOPED_TRACE(::testing::PrintToString(b.args));
    const Parsed p = parse(b.args);
    EXPECT_EQ(p.code, kExitUsage);
    EXPECT_FALSE(p.options.has_value());
    EXPECT_NE(p.err.find(b.first), std::string::npos) << p.err;
    EXPECT_NE(p.err.find(b.second), std::string::npos) << p.err;
  }
}

TEST(DumpOptionMatrix, KnownGoodCombinationsParse) {
  const std::vector<std::pair<std::vector<std::string>, Mode>> good = {
      {{"x.mpsb", "--stats", "--layer", "a", "--json"}, Mode::kStats},
      {{"x.mpsb", "--layer", "a", "--json"}, Mode::kLayer},
      {{"x.mpsb", "--check", "m.json", "--json", "--fold-batchnorm"}, Mode::kCheck},
      {{"x.mpsb", "--check", "m.json", "--check-tolerance", "1e-3"}, Mode::kCheck},
      {{"--diff", "a.mpsb", "b.mpsb", "--json", "--color", "never"}, Mode::kDiff},
      {{"x.mpsb", "--explain", "--json"}, Mode::kExplain},
      {{"x.mpsb", "--extract", "a.weight", "-o", "-", "--as", "float32"}, Mode::kExtract},
      {{"x.mpsb", "--verify", "--color=always"}, Mode::kVerify},
      {{"x.mpsb", "--json"}, Mode::kSummary},
  };
  for (const auto& [args, mode] : good) {
    SCOPED_TRACE(::testing::PrintToString(args));
    const Parsed p = parse(args);
    ASSERT_EQ(p.code, kExitOk) << p.err;
    EXPECT_EQ(p.options->mode, mode);
  }
}

TEST(DumpOptionMatrix, AllowUnknownFieldsGoesWithCheck) {
  const Parsed strict = parse({"x.mpsb", "--check", "m.json"});
  ASSERT_EQ(strict.code, kExitOk) << strict.err;
  EXPECT_FALSE(strict.options->allow_unknown_fields);
  const Parsed allowed = parse({"x.mpsb", "--check", "m.json", "--allow-unknown-fields"});
  ASSERT_EQ(allowed.code, kExitOk) << allowed.err;
  EXPECT_EQ(allowed.options->mode, Mode::kCheck);
  EXPECT_TRUE(allowed.options->allow_unknown_fields);
}

}  // namespace
}  // namespace mpsb::dump
