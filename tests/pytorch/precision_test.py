"""Weight precisions against PyTorch: float16 and both uint8 forms.

  precision_test.py --mpsbc PATH --dump PATH --work DIR

1. float16 rounding agrees bit for bit with PyTorch's `tensor.half()` on
   values covering normals, subnormals, ties and overflow (overflow is an
   error naming the layer and the count; --allow-overflow clamps to ±65504).
2. Every model of the fidelity suite passes `mpsbc compile --check` at
   float16, uint8-linear and uint8-lut with the documented default
   tolerances (the worst relative error per model is printed).
3. resnet18's bundle at float16 is at most 50.5 % of float32, at uint8 at
   most 26 %.
4. `mpsb-dump --extract` of a float16 weight gives PyTorch's float16 bytes in
   PyTorch layout; `--as float32` widens them; uint8 needs `--as`.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "export"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import models  # noqa: E402
import mpsb_export  # noqa: E402

PRECISIONS = ("float16", "uint8-linear", "uint8-lut")


class CaseFailed(Exception):
    pass


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


def expect(cond, what):
    if not cond:
        raise CaseFailed(what)


def half_values():
    """float32 values whose float16 rounding is easy to get wrong."""
    v = [0.0, -0.0, 1.0, -2.5, 0.1, 65504.0, 65519.0, -65519.0, 6.1035156e-05]
    one = np.float32(1.0)
    ulp = np.float32(2.0 ** -10)
    for k in range(8):  # ties between consecutive halves above 1: to even
        base = one + k * ulp
        v.append(base + ulp / 2)
        v.append(base + np.float32(3) * ulp / 4)
    for e in range(-26, -13):  # subnormals and the flush-to-zero edge
        for m in (1.0, 1.5, 2.5, 3.0):
            v.append(m * 2.0 ** e)
            v.append(-m * 2.0 ** e)
    rng = np.random.default_rng(0)
    v.extend(rng.normal(0, 1, 200).tolist())
    v.extend((rng.normal(0, 1, 50) * 1e-5).tolist())
    return np.array(v, dtype="<f4")


def case_half_bits(args):
    work = os.path.join(args.work, "half")
    # Fresh: a bundle left by an earlier run would pass for one written now.
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    values = half_values()
    overflow = np.array([70000.0, -1e6], dtype="<f4")
    weights = np.concatenate([values, overflow])
    n = len(weights)
    # A 1x1 convolution with one input channel: OIHW and OHWI are the same
    # order, so the stored bytes are the rounded source in order.
    weights.tofile(os.path.join(work, "w.bin"))
    manifest = {"format": "mpsb.manifest/1", "name": "half", "layers": [
        {"name": "c", "type": "conv2d", "in_channels": 1, "out_channels": n,
         "kernel_size": 1, "weight": "w.bin"}]}
    with open(os.path.join(work, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    out = os.path.join(work, "h.mpsb")
    proc = run([args.mpsbc, "compile", os.path.join(work, "manifest.json"), "-o", out,
                "--precision", "float16"])
    expect(proc.returncode == 3, "overflow did not fail the compile (exit %d)" % proc.returncode)
    expect("layer c: 2 weights overflow float16" in proc.stderr,
           "overflow error does not name the layer and count: " + proc.stderr)
    expect(not os.path.exists(out), "a bundle was written despite the overflow")
    proc = run([args.mpsbc, "compile", os.path.join(work, "manifest.json"), "-o", out,
                "--precision", "float16", "--allow-overflow", "--json"])
    expect(proc.returncode == 0, "--allow-overflow compile failed: " + proc.stderr)
    report = json.loads(proc.stdout)
    counts = report["layers"][0]["float16"]
    expect(counts["overflow"] == 2, "report counts %d overflows" % counts["overflow"])
    extracted = os.path.join(work, "c.f16")
    proc = run([args.dump, out, "--extract", "c.weight", "-o", extracted])
    expect(proc.returncode == 0, "extract failed: " + proc.stderr)
    ours = np.fromfile(extracted, dtype="<u2")
    theirs = torch.from_numpy(weights.copy()).half().numpy().view(np.uint16)
    finite = np.isfinite(torch.from_numpy(weights.copy()).half().numpy())
    mismatch = np.nonzero(ours[finite] != theirs[finite])[0]
    expect(len(mismatch) == 0, "%d values round differently from torch.half(), first %r" % (
        len(mismatch), weights[finite][mismatch[:3]]))
    expect(list(ours[~finite]) == [0x7bff, 0xfbff], "overflow not clamped to +-65504")
    widened = os.path.join(work, "c.f32")
    proc = run([args.dump, out, "--extract", "c.weight", "-o", widened, "--as", "float32"])
    expect(proc.returncode == 0, "--as float32 failed: " + proc.stderr)
    expect(np.array_equal(np.fromfile(widened, dtype="<f4"),
                          ours.view(np.float16).astype(np.float32)),
           "--as float32 is not the exact widening of the stored halves")
    return "%d values bit-identical to torch.half() (%d subnormal, %d ties), 2 overflows clamped" % (
        int(finite.sum()), counts["subnormal"], 16)


def export(args, name):
    work = os.path.join(args.work, name)
    if not os.path.exists(os.path.join(work, "manifest.json")):
        model, example = models.MODELS[name]()
        mpsb_export.export(model, example, work, name=name)
    return work


def case_model(args, name):
    work = export(args, name)
    manifest = os.path.join(work, "manifest.json")
    results = []
    sizes = {}
    for precision in ("float32",) + PRECISIONS:
        out = os.path.join(work, precision + ".mpsb")
        proc = run([args.mpsbc, "compile", manifest, "-o", out, "--precision", precision,
                    "--check", "--json"])
        if proc.returncode != 0:
            raise CaseFailed("%s at %s: exit %d\n%s" % (
                name, precision, proc.returncode, "\n".join(proc.stderr.splitlines()[-6:])))
        report = json.loads(proc.stdout)
        worst = max(c["max_rel_error"] for c in report["check"])
        sizes[precision] = os.path.getsize(out)
        results.append("%s %.2g" % (precision, worst))
        if precision == "float16":
            check_half_extract(args, work, out, report)
    if name == "resnet18":
        # Folding happens before rounding: the folded weights are what gets
        # rounded or quantized, and each folded conv still matches conv -> bn.
        for precision in PRECISIONS:
            out = os.path.join(work, "folded-" + precision + ".mpsb")
            proc = run([args.mpsbc, "compile", manifest, "-o", out, "--precision", precision,
                        "--fold-batchnorm", "--check", "--json"])
            if proc.returncode != 0:
                raise CaseFailed("%s --fold-batchnorm at %s: exit %d\n%s" % (
                    name, precision, proc.returncode, "\n".join(proc.stderr.splitlines()[-6:])))
            worst = max(c["max_rel_error"] for c in json.loads(proc.stdout)["check"])
            results.append("folded %s %.2g" % (precision, worst))
        f16 = sizes["float16"] / sizes["float32"]
        u8 = max(sizes["uint8-linear"], sizes["uint8-lut"]) / sizes["float32"]
        expect(f16 <= 0.505, "resnet18 float16 bundle is %.1f %% of float32" % (100 * f16))
        expect(u8 <= 0.26, "resnet18 uint8 bundle is %.1f %% of float32" % (100 * u8))
        results.append("sizes %s" % ", ".join("%s %d" % kv for kv in sizes.items()))
    for f in os.listdir(work):
        if f.endswith(".mpsb"):
            os.remove(os.path.join(work, f))
    return "max rel err " + ", ".join(results)


def check_half_extract(args, work, bundle, report):
    """The first float16 conv weight comes back as PyTorch's .half() bytes."""
    layers = {l["name"]: l for l in json.load(open(os.path.join(work, "manifest.json")))["layers"]}
    for l in report["layers"]:
        if l.get("precision") == "float16" and layers[l["name"]]["type"] == "conv2d":
            name = l["name"]
            break
    else:
        return
    out = os.path.join(work, "w.f16")
    proc = run([args.dump, bundle, "--extract", name + ".weight", "-o", out])
    expect(proc.returncode == 0, "extract of %s failed: %s" % (name, proc.stderr))
    src = np.fromfile(os.path.join(work, layers[name]["weight"]), dtype="<f4")
    want = torch.from_numpy(src).half().numpy().view(np.uint16)
    expect(np.array_equal(np.fromfile(out, dtype="<u2"), want),
           "extracted float16 %s.weight differs from torch .half()" % name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--models", default=",".join(models.MODELS))
    args = parser.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    cases = [("float16 bits", lambda: case_half_bits(args))]
    for name in [m for m in args.models.split(",") if m]:
        cases.append((name, lambda name=name: case_model(args, name)))
    passed = failed = 0
    for case, fn in cases:
        try:
            print("PASS %s: %s" % (case, fn()), flush=True)
            passed += 1
        except CaseFailed as e:
            print("FAIL %s: %s" % (case, e), flush=True)
            failed += 1
    if failed == 0:
        shutil.rmtree(args.work, ignore_errors=True)
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
