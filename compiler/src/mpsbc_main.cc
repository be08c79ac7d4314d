// mpsbc: compiles an mpsb manifest into a bundle. The work is in
// mpsb_compiler (mpsbc/compile.h); this file only maps the command line.

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "mpsb_text.h"
#include "mpsbc/compile.h"

namespace {

constexpr const char* kExitCodes = R"(Exit codes:
  0  ok
  2  bad command line: unknown option, missing argument, bad alignment, or an
     output path that is a folder or one of the inputs
  3  bad input: the manifest or a .bin was rejected (every problem is listed)
  4  I/O error: a file could not be read or written
  5  --check: a layer's output is beyond the tolerance from PyTorch's probe)";

// "1.5 MiB": sizes on the progress bar.
using mpsb::text::human_bytes;

// A one-line bar on stderr, redrawn in place. Shown only on a terminal and
// only once a compile has run for a moment, so quick compiles print nothing
// extra; cleared before any other output.
class ProgressBar {
 public:
  void update(uint64_t done, uint64_t total) {
    using namespace std::chrono_literals;
    if (std::chrono::steady_clock::now() - start_ < 300ms) return;
    const int percent = total == 0 ? 100 : static_cast<int>(done * 100 / total);
    if (percent == last_percent_) return;
    last_percent_ = percent;
    constexpr int kWidth = 30;
    const int filled = percent * kWidth / 100;
    std::string bar;
    for (int i = 0; i < kWidth; ++i) bar += i < filled ? "\u2588" : "\u00b7";
    std::fprintf(stderr, "\r\x1b[Kwriting %s %3d%%  %s of %s", bar.c_str(), percent,
                 human_bytes(done).c_str(), human_bytes(total).c_str());
    std::fflush(stderr);
    drawn_ = true;
  }
  void clear() {
    if (drawn_) std::fputs("\r\x1b[K", stderr);
    drawn_ = false;
  }

 private:
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  int last_percent_ = -1;
  bool drawn_ = false;
};

int finish(const mpsbc::CompileReport& report, bool json, bool quiet) {
  size_t warnings = 0, errors = 0;
  for (const auto& d : report.diagnostics) {
    const bool warning = d.severity == mpsbc::Diagnostic::Severity::kWarning;
    (warning ? warnings : errors) += 1;
    if (quiet && warning) continue;
    std::cerr << d.message << '\n';
  }
  // The count at the end, as compilers do, once there is anything to count;
  // --quiet keeps it only for errors.
  if (errors > 0 || (warnings > 0 && !quiet)) {
    std::cerr << "mpsbc: " << warnings << (warnings == 1 ? " warning, " : " warnings, ") << errors
              << (errors == 1 ? " error" : " errors") << '\n';
  }
  if (json) {
    std::cout << mpsbc::report_to_json(report) << '\n';
  } else if (!quiet && !report.checks.empty()) {
    // One line per checked layer: what --check measured against PyTorch.
    size_t width = 5;
    for (const auto& c : report.checks) width = std::max(width, c.layer.size());
    std::printf("%-*s  %12s  %12s  %s\n", int(width), "layer", "max abs err", "max rel err",
                "check");
    for (const auto& c : report.checks) {
      std::printf("%-*s  %12.3e  %12.3e  %s\n", int(width), c.layer.c_str(), c.max_abs_error,
                  c.max_rel_error, c.passed ? "ok" : "FAILED");
    }
  }
  return static_cast<int>(report.exit_code);
}

// Options `compile` and `check` share: the bundle's alignments, the report.
void add_bundle_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_option("--segment-alignment", options.segment_alignment,
                  "alignment of the data segment, a power of two")
      ->capture_default_str();
  cmd->add_option("--tensor-alignment", options.tensor_alignment,
                  "alignment of each tensor in the segment, a power of two")
      ->capture_default_str();
}

void add_report_options(CLI::App* cmd, bool& json, bool& quiet) {
  cmd->add_flag("--json", json, "print a JSON report to stdout");
  cmd->add_flag("-q,--quiet", quiet, "print errors only");
}

// Options shared by the subcommands that read a manifest's layers.
void add_layer_options(CLI::App* cmd, mpsbc::CompileOptions& options, std::string& precision_text) {
  cmd->add_flag("--fold-batchnorm", options.fold_batchnorm,
                "fold each batch_norm2d that follows a conv into it (Apple's formula)");
  cmd->add_flag("--strict", options.strict, "treat MPS limits as errors instead of warnings");
  cmd->add_flag("--allow-outside", options.allow_outside,
                "accept tensor paths that are absolute or leave the manifest's folder");
  cmd->add_flag("--allow-non-finite", options.allow_non_finite,
                "accept NaN and infinite weights (an error by default)");
  cmd->add_option("--precision", precision_text,
                  "stored precision of conv and linear weights (a layer's \"precision\" in the "
                  "manifest wins): float32, float16, uint8-linear or uint8-lut")
      ->check(CLI::IsMember({"float32", "float16", "uint8-linear", "uint8-lut"}))
      ->capture_default_str();
  cmd->add_flag("--allow-overflow", options.allow_overflow,
                "float16: clamp weights beyond ±65504 instead of failing");
}

