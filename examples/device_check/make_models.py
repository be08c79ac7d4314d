#!/usr/bin/python3
"""Small PyTorch models of what no one has run on a device, compiled for the
Mac self-test.

    /usr/bin/python3 examples/device_check/make_models.py OUTDIR [--cases a,b]

For each case below (fixed seed, eval mode) it writes:
  OUTDIR/<case>/              the exporter's manifest.json, .bin files, probes
  OUTDIR/<case>.mpsb          the bundle, from `mpsbc compile --check`
  OUTDIR/<case>.probes.mpsb   the probe file (`mpsbc compile --probes-out`):
                              every layer's PyTorch input and output, which
                              the device check runs on the GPU and compares
mpsbc is build/bin/mpsbc, or the path in the environment variable MPSBC.
An mpsbc without --probes-out still gives the bundles, checked against the
manifest's probes on the CPU; the script then says so and writes no
.probes.mpsb (`mpsb-dump BUNDLE --check OUTDIR/<case>/manifest.json` reads
those probes instead).

Runs with Debian's /usr/bin/python3 (torch 1.13) and current torch. Exit 0
when every case was written and passed --check, 1 otherwise, 2 on a bad
command line.
"""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import mpsb_export  # noqa: E402

SEED = 0


def _randomize_batch_norms(model):
    # Fresh running statistics are 0 and 1, which would hide a wrong mean or
    # variance; eval mode then uses these.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


# name -> (what it covers, factory returning (model, example input)).
def linear_nonsquare():
    # Apple's MPSCNNFullyConnected header writes Weights[No][SrcW][SrcH][Ni];
    # the data-source rule is [O][kH][kW][I]. H = 3 != W = 5 tells them apart.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 3 * 5, 10))
    return model, torch.randn(1, 3, 3, 5)


def convtranspose_dilated():
    model = nn.Sequential(
        nn.ConvTranspose2d(4, 8, 3, stride=2, padding=1, dilation=2, output_padding=1))
    return model, torch.randn(1, 4, 5, 6)


def convtranspose_grouped():
    # 4 channels per group: a multiple of 4, as MPS requires.
    model = nn.Sequential(nn.ConvTranspose2d(8, 8, 3, stride=2, padding=1, groups=2), nn.ReLU())
    return model, torch.randn(1, 8, 5, 4)


def even_conv_stride2():
    model = nn.Sequential(nn.Conv2d(4, 8, 2, stride=2), nn.ReLU(),
                          nn.Conv2d(8, 8, 4, stride=2, padding=1))
    return model, torch.randn(1, 4, 12, 10)


def even_convtranspose_stride2():
    model = nn.Sequential(nn.ConvTranspose2d(8, 8, 2, stride=2), nn.ReLU(),
                          nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1))
    return model, torch.randn(1, 8, 3, 5)


def depthwise():
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU6(),
                          nn.Conv2d(8, 16, 1))
    return model, torch.randn(1, 8, 7, 6)


def conv_bn_relu():
    # The control: what every public MPS example already runs.
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    return _randomize_batch_norms(model), torch.randn(1, 3, 8, 8)


CASES = {
    "linear_nonsquare": ("Linear after flatten of a C=8, H=3, W=5 map", linear_nonsquare),
    "convtranspose_dilated": ("ConvTranspose2d 3x3, stride 2, dilation 2, output_padding 1",
                              convtranspose_dilated),
    "convtranspose_grouped": ("ConvTranspose2d 3x3, stride 2, groups 2", convtranspose_grouped),
    "even_conv_stride2": ("Conv2d 2x2 and 4x4 with stride 2", even_conv_stride2),
    "even_convtranspose_stride2": ("ConvTranspose2d 2x2 and 4x4 with stride 2",
                                   even_convtranspose_stride2),
    "depthwise": ("depthwise 3x3 + ReLU6, then 1x1", depthwise),
    "conv_bn_relu": ("control: Conv2d 3x3 -> BatchNorm2d -> ReLU", conv_bn_relu),
}


def mpsbc_path():
    return os.environ.get("MPSBC") or os.path.join(ROOT, "build", "bin", "mpsbc")


def has_probes_out(mpsbc):
    r = subprocess.run([mpsbc, "compile", "--help"], capture_output=True, text=True)
    return "--probes-out" in r.stdout


def build_case(name, out_dir, mpsbc, probes_out):
    """Exports and compiles one case. Returns a list of problems (empty: ok)."""
    torch.manual_seed(SEED)
    model, example = CASES[name][1]()
    model.eval()
    case_dir = os.path.join(out_dir, name)
    mpsb_export.export(model, example, case_dir, name=name,
                       metadata={"device_check.case": name})
    bundle = os.path.join(out_dir, name + ".mpsb")
    cmd = [mpsbc, "compile", os.path.join(case_dir, "manifest.json"), "-o", bundle, "--check",
           "-q"]
    if probes_out:
        cmd += ["--probes-out", os.path.join(out_dir, name + ".probes.mpsb")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        return ["%s exited %d: %s" % (" ".join(cmd), r.returncode, (r.stderr + r.stdout).strip())]
    return []


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir")
    parser.add_argument("--cases", help="comma-separated subset of: " + ", ".join(CASES))
    args = parser.parse_args(argv)
    names = list(CASES) if not args.cases else args.cases.split(",")
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error("unknown case(s): %s (known: %s)" % (", ".join(unknown), ", ".join(CASES)))
    mpsbc = mpsbc_path()
    if not os.access(mpsbc, os.X_OK):
        print("make_models.py: no mpsbc at %s (build it, or set MPSBC)" % mpsbc, file=sys.stderr)
        return 1
    os.makedirs(args.outdir, exist_ok=True)
    probes_out = has_probes_out(mpsbc)
    if not probes_out:
        print("make_models.py: %s has no --probes-out: compiled each case with --check against "
              "the manifest's probes; no .probes.mpsb written" % mpsbc)
    failed = 0
    for name in names:
        problems = build_case(name, args.outdir, mpsbc, probes_out)
        status = "FAILED" if problems else "ok"
        print("%-28s %-6s %s" % (name, status, CASES[name][0]))
        for p in problems:
            print("    " + p)
        failed += bool(problems)
    print("%d case(s) written to %s, %d failed" % (len(names) - failed, args.outdir, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
