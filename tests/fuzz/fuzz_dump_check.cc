// Fuzzes `mpsb-dump BUNDLE --check MANIFEST` in process (mpsb::dump::run):
// each input is a folder (fuzz_files.h) with model.mpsb, manifest.json, the
// .bin files and probes it names, and an options byte (bit 0:
// --fold-batchnorm, bit 1: --json). The bundle is mutated field by field
// like fuzz_bundle_fields' inputs (bundle_fields.h), so it passes open and
// verify and its layers' parameters reach the CPU reference; the other
// files get byte mutations. Whatever opens is walked as in fuzz_bundle_open.
// A manifest that lost every probe is "nothing to check" (exit 2).
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "bundle_fields.h"
#include "dump.h"
#include "fuzz_files.h"
#include "fuzz_walk.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {

using mpsb::fuzz::FuzzFile;
using mpsb::fuzz::require;

// The bundle by its fields (mostly), so that it passes the verifier and
// --check reaches the layers; everything else by plain byte mutation.
bool mutate_file(FuzzFile& f, unsigned seed) {
  if (f.name == "model.mpsb" && seed % 8 != 0) {
    if (auto fields = mpsb::fuzz::decode_bundle(f.bytes.data(), f.bytes.size())) {
      mpsb::fuzz::FieldMutator(seed).mutate(*fields, LLVMFuzzerMutate);
      f.bytes = mpsb::fuzz::encode_bundle(*fields);
      return true;
    }
  }
  return false;
}

}  // namespace

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return mpsb::fuzz::mutate_folder(data, size, max_size, seed, LLVMFuzzerMutate, mutate_file);
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mpsb::fuzz::ScratchFolder folder;
  const std::vector<FuzzFile> files = mpsb::fuzz::parse_files(data, size);
  folder.replace(files);
  const uint8_t bits = mpsb::fuzz::options_byte(files);
  mpsb::dump::Options o;
  o.bundle_path = folder / "model.mpsb";
  o.manifest = folder / "manifest.json";
  o.mode = mpsb::dump::Mode::kCheck;
  o.fold_batchnorm = bits & 1;
  o.json = bits & 2;
  std::ostringstream out, err;
  const int rc = mpsb::dump::run(o, out, err);
  // Exit 2 only for nothing to check (a manifest without probes) or
  // --fold-batchnorm with a probe file: usage, never a crash or an OK.
  const bool usage = rc == mpsb::dump::kExitUsage &&
                     (err.str().find("nothing to check") != std::string::npos ||
                      err.str().find("--fold-batchnorm goes with a manifest") != std::string::npos);
  require(rc == mpsb::dump::kExitOk || rc == mpsb::dump::kExitFailure || usage,
          "exit 0 or 1, or 2 for nothing to check");
  require(rc == mpsb::dump::kExitOk || !err.str().empty() || !out.str().empty(),
          "a failure says why");
  for (const FuzzFile& f : files) {
    if (f.name == "model.mpsb") mpsb::fuzz::open_and_walk(f.bytes.data(), f.bytes.size());
  }
  return 0;
}
