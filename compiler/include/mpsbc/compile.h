// The compiler library: manifest -> validated plan -> transforms -> bundle.
//
// compile() validates everything before writing anything. The bundle is
// written to a temporary file beside the output, synced, then renamed over
// the output: a failed or killed compile leaves no partial file and never
// clobbers an older bundle. The same manifest and inputs give a byte-identical
// bundle whatever `jobs` is. Thread-safe: calls share no state.

#ifndef MPSBC_COMPILE_H_
#define MPSBC_COMPILE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mpsbc/precision.h"

namespace mpsbc {

struct CompileOptions {
  std::string manifest_path;
  std::string output_path;
  // Powers of two. The data segment starts and ends on segment_alignment;
  // every tensor starts on tensor_alignment (<= segment_alignment).
  uint64_t segment_alignment = 16384;
  uint64_t tensor_alignment = 256;
  // Worker threads for the transforms; 0 means one per core.
  unsigned jobs = 0;
  // Accept tensor paths that are absolute or climb out of the manifest's
  // folder ("../w.bin"); refused by default (--allow-outside).
  bool allow_outside = false;
  // Accept NaN and infinite values in the weights; by default each .bin is
  // scanned and any is an error with counts (--allow-non-finite).
  bool allow_non_finite = false;
  // Called as tensors reach the output, with the stored bytes written so far
  // and the total; one call at a time, from any worker thread. For a progress
  // bar; empty (the default) for none.
  std::function<void(uint64_t done_bytes, uint64_t total_bytes)> progress;
  // Fold each batch_norm2d that "follows" a conv into that conv's weights
  // and bias (Apple's formula); the folded layer is then absent.
  bool fold_batchnorm = false;
  // MPS limits (channels per group, depthwise multiplier, ...) are errors
  // instead of warnings.
  bool strict = false;
  // Run every layer that has a probe on the CPU reference, reading the
  // weights back from the written bundle, and compare with PyTorch's probe
  // output. A layer above tolerance fails the compile (kCheckFailed) and
  // nothing is written.
  bool check = false;
  // Largest accepted max |ours - PyTorch| / max |PyTorch|. Unset: the
  // documented default of each layer's weight precision
  // (mpsbc::default_check_tolerance).
  std::optional<double> check_tolerance;
  // Stored precision of conv and linear weights (a layer's "precision" in the
  // manifest wins); biases and normalization vectors stay float32.
  Precision precision = Precision::kFloat32;
  // float16 overflow (|w| > 65504) clamps to ±65504 instead of failing.
  bool allow_overflow = false;

  // Test-only fault injection, to prove --check can tell a right layout from
  // a wrong one: store transposed-conv kernels unrotated, or Linear-after-
  // flatten weights unpermuted, while recording the correct transform.
  enum class Mutation { kNone, kNoRotation, kNoFlattenPermute };
  Mutation mutation = Mutation::kNone;
};

// Why a compile failed; also the mpsbc exit code.
enum class ExitCode : int {
  kOk = 0,
  kUsage = 2,       // bad command line
  kBadInput = 3,    // manifest or .bin rejected
  kIo = 4,          // could not read or write files
  kCheckFailed = 5  // --check found a layer outside tolerance
};

struct Diagnostic {
  enum class Severity { kWarning, kError } severity = Severity::kError;
  // "manifest.json: /layers/2/groups: expected ..." — file, place, what.
  // Warnings read "file: pointer: warning: text".
  std::string message;
  // The parts of `message`: the file it is about (the manifest, or the
  // output for I/O errors), the JSON pointer (empty when the message is not
  // about one place in the manifest), and the text alone.
  std::string file;
  std::string pointer;
  std::string text;
};

struct LayerReport {
  std::string name;
  std::string kind;  // "conv2d", ...
  // Stored bytes of all the layer's tensors, without alignment padding.
  uint64_t bytes = 0;
  size_t tensor_count = 0;
  // Conv and linear layers: the weight's stored precision, why it differs
  // from the one asked for (empty when it does not), and what it cost
  // against the float32 weight: largest absolute change and SQNR in dB
  // (+infinity when exact).
  std::string precision;
  std::string precision_note;
  double max_abs_error = 0;
  double sqnr_db = 0;
  // float16: weights clamped (--allow-overflow), flushed to zero, subnormal.
  uint64_t half_overflow = 0, half_flushed = 0, half_subnormal = 0;
};

// The result of --check for one layer.
struct LayerCheck {
  // The bundle layer that was run on its probe input.
  std::string layer;
  // The layer whose probe output it must reproduce: itself, or the batch
  // norm folded into it.
  std::string expected_from;
  double max_abs_error = 0;
  double max_rel_error = 0;
  double tolerance = 0;
  bool passed = false;
};

struct CompileReport {
  ExitCode exit_code = ExitCode::kOk;
  std::vector<Diagnostic> diagnostics;
  // In manifest order. Filled once the manifest parsed, even when a later
  // check failed.
  std::vector<LayerReport> layers;
  // The planned bundle; zero when planning did not happen.
  uint64_t file_size = 0;
  uint64_t segment_offset = 0;
  uint64_t segment_size = 0;
  uint64_t tensor_bytes = 0;
  // With CompileOptions::check: one entry per probed layer, network order.
  std::vector<LayerCheck> checks;
  bool ok() const { return exit_code == ExitCode::kOk; }
};

// Compiles options.manifest_path into options.output_path.
CompileReport compile(const CompileOptions& options);

// --check on an existing bundle: runs every probed layer of
// options.manifest_path (folded as options.fold_batchnorm says) against the
// bundle at `bundle_path`. Writes nothing.
CompileReport check_bundle(const std::string& bundle_path, const CompileOptions& options);

// Validates the options, the manifest and every .bin and plans the bundle
// (so file_size is filled), without writing anything. A non-empty
// output_path is checked as compile() would (not a folder, not an input).
CompileReport check_manifest(const CompileOptions& options);

// The report as a JSON document (one object, no trailing newline):
// {"ok", "exit_code", "file_size", "segment_offset", "segment_size",
//  "tensor_bytes", "layers": [{"name", "kind", "bytes", "tensors"}],
//  "diagnostics": [{"severity", "file", "pointer", "message"}]}.
std::string report_to_json(const CompileReport& report);

// "mpsbc <version>", as recorded in every bundle's producer field.
std::string producer_string();

}  // namespace mpsbc

#endif  // MPSBC_COMPILE_H_
