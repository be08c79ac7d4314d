#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-14 under ASan and UBSan and runs
# each for a bounded time, starting from seed corpora made now from real
# bundles and manifests. Fails on any crash, leak, UB report or timeout.
#   scripts/fuzz.sh [SECONDS]        seconds per target, default 45
# Environment: MPSB_FUZZ_BUILD (build folder, default build-fuzz),
# MPSB_JOBS (parallel build jobs, default nproc).
# A finding is saved under $MPSB_FUZZ_BUILD/fuzz/artifacts/; reproduce it with
#   $MPSB_FUZZ_BUILD/fuzz/<target> <artifact>
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-45}
build=${MPSB_FUZZ_BUILD:-build-fuzz}
jobs=${MPSB_JOBS:-$(nproc)}
start=$(date +%s)

# The libraries get -fsanitize=fuzzer-no-link (tests/fuzz/CMakeLists.txt) and
# address,undefined (MPSB_SANITIZE); only the fuzz targets link libFuzzer.
cmake -S . -B "$build" -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMPSB_BUILD_TESTS=ON -DMPSB_BUILD_FUZZERS=ON \
  -DMPSB_SANITIZE=address,undefined -DMPSB_BUILD_APPLE_ADAPTERS_GNUSTEP=OFF >/dev/null
targets=(fuzz_bundle_open fuzz_bundle_fields fuzz_dump fuzz_dump_check fuzz_manifest fuzz_compile)
cmake --build "$build" -j"$jobs" --target "${targets[@]}" make_fuzz_seeds mpsbc
built=$(date +%s)

# Seeds: bundles of every layer kind, dtype and quantization built from the
# schema and the hostile bundles of docs/SECURITY.md's findings, the example
# model compiled by mpsbc (page-aligned as shipped, and compact), manifests
# (the example's plus variants over the files that fuzz_manifest provides),
# and folder inputs (tests/fuzz/fuzz_files.h) for fuzz_compile and
# fuzz_dump_check.
fuzz="$build/fuzz"
rm -rf "$fuzz/seeds" "$fuzz/work"
mkdir -p "$fuzz/artifacts"
"$fuzz/make_fuzz_seeds" "$fuzz/seeds/bundle" "$fuzz/seeds/manifest" "$fuzz/seeds/compile" \
  "$fuzz/seeds/dump_check"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
"$build/bin/mpsbc" compile examples/tiny_cnn/manifest.json -q -o "$fuzz/seeds/bundle/tiny_cnn.mpsb"
"$build/bin/mpsbc" compile examples/tiny_cnn/manifest.json -q \
  --segment-alignment 64 --tensor-alignment 16 -o "$fuzz/seeds/bundle/tiny_cnn_compact.mpsb"
cp examples/tiny_cnn/manifest.json "$fuzz/seeds/manifest/tiny_cnn.json"

declare -A seeds=([fuzz_bundle_open]=bundle [fuzz_bundle_fields]=bundle [fuzz_dump]=bundle
                  [fuzz_dump_check]=dump_check [fuzz_manifest]=manifest [fuzz_compile]=compile)
declare -A dicts=([fuzz_manifest]=tests/fuzz/manifest.dict [fuzz_compile]=tests/fuzz/manifest.dict)
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "$fuzz/work/$t"
  log="$fuzz/$t.log"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$fuzz/artifacts/$t-")
  if [[ -n "${dicts[$t]:-}" ]]; then args+=(-dict="${dicts[$t]}"); fi
  echo "== $t: ${seconds}s from $(ls "$fuzz/seeds/${seeds[$t]}" | wc -l) seeds"
  rc=0
  "$fuzz/$t" "${args[@]}" "$fuzz/work/$t" "$fuzz/seeds/${seeds[$t]}" >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //')
  if ((rc != 0)); then
    failed+=("$t")
    echo "FAILED: $t (exit $rc); log follows" >&2
    tail -n 80 "$log" >&2
  fi
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | sed 's/ft: //')
  summary+=("$(printf '%-18s %12s executions %8s edges %8s features  %s' "$t" "${execs:-?}" \
    "${cov:-?}" "${ft:-?}" \
    "$( ((rc == 0)) && echo '0 crashes' || echo 'CRASH')")")
done

echo "== fuzz summary (${seconds}s per target; build $((built - start))s, total $(($(date +%s) - start))s)"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
  echo "fuzzing found problems in: ${failed[*]} (inputs in $fuzz/artifacts/)" >&2
  exit 1
fi
