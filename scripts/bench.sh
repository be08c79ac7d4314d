#!/usr/bin/env bash
# Builds the benchmarks (Release, in build-bench/) and prints the table that
# BENCHMARKS.md records: layout transforms against memcpy and the hand-written
# reorder, end-to-end compile against cp + sync, open at app launch, first
# touch. Every ratio compares numbers measured in this run.
#   scripts/bench.sh            (~3 minutes; on x86-64 also the transposed-conv
#                               probe, bench/convt_probe.cc)
#   scripts/bench.sh --large    plus compiling a 5 GiB model (several minutes,
#                               ~11 GB of free disk in $TMPDIR; deleted after)
# The Python readers (mpsb.open against safetensors, gguf and torch.load on
# the same ResNet-50 weights) are scripts/bench-python.sh, which needs
# current torch from PyPI in a venv (scripts/torch-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
large=0
[[ "${1:-}" == "--large" ]] && large=1
py=/usr/bin/python3  # Debian's, which has numpy (scripts/install-deps.sh --test)

build=build-bench
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DMPSB_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j"$(nproc)" --target mpsbc mpsb_layout_bench mpsb_open_bench >/dev/null
probe=0  # the transposed-conv probe: AVX-512 code, x86-64 only
if [[ $(uname -m) == x86_64 ]]; then
  cmake --build "$build" -j"$(nproc)" --target mpsb_convt_probe >/dev/null
  probe=1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/mpsb-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "layout transforms..." >&2
# Repetitions of all benchmarks interleaved in random order, so that a slow
# spell of this shared machine does not land on one method only.
"$build/bench/mpsb_layout_bench" --benchmark_repetitions=7 --benchmark_report_aggregates_only=true \
  --benchmark_enable_random_interleaving=true --benchmark_format=json >"$work/layout.json"

echo "end-to-end compile (ResNet-50-sized)..." >&2
$py bench/gen_model.py resnet50 "$work/resnet50"
$py bench/compile_bench.py "$build/bin/mpsbc" "$work/resnet50" resnet50 7 --keep >"$work/compile.txt"

echo "open and first touch..." >&2
"$build/bench/mpsb_open_bench" "$work/open" "$work/resnet50/manifest.json" \
  "$work/resnet50.mpsb" >"$work/open.txt"
rm -rf "$work/open"

if ((large)); then
  echo "end-to-end compile (5 GiB)..." >&2
  $py bench/gen_model.py large "$work/large"
  $py bench/compile_bench.py "$build/bin/mpsbc" "$work/large" large 3 >>"$work/compile.txt"
  rm -rf "$work/large"
fi

echo "host: $(nproc) CPUs, $(uptime | sed 's/.*load average/load average/')"
echo
$py bench/report.py "$work/layout.json" "$work/compile.txt" "$work/open.txt"

if ((probe)); then
  echo
  echo "## Transposed conv: where the time goes (bench/convt_probe.cc)"
  echo
  echo '```'
  "$build/bench/mpsb_convt_probe" || true  # says why when the CPU lacks AVX-512
  echo '```'
fi
