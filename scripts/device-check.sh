#!/usr/bin/env bash
# The Mac self-test, one command on a Mac with Xcode (docs/APPLE.md,
# "Verifying on your Mac"):
#
#   scripts/device-check.sh [OUTDIR]
#
# 1. builds mpsbc and the runtime (CMake, build-device-check/),
# 2. writes the check models, OUTDIR/<case>.mpsb and <case>.probes.mpsb,
#    with examples/device_check/make_models.py (PyTorch, fixed seed; python
#    from $PYTHON, default python3, needs torch),
# 3. builds tools/device_check/main.mm with the Objective-C adapters
#    (xcrun clang++, ARC, Metal, MetalPerformanceShaders),
# 4. runs it on every model: one row per probed layer, max relative error of
#    both encodes against PyTorch; exits non-zero on any mismatch.
#
# OUTDIR defaults to build-device-check/models. Needs macOS, Xcode's
# command-line tools, the build's dependencies (Homebrew: brew install cmake
# flatbuffers xxhash nlohmann-json cli11) and a Python with torch.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build-device-check
out=${1:-$build/models}
python=${PYTHON:-python3}

if [[ "$(uname -s)" != Darwin ]]; then
  echo "device-check: needs macOS with Xcode (Metal); this is $(uname -s)" >&2
  exit 2
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMPSB_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" --target mpsbc mpsb_runtime -j "$(sysctl -n hw.ncpu)"
mpsbc=$(find "$build" -name mpsbc -type f -perm -u+x | head -n 1)
runtime_lib=$(find "$build/runtime" -name 'libmpsb.a' | head -n 1)

mkdir -p "$out"
# make_models.py finds mpsbc through MPSBC.
MPSBC="$mpsbc" "$python" examples/device_check/make_models.py "$out"

tool=$build/mpsb-device-check
xcrun clang++ -std=c++20 -fobjc-arc -O2 -Wall -Wextra \
  -I runtime/include -I runtime/apple -I tools \
  tools/device_check/main.mm runtime/apple/MPSBBundle.mm runtime/apple/MPSBKernels.mm \
  "$runtime_lib" \
  -framework Foundation -framework Metal -framework MetalPerformanceShaders \
  -o "$tool"

"$tool" "$out"
