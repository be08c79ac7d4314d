#!/usr/bin/env bash
# Rebuilds mpsbc and mpsb-dump and rewrites the golden files in this folder
# from their output on the example model. Review `git diff tests/golden` after.
#
#   tests/golden/regenerate.sh [BUILD_DIR]     (default: build)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
build=${1:-$src/build}
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$src" -B "$build"
fi
cmake --build "$build" --target mpsbc mpsb-dump -j "${JOBS:-2}"
exec "$here/golden.sh" --mpsbc "$build/bin/mpsbc" --dump "$build/bin/mpsb-dump" --write
