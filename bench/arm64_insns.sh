#!/usr/bin/env bash
# Instructions per tensor byte of the layout transforms on arm64, counted
# under qemu-aarch64 (timing under an emulator means nothing, and this
# machine has no arm64 CPU). qemu-user has no instruction-count plugin in
# Debian, so every instruction is logged as its own translation block
# (-singlestep -d exec,nochain) and the log lines are counted; the set-up
# alone ("none") is subtracted.
#   bench/arm64_insns.sh BUILD_DIR [CASE...]
# BUILD_DIR: an arm64 cross build (cmake/aarch64-linux-gnu.cmake) with
# -DMPSB_BUILD_BENCH=ON and the mpsb_layout_once target built.
set -euo pipefail
build=$1
shift
cases=("$@")
((${#cases[@]})) || cases=(conv3x3_c256 conv3x3_c512 conv4x4_512to256 convT4x4_512to256)
once=$build/bench/mpsb_layout_once
count() {
  qemu-aarch64 -L /usr/aarch64-linux-gnu -singlestep -d exec,nochain -D /dev/fd/3 "$once" "$@" \
    3>&1 >/dev/null | grep -c '^Trace'
}
echo "| tensor | size | neon insns/byte | scalar insns/byte | naive insns/byte | memcpy insns/byte |"
echo "|---|---:|---:|---:|---:|---:|"
for c in "${cases[@]}"; do
  bytes=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$once" "$c" neon none | sed 's/.*: \([0-9]*\) bytes.*/\1/')
  base=$(count "$c" neon none)
  row="| $c | $(awk -v b="$bytes" 'BEGIN{printf "%.2f MB", b/1e6}') |"
  for run in "neon fast" "scalar fast" "neon naive" "neon memcpy"; do
    # shellcheck disable=SC2086  # two words: level and method
    n=$(count "$c" $run)
    row+=" $(awk -v n="$n" -v z="$base" -v b="$bytes" 'BEGIN{printf "%.3f", (n-z)/b}') |"
  done
  echo "$row"
done
