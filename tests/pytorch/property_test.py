"""Property tests (hypothesis) of the whole path on random layers: a torch
module with random shapes, groups, dilations, strides and paddings ->
mpsb.export -> the packaged mpsbc compile --check at a random precision and
alignment -> mpsb.open -> to_source() gives the exporter's .bin bytes back
exactly (or their float16 rounding when stored as float16), and --check
(the CPU reference on the stored layout against PyTorch's probes) passes.

Needs torch, hypothesis and the installed mpsb package; run by
scripts/test-torch.sh:  python -m pytest -q tests/pytorch/property_test.py
"""

import json
import subprocess
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import mpsb
from mpsb import _tools


@st.composite
def conv_model(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # Up to dilation * (kernel - 1), the bound mpsbc accepts (docs/LAYERS.md).
    padding = (draw(st.integers(0, min(1, dilation[0] * (k[0] - 1)))),
               draw(st.integers(0, min(1, dilation[1] * (k[1] - 1)))))
    bias = draw(st.booleans())
    size = draw(st.integers(8, 11))
    if draw(st.booleans()):
        conv = nn.ConvTranspose2d(cin, cout, k, stride=stride, padding=padding,
                                  dilation=dilation, groups=groups, bias=bias)
    else:
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)
    layers = [conv]
    if draw(st.booleans()):
        layers.append(nn.BatchNorm2d(cout))
    layers.append(draw(st.sampled_from([nn.ReLU(), nn.Identity(), nn.Tanh()])))
    if draw(st.booleans()):
        with torch.no_grad():
            out = nn.Sequential(*layers).eval()(torch.zeros(1, cin, size, size))
        layers += [nn.Flatten(), nn.Linear(out.numel(), draw(st.integers(1, 8)))]
    return nn.Sequential(*layers), (1, cin, size, size)


def _randomize_norms(model, gen):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=gen))
                m.bias.copy_(torch.randn(m.num_features, generator=gen))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conv_model(), st.sampled_from(["float32", "float16"]), st.integers(4, 13),
       st.integers(0, 2**31 - 1))
def test_export_compile_open_gives_back_the_bytes(model_shape, precision, align_log2, seed):
    model, shape = model_shape
    gen = torch.Generator().manual_seed(seed)
    _randomize_norms(model, gen)
    x = torch.randn(*shape, generator=gen)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            manifest = mpsb.export(model.eval(), x, folder / "out")
        out = folder / "model.mpsb"
        alignment = 2**align_log2
        r = subprocess.run([_tools.tool_path("mpsbc"), "compile", folder / "out" / "manifest.json",
                            # --legalize: drawn groups include ones MPS refuses.
                            "-o", out, "-q", "--check", "--legalize", "--precision", precision,
                            "--tensor-alignment", str(alignment),
                            "--segment-alignment", str(max(alignment, 16384))],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        b = mpsb.open(out, verify=True)
        assert [l.name for l in b.layers] == [l["name"] for l in manifest["layers"]]
        compared = 0
        for entry in manifest["layers"]:
            layer = b[entry["name"]]
            for role in ("weight", "bias", "running_mean", "running_var"):
                if role not in entry:
                    continue
                path = entry[role]["path"] if isinstance(entry[role], dict) else entry[role]
                source = (folder / "out" / path).read_bytes()
                t = layer[role]
                assert t.offset % alignment == 0
                got = t.to_source()
                if t.dtype == t.source_dtype:
                    assert got.tobytes() == source, (entry["name"], role)
                else:  # stored float16 from a float32 .bin: its rounding, in source order
                    want = np.frombuffer(source, "<f4").astype(np.float16).reshape(t.source_shape)
                    assert np.array_equal(got, want), (entry["name"], role)
                compared += 1
        assert compared == sum(r in e for e in manifest["layers"]
                               for r in ("weight", "bias", "running_mean", "running_var"))
