// Test-only fault injection, to prove that --check tells a right layout from
// a wrong one: the writer stores transposed-conv kernels unrotated, or
// Linear-after-flatten weights unpermuted, or the diagonal blocks of a
// legalized conv or transposed conv in the next group's input channels
// (wrong-block), while recording the correct transform. Internal: reached
// by mpsbc's hidden --debug-mutate flag and by tests, never by the public
// API (mpsbc/compile.h).

#ifndef MPSBC_FAULT_INJECTION_H_
#define MPSBC_FAULT_INJECTION_H_

#include <cstdint>

namespace mpsbc {

enum class Mutation : uint8_t { kNone, kNoRotation, kNoFlattenPermute, kWrongBlock };

struct CompileOptions;  // mpsbc/compile.h
struct CompileReport;   // mpsbc/report.h

// compile(), with `mutation` applied by the writer.
CompileReport compile_with_fault(const CompileOptions& options, Mutation mutation);

}  // namespace mpsbc

#endif  // MPSBC_FAULT_INJECTION_H_
