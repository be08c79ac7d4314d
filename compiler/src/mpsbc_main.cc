// mpsbc: compiles an mpsb manifest into a bundle. The work is in
// mpsb_compiler (mpsbc/compile.h); this file only maps the command line.

#include <CLI/CLI.hpp>
#include <cstdint>
#include <iostream>
#include <string>

#include "mpsbc/compile.h"

namespace {

int finish(const mpsbc::CompileReport& report, bool json, bool quiet) {
  for (const auto& d : report.diagnostics) {
    if (quiet && d.severity == mpsbc::Diagnostic::Severity::kWarning) continue;
    std::cerr << d.message << '\n';
  }
  if (json) std::cout << mpsbc::report_to_json(report) << '\n';
  return static_cast<int>(report.exit_code);
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

  auto* check = app.add_subcommand("check", "validate the manifest and its files; write nothing");
  check->add_option("manifest", options.manifest_path, "manifest JSON")->required();
  check->add_flag("--json", json, "print a JSON report to stdout");
  check->add_flag("-q,--quiet", quiet, "print errors only");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error exits 2.
    return app.exit(e) == 0 ? 0 : static_cast<int>(mpsbc::ExitCode::kUsage);
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
