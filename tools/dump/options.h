// Which flags each mpsb-dump mode takes: the one table the command-line
// parser (options.cc) checks every command line against and the test of the
// option matrix (tests/dump/options_test.cc) enumerates.
//
// A mode is chosen by its selector flag (--stats, --diff, ...; --layer alone
// chooses kLayer, the summary has none). At most one selector may be given;
// every other flag given must be one the chosen mode takes, and the flags a
// mode needs must be there. Anything else is refused with exit 2 and a
// message naming both flags. Pure data; thread-safe.

#ifndef MPSB_TOOLS_DUMP_OPTIONS_H_
#define MPSB_TOOLS_DUMP_OPTIONS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "dump.h"

namespace mpsb::dump {

enum class Flag : uint8_t {
  kLayer,
  kJson,
  kStats,
  kDiff,
  kExplain,
  kExtract,
  kAs,
  kOutput,
  kVerify,
  kCheck,
  kCheckTolerance,
  kFoldBatchnorm,
  kColor,
  kBuffers,
  kPageSize,
  kAllowUnknownFields,
};
inline constexpr size_t kFlagCount = 16;

struct FlagSpec {
  Flag flag;
  std::string_view name;  // as the user writes it
  // A valid argument, for the tests and the messages; empty for a switch.
  // --diff's is its second bundle (a positional argument).
  std::string_view example;
};

using FlagSet = uint32_t;
constexpr FlagSet flag_bit(Flag f) { return FlagSet{1} << static_cast<unsigned>(f); }
template <typename... F>
constexpr FlagSet flags(F... f) {
  return (FlagSet{0} | ... | flag_bit(f));
}

struct ModeSpec {
  Mode mode;
  // The flag that chooses the mode; kColor (a global flag) for the summary,
  // which none chooses.
  Flag selector;
  bool has_selector;
  FlagSet takes;  // besides the selector
  FlagSet needs;  // of `takes`, the ones that must be given
};

inline constexpr std::array<FlagSpec, kFlagCount> kFlags = {{
    {Flag::kLayer, "--layer", "conv1"},
    {Flag::kJson, "--json", ""},
    {Flag::kStats, "--stats", ""},
    {Flag::kDiff, "--diff", "other.mpsb"},
    {Flag::kExplain, "--explain", ""},
    {Flag::kExtract, "--extract", "conv1.weight"},
    {Flag::kAs, "--as", "float32"},
    {Flag::kOutput, "--output", "w.bin"},
    {Flag::kVerify, "--verify", ""},
    {Flag::kCheck, "--check", "manifest.json"},
    {Flag::kCheckTolerance, "--check-tolerance", "1e-4"},
    {Flag::kFoldBatchnorm, "--fold-batchnorm", ""},
    {Flag::kColor, "--color", "never"},
    {Flag::kBuffers, "--buffers", "256M"},
    {Flag::kPageSize, "--page-size", "4096"},
    {Flag::kAllowUnknownFields, "--allow-unknown-fields", ""},
}};

// --color is global: it only ever turns colour off or on, and JSON and
// extracted bytes are never coloured.
inline constexpr FlagSet kGlobalFlags = flags(Flag::kColor);

// Selector precedence is this order; the summary (no selector) is last.
inline constexpr ModeSpec kModes[] = {
    {Mode::kCheck, Flag::kCheck, true,
     flags(Flag::kJson, Flag::kCheckTolerance, Flag::kFoldBatchnorm, Flag::kAllowUnknownFields), 0},
    {Mode::kExtract, Flag::kExtract, true, flags(Flag::kAs, Flag::kOutput), flags(Flag::kOutput)},
    {Mode::kVerify, Flag::kVerify, true, 0, 0},
    {Mode::kDiff, Flag::kDiff, true, flags(Flag::kJson), 0},
    {Mode::kExplain, Flag::kExplain, true, flags(Flag::kJson), 0},
    {Mode::kStats, Flag::kStats, true, flags(Flag::kJson, Flag::kLayer), 0},
    {Mode::kLayer, Flag::kLayer, true, flags(Flag::kJson), 0},
    {Mode::kBuffers, Flag::kBuffers, true, flags(Flag::kJson, Flag::kPageSize), 0},
    {Mode::kSummary, Flag::kColor, false, flags(Flag::kJson), 0},
};
inline constexpr size_t kModeCount = 9;
static_assert(std::size(kModes) == kModeCount, "one ModeSpec per Mode");

constexpr const FlagSpec& flag_spec(Flag f) { return kFlags[static_cast<size_t>(f)]; }

// Whether mode `m` accepts flag `f` besides its selector.
constexpr bool mode_takes(const ModeSpec& m, Flag f) {
  return ((m.takes | kGlobalFlags) & flag_bit(f)) != 0;
}

namespace options_detail {
constexpr bool flags_in_order() {
  for (size_t i = 0; i < kFlags.size(); ++i) {
    if (static_cast<size_t>(kFlags[i].flag) != i || kFlags[i].name.empty()) return false;
  }
  return true;
}
constexpr bool every_mode_once() {
  for (size_t m = 0; m < kModeCount; ++m) {
    size_t seen = 0;
    for (const ModeSpec& s : kModes) seen += static_cast<size_t>(s.mode) == m;
    if (seen != 1) return false;
  }
  return true;
}
}  // namespace options_detail
static_assert(options_detail::flags_in_order(), "kFlags needs one entry per Flag, in enum order");
static_assert(options_detail::every_mode_once(), "kModes needs exactly one entry per Mode");

}  // namespace mpsb::dump

#endif  // MPSB_TOOLS_DUMP_OPTIONS_H_
