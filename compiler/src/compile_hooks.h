// Test hooks into mpsbc::compile that are no part of the public API: they let
// tests change the inputs at the moments an attacker could.

#ifndef MPSBC_COMPILE_HOOKS_H_
#define MPSBC_COMPILE_HOOKS_H_

#include <functional>

#include "fault_injection.h"
#include "mpsbc/compile.h"
#include "mpsbc/report.h"

namespace mpsbc {

struct CompileHooks {
  // fault_injection.h.
  Mutation mutation = Mutation::kNone;
  // After every input was validated and the temporary output exists, before
  // the first .bin is read for the bundle.
  std::function<void()> before_stream;
};

// compile(options), calling `hooks` on the way.
CompileReport compile_with_hooks(const CompileOptions& options, const CompileHooks& hooks);

}  // namespace mpsbc

#endif  // MPSBC_COMPILE_HOOKS_H_
