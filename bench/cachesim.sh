#!/usr/bin/env bash
# Instructions and L1 misses per tensor byte of the layout transforms below
# AVX-512, counted by callgrind's cache simulation (noise-free, unlike the
# timings of this shared machine; valgrind hides AVX-512, so only the
# scalar, sse2 and avx2 levels can be counted).
#   bench/cachesim.sh BUILD_DIR [L1_BYTES L1_WAYS LAST_LEVEL_BYTES [L2_BYTES L2_WAYS]]
# Defaults: a 32 KiB 8-way L1 and 512 KiB 8-way L2 with a 16 MiB L3, the
# AVX2-only AMD EPYC (Zen 2) class. The transforms are told the same
# geometry (bench/layout_once.cc), so they plan for the simulated caches.
# Columns: instructions per byte; L1 write misses per destination line (1.00
# = every line fetched once; a store miss is a read-for-ownership); L1 read
# misses per source line; L2 (callgrind's last level) misses per line moved.
set -euo pipefail
build=$1
l1=${2:-32768} ways=${3:-8} last=${4:-16777216} l2=${5:-524288} l2ways=${6:-8}
once=$build/bench/mpsb_layout_once
cases=(conv3x3_c512 conv3x3_c1024 convT4x4_512to256 conv4x4_512to256 linear_flatten_4096x9216)
echo "| tensor | level | insns/byte | L1 write misses/line | L1 read misses/line | L2 misses/line |"
echo "|---|---|---:|---:|---:|---:|"
for c in "${cases[@]}"; do
  for run in "avx2 fast" "sse2 fast" "scalar fast" "avx2 naive" "avx2 memcpy"; do
    # shellcheck disable=SC2086  # two words: level and method
    out=$(valgrind --tool=callgrind --cache-sim=yes --D1="$l1,$ways,64" --LL="$l2,$l2ways,64" \
      --toggle-collect='*layout_once_work*' --callgrind-out-file=/dev/null \
      "$once" "$c" $run "$l1" "$ways" "$last" "$l2" 2>&1)
    bytes=$(sed -n 's/.*: \([0-9]*\) bytes.*/\1/p' <<<"$out")
    # "Collected : Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw"
    read -r ir d1mr d1mw dlmr dlmw < <(sed -n 's/.*Collected : //p' <<<"$out" |
      awk '{print $1, $5, $6, $8, $9}')
    label=${run/ fast/}
    [[ $run == *naive* ]] && label=naive
    [[ $run == *memcpy* ]] && label=memcpy
    awk -v c="$c" -v l="$label" -v b="$bytes" -v ir="$ir" -v r="$d1mr" -v w="$d1mw" \
      -v lr="$dlmr" -v lw="$dlmw" 'BEGIN{lines=b/64;
        printf "| %s | %s | %.3f | %.2f | %.2f | %.2f |\n", c, l, ir/b, w/lines, r/lines,
        (lr+lw)/(2*lines)}'
  done
done