void add_check_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_option("--check-tolerance", options.check_tolerance,
                  "largest max|ours - PyTorch| / max|PyTorch| accepted; default by weight "
                  "precision: float32 1e-5, float16 2e-3, uint8-linear 3e-2, uint8-lut 3e-2");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mpsbc: compiles a PyTorch CNN's weights (mpsb.manifest/1) into an .mpsb bundle"};
  app.set_version_flag("--version", mpsbc::producer_string());
  app.require_subcommand(1);
  app.footer(std::string(R"(Examples:
  mpsbc compile model/manifest.json -o model.mpsb
  mpsbc check model/manifest.json
  mpsbc compile --help

)") + kExitCodes);

  mpsbc::CompileOptions options;
  std::string precision_text = "float32";
  bool json = false, quiet = false;

  auto* compile = app.add_subcommand("compile", "validate the manifest and write the bundle");
  compile->footer(std::string(R"(Examples:
  mpsbc compile model/manifest.json -o model.mpsb
  mpsbc compile model/manifest.json -o model.mpsb --fold-batchnorm --check
  mpsbc compile model/manifest.json -o model.mpsb --tensor-alignment 16384 -j 4
  mpsbc compile model/manifest.json -o model.mpsb --json -q > report.json

A progress bar is drawn on stderr when it is a terminal (not with -q).
)") + kExitCodes);
  compile->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  compile->add_option("-o,--output", options.output_path, "bundle to write (replaced atomically)")
      ->required();
  add_bundle_options(compile, options);
  compile->add_option("-j,--jobs", options.jobs, "worker threads; 0 = one per core")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  add_report_options(compile, json, quiet);
  compile->add_flag(
      "--check", options.check,
      "run every probed layer on the CPU reference from the written bundle and "
      "compare with PyTorch's output; fail (exit 5, nothing written) above tolerance");
  add_check_options(compile, options);
  add_layer_options(compile, options, precision_text);
  // Test-only: proves --check tells a right layout from a wrong one.
  std::string mutation;
  compile->add_option("--debug-mutate", mutation)
      ->check(CLI::IsMember({"no-rotation", "no-flatten-permute"}))
      ->group("");

  auto* check = app.add_subcommand("check", "validate the manifest and its files; write nothing");
  check->footer(
      std::string(R"(Runs every check of `compile` (with the same options) and writes nothing.

Examples:
  mpsbc check model/manifest.json
  mpsbc check model/manifest.json -o model.mpsb --tensor-alignment 16384
  mpsbc check model/manifest.json --strict --json | jq .diagnostics

)") + kExitCodes);
  check->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  check
      ->add_option("-o,--output", options.output_path,
                   "also check this output path as compile would (nothing is written)")
      ->type_name("FILE");
  add_bundle_options(check, options);
  add_report_options(check, json, quiet);
  add_layer_options(check, options, precision_text);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    return app.exit(e) == 0 ? 0 : static_cast<int>(mpsbc::ExitCode::kUsage);
  }

  options.precision = *mpsbc::parse_precision(precision_text);
  if (mutation == "no-rotation") options.mutation = mpsbc::CompileOptions::Mutation::kNoRotation;
  if (mutation == "no-flatten-permute") {
    options.mutation = mpsbc::CompileOptions::Mutation::kNoFlattenPermute;
  }
  if (*check) {
    const auto report = mpsbc::check_manifest(options);
    const int rc = finish(report, json, quiet);
    if (report.ok() && !json && !quiet) {
      std::cout << options.manifest_path << ": ok, " << report.layers.size() << " layers, "
                << report.tensor_bytes << " tensor bytes, bundle " << report.file_size
                << " bytes\n";
    }
    return rc;
  }
  ProgressBar progress;
  if (!quiet && ::isatty(STDERR_FILENO) == 1) {
    options.progress = [&](uint64_t done, uint64_t total) { progress.update(done, total); };
  }
  const auto report = mpsbc::compile(options);
  progress.clear();
  const int rc = finish(report, json, quiet);
  if (report.ok() && !json && !quiet) {
    std::cout << "wrote " << options.output_path << ": " << report.layers.size() << " layers, "
              << report.file_size << " bytes\n";
  }
  return rc;
}
