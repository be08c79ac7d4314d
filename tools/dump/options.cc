// The command line of mpsb-dump: CLI11 reads the flags, then every
// combination is checked against the table of options.h.
#include "options.h"

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "dump.h"
#include "dump_internal.h"

namespace mpsb::dump {
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
  mpsb-dump model.mpsb --buffers 256M         Metal no-copy buffer windows within a 256 MiB limit
  mpsb-dump model.mpsb --check model.probes.mpsb

Exit codes: 0 ok; 1 invalid or unreadable bundle, unknown layer or tensor,
write failed, no --buffers plan (a tensor longer than MAX, a segment alignment
below the page size), --check found a layer off or a probe file of another
bundle; 2 bad command line, or --check with nothing to check. With --diff:
0 identical, 1 different, 2 trouble (as diff(1)).)";

const ModeSpec* mode_selected_by(Flag f) {
  for (const ModeSpec& m : kModes) {
    if (m.has_selector && m.selector == f) return &m;
  }
  return nullptr;
}

// The selectors of the modes that take `f`, for "(--as goes with --extract)".
std::string modes_taking(Flag f) {
  std::vector<std::string_view> names;
  for (const ModeSpec& m : kModes) {
    if (m.has_selector && (m.takes & flag_bit(f))) names.push_back(flag_spec(m.selector).name);
  }
  return fmt::format("{}", fmt::join(names, " or "));
}

// The mode `given` asks for, or an error naming the two flags that clash.
const ModeSpec* resolve_mode(FlagSet given, std::string* error) {
  const ModeSpec* mode = nullptr;
  for (const ModeSpec& m : kModes) {
    if (!m.has_selector || !(given & flag_bit(m.selector))) continue;
    if (mode == nullptr) {
      mode = &m;
    } else if (!mode_takes(*mode, m.selector)) {
      *error = fmt::format("{} cannot be combined with {}", flag_spec(m.selector).name,
                           flag_spec(mode->selector).name);
      return nullptr;
    }
  }
  if (mode == nullptr) mode = &kModes[kModeCount - 1];
  for (const FlagSpec& f : kFlags) {
    if (!(given & flag_bit(f.flag)) || (mode->has_selector && f.flag == mode->selector)) continue;
    if (mode_takes(*mode, f.flag)) continue;
    if (!mode->has_selector) {
      *error = fmt::format("{} needs {}", f.name, modes_taking(f.flag));
    } else if (mode_selected_by(f.flag) != nullptr ||
               modes_taking(f.flag).find(" or ") != std::string::npos) {
      // A second mode, or a flag most modes take (--json): the two names
      // say it all.
      *error = fmt::format("{} cannot be combined with {}", f.name, flag_spec(mode->selector).name);
    } else {
      *error = fmt::format("{} cannot be combined with {} ({} goes with {})", f.name,
                           flag_spec(mode->selector).name, f.name, modes_taking(f.flag));
    }
    return nullptr;
  }
  for (const FlagSpec& f : kFlags) {
    if ((mode->needs & flag_bit(f.flag)) && !(given & flag_bit(f.flag))) {
      *error = fmt::format("{} needs {}", flag_spec(mode->selector).name, f.name);
      return nullptr;
    }
  }
  return mode;
}

