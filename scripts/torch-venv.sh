#!/usr/bin/env bash
# Prints the path of a virtual environment with current PyTorch from PyPI
# (python/requirements-torch.txt), creating it first when missing. It lives
# in $MPSB_CACHE (default $XDG_CACHE_HOME/mpsb, or ~/.cache/mpsb), keyed by the hash of the
# requirements, so later runs install nothing. The first run downloads about
# 3 GB (PyPI's Linux torch is the CUDA build, with its nvidia-* wheels) and
# takes about 6 GB of disk. Used by scripts/test-torch.sh and
# scripts/bench-python.sh.
#   scripts/torch-venv.sh [EXTRA_REQUIREMENTS_FILE]
set -euo pipefail
cd "$(dirname "$0")/.."
python="${MPSB_PYTHON:-python3}"
key=$(cat python/requirements-torch.txt python/requirements-test.txt | sha256sum | cut -c1-12)
venv="${MPSB_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/mpsb}/venv-torch-$key"
if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  echo "torch-venv: creating $venv (torch from PyPI)" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  SECONDS=0
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --progress-bar off -r python/requirements-torch.txt >&2 || {
    rm -rf "$venv"
    exit 1
  }
  echo "torch-venv: installed in ${SECONDS}s, $(du -sh "$venv" | cut -f1)" >&2
fi
if [[ -n "${1:-}" ]]; then
  "$venv/bin/pip" install -q --progress-bar off -r "$1" >&2
fi
echo "$venv"
