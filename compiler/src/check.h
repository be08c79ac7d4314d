// --check: every probed layer run on the CPU reference with the weights read
// back from a bundle, compared with PyTorch's output for the same input.

#ifndef MPSBC_CHECK_H_
#define MPSBC_CHECK_H_

#include <optional>
#include <vector>

#include "diagnostics.h"
#include "manifest.h"
#include "mpsb/bundle.h"
#include "mpsbc/report.h"

namespace mpsbc {

// Appends one LayerCheck per probed layer of `manifest` (network order) and
// an error per failure. Returns true when every layer is within tolerance:
// `tolerance`, or else the default for the precision the bundle stores the
// layer's weight at. REQUIRES: check_probe_files() passed.
bool run_checks(const mpsb::Bundle& bundle, const Manifest& manifest,
                std::optional<double> tolerance, Diagnostics& diag,
                std::vector<LayerCheck>* checks);

}  // namespace mpsbc

#endif  // MPSBC_CHECK_H_
