// --verify: every checksum of the bundle (Bundle::verify()).
#include "dump_internal.h"

namespace mpsb::dump::detail {

int run_verify(const Options& o, const Bundle& b, std::ostream& out, std::ostream& err,
               const Style& style) {
  const Status s = b.verify();
  if (!s.ok()) {
    out << style.red("FAILED") << ": " << printable(o.bundle_path) << '\n';
    err << "mpsb-dump: " << printable(s.message()) << '\n';
    return kExitFailure;
  }
  out << style.green("OK") << ": " << printable(o.bundle_path) << " (" << b.layer_count()
      << " layers, " << tensor_count(b) << " tensors, every checksum matches)\n";
  return kExitOk;
}

}  // namespace mpsb::dump::detail
