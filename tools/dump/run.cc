// run(): opens the bundle and hands it to the mode's function.
#include <exception>

#include "dump_internal.h"

namespace mpsb::dump {

int run(const Options& o, std::ostream& out, std::ostream& err) {
  using namespace detail;  // NOLINT(build/namespaces): the mode functions
  const Style style(use_color(o) && !o.json);
  if (o.mode == Mode::kDiff) {
    try {
      return run_diff(o, out, err, style);
    } catch (const std::exception& e) {
      err << "mpsb-dump: " << e.what() << '\n';
      return kExitDiffTrouble;
    }
  }
  if (o.mode == Mode::kCheck) return run_check(o, out, err, style);
  Result<Bundle> opened = Bundle::open(o.bundle_path);
  if (!opened.ok()) {
    // The runtime's message names the file and what is wrong with it.
    err << "mpsb-dump: " << printable(opened.message()) << '\n';
    if (o.mode == Mode::kVerify) out << "FAILED: " << printable(o.bundle_path) << '\n';
    return kExitFailure;
  }
  const Bundle& b = opened.value();
  try {
    switch (o.mode) {
      case Mode::kSummary:
        return run_summary(o, b, out, style);
      case Mode::kLayer:
        return run_layer(o, b, out, err, style);
      case Mode::kStats:
        return run_stats(o, b, out, err, style);
      case Mode::kExplain:
        return run_explain(o, b, out, style);
      case Mode::kExtract:
        return run_extract(o, b, out, err);
      case Mode::kVerify:
        return run_verify(o, b, out, err, style);
      case Mode::kBuffers:
        return run_buffers(o, b, out, err, style);
      case Mode::kDiff:
      case Mode::kCheck:
        break;
    }
  } catch (const std::exception& e) {
    // Only allocation or stream failures can land here.
    err << "mpsb-dump: " << printable(o.bundle_path) << ": " << e.what() << '\n';
    return kExitFailure;
  }
  return kExitUsage;
}

}  // namespace mpsb::dump
