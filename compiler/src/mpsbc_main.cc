// mpsbc: compiles an mpsb manifest into a bundle. The work is in
// mpsb_compiler (mpsbc/compile.h); this file only maps the command line.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "mpsbc/compile.h"

namespace {

int finish(const mpsbc::CompileReport& report, bool json, bool quiet) {
  for (const auto& d : report.diagnostics) {
    if (quiet && d.severity == mpsbc::Diagnostic::Severity::kWarning) continue;
    std::cerr << d.message << '\n';
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

// Options shared by the subcommands that read a manifest's layers.
void add_layer_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_flag("--fold-batchnorm", options.fold_batchnorm,
                "fold each batch_norm2d that follows a conv into it (Apple's formula)");
  cmd->add_flag("--strict", options.strict, "treat MPS limits as errors instead of warnings");
}

void add_check_options(CLI::App* cmd, mpsbc::CompileOptions& options) {
  cmd->add_option("--check-tolerance", options.check_tolerance,
                  "largest max|ours - PyTorch| / max|PyTorch| accepted for float32 weights")
      ->capture_default_str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mpsbc: compiles a PyTorch CNN's weights (mpsb.manifest/1) into an .mpsb bundle"};
  app.set_version_flag("--version", mpsbc::producer_string());
  app.require_subcommand(1);

  mpsbc::CompileOptions options;
  bool json = false, quiet = false;

  auto* compile = app.add_subcommand("compile", "validate the manifest and write the bundle");
  compile->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  compile->add_option("-o,--output", options.output_path, "bundle to write (replaced atomically)")
      ->required();
  compile
      ->add_option("--segment-alignment", options.segment_alignment,
                   "alignment of the data segment, a power of two")
      ->capture_default_str();
  compile
      ->add_option("--tensor-alignment", options.tensor_alignment,
                   "alignment of each tensor in the segment, a power of two")
      ->capture_default_str();
  compile->add_option("-j,--jobs", options.jobs, "worker threads; 0 = one per core")
      ->check(CLI::Range(0u, 1024u))
      ->capture_default_str();
  compile->add_flag("--json", json, "print a JSON report to stdout");
  compile->add_flag("-q,--quiet", quiet, "print errors only");
  compile->add_flag(
      "--check", options.check,
      "run every probed layer on the CPU reference from the written bundle and "
      "compare with PyTorch's output; fail (exit 5, nothing written) above tolerance");
  add_check_options(compile, options);
  add_layer_options(compile, options);
  // Test-only: proves --check tells a right layout from a wrong one.
  std::string mutation;
  compile->add_option("--debug-mutate", mutation)
      ->check(CLI::IsMember({"no-rotation", "no-flatten-permute"}))
      ->group("");

  auto* check = app.add_subcommand("check", "validate the manifest and its files; write nothing");
  check->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  check->add_flag("--json", json, "print a JSON report to stdout");
  check->add_flag("-q,--quiet", quiet, "print errors only");
  add_layer_options(check, options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    return app.exit(e) == 0 ? 0 : static_cast<int>(mpsbc::ExitCode::kUsage);
  }

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
  const auto report = mpsbc::compile(options);
  const int rc = finish(report, json, quiet);
  if (report.ok() && !json && !quiet) {
    std::cout << "wrote " << options.output_path << ": " << report.layers.size() << " layers, "
              << report.file_size << " bytes\n";
  }
  return rc;
}
