// mpsb-dump as a library: shows what is inside a .mpsb bundle, checks it, and
// gives tensors back in their PyTorch layout.
//
// run() writes everything to the streams it is given and returns the process
// exit code, so the `mpsb-dump` executable is a thin main() and tests call the
// same code without spawning a process. Nothing here keeps global state;
// concurrent calls with different streams are safe.

#ifndef MPSB_TOOLS_DUMP_DUMP_H_
#define MPSB_TOOLS_DUMP_DUMP_H_

#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>

#include "mpsb/types.h"

namespace mpsb::dump {

// Exit codes of mpsb-dump.
inline constexpr int kExitOk = 0;
// The bundle is invalid or unreadable, the layer or tensor does not exist, or
// the output could not be written.
inline constexpr int kExitFailure = 1;
// Bad command line.
inline constexpr int kExitUsage = 2;
// --diff only, as diff(1) and cmp(1) do it: 0 identical, 1 different, 2
// trouble (a bundle is invalid or unreadable, or a bad command line).
inline constexpr int kExitDifferent = 1;
inline constexpr int kExitDiffTrouble = 2;

// The "schema" value of every JSON document mpsb-dump writes; docs/DUMP_JSON.md
// describes the keys. Bumped only when a key is removed or changes meaning.
inline constexpr std::string_view kJsonSchema = "mpsb.dump/1";

enum class Mode {
  kSummary,  // header fields and the layer table (default)
  kLayer,    // every field of one layer and its tensors
  kStats,    // value statistics and a histogram of every tensor
  kExtract,  // one tensor, written back in PyTorch layout and dtype
  kVerify,   // Bundle::verify(): every checksum
  kDiff,     // what changed from bundle_path (A) to other_path (B)
  kExplain,  // the file's bytes and regions, offset by offset
  kCheck,    // every probed layer on the CPU reference vs PyTorch's probes
  kBuffers,  // the Metal buffer windows of the segment (mpsb/buffers.h)
};

enum class ColorMode { kAuto, kAlways, kNever };

struct Options {
  std::string bundle_path;
  // kDiff: the second bundle (B); bundle_path is A.
  std::string other_path;
  Mode mode = Mode::kSummary;
  // Every mode but kExtract and kVerify: JSON instead of text.
  bool json = false;
  // kLayer: the layer name. kStats: when set, only that layer's tensors.
  std::string layer;
  // kExtract: "LAYER.ROLE", split at the last '.', so layer names that
  // contain dots ("features.0") work.
  std::string tensor;
  // kExtract: the output file; "-" writes the bytes to `out`.
  std::string output;
  // kExtract: the dtype to write (--as). Unset: the source's when the stored
  // values convert back to it exactly, else the stored one; uint8 needs it.
  std::optional<mpsb::DType> as;
  // kCheck: the manifest whose probes to compare with, its tolerance and
  // whether the bundle was compiled with --fold-batchnorm.
  std::string manifest;
  std::optional<double> check_tolerance;  // unset: by each layer's precision
  bool fold_batchnorm = false;
  // kBuffers: the largest buffer (MTLDevice.maxBufferLength) and the page
  // size, in bytes.
  uint64_t buffer_limit = 0;
  uint64_t page_size = 16384;
  // kCheck: manifest fields the format does not have are warnings, not
  // errors (mpsbc's --allow-unknown-fields).
  bool allow_unknown_fields = false;
  // Colour in text output. kAuto colours only when `out_is_terminal` and the
  // NO_COLOR environment variable is unset or empty (https://no-color.org).
  ColorMode color = ColorMode::kAuto;
  // Set by main() from isatty(1); parse_args leaves it false.
  bool out_is_terminal = false;
};

// Parses a command line (args[0] is the program name); which flags go
// together is the table of options.h. Returns the options,
// or nullopt after writing help (to `out`, *exit_code = kExitOk) or a usage
// error (to `err`, *exit_code = kExitUsage).
std::optional<Options> parse_args(std::span<const std::string> args, std::ostream& out,
                                  std::ostream& err, int* exit_code);

// Does what `options` asks. Reports go to `out`, errors (naming the file) to
// `err`. Returns kExitOk, kExitFailure or kExitUsage; kDiff returns kExitOk,
// kExitDifferent or kExitDiffTrouble.
int run(const Options& options, std::ostream& out, std::ostream& err);

// parse_args() then run(): the whole of mpsb-dump's main().
// `out_is_terminal` is copied into Options::out_is_terminal.
int run_command_line(std::span<const std::string> args, std::ostream& out, std::ostream& err,
                     bool out_is_terminal = false);

// Makes text read from a bundle safe to print on a terminal: control
// characters, backslashes, bytes that are not UTF-8, Unicode bidi controls
// and zero-width and other format characters become escapes (\n, \\, \x1b,
// \u{202e}, \u{200b}), so a crafted name cannot move the cursor, recolour the
// terminal, hide itself or reorder what is shown around it. The project's one
// escaper (common/mpsb_text.h), which mpsbc's messages use too.
std::string printable(std::string_view text);

// Terminal cells `printable` text takes: two for wide East Asian characters
// and emoji, none for combining marks, one otherwise.
size_t display_width(std::string_view printable_text);

// `printable_text` cut to at most `max_width` cells, ending in "…" when it
// was cut (max_width >= 1); a wide character is never split.
std::string truncate_to_width(std::string_view printable_text, size_t max_width);

}  // namespace mpsb::dump

#endif  // MPSB_TOOLS_DUMP_DUMP_H_
