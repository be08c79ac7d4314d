#!/usr/bin/env bash
# mpsb.open against safetensors, gguf and torch.load on ResNet-50's weights
# (bench/python_readers.py), in scripts/torch-venv.sh's venv with the readers
# of python/requirements-bench.txt and this repository's mpsb installed.
#   scripts/bench-python.sh [--reps N]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/torch-venv.sh python/requirements-bench.txt)
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache
            -C cmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache)
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps . "${launcher[@]}"
exec "$venv/bin/python" bench/python_readers.py "$@"
