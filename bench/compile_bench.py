#!/usr/bin/env python3
"""End-to-end compile against the I/O limit, alternating runs in one session.

  compile_bench.py MPSBC MODEL_DIR LABEL REPS [--keep] [--also NAME=MPSBC2 ...]

--keep leaves the last bundle at MODEL_DIR/../LABEL.mpsb. --also interleaves
another mpsbc binary (e.g. one built from an older commit) as method
"compile_NAME", so that a change is measured side by side with its baseline.

Each repetition runs, with the inputs warm in the page cache and all dirty
pages synced beforehand (untimed):
  compile: mpsbc compile MODEL_DIR/manifest.json -o OUT (mpsbc syncs its output)
  cp:      cp -r MODEL_DIR COPY && sync
and records wall time (perf_counter around the process) and peak RSS
(/usr/bin/time). Prints
"<metric> <median> <unit>" lines.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def timed(cmd, tfile):
    # Wall time from the clock around the whole process (GNU time's %e has
    # 10 ms steps, a seventh of a ResNet-50-sized compile on a quiet
    # machine); peak RSS from GNU time.
    start = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-o", tfile, "-f", "%M"] + cmd, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    rss = open(tfile).read().split()[-1]
    return wall, int(rss) * 1024


def main():
    mpsbc, model, label, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    flags = sys.argv[5:]
    binaries = {"compile": mpsbc}
    for i, f in enumerate(flags):
        if f == "--also":
            name, path = flags[i + 1].split("=", 1)
            binaries["compile_" + name] = path
    parent = os.path.dirname(os.path.abspath(model))
    out = os.path.join(parent, label + ".mpsb")
    copy = os.path.join(parent, label + ".copy")
    tfile = tempfile.mktemp()
    input_bytes = sum(os.path.getsize(os.path.join(model, f)) for f in os.listdir(model))
    # Warm the page cache with the inputs, as after an export.
    subprocess.run(["cat"] + [os.path.join(model, f) for f in os.listdir(model)],
                   stdout=subprocess.DEVNULL, check=True)
    res = {m: [] for m in list(binaries) + ["cp"]}
    for _ in range(reps):
        for method in res:
            p = copy if method == "cp" else out
            if os.path.isdir(p):
                shutil.rmtree(p)
            elif os.path.exists(p):
                os.unlink(p)
            subprocess.run(["sync"], check=True)
            if method != "cp":
                cmd = [binaries[method], "compile", os.path.join(model, "manifest.json"), "-o", out]
            else:
                cmd = ["sh", "-c", f'cp -r "{model}" "{copy}" && sync']
            res[method].append(timed(cmd, tfile))
            if method == "compile":
                bundle_bytes = os.path.getsize(out)
    if os.path.isdir(copy):
        shutil.rmtree(copy)
    if "--keep" not in flags and os.path.exists(out):
        os.unlink(out)
    os.unlink(tfile)
    for method, runs in res.items():
        print(f"{label}_{method}_wall {statistics.median(r[0] for r in runs):.4g} s")
        print(f"{label}_{method}_rss {statistics.median(r[1] for r in runs)} B")
    cp_wall = statistics.median(r[0] for r in res["cp"])
    for method in binaries:
        ratio = statistics.median(r[0] for r in res[method]) / cp_wall
        print(f"{label}_{method}_over_cp {ratio:.3f} x")
    print(f"{label}_input_bytes {input_bytes} B")
    print(f"{label}_bundle_bytes {bundle_bytes} B")


if __name__ == "__main__":
    main()
