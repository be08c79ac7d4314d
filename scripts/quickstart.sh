#!/usr/bin/env bash
# Quick start: installs what is missing (Debian bookworm, as root or with
# sudo), builds the two tools, compiles the embedded example and dumps it.
#   ./scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

# The same build folder as scripts/test.sh (which turns the tests on).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_BUILD_TESTS=OFF
cmake --build build -j"$(nproc)" --target mpsbc mpsb-dump

set -x
build/bin/mpsbc compile examples/tiny_cnn/manifest.json -o build/tiny_cnn.mpsb
build/bin/mpsb-dump build/tiny_cnn.mpsb
# Every layer against PyTorch's probes, kept in a probe file beside the bundle.
build/bin/mpsbc compile examples/tiny_cnn/manifest.json -o build/tiny_cnn.mpsb -q \
  --check --probes-out build/tiny_cnn.probes.mpsb
build/bin/mpsb-dump build/tiny_cnn.mpsb --check build/tiny_cnn.probes.mpsb
