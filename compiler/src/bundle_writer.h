// Writes a planned bundle: the metadata FlatBuffer (build_metadata, in
// bundle_metadata.cc) and the data segment, streamed tensor by tensor into a
// temporary file beside the output, then synced and renamed over it
// (bundle_writer.cc). docs/FORMAT.md describes the result.

#ifndef MPSBC_BUNDLE_WRITER_H_
#define MPSBC_BUNDLE_WRITER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "bundle_plan.h"
#include "diagnostics.h"
#include "fault_injection.h"
#include "manifest.h"

namespace mpsbc {

struct Metadata {
  // The size-prefixed FlatBuffer, with every tensor checksum, the segment
  // checksum and the metadata checksum still zero.
  std::vector<uint8_t> bytes;
  // align_up(bytes.size(), segment_alignment), already stored in `bytes`.
  uint64_t segment_offset = 0;
  uint64_t file_size = 0;
};

// Builds the metadata for `plan`. Every scalar is written, even at its
// default, so that the checksums can be patched in place afterwards.
// Returns false (with an error in `diag`) only when the sizes overflow.
bool build_metadata(const Manifest& manifest, const BundlePlan& plan, Metadata* out,
                    Diagnostics& diag);

// Streams the tensors through their layout transforms with `jobs` threads,
// patches the checksums, and replaces `output_path` atomically. On failure
// nothing is left behind and an existing file at `output_path` is untouched;
// *io_failure tells a system error from a .bin that changed since it was
// checked or holds non-finite values. Each .bin is opened non-blocking and
// fstat-ed before any read: a file that is no longer a regular file, or whose
// identity (device, inode, size, modification and change time) differs from
// the one check_tensor_files() recorded, is an error, not another bundle.
struct WriteOptions {
  unsigned jobs = 0;                    // 0: one per core
  Mutation mutation = Mutation::kNone;  // tests only (fault_injection.h)
  // Called with the complete, synced temporary file before it replaces the
  // output; returning false abandons the write (nothing is replaced).
  std::function<bool(const std::string& temp_path)> before_commit;
  // CompileOptions::progress.
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;
  // CompileOptions::allow_non_finite. Unless set, the bytes of every .bin are
  // scanned as they are read for the bundle (the validation pass only stats
  // them), so what is checked is what lands; any NaN or infinity fails the
  // write with counts.
  bool allow_non_finite = false;
  // Tests: called after the temporary file exists and before the first .bin
  // is read, to change inputs between validation and writing.
  std::function<void()> before_stream;
};

// Removes what compiles into `output_path` that were killed left behind:
// files named ".<name>.tmp-<pid>-XXXXXX" beside it (TempFile's pattern) whose
// process is gone or that were last modified more than `max_age` ago (a pid
// can be reused). Nothing else is touched, not even temporaries of other
// outputs in the same folder. Returns how many it removed. write_bundle()
// calls it before creating its own temporary file.
size_t remove_stale_temp_files(const std::string& output_path,
                               std::chrono::seconds max_age = std::chrono::hours(1));

bool write_bundle(const Manifest& manifest, const BundlePlan& plan, Metadata metadata,
                  const std::string& output_path, const WriteOptions& options, Diagnostics& diag,
                  bool* io_failure);

}  // namespace mpsbc

#endif  // MPSBC_BUNDLE_WRITER_H_
