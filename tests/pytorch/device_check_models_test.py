#!/usr/bin/python3
"""examples/device_check/make_models.py: the Mac self-test's models, proven
right against PyTorch here on the CPU before anyone runs them on a GPU.

    device_check_models_test.py --mpsbc PATH --dump PATH

Runs the generator into a scratch folder with MPSBC=PATH, then for every
case: the manifest has the layer the case is about (read from the manifest,
so a model that drifts from its purpose fails), `mpsbc compile --check --json`
on it passes with every probed layer checked, and the generator's bundle
verifies. When mpsbc has --probes-out, the probe file must be there,
verify, and pass `mpsb-dump BUNDLE --check PROBES`. Prints one line per case and "N passed, M failed"; exit 1 on
any failure.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GENERATOR = os.path.join(ROOT, "examples", "device_check", "make_models.py")


def pairs(v):
    return list(v) if isinstance(v, list) else [v, v]


# What each case must contain: a predicate over its manifest's layers.
def has(kind, **want):
    def test(layers):
        for l in layers:
            if l["type"] != kind:
                continue
            if all((pairs(l.get(k)) == pairs(v)) if k in ("kernel_size", "stride", "dilation")
                   else l.get(k) == v for k, v in want.items()):
                return True
        return False
    test.text = "%s with %s" % (kind, want)
    return test


def depthwise(layers):
    return any(l["type"] == "conv2d" and l["groups"] == l["in_channels"] > 1 for l in layers)


depthwise.text = "a depthwise conv2d"


def bn_after_conv(layers):
    kinds = [l["type"] for l in layers]
    return kinds[:2] == ["conv2d", "batch_norm2d"] and layers[0].get("activation") is None


bn_after_conv.text = "conv2d then batch_norm2d"

EXPECTED = {
    "linear_nonsquare": [has("linear", input_shape=[8, 3, 5])],
    "convtranspose_dilated": [has("conv_transpose2d", dilation=2, stride=2)],
    "convtranspose_grouped": [has("conv_transpose2d", groups=2, stride=2)],
    "even_conv_stride2": [has("conv2d", kernel_size=2, stride=2),
                          has("conv2d", kernel_size=4, stride=2)],
    "even_convtranspose_stride2": [has("conv_transpose2d", kernel_size=2, stride=2),
                                   has("conv_transpose2d", kernel_size=4, stride=2)],
    "depthwise": [depthwise],
    "conv_bn_relu": [bn_after_conv],
}


def run(cmd, env=None):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def check_case(args, out, name, probes_out):
    problems = []
    case_dir = os.path.join(out, name)
    manifest_path = os.path.join(case_dir, "manifest.json")
    with open(manifest_path) as f:
        manifest = json.load(f)
    layers = manifest["layers"]
    for test in EXPECTED[name]:
        if not test(layers):
            problems.append("the manifest has no %s" % test.text)
    probed = [l["name"] for l in layers if "probe" in l]
    if len(probed) != len(layers):
        problems.append("only %d of %d layers have a probe" % (len(probed), len(layers)))
    r = run([args.mpsbc, "compile", manifest_path, "-o", os.path.join(out, name + ".again.mpsb"),
             "--check", "--json", "-q"])
    if r.returncode != 0:
        problems.append("mpsbc compile --check exited %d: %s" % (r.returncode, r.stderr.strip()))
    else:
        report = json.loads(r.stdout)
        checked = {e["layer"]: e for e in report.get("check", [])}
        for layer in probed:
            e = checked.get(layer)
            if e is None:
                problems.append("layer %s was not checked" % layer)
            elif not e.get("passed"):
                problems.append("layer %s failed: max_rel_error %s" % (layer, e.get("max_rel_error")))
    files = [name + ".mpsb"] + ([name + ".probes.mpsb"] if probes_out else [])
    for f in files:
        path = os.path.join(out, f)
        if not os.path.exists(path):
            problems.append("the generator wrote no %s" % f)
            continue
        r = run([args.dump, path, "--verify"])
        if r.returncode != 0:
            problems.append("mpsb-dump %s --verify exited %d: %s"
                            % (f, r.returncode, r.stderr.strip()))
    if probes_out:
        # What the device check compares on the GPU, compared here on the CPU.
        r = run([args.dump, os.path.join(out, name + ".mpsb"), "--check",
                 os.path.join(out, name + ".probes.mpsb")])
        if r.returncode != 0:
            problems.append("mpsb-dump --check with the probe file exited %d: %s"
                            % (r.returncode, (r.stderr + r.stdout).strip()))
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True)
    parser.add_argument("--dump", required=True)
    args = parser.parse_args()
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="mpsb_device_check_") as out:
        env = dict(os.environ, MPSBC=args.mpsbc)
        r = run([sys.executable, GENERATOR, out], env=env)
        print(r.stdout.strip())
        if r.returncode != 0:
            print("FAIL generator exited %d: %s" % (r.returncode, r.stderr.strip()))
            return 1
        help_text = run([args.mpsbc, "compile", "--help"]).stdout
        probes_out = "--probes-out" in help_text
        fallback_said = "no --probes-out" in r.stdout
        if probes_out == fallback_said:
            print("FAIL the generator %s the fallback, but mpsbc %s --probes-out"
                  % ("reported" if fallback_said else "did not report",
                     "has" if probes_out else "lacks"))
            failed += 1
        for name in EXPECTED:
            problems = check_case(args, out, name, probes_out)
            if problems:
                failed += 1
                print("FAIL %s\n    %s" % (name, "\n    ".join(problems)))
            else:
                passed += 1
                print("ok   %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
