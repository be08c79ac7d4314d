// --check: every probed layer run on the CPU reference with the weights read
// back from a bundle, compared with PyTorch's output for the same input.

#ifndef MPSBC_CHECK_H_
#define MPSBC_CHECK_H_

#include <cstdint>
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

// The model bundle's segment checksum a probe file names (metadata
// mpsb.probes_for, docs/FORMAT.md §8); nullopt for a bundle that is not a
// probe file.
std::optional<uint64_t> probes_for(const mpsb::Bundle& bundle);

// The same check from a probe file: each of its layers (network order) run
// on the layer of `bundle` with the same name. REQUIRES: `probes` is a probe
// file of `bundle` (probes_for equals its segment checksum).
bool run_probe_checks(const mpsb::Bundle& bundle, const mpsb::Bundle& probes,
                      std::optional<double> tolerance, Diagnostics& diag,
                      std::vector<LayerCheck>* checks);

}  // namespace mpsbc

#endif  // MPSBC_CHECK_H_