// "268435456", "256M", "16K", "1G" (K, M, G: 1024-based, either case).
std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t value = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (value > (UINT64_MAX - 9) / 10) return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(text[i] - '0');
  }
  if (i == 0) return std::nullopt;
  const std::string_view suffix = text.substr(i);
  unsigned shift = 0;
  if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else if (!suffix.empty()) {
    return std::nullopt;
  }
  if (value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

std::optional<Options> usage_error(std::ostream& err, int* exit_code, std::string_view text) {
  err << "mpsb-dump: " << text << "\nRun with --help for more information.\n";
  *exit_code = kExitUsage;
  return std::nullopt;
}

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
  std::map<Flag, CLI::Option*> opt;
  opt[Flag::kJson] = app.add_flag(
      "--json", o.json, "Machine-readable output (schema mpsb.dump/1, see docs/DUMP_JSON.md)");
  opt[Flag::kLayer] =
      app.add_option("--layer", o.layer, "Show every field of layer NAME and its tensors")
          ->type_name("NAME");
  bool stats = false, diff = false, explain = false, verify = false;
  opt[Flag::kStats] = app.add_flag(
      "--stats", stats,
      "Per tensor: min, max, mean, std, zeros, NaN, inf and a histogram (reads every weight; "
      "with --layer, that layer only)");
  opt[Flag::kDiff] = app.add_flag(
      "--diff", diff,
      "Compare bundles A and B: layers and tensors added, removed or changed, and by how much");
  opt[Flag::kExplain] = app.add_flag(
      "--explain", explain, "Annotated listing of the file's first bytes and regions, by offset");
  opt[Flag::kExtract] =
      app.add_option("--extract", o.tensor,
                     fmt::format("Write tensor LAYER.ROLE (role: {}) back in PyTorch layout "
                                 "and dtype",
                                 detail::role_names()))
          ->type_name("LAYER.ROLE");
  std::string as;
  opt[Flag::kAs] = app.add_option("--as", as,
                                  "With --extract: write as this dtype (float32 widens float16 and "
                                  "dequantizes uint8; uint8 writes the codes)")
                       ->check(CLI::IsMember({"float32", "float16", "bfloat16", "uint8"}))
                       ->type_name("DTYPE");
  opt[Flag::kOutput] =
      app.add_option("-o,--output", o.output, "Output file for --extract ('-': stdout)")
          ->type_name("FILE");
  opt[Flag::kVerify] =
      app.add_flag("--verify", verify, "Check every checksum (reads the whole file)");
  opt[Flag::kCheck] =
      app.add_option("--check", o.manifest,
                     "Run every layer that has a probe in MANIFEST (tools/export writes them), or "
                     "every layer of a probe file (mpsbc compile --probes-out), on the CPU "
                     "reference with this bundle's weights and compare with PyTorch")
          ->type_name("MANIFEST|PROBES");
  opt[Flag::kCheckTolerance] =
      app.add_option("--check-tolerance", o.check_tolerance,
                     "With --check: largest max|ours - PyTorch| / max|PyTorch|")
          ->capture_default_str();
  opt[Flag::kFoldBatchnorm] =
      app.add_flag("--fold-batchnorm", o.fold_batchnorm,
                   "With --check, for a bundle that does not record its folds (from an mpsbc "
                   "before Layer.folded_batchnorm): it was compiled with --fold-batchnorm");
  std::string buffers, page_size;
  opt[Flag::kBuffers] =
      app.add_option("--buffers", buffers,
                     "Plan Metal no-copy buffers of at most MAX bytes (the device's "
                     "maxBufferLength; K, M, G suffixes are 1024-based): page-aligned windows "
                     "of the segment and the tensors in each")
          ->type_name("MAX");
  opt[Flag::kPageSize] = app.add_option("--page-size", page_size,
                                        "With --buffers: the page size, a power of two "
                                        "(default 16384, Apple silicon's)")
                             ->type_name("BYTES");
  opt[Flag::kAllowUnknownFields] =
      app.add_flag("--allow-unknown-fields", o.allow_unknown_fields,
                   "With --check: warn about and ignore manifest fields the format does not have");
  std::string color = "auto";
  opt[Flag::kColor] =
      app.add_option("--color", color,
                     "Colour text output: auto (on a terminal unless NO_COLOR is set), always, "
                     "never")
          ->check(CLI::IsMember({"auto", "always", "never"}))
          ->type_name("WHEN")
          ->capture_default_str();

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
  FlagSet given = 0;
  for (const auto& [flag, option] : opt) {
    if (option->count() > 0) given |= flag_bit(flag);
  }
  std::string error;
  const ModeSpec* mode = resolve_mode(given, &error);
  if (mode == nullptr) return usage_error(err, exit_code, error);
  o.mode = mode->mode;
  if (diff && files.size() != 2) {
    return usage_error(err, exit_code,
                       "--diff compares two bundles: mpsb-dump --diff A.mpsb B.mpsb");
  }
  if (!diff && files.size() != 1) {
    return usage_error(
        err, exit_code,
        fmt::format("one bundle expected, got {} (two only with --diff)", files.size()));
  }
  o.bundle_path = files[0];
  if (diff) o.other_path = files[1];
  o.color = color == "always"  ? ColorMode::kAlways
            : color == "never" ? ColorMode::kNever
                               : ColorMode::kAuto;
  if (!buffers.empty()) {
    const std::optional<uint64_t> limit = parse_size(buffers);
    if (!limit) {
      return usage_error(err, exit_code,
                         fmt::format("--buffers {}: not a size (bytes, or a number with K, M or "
                                     "G, 1024-based)",
                                     printable(buffers)));
    }
    o.buffer_limit = *limit;
  }
  if (!page_size.empty()) {
    const std::optional<uint64_t> page = parse_size(page_size);
    if (!page || *page == 0 || (*page & (*page - 1)) != 0) {
      return usage_error(err, exit_code,
                         fmt::format("--page-size {}: not a power of two", printable(page_size)));
    }
    o.page_size = *page;
  }
  if (o.mode == Mode::kBuffers && o.buffer_limit < o.page_size) {
    return usage_error(err, exit_code,
                       fmt::format("--buffers {}: less than one page ({} bytes)",
                                   printable(buffers), o.page_size));
  }
  if (!as.empty()) {
    o.as = as == "float32"   ? DType::kFloat32
           : as == "float16" ? DType::kFloat16
           : as == "uint8"   ? DType::kUInt8
                             : DType::kBFloat16;
  }
  *exit_code = kExitOk;
  return o;
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
