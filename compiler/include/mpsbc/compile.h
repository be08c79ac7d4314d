// The compiler library's front door: manifest -> validated plan -> transforms
// -> bundle. What a compile reports is in mpsbc/report.h, which the stages
// share; they do not include this header.
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
#include "mpsbc/report.h"

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
  // Store each grouped conv MPS refuses (channels per group not a multiple
  // of 4, depthwise channel multiplier > 1) as the equivalent dense conv
  // (groups 1, block-diagonal weight); without it such a layer is an error
  // (--legalize, docs/LAYERS.md).
  bool legalize = false;
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
  // A manifest field the format does not have (a misspelt "padidng", "gamma"
  // for "weight") is a warning and ignored, instead of an error
  // (--allow-unknown-fields).
  bool allow_unknown_fields = false;
  // Also write every probed layer's PyTorch input and output to this probe
  // file (docs/FORMAT.md §8), which names the bundle by its segment
  // checksum, so that `mpsb-dump BUNDLE --check FILE` needs neither the
  // manifest nor a .bin. Written like the bundle (temporary file, rename)
  // before the bundle replaces the output; when either fails neither is
  // replaced. Empty: none.
  std::string probes_out;
};

// Compiles options.manifest_path into options.output_path.
CompileReport compile(const CompileOptions& options);

// --check on an existing bundle: runs every probed layer of
// options.manifest_path against the bundle at `bundle_path`, with the batch
// norms folded that the bundle says were folded (Layer.folded_batchnorm);
// options.fold_batchnorm matters only for a bundle that records no fold
// (written before that field), where it folds each batch norm the bundle
// lacks. Writes nothing.
CompileReport check_bundle(const std::string& bundle_path, const CompileOptions& options);

// --check from a probe file (CompileOptions::probes_out): every layer of the
// probe file at `probes_path` run on the CPU reference with the weights of
// the bundle at `bundle_path` and compared with its stored PyTorch output.
// Needs no manifest and no .bin. A probe file of another bundle is refused
// (kBadInput), one that checks nothing is kUsage. Writes nothing.
CompileReport check_probes(const std::string& bundle_path, const std::string& probes_path,
                           std::optional<double> tolerance);

// Whether the file at `path` starts as an mpsb container does (the
// identifier "MPSB" after the size prefix and root offset): what tells a
// probe file from a manifest, whatever its name.
bool is_mpsb_container(const std::string& path);

// Validates the options, the manifest and every .bin and plans the bundle
// (so file_size is filled), without writing anything. A non-empty
// output_path is checked as compile() would (not a folder, not an input).
CompileReport check_manifest(const CompileOptions& options);

// The report as a JSON document (one object, no trailing newline):
// {"ok", "exit_code", "file_size", "segment_offset", "segment_size",
//  "tensor_bytes", "layers": [{"name", "kind", "bytes", "tensors"} plus
//  "folded_batchnorm" on a conv that folded one],
//  "skipped_modules": [{"name", "type", "reason"}],
//  "diagnostics": [{"severity", "file", "pointer", "message"}]}.
// A legalized layer also has "legalized": {"groups", "extra_weight_bytes",
// "extra_multiply_adds_per_position", "output_positions",
// "extra_multiply_adds"}, and the report "legalized": {"layers",
// "extra_weight_bytes", "extra_multiply_adds"} (totals).
std::string report_to_json(const CompileReport& report);

}  // namespace mpsbc

#endif  // MPSBC_COMPILE_H_
