// --fold-batchnorm: batch norms folded into the conv they follow.

#ifndef MPSBC_FOLD_H_
#define MPSBC_FOLD_H_

#include <functional>

#include "diagnostics.h"
#include "manifest.h"

namespace mpsbc {

// --fold-batchnorm: folds every batch_norm2d with "follows" into that conv
// (W' = W·s, b' = (b − μ)·s + β with s = γ/√(σ² + ε), Apple's formula),
// removes it and renumbers the layers. Reads the batch norms' vectors, so
// check_tensor_files() must have passed. Warns when there is nothing to
// fold, saying why.
//
// With `only`, folds just the batch norms it accepts and leaves the others
// as they are, without a word: --check of an existing bundle folds what the
// bundle says was folded (Layer.folded_batchnorm).
using FoldFilter = std::function<bool(const ManifestLayer& batch_norm)>;
bool fold_batchnorm(Manifest& manifest, Diagnostics& diag, const FoldFilter& only = nullptr);

}  // namespace mpsbc

#endif  // MPSBC_FOLD_H_
