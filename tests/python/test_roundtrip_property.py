"""Property: random layers written as a manifest + .bin files (numpy), compiled
by the installed mpsbc at random alignments, read back with mpsb.open:
to_source() gives the exact .bin bytes and numpy() the stored bytes.

The exporter's side (torch modules, `mpsbc --check`) is tests/pytorch/
property_test.py, which needs torch."""

import json
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mpsb

from conftest import mpsbc

SOURCE_DTYPES = ["float32", "float16", "bfloat16"]


def _values(rng, shape, dtype):
    v = rng.standard_normal(int(np.prod(shape))).astype(np.float32).reshape(shape)
    if dtype == "float32":
        return v
    if dtype == "float16":
        return v.astype(np.float16)
    return (v.view(np.uint32) >> 16).astype(np.uint16)  # bfloat16 bits


@st.composite
def conv_layer(draw, transposed):
    groups = draw(st.integers(1, 4))
    cin = groups * draw(st.integers(1, 4))
    cout = groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    dh, dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # Padding up to dilation * (kernel - 1), the bound mpsbc accepts
    # (docs/LAYERS.md, "Limits on padding and dilation").
    layer = {"type": "conv_transpose2d" if transposed else "conv2d", "in_channels": cin,
             "out_channels": cout, "kernel_size": [kh, kw], "groups": groups,
             "stride": [draw(st.integers(1, 3)), draw(st.integers(1, 3))],
             "dilation": [dh, dw],
             "padding": [draw(st.integers(0, min(2, dh * (kh - 1)))),
                         draw(st.integers(0, min(2, dw * (kw - 1))))]}
    if transposed:
        weight = (cin, cout // groups, kh, kw)
    else:
        weight = (cout, cin // groups, kh, kw)
    tensors = {"weight": weight}
    if draw(st.booleans()):
        tensors["bias"] = (cout,)
    return layer, tensors


@st.composite
def linear_layer(draw):
    out = draw(st.integers(1, 24))
    layer = {"type": "linear", "out_features": out}
    if draw(st.booleans()):
        chw = [draw(st.integers(1, 6)), draw(st.integers(1, 4)), draw(st.integers(1, 4))]
        layer["input_shape"] = chw
        layer["in_features"] = chw[0] * chw[1] * chw[2]
    else:
        layer["in_features"] = draw(st.integers(1, 40))
    tensors = {"weight": (out, layer["in_features"])}
    if draw(st.booleans()):
        tensors["bias"] = (out,)
    return layer, tensors


@st.composite
def norm_layer(draw):
    n = draw(st.integers(1, 32))
    layer = {"type": "batch_norm2d", "num_features": n, "eps": 1e-5}
    return layer, {"weight": (n,), "bias": (n,), "running_mean": (n,), "running_var": (n,)}


@st.composite
def network(draw):
    kinds = st.one_of(conv_layer(False), conv_layer(True), linear_layer(), norm_layer())
    layers = draw(st.lists(kinds, min_size=1, max_size=5))
    dtypes = [[draw(st.sampled_from(SOURCE_DTYPES)) for _ in t] for _, t in layers]
    tensor_alignment = 2 ** draw(st.integers(4, 14))
    segment_alignment = tensor_alignment * 2 ** draw(st.integers(0, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return layers, dtypes, tensor_alignment, max(segment_alignment, 4096), seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(network())
def test_to_source_gives_back_every_bin(net):
    layers, dtypes, tensor_alignment, segment_alignment, seed = net
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        manifest = {"format": "mpsb.manifest/1", "name": "prop", "layers": []}
        sources = {}
        for i, ((layer, tensors), tdtypes) in enumerate(zip(layers, dtypes)):
            entry = dict(layer, name="l%d" % i)
            for (role, shape), dtype in zip(tensors.items(), tdtypes):
                data = _values(rng, shape, dtype)
                if role == "running_var":
                    if dtype == "float32":
                        data = np.abs(data) + np.float32(0.5)
                    else:  # positive: clear the sign bit of float16 / bfloat16
                        data = data.view(np.uint16) & np.uint16(0x7FFF)
                        data = data.view(np.float16) if dtype == "float16" else data
                path = "l%d.%s.bin" % (i, role)
                data.tofile(folder / path)
                sources[(entry["name"], role)] = (data.tobytes(), shape, dtype)
                entry[role] = {"path": path, "dtype": dtype}
            manifest["layers"].append(entry)
        (folder / "manifest.json").write_text(json.dumps(manifest))
        out = folder / "prop.mpsb"
        # --legalize: the drawn groups include ones MPS refuses (fewer than 4
        # channels per group); stored dense, their weight must come back too.
        mpsbc("compile", folder / "manifest.json", "-o", out, "-q", "--legalize",
              "--tensor-alignment", tensor_alignment, "--segment-alignment", segment_alignment)

        b = mpsb.open(out, verify=True)
        assert b.tensor_alignment == tensor_alignment
        assert [l.name for l in b.layers] == ["l%d" % i for i in range(len(layers))]
        for (name, role), (data, shape, dtype) in sources.items():
            t = b[name][role]
            assert t.source_shape == tuple(shape) and t.source_dtype == dtype
            assert t.offset % tensor_alignment == 0
            assert t.to_source().tobytes() == data, (name, role, t)
            raw = out.read_bytes()[t.file_offset:t.file_offset + t.size]
            assert t.numpy().tobytes() == raw
