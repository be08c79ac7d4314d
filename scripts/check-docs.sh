#!/usr/bin/env bash
# Regenerates every tool output quoted in the docs and fails on any difference.
#
#   scripts/check-docs.sh [--bin DIR] [FILE...]            check, print a diff per stale block
#   scripts/check-docs.sh [--bin DIR] --update [FILE...]   rewrite the stale blocks in place
#
# DIR holds mpsbc and mpsb-dump (default: build/bin). FILE defaults to
# README.md, docs/*.md and tests/golden/*.md. Exit 0 when every block is
# current (or was rewritten), 1 when one differs or is malformed, 2 on a bad
# command line or missing tools.
#
# How a quoted output is marked. An HTML comment naming the commands comes
# right before the fenced block, and an end marker right after it:
#
#   <!-- check-docs: show mpsb-dump tiny_cnn.mpsb --verify -->
#   ```
#   $ mpsb-dump tiny_cnn.mpsb --verify
#   OK: tiny_cnn.mpsb (6 layers, 11 tensors, every checksum matches)
#   ```
#   <!-- end check-docs -->
#
# The comment's text after "check-docs:" (or on the lines after a bare
# "<!-- check-docs", up to "-->") is a bash script; what it prints, stdout
# and stderr, is the block's content. The
# opening fence line (with its language) is kept. `show COMMAND...` prints
# "$ COMMAND", runs it, prints its stdout, then its stderr, then
# "(exit N)" when it exits N != 0; quote a COMMAND that has a pipe or &&:
# show 'cmp a b && echo identical'. Anything else (| head -n 20, echo ...,
# jq) is plain shell, visible in the comment.
#
# A fenced block without a language (```) is taken to be output: it must
# carry such a comment, or `<!-- check-docs skip: REASON -->` on the line
# before it (a diagram, a synopsis, output this script cannot make in
# seconds, e.g. what needs PyTorch). Blocks with a language (sh, json,
# python, ...) are inputs unless marked.
#
# Where the commands run. Every block runs in one scratch folder, in
# document order, with mpsbc and mpsb-dump from DIR first on PATH,
# LC_ALL=C.UTF-8 and NO_COLOR=1. The folder holds a link `examples` to the
# repository's examples/ and these, made once before the first block (see
# make_fixtures below; the compiler is deterministic, so every offset and
# checksum shown is the same on every machine):
#   tiny_cnn.mpsb, build/tiny_cnn.mpsb   examples/tiny_cnn compiled
#   tiny_cnn_v2.mpsb                      an edited copy of it (README, --diff)
#   k.mpsb                                the kinds model (docs/DUMP_JSON.md)
#   bad/manifest.json                     a broken copy (README, error example)
#
# Normalisation, applied to every block's output, so nothing is edited by
# hand: the scratch folder's absolute path is removed (paths read relative to
# it; TMPDIR is a folder inside it, so temporary paths read "tmp/...") and the
# repository's absolute path becomes "<repo>"; the compiler's temporary file
# names ".NAME.tmp-PID-XXXXXX" keep the literal PID-XXXXXX; a duration, a
# decimal number followed by "s" or "ms" ("0.42 s", "12.5ms"), becomes "#.#"
# with its unit. Nothing else is rewritten: an output that varies from run to
# run in another way cannot be quoted.
#
# Helpers for the comments, besides show (defined in the prelude below):
# trim_flatc_json FILE cuts flatc's JSON of the example to what
# docs/FORMAT.md §6 shows. A link `schema` to schema/ is there for flatc.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin=$root/build/bin
update=0
files=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) bin=$2; shift 2 ;;
    --update) update=1; shift ;;
    -h|--help) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "check-docs.sh: unknown option '$1'" >&2; exit 2 ;;
    *) files+=("$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"); shift ;;
  esac
done
bin=$(cd "$bin" 2>/dev/null && pwd) || { echo "check-docs.sh: no folder $bin" >&2; exit 2; }
for tool in mpsbc mpsb-dump; do
  if [ ! -x "$bin/$tool" ]; then
    echo "check-docs.sh: $bin/$tool not found; build it (cmake --build build --target mpsbc" \
         "mpsb-dump) or pass --bin DIR" >&2
    exit 2
  fi
