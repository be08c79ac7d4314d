"""mpsb.open over the runtime: metadata, layers, zero-copy views, to_source, errors."""

import gc
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import mpsb
from mpsb import _core

from conftest import EXAMPLE, mpsbc


def test_metadata_matches_manifest(example_bundle, example_manifest):
    b = mpsb.open(example_bundle)
    assert b.name == example_manifest["name"]
    assert b.metadata == example_manifest["metadata"]
    assert b.producer.startswith("mpsbc ")
    assert b.format_version == 1
    assert b.file_size == os.path.getsize(example_bundle)
    assert b.segment_offset % b.segment_alignment == 0
    assert b.segment_offset + b.segment_size == b.file_size


def test_skipped_modules(example_bundle, example_manifest, tmp_path):
    assert mpsb.open(example_bundle).skipped_modules == ()
    # The example with a "skipped" list, as tools/export writes one.
    shutil.copytree(EXAMPLE, tmp_path, dirs_exist_ok=True)  # with probes/
    skipped = [{"name": "act", "type": "Hardswish", "reason": "no MPS neuron"},
               {"name": "", "type": "Net", "reason": "the model itself"}]
    manifest = dict(example_manifest, skipped=skipped)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    mpsbc("compile", tmp_path / "manifest.json", "-o", tmp_path / "s.mpsb", "-q")
    assert list(mpsb.open(tmp_path / "s.mpsb").skipped_modules) == skipped


def test_layers_in_network_and_name_order(example_bundle, example_manifest):
    b = mpsb.open(example_bundle)
    names = [l["name"] for l in example_manifest["layers"]]
    assert [l.name for l in b.layers] == names
    assert [l.index for l in b.layers] == list(range(len(names)))
    assert [l.name for l in b.layers_by_name] == sorted(names)
    assert b["dw"] is b.layers[names.index("dw")]
    assert "dw" in b and "nope" not in b
    with pytest.raises(KeyError, match="nope"):
        b["nope"]


def test_conv_parameters_match_manifest(example_bundle, example_manifest):
    b = mpsb.open(example_bundle)
    for m in example_manifest["layers"]:
        layer = b[m["name"]]
        assert layer.kind == m["type"]
        assert layer.activation == m.get("activation", "none")
        p = layer.params
        assert isinstance(p, mpsb.ConvParams)
        assert (p.in_channels, p.out_channels, p.groups) == (m["in_channels"], m["out_channels"],
                                                             m["groups"])
        k = m["kernel_size"]
        assert p.kernel == (tuple(k) if isinstance(k, list) else (k, k))
        d = m["dilation"]
        assert p.dilation == (tuple(d) if isinstance(d, list) else (d, d))


def test_tensor_fields(example_bundle):
    b = mpsb.open(example_bundle)
    w = b["grouped"]["weight"]
    assert (w.role, w.dtype, w.source_dtype) == ("weight", "float32", "float32")
    assert (w.layout, w.source_layout, w.transform) == ("ohwi", "oihw", "conv_oihw_to_ohwi")
    assert w.source_shape == (32, 8, 3, 3) and w.shape == (32, 3, 3, 8)
    assert w.size == 4 * 32 * 8 * 9
    assert w.offset % b.tensor_alignment == 0
    assert w.file_offset == b.segment_offset + w.offset
    assert w.checksum != 0


def test_numpy_is_a_read_only_view_of_the_mapping(example_bundle):
    b = mpsb.open(example_bundle)
    t = b["stem"]["weight"]
    a1, a2 = t.numpy(), t.numpy()
    assert np.shares_memory(a1, a2)  # two views of one mapping, no copy
    assert not a1.flags.writeable and not a1.flags.owndata
    with pytest.raises(ValueError):
        a1[0, 0, 0, 0] = 1.0
    base = a1
    while isinstance(base, np.ndarray):
        base = base.base
    assert base is b._core
    # The view starts exactly at the tensor's place in the file.
    seg = memoryview(b._core)
    assert bytes(seg[t.file_offset:t.file_offset + t.size]) == a1.tobytes()
    assert a1.dtype == np.float32 and a1.shape == t.shape


def test_views_of_different_tensors_do_not_overlap(example_bundle):
    b = mpsb.open(example_bundle)
    arrays = [t.numpy() for _, t in b.tensors()]
    for i, a in enumerate(arrays):
        for c in arrays[i + 1:]:
            assert not np.shares_memory(a, c)


def test_arrays_outlive_the_bundle_object(example_bundle):
    b = mpsb.open(example_bundle)
    a = b["head"]["weight"].numpy()
    expected = bytes(a.tobytes())
    layer = b["head"]
    del b, layer
    gc.collect()
    assert a.tobytes() == expected  # the mapping is still there
    assert float(np.abs(a).sum()) > 0


def test_to_source_gives_the_source_bin(example_bundle, example_manifest):
    b = mpsb.open(example_bundle)
    checked = 0
    for m in example_manifest["layers"]:
        for role in ("weight", "bias"):
            if role not in m:
                continue
            t = b[m["name"]][role]
            src = t.to_source()
            assert src.shape == t.source_shape
            assert src.tobytes() == (EXAMPLE / m[role]).read_bytes(), (m["name"], role)
            assert src.flags.writeable and not np.shares_memory(src, t.numpy())
            checked += 1
    assert checked == sum(("weight" in m) + ("bias" in m) for m in example_manifest["layers"])


def test_to_source_differs_from_stored_order_for_conv(example_bundle):
    w = mpsb.open(example_bundle)["stem"]["weight"]
    assert np.array_equal(w.to_source(), w.numpy().transpose(0, 3, 1, 2))


