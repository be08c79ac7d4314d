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
#include <string>
#include <vector>

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
  bool ok() const { return exit_code == ExitCode::kOk; }
};

// Compiles options.manifest_path into options.output_path.
CompileReport compile(const CompileOptions& options);

// Validates the options, the manifest and every .bin and plans the bundle
// (so file_size is filled), without writing anything. output_path is
// ignored.
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
