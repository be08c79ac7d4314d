#!/usr/bin/env bash
# Golden tests of the human output of mpsbc and mpsb-dump on the example
# model (examples/tiny_cnn). Each tests/golden/*.txt holds one command line
# ("$ ..." on its first line) and what it printed, stdout then stderr.
#
#   golden.sh --mpsbc PATH --dump PATH --check   run the tools, diff against the files
#   golden.sh --mpsbc PATH --dump PATH --write   rewrite the files (see regenerate.sh)
#
# The tools run in a scratch folder that links examples/ in, so every path
# they print is relative and the same on every machine. The compiler is
# deterministic, so the bundle (and every offset and checksum shown) is too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=$(cd "$here/../.." && pwd)
mpsbc="" dump="" mode=""
while [ $# -gt 0 ]; do
  case "$1" in
    --mpsbc) mpsbc=$2; shift 2 ;;
    --dump) dump=$2; shift 2 ;;
    --check|--write) mode=$1; shift ;;
    *) echo "golden.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
if [ -z "$mpsbc" ] || [ -z "$dump" ] || [ -z "$mode" ]; then
  echo "usage: golden.sh --mpsbc PATH --dump PATH --check|--write" >&2
  exit 2
fi
mpsbc=$(cd "$(dirname "$mpsbc")" && pwd)/$(basename "$mpsbc")
dump=$(cd "$(dirname "$dump")" && pwd)/$(basename "$dump")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
ln -s "$src/examples" "$work/examples"
cd "$work"
# Colour only ever goes to a terminal, but be explicit about the locale and
# the environment the output must not depend on.
export LC_ALL=C.UTF-8 NO_COLOR=1

# golden NAME TOOL ARGS...: runs the tool, writes out/NAME.txt.
golden() {
  local name=$1 tool=$2 shown=$2
  shift 2
  local path
  case "$tool" in
    mpsbc) path=$mpsbc ;;
    mpsb-dump) path=$dump ;;
  esac
  {
    echo "\$ $shown $*"
    set +e
    "$path" "$@" >"$work/stdout" 2>"$work/stderr"
    local rc=$?
    set -e
    cat "$work/stdout" "$work/stderr"
    [ "$rc" -eq 0 ] || echo "(exit $rc)"
  } >"$work/out/$name.txt"
}

golden mpsbc_compile mpsbc compile examples/tiny_cnn/manifest.json -o tiny_cnn.mpsb
golden mpsbc_check mpsbc check examples/tiny_cnn/manifest.json
golden dump_summary mpsb-dump tiny_cnn.mpsb
golden dump_layer_stem mpsb-dump tiny_cnn.mpsb --layer stem
golden dump_stats mpsb-dump tiny_cnn.mpsb --stats
golden dump_explain mpsb-dump tiny_cnn.mpsb --explain
golden dump_verify mpsb-dump tiny_cnn.mpsb --verify
golden dump_diff_same mpsb-dump --diff tiny_cnn.mpsb tiny_cnn.mpsb
golden dump_buffers mpsb-dump tiny_cnn.mpsb --buffers 64K

if [ "$mode" = --write ]; then
  rm -f "$here"/*.txt
  cp "$work"/out/*.txt "$here/"
  echo "golden.sh: wrote $(ls "$work"/out | wc -l) files to $here"
  exit 0
fi

status=0
for f in "$work"/out/*.txt; do
  name=$(basename "$f")
  if [ ! -f "$here/$name" ]; then
    echo "golden.sh: tests/golden/$name is missing" >&2
    status=1
  elif ! diff -u "$here/$name" "$f"; then
    status=1
  fi
done
for f in "$here"/*.txt; do
  [ -f "$work/out/$(basename "$f")" ] || { echo "golden.sh: stale tests/golden/$(basename "$f")" >&2; status=1; }
done
if [ "$status" -ne 0 ]; then
  echo "golden.sh: the human output changed; if that is intended, run tests/golden/regenerate.sh" \
       "and review the diff" >&2
fi
exit "$status"
