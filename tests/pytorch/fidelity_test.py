#!/usr/bin/python3
"""End to end: PyTorch model -> exporter -> mpsbc --check -> mpsb-dump --extract.

    fidelity_test.py --mpsbc PATH --dump PATH --work DIR [--models a,b,...]

For each model of tests/pytorch/models.py:
  1. export it (weights, manifest, per-layer probes);
  2. `mpsbc compile manifest.json -o model.mpsb --check --json`: exit 0, and
     every layer that has a probe is in the check report and passed (the CPU
     reference reads the stored MPS layout and must match PyTorch's output);
  3. `mpsb-dump model.mpsb --extract LAYER.ROLE -o f` for every tensor gives
     back exactly the bytes the exporter wrote.
resnet18 is also compiled with --fold-batchnorm: every folded conv must still
match PyTorch's conv -> batch norm output, and the folded norms must be gone.

Prints one line per case and "N passed, M failed"; exits 1 on any failure.
A passing model's work folder is removed (alexnet alone is ~250 MB); a
failing one is kept for inspection, as is everything with --keep.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "tools", "export"), HERE]

import models  # noqa: E402
import mpsb_export  # noqa: E402
from mpsb_export.layers import TENSOR_ROLES as ROLES  # noqa: E402
FOLD_MODELS = ("resnet18",)
COMMAND_TIMEOUT = 900  # seconds; alexnet's 230 MB are the slowest


class CaseFailed(Exception):
    pass


def run(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise CaseFailed("timed out after %ds: %s" % (COMMAND_TIMEOUT, " ".join(cmd)))


def tail(text, lines=8):
    rows = [r for r in text.strip().splitlines() if r.strip()]
    # The compiler warns once per exporter-only field ("probe", "follows");
    # those say nothing about the failure.
    rows = [r for r in rows if "unknown field" not in r] or rows
    return "\n      ".join(rows[-lines:])


def compile_and_check(args, manifest_path, bundle, fold):
    cmd = [args.mpsbc, "compile", manifest_path, "-o", bundle, "--json"]
    if not args.skip_check:
        cmd.append("--check")
    if fold:
        cmd.append("--fold-batchnorm")
    r = run(cmd)
    if r.returncode != 0:
        raise CaseFailed("%s exited %d:\n      %s" % (" ".join(os.path.basename(c) if i == 0 else c
                                                             for i, c in enumerate(cmd)),
                                                    r.returncode, tail(r.stderr + r.stdout)))
    try:
        report = json.loads(r.stdout)
    except ValueError as e:
        raise CaseFailed("mpsbc --json printed no JSON report (%s): %r" % (e, r.stdout[:200]))
    if not report.get("ok", False):
        raise CaseFailed("mpsbc report says ok=false: %s" % tail(json.dumps(report.get(
            "diagnostics", []))))
    return report


def check_report(report, manifest, fold):
    """The check entries: one per probed layer (folded norms excepted), all
    passed. Returns (layers checked, worst relative error)."""
    if "check" not in report:
        raise CaseFailed("the mpsbc report has no \"check\" array (is --check implemented?)")
    entries = report["check"]
    by_layer = {}
    for e in entries:
        by_layer.setdefault(e.get("layer"), e)
    folded = {l["name"] for l in manifest["layers"] if fold and l.get("follows")}
    wanted = [l["name"] for l in manifest["layers"] if "probe" in l and l["name"] not in folded]
    missing = [n for n in wanted if n not in by_layer]
    failed = ["%s (max_abs_error %.3g, max_rel_error %.3g)"
              % (e.get("layer"), e.get("max_abs_error", float("nan")),
                 e.get("max_rel_error", float("nan")))
              for e in entries if not e.get("passed", False)]
    problems = []
    if missing:
        problems.append("no check for %d layer(s): %s" % (len(missing), ", ".join(missing[:10])))
    if failed:
        problems.append("%d layer(s) failed the check: %s" % (len(failed), "; ".join(failed[:10])))
    if fold:
        in_bundle = {l.get("name") for l in report.get("layers", [])}
        still = sorted(folded & in_bundle)
        if still:
            problems.append("folded batch norms still in the bundle: %s" % ", ".join(still[:10]))
    if problems:
        raise CaseFailed("\n      ".join(problems))
    worst = max((float(e.get("max_rel_error", 0.0)) for e in entries), default=0.0)
    return len(entries), worst


def check_extract(args, bundle, manifest, export_dir, scratch):
    """Every tensor comes back byte-identical. Returns the tensor count."""
    count = 0
    mismatched = []
    for layer in manifest["layers"]:
        for role in ROLES:
            if role not in layer:
                continue
            r = run([args.dump, bundle, "--extract", "%s.%s" % (layer["name"], role),
                     "-o", scratch])
            if r.returncode != 0:
                raise CaseFailed("mpsb-dump --extract %s.%s exited %d: %s"
                                 % (layer["name"], role, r.returncode, tail(r.stderr)))
            with open(scratch, "rb") as got, \
                    open(os.path.join(export_dir, layer[role]), "rb") as want:
                if got.read() != want.read():
                    mismatched.append("%s.%s" % (layer["name"], role))
            count += 1
    if os.path.exists(scratch):
        os.remove(scratch)
    if mismatched:
        raise CaseFailed("--extract gave other bytes than the exporter wrote for %d tensor(s): %s"
                         % (len(mismatched), ", ".join(mismatched[:10])))
    return count


# Apple's formulas (MPSCNNNeuronType.h) with the a, b that the runtime's
# neuron() sets for each manifest activation (runtime/src/sources.cc,
# docs/LAYERS.md "Fused activations"). x is a float64 numpy array.
def _mps_neuron(kind, x, layer, slopes):
    import math
    import numpy as np
    erf = np.vectorize(math.erf)
    if kind == "relu":
        return np.where(x >= 0, x, 0.0)
    if kind == "relu6":
        return np.minimum(np.where(x >= 0, x, 0.0), 6.0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, layer["negative_slope"] * x)
    if kind == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if kind == "tanh":
        return 1.0 * np.tanh(1.0 * x)
    if kind == "elu":
        return np.where(x >= 0, x, layer["alpha"] * (np.exp(x) - 1))
    if kind == "hardsigmoid":
        return np.clip(x * (1 / 6) + 0.5, 0, 1)
    if kind == "softplus":
        a, b = 1 / layer["beta"], layer["beta"]
        return a * np.log1p(np.exp(b * x))
    if kind == "gelu":
        return (1.0 + erf(x * np.sqrt(0.5))) * 0.5 * x
    if kind == "prelu":
        a = np.broadcast_to(slopes, (x.shape[1],)).reshape((1, -1) + (1,) * (x.ndim - 2))
        return np.where(x >= 0, x, a * x)
    raise CaseFailed("no MPS formula for activation %r" % kind)


def _torch_activation(kind, x, layer, slopes):
    import torch
    import torch.nn.functional as F
    if kind == "relu":
        return F.relu(x)
    if kind == "relu6":
        return F.relu6(x)
    if kind == "leaky_relu":
        return F.leaky_relu(x, layer["negative_slope"])
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "tanh":
        return torch.tanh(x)
    if kind == "elu":
        return F.elu(x, layer["alpha"])
    if kind == "hardsigmoid":
        return F.hardsigmoid(x)
    if kind == "softplus":
        return F.softplus(x, layer["beta"], layer["threshold"])
    if kind == "gelu":
        return F.gelu(x)
    if kind == "prelu":
        return F.prelu(x, torch.from_numpy(slopes))
    raise CaseFailed("no PyTorch form for activation %r" % kind)


def check_activation_forms(manifest, export_dir):
    """The fused activations MPS will apply, by Apple's formula with the
    runtime's a and b, against PyTorch's function with the manifest's
    parameters, on each layer's real pre-activation output (float32
    PyTorch, float64 formula). --check compares before the activation, so
    this is where the forms are compared. Returns {activation: worst max
    relative error}."""
    import numpy as np
    import torch
    worst = {}
    for layer in manifest["layers"]:
        kind = layer.get("activation")
        if not kind or kind == "none" or "probe" not in layer:
            continue
        probe = layer["probe"]
        x = np.fromfile(os.path.join(export_dir, probe["output"]), "<f4").reshape(
            probe["output_shape"])
        slopes = None
        if kind == "prelu":
            slopes = np.fromfile(os.path.join(export_dir, layer["activation_weight"]), "<f4")
        want = _torch_activation(kind, torch.from_numpy(x.copy()), layer, slopes).double().numpy()
        got = _mps_neuron(kind, x.astype(np.float64), layer, slopes)
        rel = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))
        if not rel <= 1e-5:
            raise CaseFailed("%s: MPS's %s with the runtime's a, b differs from PyTorch by %.3g "
                             "(relative)" % (layer["name"], kind, rel))
        worst[kind] = max(worst.get(kind, 0.0), rel)
    return worst


def run_model(args, name):
    """Yields (case name, ok, detail) for the model and its fold variant."""
    work = os.path.join(args.work, name)
    export_dir = os.path.join(work, "export")
    manifest_path = os.path.join(export_dir, "manifest.json")
    all_ok = True
    started = time.monotonic()
    try:
        model, example = models.MODELS[name]()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", mpsb_export.ExportWarning)
            manifest = mpsb_export.export(model, example, export_dir, name=name)
        for w in caught:
            print("  %s: exporter warning: %s" % (name, w.message))
        del model
        bundle = os.path.join(work, "model.mpsb")
        report = compile_and_check(args, manifest_path, bundle, fold=False)
        if args.skip_check:
            checked = "check skipped"
        else:
            n, worst = check_report(report, manifest, fold=False)
            checked = "%d layers checked (max rel err %.2g)" % (n, worst)
        tensors = check_extract(args, bundle, manifest, export_dir,
                                os.path.join(work, "extracted.bin"))
        if not args.skip_check:
            check_dump(args, bundle, manifest_path)
        forms = check_activation_forms(manifest, export_dir)
        yield name, True, "%s, %d tensors round-tripped, %.1fs%s" % (
            checked, tensors, time.monotonic() - started,
            "; activations as MPS computes them vs PyTorch: " + ", ".join(
                "%s %.2g" % kv for kv in sorted(forms.items())) if forms else "")
    except CaseFailed as e:
        all_ok = False
        yield name, False, str(e)
        return
    except Exception:  # an exporter or harness bug: report it as this model's failure
        all_ok = False
        yield name, False, traceback.format_exc().strip().replace("\n", "\n      ")
        return

    if name in FOLD_MODELS and not args.skip_check:
        case = "%s --fold-batchnorm" % name
        started = time.monotonic()
        try:
            report = compile_and_check(args, manifest_path, os.path.join(work, "folded.mpsb"),
                                       fold=True)
            n, worst = check_report(report, manifest, fold=True)
            folded = sum(1 for l in manifest["layers"] if l.get("follows"))
            yield case, True, "%d layers checked (max rel err %.2g), %d norms folded, %.1fs" % (
                n, worst, folded, time.monotonic() - started)
        except CaseFailed as e:
            all_ok = False
            yield case, False, str(e)

    for mutation in MUTATIONS.get(name, ()) if not args.skip_check else ():
        case = "%s --debug-mutate %s" % (name, mutation)
        try:
            yield case, True, check_mutation(args, manifest_path, manifest, work, mutation)
        except CaseFailed as e:
            all_ok = False
            yield case, False, str(e)

    if all_ok and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def check_dump(args, bundle, manifest_path):
    """mpsb-dump --check runs the same check on the bundle already written;
    with an impossible tolerance it must fail."""
    proc = run([args.dump, bundle, "--check", manifest_path])
    if proc.returncode != 0:
        raise CaseFailed("mpsb-dump --check failed (exit %d)\n%s" % (
            proc.returncode, tail(proc.stderr)))
    proc = run([args.dump, bundle, "--check", manifest_path, "--check-tolerance", "1e-30"])
    if proc.returncode != 1 or "FAILED" not in proc.stdout:
        raise CaseFailed("mpsb-dump --check with tolerance 1e-30 did not fail (exit %d)" %
                         proc.returncode)


# The oracle must tell right from wrong: with a transform deliberately
# broken, --check has to fail on exactly the layers that transform serves.
MUTATIONS = {
    "dcgan": ("no-rotation",),
    "alexnet": ("no-flatten-permute",),
    "corners": ("no-rotation", "no-flatten-permute"),
}


def check_mutation(args, manifest_path, manifest, work, mutation):
    bundle = os.path.join(work, "mutated.mpsb")
    proc = run([args.mpsbc, "compile", manifest_path, "-o", bundle, "--check", "--json",
                "--debug-mutate", mutation])
    if proc.returncode != 5:
        raise CaseFailed("expected exit 5 (check failed), got %d\n%s" % (
            proc.returncode, tail(proc.stderr)))
    if os.path.exists(bundle):
        raise CaseFailed("a bundle that failed --check was written")
    report = json.loads(proc.stdout)
    failed = {c["layer"] for c in report.get("check", []) if not c["passed"]}
    if mutation == "no-rotation":
        # A 1x1 kernel is its own rotation: only larger kernels can fail.
        hit = {l["name"] for l in manifest["layers"] if l["type"] == "conv_transpose2d"
               and l["kernel_size"] != [1, 1]}
    else:
        hit = {l["name"] for l in manifest["layers"] if l["type"] == "linear"
               and "input_shape" in l and l["input_shape"][1:] != [1, 1]}
    if not hit:
        raise CaseFailed("the model has no layer that %s affects" % mutation)
    if failed != hit:
        raise CaseFailed("--check failed on %s, expected exactly %s" % (
            sorted(failed), sorted(hit)))
    return "--check caught all %d affected layers and wrote nothing" % len(hit)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True, help="path to the mpsbc executable")
    parser.add_argument("--dump", required=True, help="path to the mpsb-dump executable")
    parser.add_argument("--work", required=True, help="scratch folder (created)")
    parser.add_argument("--models", default=",".join(models.MODELS),
                        help="comma-separated subset of: %s" % ", ".join(models.MODELS))
    parser.add_argument("--keep", action="store_true", help="keep every work folder")
    parser.add_argument("--skip-check", action="store_true",
                        help="compile without --check (only for an mpsbc that lacks it); "
                             "the round trip is still tested")
    args = parser.parse_args(argv)

    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in models.MODELS]
    if unknown or not names:
        parser.error("unknown model(s) %s; known: %s" % (", ".join(unknown) or "(none given)",
                                                         ", ".join(models.MODELS)))
    for tool in (args.mpsbc, args.dump):
        if not (os.path.isfile(tool) and os.access(tool, os.X_OK)):
            parser.error("%s is not an executable file" % tool)
    os.makedirs(args.work, exist_ok=True)

    passed = failed = 0
    for name in names:
        for case, ok, detail in run_model(args, name):
            print("%s %s: %s" % ("PASS" if ok else "FAIL", case, detail), flush=True)
            if ok:
                passed += 1
            else:
                failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
