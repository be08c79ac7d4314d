#!/usr/bin/env bash
# Builds mpsb and runs every test. Installs what is missing first.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --test

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_WERROR=ON -DMPSB_BUILD_TESTS=ON \
  -DMPSB_BUILD_APPLE_ADAPTERS_GNUSTEP=ON
cmake --build build -j"$jobs"
ctest --test-dir build --output-on-failure -j"$jobs"

# The same with clang-14 in build-clang: the runtime, C API, tools and their
# tests must build warning-free with clang too (apps build the runtime with
# Apple clang). Without the GNUstep adapter check (Debian's GNUstep is built
# for GCC's Objective-C runtime) and the PyTorch tests (label python: they
# test the exporter and mpsbc's output, which the GCC run already covers).
cmake -S . -B build-clang -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_WERROR=ON -DMPSB_BUILD_TESTS=ON \
  -DMPSB_BUILD_APPLE_ADAPTERS_GNUSTEP=OFF
cmake --build build-clang -j"$jobs"
ctest --test-dir build-clang --output-on-failure -j"$jobs" -LE python

# Hostile input (docs/SECURITY.md): the suite under ASan+UBSan and the
# threaded tests under TSan, then each libFuzzer target for 60 s.
scripts/sanitize.sh
scripts/fuzz.sh 45
