"""The installed package's PyTorch-to-MPS path with its own commands:
mpsb-export (and python -m mpsb.export) -> mpsbc compile --check ->
mpsb-dump --extract, and mpsb.open on the result. Needs torch and the
installed mpsb; run by scripts/test-torch.sh."""

import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import mpsb

BIN = Path(sysconfig.get_path("scripts"))

MODEL = '''
import torch
from torch import nn

def make():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, groups=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, groups=2, dilation=2), nn.Flatten(),
                         nn.Linear(8 * 6 * 6, 5)), torch.randn(1, 3, 10, 10)
'''


def run(*cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def test_commands_from_the_venv(tmp_path):
    (tmp_path / "model.py").write_text(MODEL)
    run(BIN / "mpsb-export", "--model", "%s:make" % (tmp_path / "model.py"), "--out",
        tmp_path / "a")
    run(sys.executable, "-m", "mpsb.export", "--model", "%s:make" % (tmp_path / "model.py"),
        "--out", tmp_path / "b")
    for name in ("manifest.json", "0.weight.bin", "5.weight.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    out = tmp_path / "m.mpsb"
    run(BIN / "mpsbc", "compile", tmp_path / "a" / "manifest.json", "-o", out, "--check",
        "--fold-batchnorm")
    run(BIN / "mpsb-dump", out, "--extract", "5.weight", "-o", tmp_path / "fc.bin")
    b = mpsb.open(out, verify=True)
    fc = b["5"]["weight"]
    assert fc.transform == "linear_flatten_to_ohwc"
    assert b["5"].params.input_chw == (8, 6, 6)
    assert fc.to_source().tobytes() == (tmp_path / "fc.bin").read_bytes()
    assert fc.to_source().tobytes() == (tmp_path / "a" / "5.weight.bin").read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert [l.name for l in b.layers] == [l["name"] for l in manifest["layers"]
                                          if l["type"] != "batch_norm2d"]
