// What a compile reports: its exit code, its diagnostics (each naming the
// file and the place), per-layer sizes and precisions, and the --check
// results. The vocabulary the compiler's stages share; the front door is
// mpsbc/compile.h.

#ifndef MPSBC_REPORT_H_
#define MPSBC_REPORT_H_

#include <cstdint>
#include <string>
#include <vector>

namespace mpsbc {

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
  // The batch norm --fold-batchnorm folded into this conv, or empty.
  std::string folded_batchnorm;
  // --legalize: the manifest's groups of a conv stored dense (0 when it is
  // not), and what that costs: extra stored weight bytes, extra
  // multiply-adds per output position, and the positions of one run as the
  // layer's probe gives them (0 without a probe).
  uint32_t legalized_groups = 0;
  uint64_t extra_weight_bytes = 0;
  uint64_t extra_macs_per_position = 0;
  uint64_t output_positions = 0;
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

// A module of the PyTorch model the manifest's "skipped" list names: not in
// the bundle (Bundle.skipped_modules).
struct SkippedModuleReport {
  std::string name;  // "" for the model itself
  std::string type;
  std::string reason;
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
  // The manifest's "skipped" list, in its order, once the manifest parsed.
  std::vector<SkippedModuleReport> skipped;
  bool ok() const { return exit_code == ExitCode::kOk; }
};

// "mpsbc <version>", as recorded in every bundle's producer field.
std::string producer_string();

}  // namespace mpsbc

#endif  // MPSBC_REPORT_H_
