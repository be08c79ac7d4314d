// --fold-batchnorm: batch norms folded into the conv they follow.

#ifndef MPSBC_FOLD_H_
#define MPSBC_FOLD_H_

#include "diagnostics.h"
#include "manifest.h"

namespace mpsbc {

// --fold-batchnorm: folds every batch_norm2d with "follows" into that conv
// (W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε), Apple's formula),
// removes it and renumbers the layers. Reads the batch norms' vectors, so
// check_tensor_files() must have passed.
bool fold_batchnorm(Manifest& manifest, Diagnostics& diag);

}  // namespace mpsbc

#endif  // MPSBC_FOLD_H_
