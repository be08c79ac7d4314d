// --check MANIFEST or --check PROBES: the compiler's check against
// PyTorch's probes, run on a bundle that already exists; the probes come
// from a manifest and its .bin files or from a probe file (mpsbc compile
// --probes-out), told apart by the file's first bytes, not its name.
#include <fmt/format.h>

#include <algorithm>

#include "dump_internal.h"
#include "mpsbc/compile.h"

namespace mpsb::dump::detail {

int run_check(const Options& o, std::ostream& out, std::ostream& err, const Style& style) {
  mpsbc::CompileOptions options;
  options.manifest_path = o.manifest;
  options.check_tolerance = o.check_tolerance;
  options.fold_batchnorm = o.fold_batchnorm;
  options.allow_unknown_fields = o.allow_unknown_fields;
  const bool probe_file = mpsbc::is_mpsb_container(o.manifest);
  if (probe_file && o.fold_batchnorm) {
    err << "mpsb-dump: --fold-batchnorm goes with a manifest; a probe file already holds what "
           "the folded layers must produce\n";
    return kExitUsage;
  }
  const mpsbc::CompileReport report =
      probe_file ? mpsbc::check_probes(o.bundle_path, o.manifest, o.check_tolerance)
                 : mpsbc::check_bundle(o.bundle_path, options);
  // Diagnostic messages come escaped (compiler/src/diagnostics.h).
  for (const auto& d : report.diagnostics) err << "mpsb-dump: " << d.message << '\n';
  if (o.json) {
    ordered_json j = document("check");
    j["bundle"] = o.bundle_path;
    j["manifest"] = o.manifest;
    j["probes"] = probe_file ? "probe_file" : "manifest";
    j["passed"] = report.ok();
    j["layers"] = ordered_json::array();
    for (const auto& c : report.checks) {
      j["layers"].push_back({{"layer", c.layer},
                             {"expected_from", c.expected_from},
                             {"max_abs_error", c.max_abs_error},
                             {"max_rel_error", c.max_rel_error},
                             {"tolerance", c.tolerance},
                             {"passed", c.passed}});
    }
    print_json(out, j);
  } else if (report.exit_code == mpsbc::ExitCode::kOk ||
             report.exit_code == mpsbc::ExitCode::kCheckFailed) {
    // The table only when the check ran: a refused one (bad manifest or
    // bundle, a probe file of another bundle, nothing to check) is its
    // errors alone.
    size_t width = 5;
    for (const auto& c : report.checks) width = std::max(width, display_width(printable(c.layer)));
    out << fmt::format("{:<{}}  {:>12}  {:>12}  {}\n", "layer", width, "max abs err", "max rel err",
                       "check");
    for (const auto& c : report.checks) {
      const std::string name = printable(c.layer);
      out << name << std::string(width - display_width(name), ' ')
          << fmt::format("  {:>12.3e}  {:>12.3e}  ", c.max_abs_error, c.max_rel_error)
          << (c.passed ? style.green("ok") : style.red("FAILED")) << '\n';
    }
    out << (report.ok() ? style.green("OK") : style.red("FAILED")) << ": " << report.checks.size()
        << " layers checked against " << printable(o.manifest) << '\n';
  }
  // Nothing to check is a usage error, never an OK.
  if (report.exit_code == mpsbc::ExitCode::kUsage) return kExitUsage;
  return report.ok() ? kExitOk : kExitFailure;
}

}  // namespace mpsb::dump::detail