done
for tool in python3 jq xxd flatc; do
  command -v "$tool" >/dev/null || { echo "check-docs.sh: $tool is needed" >&2; exit 2; }
done
if [ ${#files[@]} -eq 0 ]; then
  files=("$root/README.md" "$root"/docs/*.md "$root"/tests/golden/*.md)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
export PATH="$bin:$PATH" LC_ALL=C.UTF-8 NO_COLOR=1 TMPDIR="$work/tmp"

# The bundles and manifests the docs quote, built from examples/tiny_cnn.
make_fixtures() {
  ln -s "$root/examples" examples
  ln -s "$root/schema" schema
  mkdir build
  mpsbc compile examples/tiny_cnn/manifest.json -o tiny_cnn.mpsb -q
  cp tiny_cnn.mpsb build/tiny_cnn.mpsb

  # tiny_cnn_v2: another seed, one stem weight moved by 0.5, dw relu6, pw
  # without activation, grouped without bias, dilated stored as float16, head
  # removed, a layer added.
  cp -r examples/tiny_cnn tiny_cnn_v2
  python3 - tiny_cnn_v2 <<'PY'
import json, struct, sys
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
m["metadata"]["torch_seed"] = "1"
layers = {l["name"]: l for l in m["layers"]}
layers["dw"]["activation"] = "relu6"
layers["pw"]["activation"] = "none"
del layers["grouped"]["bias"]
w = open(f"{d}/dilated.weight.bin", "rb").read()
n = len(w) // 4
open(f"{d}/dilated.weight.f16.bin", "wb").write(
    struct.pack(f"<{n}e", *struct.unpack(f"<{n}f", w)))
layers["dilated"]["weight"] = {"path": "dilated.weight.f16.bin", "dtype": "float16"}
layers["dilated"]["precision"] = "float16"
m["layers"] = [l for l in m["layers"] if l["name"] != "head"]
m["layers"].append({"name": "extra", "type": "conv2d", "in_channels": 16, "out_channels": 32,
                    "kernel_size": 1, "weight": "pw.weight.bin"})
json.dump(m, open(f"{d}/manifest.json", "w"), indent=2)
s = bytearray(open(f"{d}/stem.weight.bin", "rb").read())
s[0:4] = struct.pack("<f", struct.unpack("<f", s[0:4])[0] + 0.5)
open(f"{d}/stem.weight.bin", "wb").write(s)
PY
  mpsbc compile tiny_cnn_v2/manifest.json -o tiny_cnn_v2.mpsb -q

  # k: the model of compile_new_kinds in tests/dump/dump_test.cc (a conv with
  # fused elu, a group_norm, prelu with one and with eight slopes, convs with
  # fused prelu and softplus); deterministic values in place of its random ones.
  mkdir kinds
  python3 - kinds <<'PY'
import json, math, struct, sys
d = sys.argv[1]
def bin(name, n, seed):
    vals = [math.sin(seed * 7.0 + i) * 0.5 for i in range(n)]
    open(f"{d}/{name}", "wb").write(struct.pack(f"<{n}f", *vals))
    return name
open(f"{d}/pr.w", "wb").write(struct.pack("<f", 0.25))
conv = {"type": "conv2d", "in_channels": 8, "out_channels": 8, "kernel_size": 1}
m = {"format": "mpsb.manifest/1", "layers": [
    {"name": "c1", "type": "conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3,
     "padding": 1, "weight": bin("c1.w", 216, 1), "activation": "elu", "alpha": 0.5},
    {"name": "gn", "type": "group_norm", "num_groups": 4, "num_channels": 8,
     "weight": bin("gn.w", 8, 2), "bias": bin("gn.b", 8, 3)},
    {"name": "pr", "type": "prelu", "num_channels": 8, "weight": "pr.w"},
    {"name": "pc", "type": "prelu", "num_parameters": 8, "num_channels": 8,
     "weight": bin("pc.w", 8, 4)},
    dict(conv, name="c2", weight=bin("c2.w", 64, 5), activation="prelu", num_parameters=8,
         activation_weight=bin("c2.a", 8, 6)),
    dict(conv, name="c3", weight=bin("c3.w", 64, 7), activation="softplus", beta=2,
         threshold=20)]}
json.dump(m, open(f"{d}/manifest.json", "w"), indent=2)
PY
  mpsbc compile kinds/manifest.json -o k.mpsb -q

  # bad: a misspelt field, groups that do not divide the channels, a .bin of
  # the wrong size.
  cp -r examples/tiny_cnn bad
  python3 - bad <<'PY'
import json, sys
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
m["layers"][0]["padidng"] = m["layers"][0].pop("padding")
m["layers"][3]["groups"] = 3
json.dump(m, open(f"{d}/manifest.json", "w"), indent=2)
open(f"{d}/stem.bias.bin", "wb").write(bytes(100))
PY
}

cat >"$work/.prelude.sh" <<'SH'
# show COMMAND...: "$ COMMAND", its stdout, its stderr, "(exit N)" if N != 0.
show() {
  printf '$ %s\n' "$*"
  local rc=0
  bash -c "$*" >.show.out 2>.show.err || rc=$?
  cat .show.out .show.err
  rm -f .show.out .show.err
  if [ "$rc" -ne 0 ]; then echo "(exit $rc)"; fi
}

# trim_flatc_json FILE: flatc's JSON of the example as docs/FORMAT.md §6
# quotes it: the first layer in full, the others named on one line, number
# arrays on one line. Text edits only: every number stays as flatc printed it.
trim_flatc_json() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"\[\n\s*([-0-9.e,\s]*?)\s*\]",
              lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)
lines = text.rstrip("\n").split("\n")
start = lines.index('  "layers": [')
end = lines.index("  ],", start)
layers, names, cur = [], [], []
for line in lines[start + 1:end]:
    cur.append(line)
    if line.startswith('      "name": '):
        names.append(line.split('"')[3])
    if line in ("    }", "    },"):
        layers.append(cur)
        cur = []
out = lines[:start + 1] + layers[0]
if len(names) > 1:
    out.append("    ... %d more layers (%s) ..." % (len(names) - 1, ", ".join(names[1:])))
print("\n".join(out + lines[end:]))
PY
}
SH

start=$(date +%s.%N)
(cd "$work" && make_fixtures) || { echo "check-docs.sh: making the fixtures failed" >&2; exit 1; }

status=0
python3 - "$work" "$root" "$update" "${files[@]}" <<'PY' || status=$?
import difflib, re, subprocess, sys

work, root, update, files = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4:]
FENCE = re.compile(r"^(`{3,})(.*)$")
END = "<!-- end check-docs -->"


def run(script):
    try:
        r = subprocess.run(["bash", "-c", "source .prelude.sh\n" + script], cwd=work,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    except subprocess.TimeoutExpired:
        raise ValueError("the commands ran for more than 120 s: " + script.split("\n")[0])
    out = r.stdout.decode("utf-8", "replace")
    out = out.replace(work + "/", "").replace(work, ".").replace(root, "<repo>")
    # The compiler's temporary files, ".NAME.tmp-PID-XXXXXX".
    out = re.sub(r"\.tmp-\d+-[A-Za-z0-9]{6}", ".tmp-PID-XXXXXX", out)
    # Durations: "0.42 s", "12.5ms".
    out = re.sub(r"(?<![\w.])\d+\.\d+( ?)(ms|s)\b", r"#.#\1\2", out)
    return out


def marker(lines, i):
    """The marker starting at line i: (kind, script, index after it) or None."""
    if not lines[i].startswith("<!-- check-docs"):
        return None
    text, j = lines[i], i
    while "-->" not in text:
        j += 1
        if j == len(lines):
            raise ValueError(f"line {i + 1}: comment never closed with -->")
        text += "\n" + lines[j]
    body = text[len("<!-- check-docs"):text.index("-->")]
    if body.startswith(" skip:"):
        return "skip", body, j + 1
    if body.startswith(":"):
        body = body[1:]
    elif not body.startswith("\n"):
        raise ValueError(f"line {i + 1}: expected '<!-- check-docs: COMMANDS -->', "
                         "'<!-- check-docs' and COMMANDS on the lines below, "
                         "or '<!-- check-docs skip: REASON -->'")
    return "run", body.strip(), j + 1


failed = total = 0
for path in files:
    rel = path[len(root) + 1:] if path.startswith(root + "/") else path
    lines = open(path, encoding="utf-8").read().split("\n")
    out_lines, i, changed, blocks = [], 0, False, 0
    pending = None  # the marker seen before the next fence
    try:
        while i < len(lines):
            m = marker(lines, i)
            if m:
                if pending:
                    raise ValueError(f"line {i + 1}: a second marker before a fenced block")
                out_lines.extend(lines[i:m[2]])
                pending, i = (m[0], m[1], i + 1), m[2]
                continue
            f = FENCE.match(lines[i])
            if not f:
                if pending and lines[i].strip():
                    raise ValueError(f"line {pending[2]}: the marker is not followed by a fenced block")
                out_lines.append(lines[i])
                i += 1
                continue
            ticks, lang = f.group(1), f.group(2).strip()
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != ticks:
                j += 1
            if j == len(lines):
                raise ValueError(f"line {i + 1}: fenced block never closed")
            if pending is None:
                if lang == "":
                    # Reported, and the file's other blocks still checked or updated.
                    print(f"check-docs.sh: {rel}:{i + 1}: a fenced block without a language and "
                          "without a check-docs marker; mark it (see scripts/check-docs.sh)",
                          file=sys.stderr)
                    failed += 1
                out_lines.extend(lines[i:j + 1])
                i = j + 1
                continue
            kind, script, at = pending
            pending = None
            if kind == "skip":
                out_lines.extend(lines[i:j + 1])
                i = j + 1
                continue
            k = j + 1
            while k < len(lines) and not lines[k].strip():
                k += 1
            if k == len(lines) or lines[k].strip() != END:
                raise ValueError(f"line {j + 1}: the block marked at line {at} must be followed "
                                 f"by {END}")
            blocks += 1
            output = run(script)
            new = output[:-1].split("\n") if output.endswith("\n") else output.split("\n")
            if output == "":
                new = []
            if any(l.startswith("```") for l in new):
                raise ValueError(f"line {at}: the output contains a fence")
            old = lines[i + 1:j]
            if old != new:
                first = script.split("\n")[0]
                if update:
                    changed = True
                    print(f"check-docs.sh: updated {rel}:{i + 1} ({first})")
                else:
                    failed += 1
                    sys.stdout.writelines(difflib.unified_diff(
                        [l + "\n" for l in old], [l + "\n" for l in new],
                        f"{rel}:{i + 2} (as written)", f"{rel}:{i + 2} ({first})"))
            out_lines.append(lines[i])
            out_lines.extend(new)
            out_lines.append(lines[j])
            out_lines.extend(lines[j + 1:k + 1])
            i = k + 1
        if pending:
            raise ValueError(f"line {pending[2]}: the marker is not followed by a fenced block")
    except ValueError as e:
        print(f"check-docs.sh: {rel}: {e}", file=sys.stderr)
        failed += 1
        continue
    total += blocks
    if changed:
        open(path, "w", encoding="utf-8").write("\n".join(out_lines))
open(f"{work}/.blocks", "w").write(str(total))
sys.exit(1 if failed else 0)
PY
elapsed=$(python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" \
  "$start" "$(date +%s.%N)")
if [ "$status" -ne 0 ] && [ "$update" -eq 1 ]; then
  echo "check-docs.sh: a block is unmarked or a marker malformed (above); the other blocks" \
       "were updated (${elapsed}s)" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  echo "check-docs.sh: quoted output is stale or a marker is malformed (${elapsed}s); if the new" \
       "output is right, run scripts/check-docs.sh --update and review the diff" >&2
  exit 1
fi
echo "check-docs.sh: $(cat "$work/.blocks") blocks in ${#files[@]} files checked in ${elapsed}s"
