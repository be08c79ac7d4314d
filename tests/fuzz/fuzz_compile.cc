// Fuzzes the compiler end to end, in process: each input is a folder
// (fuzz_files.h) with manifest.json, its .bin tensors and probes, and an
// options byte choosing the precision (bits 0-1: float32, float16,
// uint8-linear, uint8-lut), --fold-batchnorm (bit 2), --allow-non-finite
// (bit 3), --allow-overflow (bit 4) and --strict (bit 5). mpsbc::check_manifest
// validates it, then mpsbc::compile writes it with --check, which runs every
// probed layer on the CPU reference. A failure must come with an error and
// leave nothing at the output; a bundle written must open and verify, and is
// walked like fuzz_bundle_open's inputs (every byte every source promises).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_files.h"
#include "fuzz_walk.h"
#include "mpsbc/compile.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using mpsb::fuzz::FuzzFile;
using mpsb::fuzz::require;

bool has_error(const mpsbc::CompileReport& r) {
  for (const auto& d : r.diagnostics) {
    if (d.severity == mpsbc::Diagnostic::Severity::kError && !d.message.empty()) return true;
  }
  return false;
}

std::vector<uint8_t> read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  require(static_cast<bool>(in), "the compiled bundle is readable");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  // Every file (manifest, .bin, probes) by plain byte mutation.
  return mpsb::fuzz::mutate_folder(data, size, max_size, seed, LLVMFuzzerMutate,
                                   [](FuzzFile&, unsigned) { return false; });
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mpsb::fuzz::ScratchFolder folder;
  const std::vector<FuzzFile> files = mpsb::fuzz::parse_files(data, size);
  folder.replace(files);
  const uint8_t bits = mpsb::fuzz::options_byte(files);
  mpsbc::CompileOptions o;
  o.manifest_path = folder / "manifest.json";
  o.output_path = folder / "out.mpsb";
  o.segment_alignment = 64;
  o.tensor_alignment = 16;
  o.jobs = 1;
  o.precision = static_cast<mpsbc::Precision>(bits & 3);
  o.fold_batchnorm = bits & 4;
  o.allow_non_finite = bits & 8;
  o.allow_overflow = bits & 16;
  o.strict = bits & 32;

  const mpsbc::CompileReport checked = mpsbc::check_manifest(o);
  require(checked.ok() || has_error(checked), "check_manifest fails with an error");
  require(!mpsbc::report_to_json(checked).empty(), "JSON report");

  o.check = true;
  const mpsbc::CompileReport compiled = mpsbc::compile(o);
  require(!mpsbc::report_to_json(compiled).empty(), "JSON report");
  if (!compiled.ok()) {
    require(has_error(compiled), "compile fails with an error");
    for (const auto& e : std::filesystem::directory_iterator(folder / "")) {
      require(e.path().filename() != "out.mpsb", "a failed compile writes no output");
      require(e.path().filename().string().rfind(".out.mpsb.tmp-", 0) != 0,
              "a failed compile leaves no temporary");
    }
    return 0;
  }
  require(checked.ok(), "what compiles passes check_manifest");
  const std::vector<uint8_t> bundle = read_all(folder / "out.mpsb");
  require(mpsb::Bundle::from_memory(bundle.data(), bundle.size(), {.verify_checksums = true}).ok(),
          "what mpsbc writes opens and verifies");
  mpsb::fuzz::open_and_walk(bundle.data(), bundle.size());
  return 0;
}
