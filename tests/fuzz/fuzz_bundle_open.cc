// Fuzzes the runtime's loader on arbitrary bytes: Bundle::from_memory, then
// every accessor a consumer would call on what it accepted — layers, tensors,
// the MPS data sources (each pointer read over the full extent MPS would
// read), find() by every name, verify() — and the same bytes through the C
// API via an in-memory file, whose answer must agree with from_memory
// (fuzz_walk.h). fuzz_bundle_fields runs the same walk on inputs built
// field by field.
#include <cstddef>
#include <cstdint>

#include "fuzz_walk.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mpsb::fuzz::open_and_walk(data, size);
  return 0;
}
