#!/usr/bin/env bash
# The PyTorch exporter and the Python package on current PyTorch from PyPI
# (python/requirements-torch.txt), in a virtual environment kept between runs.
#   scripts/test-torch.sh [--full] [WHEEL]
# WHEEL: an mpsb wheel to install (scripts/test.sh passes the one it built);
# without it the repository is built with `pip install .`.
# Default: tests/pytorch/export_test.py, fidelity_test.py and
# fallback_test.py (the golden exporter tests), tests/pytorch/property_test.py
# and package_test.py (the commands of the installed wheel). --full adds
# precision_test.py (every model at float16 and uint8).
# The venv is scripts/torch-venv.sh's (cached; the first run downloads ~3 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
full=0
if [[ "${1:-}" == "--full" ]]; then full=1; shift; fi
wheel="${1:-}"

venv=$(scripts/torch-venv.sh)
if [[ -n "$wheel" ]]; then
  "$venv/bin/pip" install -q --force-reinstall --no-deps "$wheel"
else
  "$venv/bin/pip" install -q --force-reinstall --no-deps .
fi
"$venv/bin/python" -c "import torch; print('test-torch: torch', torch.__version__)"

tools=$("$venv/bin/python" -c "import mpsb._tools as t; print(t.BIN)")
work=build/torch-tests
rm -rf "$work" && mkdir -p "$work"
SECONDS=0
"$venv/bin/python" tests/pytorch/export_test.py
echo "test-torch: export_test ${SECONDS}s" >&2
SECONDS=0
"$venv/bin/python" tests/pytorch/fidelity_test.py --mpsbc "$tools/mpsbc" --dump "$tools/mpsb-dump" \
  --work "$work/fidelity"
echo "test-torch: fidelity_test ${SECONDS}s" >&2
SECONDS=0
"$venv/bin/python" tests/pytorch/fallback_test.py --mpsbc "$tools/mpsbc" --dump "$tools/mpsb-dump"
echo "test-torch: fallback_test ${SECONDS}s" >&2
SECONDS=0
# pytest exits 5 when it collected no test: a failure here too.
"$venv/bin/python" -m pytest -q -p no:cacheprovider tests/pytorch/property_test.py tests/pytorch/package_test.py
echo "test-torch: property_test + package_test ${SECONDS}s" >&2
if ((full)); then
  SECONDS=0
  "$venv/bin/python" tests/pytorch/precision_test.py --mpsbc "$tools/mpsbc" \
    --dump "$tools/mpsb-dump" --work "$work/precision"
  echo "test-torch: precision_test ${SECONDS}s" >&2
fi
