// Fuzzes mpsb-dump's library entry on arbitrary bundles: the summary (text
// and --json), --verify, --stats and --explain (text and --json), --diff of
// the bundle against itself, --layer for the layers it names (text and
// --json) and --extract of each tensor to the output stream (the inverse layout
// transforms). The bytes are served through an in-memory file, since
// mpsb::dump::run opens a path like the executable does.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "dump.h"
#include "fuzz_util.h"
#include "mpsb/bundle.h"

namespace {

using mpsb::dump::Mode;
using mpsb::dump::Options;

// Layers and tensors asked for per input: enough to reach every layer kind
// without letting one input with thousands of layers time out.
constexpr size_t kMaxLayers = 8;

void run(const Options& o, int* last) {
  std::ostringstream out, err;
  const int rc = mpsb::dump::run(o, out, err);
  if (rc != mpsb::dump::kExitOk && rc != mpsb::dump::kExitFailure) {
    std::fprintf(stderr, "unexpected exit code %d\n", rc);
    std::abort();
  }
  if (rc == mpsb::dump::kExitFailure && err.str().empty()) {
    std::fprintf(stderr, "failure without a message\n");
    std::abort();
  }
  *last = rc;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static mpsb::fuzz::MemFile file;
  file.set(data, size);
  Options o;
  o.bundle_path = file.path();
  int rc = 0;
  o.mode = Mode::kSummary;
  run(o, &rc);
  const bool opened = rc == mpsb::dump::kExitOk;
  o.json = true;
  run(o, &rc);
  o.mode = Mode::kVerify;
  run(o, &rc);
  if (!opened) return 0;
  for (Mode mode : {Mode::kStats, Mode::kExplain}) {
    o.mode = mode;
    o.json = false;
    run(o, &rc);
    o.json = true;
    run(o, &rc);
  }
  // A bundle against itself: identical, exit 0.
  o.mode = Mode::kDiff;
  o.other_path = o.bundle_path;
  o.json = false;
  run(o, &rc);
  if (rc != mpsb::dump::kExitOk) std::abort();

  // The names to ask for, from the runtime's own view of the same bytes.
  auto b = mpsb::Bundle::from_memory(data, size);
  if (!b.ok()) std::abort();  // dump opened it, so must the runtime
  std::vector<std::string> tensors;
  for (size_t i = 0; i < b->layer_count() && i < kMaxLayers; ++i) {
    const mpsb::Layer l = b->layer(i);
    o.mode = Mode::kLayer;
    o.layer = std::string(l.name());
    o.json = false;
    run(o, &rc);
    o.json = true;
    run(o, &rc);
    for (size_t j = 0; j < l.tensor_count(); ++j) {
      tensors.push_back(o.layer + "." + std::string(mpsb::to_string(l.tensor(j).role())));
    }
  }
  o.mode = Mode::kLayer;
  o.layer = "no such layer";
  run(o, &rc);
  o.mode = Mode::kExtract;
  o.output = "-";
  o.json = false;
  for (const auto& t : tensors) {
    o.tensor = t;
    run(o, &rc);
  }
  return 0;
}
