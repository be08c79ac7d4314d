// The input files a manifest names: each .bin checked (inside the folder,
// a regular file, its exact size, finite values) before anything is written,
// probes checked, and values read back for folding and precision.

#ifndef MPSBC_TENSOR_FILES_H_
#define MPSBC_TENSOR_FILES_H_

#include <filesystem>
#include <string>
#include <vector>

#include "diagnostics.h"
#include "manifest.h"

namespace mpsbc {

struct TensorFileOptions {
  // Accept tensor paths that are absolute or climb out of the manifest's
  // folder with "..". Off by default: a manifest from elsewhere must not be
  // able to read arbitrary files into a bundle.
  bool allow_outside = false;
  // Accept NaN and infinite weights. Off by default: they are almost always
  // a training or export bug, and MPS would propagate them silently.
  bool allow_non_finite = false;
  // Read each .bin here and count NaN and infinities (mpsbc check). Off:
  // only open and fstat it here, and leave the scan to whoever reads the
  // bytes next (read_tensor_floats(), the writer), so that what is scanned
  // is what lands and each .bin is read once (mpsbc compile).
  bool scan_non_finite = true;
};

// Checks that every tensor's file exists, is a readable regular file inside
// the manifest's folder (opened non-blocking and fstat-ed before any read:
// a FIFO cannot block), has exactly the byte size its shape and dtype need,
// and holds only finite values; `options` relaxes or defers the last two.
// Records each file's identity in ManifestTensor::identity.
void check_tensor_files(Manifest& manifest, Diagnostics& diag,
                        const TensorFileOptions& options = {});

// Checks that every probe file is inside the manifest's folder (unless
// `allow_outside`; decided from the path text alone, so that no message
// tells anything about a file outside it), is a regular file (opened
// non-blocking) and has the size its shape needs.
void check_probe_files(const Manifest& manifest, Diagnostics& diag, bool allow_outside = false);

// Reads a float32 file of exactly `count` values.
bool read_floats(const std::filesystem::path& path, uint64_t count, std::vector<float>* out,
                 std::string* error);

// A whole tensor's source values as floats, in source (PyTorch) order:
// read from its file, or the values the compiler made for it. The file is
// opened non-blocking and must still have the identity check_tensor_files()
// recorded, before and after the read; with ManifestTensor::scan_on_read,
// NaN and infinities are an error with counts.
bool read_tensor_floats(const ManifestTensor& t, std::vector<float>* out, std::string* error);

}  // namespace mpsbc

#endif  // MPSBC_TENSOR_FILES_H_
