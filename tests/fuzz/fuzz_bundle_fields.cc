// Structure-aware fuzzing of the runtime's loader: a libFuzzer custom
// mutator decodes each input as a bundle, changes field values (kinds,
// activations, parameters, shapes, dtypes, layouts, roles, offsets, sizes,
// alignments, quantization) and encodes it again through the generated
// FlatBuffers builder with valid checksums (bundle_fields.h), so that most
// inputs pass the verifier and reach the semantic checks. What opens is
// walked as in fuzz_bundle_open (fuzz_walk.h): every byte every data
// source promises is read, C++ and C API, so ASan reports any over-promise.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "bundle_fields.h"
#include "fuzz_walk.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  auto fields = mpsb::fuzz::decode_bundle(data, size);
  // Not a bundle the verifier accepts, and now and then a bundle anyway:
  // plain byte mutation, as fuzz_bundle_open does.
  if (!fields || seed % 16 == 0) return LLVMFuzzerMutate(data, size, max_size);
  mpsb::fuzz::FieldMutator mutator(seed);
  mutator.mutate(*fields, LLVMFuzzerMutate);
  const std::vector<uint8_t> file = mpsb::fuzz::encode_bundle(*fields);
  if (file.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
  std::memcpy(data, file.data(), file.size());
  return file.size();
}

namespace {

// With MPSB_FUZZ_STATS set, how far the inputs got, printed at exit: the
// share that passes the FlatBuffers Verifier and the share that opens.
struct Depth {
  uint64_t inputs = 0, verified = 0, opened = 0;
  std::map<std::string, uint64_t> refusals;  // by the message up to the first digit
  ~Depth() {
    if (std::getenv("MPSB_FUZZ_STATS") && inputs) {
      for (const auto& [what, n] : refusals) {
        std::fprintf(stderr, "%8llu %s\n", static_cast<unsigned long long>(n), what.c_str());
      }
      std::fprintf(stderr, "fuzz_bundle_fields: %llu inputs, %llu pass the verifier, %llu open\n",
                   static_cast<unsigned long long>(inputs),
                   static_cast<unsigned long long>(verified),
                   static_cast<unsigned long long>(opened));
    }
  }
};
Depth g_depth;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ++g_depth.inputs;
  if (mpsb::fuzz::decode_bundle(data, size)) ++g_depth.verified;
  if (auto r = mpsb::Bundle::from_memory(data, size); r.ok()) {
    ++g_depth.opened;
  } else if (std::getenv("MPSB_FUZZ_STATS")) {
    const std::string& m = r.message();
    // "<memory>: layer 'name' tensor 0: ..." is counted by what follows.
    const size_t from = m.rfind(": ") == std::string::npos ? 10 : m.rfind(": ") + 2;
    size_t cut = m.find_first_of("0123456789'[", from);
    ++g_depth.refusals[m.substr(from, std::min<size_t>(cut, from + 50) - from)];
  }
  mpsb::fuzz::open_and_walk(data, size);
  return 0;
}
