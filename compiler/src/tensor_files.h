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
};

// Checks that every tensor's file exists, is a readable regular file inside
// the manifest's folder, has exactly the byte size its shape and dtype need,
// and (reading it) holds only finite values; `options` relaxes the last two.
void check_tensor_files(const Manifest& manifest, Diagnostics& diag,
                        const TensorFileOptions& options = {});

// Checks that every probe file exists with the size its shape needs.
void check_probe_files(const Manifest& manifest, Diagnostics& diag);

// Reads a float32 file of exactly `count` values.
bool read_floats(const std::filesystem::path& path, uint64_t count, std::vector<float>* out,
                 std::string* error);

// A whole tensor's source values as floats, in source (PyTorch) order:
// read from its file, or the values the compiler made for it.
bool read_tensor_floats(const ManifestTensor& t, std::vector<float>* out, std::string* error);

}  // namespace mpsbc

#endif  // MPSBC_TENSOR_FILES_H_
