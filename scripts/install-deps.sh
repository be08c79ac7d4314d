#!/usr/bin/env bash
# Installs the Debian bookworm packages mpsb builds and tests with, only when
# some are missing. Run as root (or with sudo available).
#   scripts/install-deps.sh            build dependencies
#   scripts/install-deps.sh --test     plus what the test suite needs
set -euo pipefail

packages=(cmake g++ make pkg-config libflatbuffers-dev flatbuffers-compiler nlohmann-json3-dev
          libcli11-dev libxxhash-dev libfmt-dev libfp16-dev)
if [[ "${1:-}" == "--test" ]]; then
  packages+=(libgtest-dev libgmock-dev libbenchmark-dev python3-torch python3-torchvision
             python3-numpy python3-venv python3-dev clang-14 libclang-rt-14-dev gobjc++ libgnustep-base-dev time
             # The arm64 cross build run under qemu, and clang with libc++ (Apple's
             # standard library); both build GoogleTest from /usr/src/googletest.
             googletest g++-aarch64-linux-gnu qemu-user libc++-14-dev libc++abi-14-dev
             # scripts/check-docs.sh: the docs quote jq and xxd output.
             jq xxd)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "installing: ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then sudo=(sudo); fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
