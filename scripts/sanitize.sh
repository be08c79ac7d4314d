#!/usr/bin/env bash
# The test suite under sanitizers:
#   1. build-asan: everything with ASan + UBSan (leak checking on), then the
#      whole ctest suite, the PyTorch tests included (they drive the
#      instrumented mpsbc and mpsb-dump as subprocesses). Left out: the
#      Objective-C adapters (GNUstep's runtime keeps class tables and
#      autorelease pools alive at exit, which LeakSanitizer reports, and gcc's
#      Objective-C front end is not what ships on Apple anyway) and the
#      package.* tests (they build consumer projects against the installed,
#      instrumented static library without the sanitizer runtime).
#   2. build-tsan: ThreadSanitizer on what runs threads: the concurrency test
#      (many threads open and read one bundle) and the compiler's --jobs tests.
#   scripts/sanitize.sh
# Environment: MPSB_JOBS (parallel build and test jobs, default nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${MPSB_JOBS:-$(nproc)}
start=$(date +%s)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_WERROR=ON \
  -DMPSB_BUILD_TESTS=ON -DMPSB_SANITIZE=address,undefined \
  -DMPSB_BUILD_APPLE_ADAPTERS_GNUSTEP=OFF >/dev/null
cmake --build build-asan -j"$jobs"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -E '^package\.'
asan_done=$(date +%s)

unset ASAN_OPTIONS
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_WERROR=ON \
  -DMPSB_BUILD_TESTS=ON -DMPSB_SANITIZE=thread -DMPSB_BUILD_APPLE_ADAPTERS_GNUSTEP=OFF >/dev/null
cmake --build build-tsan -j"$jobs" --target mpsb_concurrency_test mpsb_compiler_tests mpsbc
build-tsan/tests/runtime/mpsb_concurrency_test
build-tsan/tests/compiler/mpsb_compiler_tests --gtest_filter='*Jobs*:*Thread*:*Concurren*'
end=$(date +%s)

echo "== sanitizers passed: ASan+UBSan suite $((asan_done - start))s, TSan $((end - asan_done))s"
echo "== catalogue of bad manifests: $(ctest --test-dir build-asan -N -R 'BadManifests/Catalogue' |
  sed -n 's/^Total Tests: //p') cases"
