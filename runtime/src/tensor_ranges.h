// Private to the runtime: the check that no two tensors of a bundle share a
// byte of the data segment (docs/FORMAT.md §5).
#ifndef MPSB_RUNTIME_TENSOR_RANGES_H_
#define MPSB_RUNTIME_TENSOR_RANGES_H_

#include <string>

#include "mpsb/fb/bundle_generated.h"
#include "mpsb/result.h"

namespace mpsb::internal {

// Refuses (kTensorOutOfRange, naming both tensors) a bundle in which two
// tensor ranges [offset, offset + size) overlap, in O(n log n) for n tensors.
// Disjoint ranges bound what anything that visits every tensor can cost:
// verify(), mpsb-dump --stats and --check read at most segment_size tensor
// bytes, however many layers the metadata lists. `where` names the file.
// REQUIRES: the Checker accepted `root` (every range inside the segment).
Status check_tensor_ranges(const fb::Bundle& root, const std::string& where);

}  // namespace mpsb::internal

#endif  // MPSB_RUNTIME_TENSOR_RANGES_H_