def test_not_a_bundle_raises_with_code(tmp_path):
    with pytest.raises(mpsb.BundleError) as e:
        mpsb.open(EXAMPLE / "manifest.json")
    assert e.value.code == 11 and e.value.name == "bad identifier"
    assert "manifest.json" in e.value.message
    assert isinstance(e.value, Exception)


def test_missing_file_raises_io(tmp_path):
    with pytest.raises(mpsb.BundleError) as e:
        mpsb.open(tmp_path / "absent.mpsb")
    assert e.value.code == 30 and e.value.name == _core.error_name(30)
    assert "absent.mpsb" in str(e.value)


def test_truncated_file_raises(example_bundle, tmp_path):
    cut = tmp_path / "cut.mpsb"
    cut.write_bytes(example_bundle.read_bytes()[:100])
    with pytest.raises(mpsb.BundleError) as e:
        mpsb.open(cut)
    assert e.value.code != 0 and "cut.mpsb" in e.value.message


def test_flipped_weight_byte_is_caught_by_verify(example_bundle, tmp_path):
    b = mpsb.open(example_bundle)
    t = b["dilated"]["weight"]
    data = bytearray(example_bundle.read_bytes())
    data[t.file_offset + 5] ^= 0x40
    bad = tmp_path / "flipped.mpsb"
    bad.write_bytes(bytes(data))
    opened = mpsb.open(bad)  # structure is fine; only the checksum knows
    with pytest.raises(mpsb.BundleError) as e:
        opened.verify()
    assert e.value.code == 22 and e.value.name == "checksum mismatch"
    with pytest.raises(mpsb.BundleError) as e:
        mpsb.open(bad, verify=True)
    assert e.value.code == 22
    with pytest.raises(mpsb.BundleError):
        opened["dilated"]["weight"].to_source()
    # Without the check the flipped bytes come back, as stored.
    assert opened["dilated"]["weight"].to_source(verify=False).tobytes() != \
        b["dilated"]["weight"].to_source().tobytes()


def _venv_bin(name):
    path = Path(sysconfig.get_path("scripts")) / name
    return str(path) if path.exists() else shutil.which(name)


def test_console_commands(example_bundle, tmp_path):
    out = tmp_path / "again.mpsb"
    subprocess.run([_venv_bin("mpsbc"), "compile", EXAMPLE / "manifest.json", "-o", out, "-q"],
                   check=True)
    assert out.read_bytes() == example_bundle.read_bytes()  # deterministic
    r = subprocess.run([_venv_bin("mpsb-dump"), str(out)], check=True, capture_output=True,
                       text=True)
    assert "tiny_cnn" in r.stdout and "dilated" in r.stdout
    w = tmp_path / "w.bin"
    subprocess.run([_venv_bin("mpsb-dump"), str(out), "--extract", "grouped.weight", "-o", w],
                   check=True, capture_output=True)
    assert w.read_bytes() == mpsb.open(out)["grouped"]["weight"].to_source().tobytes()
    r = subprocess.run([_venv_bin("mpsb-dump"), str(tmp_path / "absent.mpsb")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "absent.mpsb" in r.stderr


def test_float16_stored_tensor(tmp_path, example_bundle):
    out = tmp_path / "half.mpsb"
    mpsbc("compile", EXAMPLE / "manifest.json", "-o", out, "-q", "--precision", "float16")
    b = mpsb.open(out)
    w = b["stem"]["weight"]
    assert w.dtype == "float16" and w.source_dtype == "float32"
    assert w.numpy().dtype == np.float16
    src32 = np.fromfile(EXAMPLE / "stem.weight.bin", dtype=np.float32).reshape(w.source_shape)
    assert np.array_equal(w.to_source(), src32.astype(np.float16))


def test_folded_batchnorm_and_legalized_groups(tmp_path, example_bundle):
    # conv "c" -> batch norm "bn" (folded by --fold-batchnorm), then a conv of
    # 2 channels per group, which MPS refuses and --legalize stores dense.
    rng = np.random.default_rng(0)

    def write(name, *shape):
        rng.standard_normal(shape, dtype=np.float32).tofile(tmp_path / name)
        return name

    bn = {"name": "bn", "type": "batch_norm2d", "num_features": 8, "follows": "c",
          "running_mean": write("bn.mean.bin", 8), "weight": write("bn.weight.bin", 8),
          "bias": write("bn.bias.bin", 8)}
    (rng.random(8, dtype=np.float32) + 0.5).tofile(tmp_path / "bn.var.bin")
    bn["running_var"] = "bn.var.bin"
    layers = [{"name": "c", "type": "conv2d", "in_channels": 3, "out_channels": 8,
               "kernel_size": 3, "padding": 1, "weight": write("c.weight.bin", 8, 3, 3, 3)},
              bn,
              {"name": "g", "type": "conv2d", "in_channels": 8, "out_channels": 8,
               "kernel_size": 1, "groups": 4, "weight": write("g.weight.bin", 8, 2, 1, 1)}]
    (tmp_path / "manifest.json").write_text(
        json.dumps({"format": "mpsb.manifest/1", "name": "fl", "layers": layers}))
    out = tmp_path / "fl.mpsb"
    mpsbc("compile", tmp_path / "manifest.json", "-o", out, "-q", "--fold-batchnorm",
          "--legalize")
    b = mpsb.open(out, verify=True)
    assert [l.name for l in b.layers] == ["c", "g"]
    assert b["c"].folded_batchnorm == "bn" and b["c"].legalized_groups == 0
    assert b["g"].folded_batchnorm is None and b["g"].legalized_groups == 4
    assert b["g"].params.groups == 1
    # The example has neither.
    for layer in mpsb.open(example_bundle):
        assert layer.folded_batchnorm is None and layer.legalized_groups == 0
