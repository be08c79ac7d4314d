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

namespace mpsb::dump {

// Exit codes of mpsb-dump.
inline constexpr int kExitOk = 0;
// The bundle is invalid or unreadable, the layer or tensor does not exist, or
// the output could not be written.
inline constexpr int kExitFailure = 1;
// Bad command line.
inline constexpr int kExitUsage = 2;

enum class Mode {
  kSummary,  // header fields and the layer table (default)
  kLayer,    // every field of one layer and its tensors
  kExtract,  // one tensor, written back in PyTorch layout and dtype
  kVerify,   // Bundle::verify(): every checksum
};

struct Options {
  std::string bundle_path;
  Mode mode = Mode::kSummary;
  // kSummary and kLayer: JSON instead of text.
  bool json = false;
  // kLayer: the layer name.
  std::string layer;
  // kExtract: "LAYER.ROLE", split at the last '.', so layer names that
  // contain dots ("features.0") work.
  std::string tensor;
  // kExtract: the output file; "-" writes the bytes to `out`.
  std::string output;
};

// Parses a command line (args[0] is the program name). Returns the options,
// or nullopt after writing help (to `out`, *exit_code = kExitOk) or a usage
// error (to `err`, *exit_code = kExitUsage).
std::optional<Options> parse_args(std::span<const std::string> args, std::ostream& out,
                                  std::ostream& err, int* exit_code);

// Does what `options` asks. Reports go to `out`, errors (naming the file) to
// `err`. Returns kExitOk, kExitFailure or kExitUsage.
int run(const Options& options, std::ostream& out, std::ostream& err);

// parse_args() then run(): the whole of mpsb-dump's main().
int run_command_line(std::span<const std::string> args, std::ostream& out, std::ostream& err);

// Makes text read from a bundle safe to print on a terminal: control
// characters, backslashes, bytes that are not UTF-8 and Unicode bidi controls
// become escapes (\n, \\, \x1b, \u{202e}), so a crafted name cannot move the
// cursor, recolour the terminal or reorder what is shown around it.
std::string printable(std::string_view text);

// Columns `printable` text takes on a terminal (one per code point).
size_t display_width(std::string_view printable_text);

}  // namespace mpsb::dump

#endif  // MPSB_TOOLS_DUMP_DUMP_H_
