#!/usr/bin/env bash
# The Python package: builds the wheel from the repository (pyproject.toml,
# scikit-build-core over the CMake build), installs it into a fresh
# build/venv and runs tests/python with pytest there.
#   scripts/test-python.sh        leaves the wheel in build/wheel/
set -euo pipefail
cd "$(dirname "$0")/.."
python="${MPSB_PYTHON:-python3}"

rm -rf build/venv build/wheel
"$python" -m venv build/venv
build/venv/bin/pip install -q --progress-bar off -r python/requirements-test.txt
SECONDS=0
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-C cmake.define.CMAKE_CXX_COMPILER_LAUNCHER=ccache
            -C cmake.define.CMAKE_C_COMPILER_LAUNCHER=ccache)
fi
build/venv/bin/pip wheel -q --no-deps -w build/wheel . -C cmake.define.MPSB_WERROR=ON "${launcher[@]}"
wheel=$(ls build/wheel/mpsb-*.whl)
build/venv/bin/pip install -q "$wheel"
echo "test-python: wheel built and installed in ${SECONDS}s: $wheel" >&2

# Run from outside the source tree so `import mpsb` is the installed package.
cd tests/python
status=0
../../build/venv/bin/python -m pytest -q -p no:cacheprovider . || status=$?
if ((status == 5)); then
  echo "test-python: pytest collected no test" >&2
fi
exit "$status"
