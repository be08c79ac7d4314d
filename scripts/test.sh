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
