#!/usr/bin/python3
"""Grouped convs MPS refuses, made runnable: `mpsbc compile --legalize`.

    legalize_test.py --mpsbc PATH --dump PATH --work DIR

A model with the two cases Apple's MPSCNNConvolution.h refuses (docs/LAYERS.md,
"Convolutions MPS refuses"): groups 2 with 3 channels per group (also strided,
with a 3x5 kernel and 4 in / 3 out per group) and a depthwise conv with
channel multiplier 2. Exported with tools/export (probes from PyTorch), then:
  - without --legalize the compile fails, naming each layer and the flag,
    and writes nothing;
  - with --legalize --check every layer passes against PyTorch's probes, at
    float32, float16, uint8-linear and uint8-lut;
  - the stored dense weight, run by PyTorch itself as a groups=1 conv, gives
    the grouped module's output;
  - the zeros outside the diagonal blocks stay exactly 0 in every precision;
  - `mpsb-dump --extract` gives back the exporter's bytes exactly;
  - the dump shows the layers as legalized (--layer, --json, --explain);
  - with the blocks misplaced (--debug-mutate wrong-block) --check fails on
    exactly the legalized layers and nothing is written.
A second model holds grouped ConvTranspose2d layers (3 channels per group;
stride 2 with output_padding 1, and dilation 2), stored dense and rotated
(ConvTransposeGroupedToDenseRotated) and checked the same way.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import unittest

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

import mpsb_export  # noqa: E402

ARGS = None
# The layers MPS refuses and their manifest groups.
LEGALIZED = {"g2": 2, "dw2": 6, "g2s": 2}


class Legalize(nn.Module):
    def __init__(self):
        super().__init__()
        self.g2 = nn.Conv2d(6, 6, 3, padding=1, groups=2)                 # 3 per group
        self.dw2 = nn.Conv2d(6, 12, 3, padding=1, groups=6, bias=False)  # multiplier 2
        self.pw = nn.Conv2d(12, 8, 1)                                     # MPS takes it
        self.g2s = nn.Conv2d(8, 6, (3, 5), stride=2, padding=(1, 2), groups=2)  # 4 in, 3 out

    def forward(self, x):
        x = torch.relu(self.g2(x))
        x = self.dw2(x)
        x = torch.relu(self.pw(x))
        return self.g2s(x)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


class LegalizeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = os.path.join(ARGS.work, "legalize")
        shutil.rmtree(cls.work, ignore_errors=True)
        cls.export_dir = os.path.join(cls.work, "export")
        torch.manual_seed(0)
        cls.model = Legalize().eval()
        cls.input = torch.randn(1, 6, 9, 11)
        cls.manifest = mpsb_export.export(cls.model, cls.input, cls.export_dir, name="legalize")
        cls.manifest_path = os.path.join(cls.export_dir, "manifest.json")
        cls.bundle = os.path.join(cls.work, "model.mpsb")
        proc = run([ARGS.mpsbc, "compile", cls.manifest_path, "-o", cls.bundle, "--legalize",
                    "--check", "--json"])
        if proc.returncode != 0:
            raise AssertionError("mpsbc --legalize --check exited %d:\n%s" %
                                 (proc.returncode, proc.stderr))
        cls.report = json.loads(proc.stdout)
        cls.dump = json.loads(run([ARGS.dump, cls.bundle, "--json"]).stdout)

    def layer_json(self, name):
        return next(l for l in self.dump["layers"] if l["name"] == name)

    def stored(self, name, role="weight"):
        """A tensor's stored values, read from the file at its offset."""
        t = next(t for t in self.layer_json(name)["tensors"] if t["role"] == role)
        dtype = {"float32": "<f4", "float16": "<f2", "uint8": "u1"}[t["dtype"]]
        raw = np.fromfile(self.bundle, dtype, count=int(np.prod(t["shape"])),
                          offset=t["file_offset"])
        return raw.reshape(t["shape"])

    def test_refused_without_the_flag(self):
        out = os.path.join(self.work, "refused.mpsb")
        proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out])
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertFalse(os.path.exists(out))
        errors = [l for l in proc.stderr.splitlines() if "--legalize" in l]
        for name in LEGALIZED:
            line = [l for l in errors if "layer '%s'" % name in l]
            self.assertEqual(len(line), 1, proc.stderr)
        self.assertIn("multiple of 4 channels per group", proc.stderr)
        self.assertIn("channel multiplier 1", proc.stderr)
        self.assertNotIn("layer 'pw'", proc.stderr)

    def test_check_passes_on_every_layer(self):
        checks = {c["layer"]: c for c in self.report["check"]}
        self.assertEqual(sorted(checks), sorted(["g2", "dw2", "pw", "g2s"]))
        for name, c in checks.items():
            self.assertTrue(c["passed"], c)
            self.assertLess(c["max_rel_error"], 1e-5, name)

    def test_cost_report(self):
        by_name = {l["name"]: l for l in self.report["layers"]}
        for name, groups in LEGALIZED.items():
            conv = getattr(self.model, name)
            o, ig, kh, kw = conv.weight.shape
            zeros = o * kh * kw * ig * (groups - 1)
            got = by_name[name]["legalized"]
            self.assertEqual(got["groups"], groups)
            self.assertEqual(got["extra_weight_bytes"], 4 * zeros)
            self.assertEqual(got["extra_multiply_adds_per_position"], zeros)
            out = conv(torch.zeros(1, conv.in_channels, 9, 11)) if name == "g2" else None
            if out is not None:
                self.assertEqual(got["output_positions"], out.shape[2] * out.shape[3])
        self.assertNotIn("legalized", by_name["pw"])

    def test_dense_weight_run_by_pytorch(self):
        # The stored [O][kH][kW][I] as PyTorch's [O][I][kH][kW], groups 1.
        x = self.input
        with torch.no_grad():
            for name in ("g2", "dw2", "pw", "g2s"):
                conv = getattr(self.model, name)
                dense = torch.from_numpy(self.stored(name).transpose(0, 3, 1, 2).copy())
                self.assertEqual(dense.shape[1], conv.in_channels)
                want = conv(x)
                got = nn.functional.conv2d(x, dense, conv.bias, conv.stride, conv.padding,
                                           conv.dilation, groups=1)
                err = float((got - want).abs().max() / want.abs().max())
                self.assertLess(err, 1e-6, name)
                x = torch.relu(want) if name in ("g2", "pw") else want

    def test_zeros_outside_the_blocks(self):
        for name, groups in LEGALIZED.items():
            w = self.stored(name)
            o, i = w.shape[0], w.shape[3]
            mask = np.zeros((o, i), bool)
            for c in range(o):
                g = c // (o // groups)
                mask[c, g * (i // groups):(g + 1) * (i // groups)] = True
            off = w.transpose(0, 3, 1, 2)[~mask]
            self.assertTrue(np.all(off == 0), name)
            self.assertTrue(np.any(w.transpose(0, 3, 1, 2)[mask] != 0), name)

    def test_extract_gives_the_exporters_bytes(self):
        for layer in self.manifest["layers"]:
            for role in ("weight", "bias"):
                if role not in layer:
                    continue
                out = os.path.join(self.work, "extracted.bin")
                proc = run([ARGS.dump, self.bundle, "--extract",
                            "%s.%s" % (layer["name"], role), "-o", out])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                with open(out, "rb") as got, \
                        open(os.path.join(self.export_dir, layer[role]), "rb") as want:
                    self.assertEqual(got.read(), want.read(), "%s.%s" % (layer["name"], role))

    def test_dump_shows_legalized(self):
        for name, groups in LEGALIZED.items():
            j = self.layer_json(name)
            self.assertEqual(j["legalized_groups"], groups)
            self.assertEqual(j["params"]["groups"], 1)
            weight = next(t for t in j["tensors"] if t["role"] == "weight")
            self.assertEqual(weight["transform"], "conv_grouped_to_dense")
            text = run([ARGS.dump, self.bundle, "--layer", name]).stdout
            self.assertIn("groups %d stored as the equivalent dense conv" % groups, text)
        self.assertEqual(self.layer_json("pw")["legalized_groups"], 0)
        explain = run([ARGS.dump, self.bundle, "--explain"]).stdout
        self.assertEqual(explain.count("legalized: dense form of groups"), len(LEGALIZED))
        proc = run([ARGS.dump, self.bundle, "--check", self.manifest_path])
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_precisions(self):
        for precision in ("float16", "uint8-linear", "uint8-lut"):
            with self.subTest(precision=precision):
                out = os.path.join(self.work, "p.mpsb")
                proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out, "--legalize",
                            "--check", "--json", "--precision", precision])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                report = json.loads(proc.stdout)
                self.assertTrue(all(c["passed"] for c in report["check"]), report["check"])
                dump = json.loads(run([ARGS.dump, out, "--json"]).stdout)
                for name, groups in LEGALIZED.items():
                    layer = next(l for l in dump["layers"] if l["name"] == name)
                    self.assertEqual(layer["legalized_groups"], groups)
                    # Back to float32 as MPS reads them: the zeros stay 0.
                    values = os.path.join(self.work, "values.bin")
                    args = [ARGS.dump, out, "--extract", name + ".weight", "-o", values]
                    if precision.startswith("uint8"):
                        args += ["--as", "float32"]
                    proc = run(args)
                    self.assertEqual(proc.returncode, 0, proc.stderr)
                    conv = getattr(self.model, name)
                    dtype = "<f2" if precision == "float16" else "<f4"
                    back = np.fromfile(values, dtype).reshape(conv.weight.shape)
                    err = np.abs(back - conv.weight.detach().numpy()).max()
                    self.assertLess(err, 0.01 * np.abs(conv.weight.detach().numpy()).max())
                    stored = self.stored_in(dump, out, name)
                    zeros = self.off_block(stored, groups, dump, out, name, precision)
                    self.assertLessEqual(np.abs(zeros).max(), 1e-6, (name, precision))

    @staticmethod
    def stored_in(dump, path, name, role="weight"):
        layer = next(l for l in dump["layers"] if l["name"] == name)
        t = next(t for t in layer["tensors"] if t["role"] == role)
        dtype = {"float32": "<f4", "float16": "<f2", "uint8": "u1"}[t["dtype"]]
        return np.fromfile(path, dtype, count=int(np.prod(t["shape"])),
                           offset=t["file_offset"]).reshape(t["shape"])

    def off_block(self, w, groups, dump, path, name, precision):
        """The stored values outside the diagonal blocks, dequantized as MPS
        does (ranges: min + code/255 * (max - min); table: table[code])."""
        w = w.astype(np.float64)
        if precision == "uint8-linear":
            r = self.stored_in(dump, path, name, "quant_ranges").astype(np.float64)
            w = w / 255.0 * (r[:, 1] - r[:, 0]).reshape(-1, 1, 1, 1) + r[:, 0].reshape(-1, 1, 1, 1)
        elif precision == "uint8-lut":
            table = self.stored_in(dump, path, name, "quant_lookup_table")
            w = table[w.astype(np.int64)].astype(np.float64)
        o, i = w.shape[0], w.shape[3]
        mask = np.zeros((o, i), bool)
        for c in range(o):
            g = c // (o // groups)
            mask[c, g * (i // groups):(g + 1) * (i // groups)] = True
        return w.transpose(0, 3, 1, 2)[~mask]

    def test_wrong_block_placement_fails_the_check(self):
        out = os.path.join(self.work, "mutated.mpsb")
        proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out, "--legalize",
                    "--check", "--json", "--debug-mutate", "wrong-block"])
        self.assertEqual(proc.returncode, 5, proc.stderr)
        self.assertFalse(os.path.exists(out))
        failed = {c["layer"] for c in json.loads(proc.stdout)["check"] if not c["passed"]}
        self.assertEqual(failed, set(LEGALIZED))


# Grouped transposed convs MPS refuses (3 channels per group), stored as the
# dense transposed conv (Transform ConvTransposeGroupedToDenseRotated).
LEGALIZED_T = {"t2": 2, "t2d": 2}


class LegalizeTransposed(nn.Module):
    def __init__(self):
        super().__init__()
        self.t2 = nn.ConvTranspose2d(6, 6, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.t2d = nn.ConvTranspose2d(6, 6, 3, padding=1, dilation=2, groups=2, bias=False)

    def forward(self, x):
        return self.t2d(torch.relu(self.t2(x)))


class LegalizeTransposedTest(unittest.TestCase):
    """The same checks for grouped ConvTranspose2d: refused without
    --legalize; with it --check passes at every precision (the weight stays
    float32, as MPSCNNConvolutionTranspose takes it), the stored dense
    weight rotated back is PyTorch's groups=1 equivalent, --extract gives the
    exporter's bytes, and wrong-block fails exactly these layers."""

    @classmethod
    def setUpClass(cls):
        cls.work = os.path.join(ARGS.work, "legalize_transposed")
        shutil.rmtree(cls.work, ignore_errors=True)
        cls.export_dir = os.path.join(cls.work, "export")
        torch.manual_seed(1)
        cls.model = LegalizeTransposed().eval()
        cls.input = torch.randn(1, 6, 5, 7)
        cls.manifest = mpsb_export.export(cls.model, cls.input, cls.export_dir,
                                          name="legalize_transposed")
        cls.manifest_path = os.path.join(cls.export_dir, "manifest.json")
        cls.bundle = os.path.join(cls.work, "model.mpsb")
        proc = run([ARGS.mpsbc, "compile", cls.manifest_path, "-o", cls.bundle, "--legalize",
                    "--check", "--json"])
        if proc.returncode != 0:
            raise AssertionError("mpsbc --legalize --check exited %d:\n%s" %
                                 (proc.returncode, proc.stderr))
        cls.report = json.loads(proc.stdout)
        cls.dump = json.loads(run([ARGS.dump, cls.bundle, "--json"]).stdout)

    def test_refused_without_the_flag(self):
        out = os.path.join(self.work, "refused.mpsb")
        proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out])
        self.assertEqual(proc.returncode, 3, proc.stderr)
        self.assertFalse(os.path.exists(out))
        errors = [l for l in proc.stderr.splitlines() if "--legalize" in l]
        for name in LEGALIZED_T:
            line = [l for l in errors if "layer '%s'" % name in l]
            self.assertEqual(len(line), 1, proc.stderr)
            self.assertIn("multiple of 4 channels per group", line[0])

    def test_check_passes_on_every_layer(self):
        checks = {c["layer"]: c for c in self.report["check"]}
        self.assertEqual(sorted(checks), sorted(LEGALIZED_T))
        for name, c in checks.items():
            self.assertTrue(c["passed"], c)
            self.assertLess(c["max_rel_error"], 1e-5, name)

    def test_cost_report(self):
        by_name = {l["name"]: l for l in self.report["layers"]}
        for name, groups in LEGALIZED_T.items():
            conv = getattr(self.model, name)
            i, og, kh, kw = conv.weight.shape
            zeros = og * groups * kh * kw * i - i * og * kh * kw
            got = by_name[name]["legalized"]
            self.assertEqual(got["groups"], groups)
            self.assertEqual(got["extra_weight_bytes"], 4 * zeros)
            self.assertEqual(got["extra_multiply_adds_per_position"], zeros)
        # Output positions of each probe, from PyTorch's own shapes.
        with torch.no_grad():
            mid = self.model.t2(self.input)
            out = self.model.t2d(mid)
        self.assertEqual(by_name["t2"]["legalized"]["output_positions"],
                         mid.shape[2] * mid.shape[3])
        self.assertEqual(by_name["t2d"]["legalized"]["output_positions"],
                         out.shape[2] * out.shape[3])

    def dense_weight(self, name, dump=None, path=None):
        """The stored [O][kH][kW][I], rotated back, as PyTorch's dense
        ConvTranspose2d weight [I][O][kH][kW]."""
        w = LegalizeTest.stored_in(dump or self.dump, path or self.bundle, name)
        return w[:, ::-1, ::-1, :].transpose(3, 0, 1, 2).copy()

    def test_dense_weight_run_by_pytorch(self):
        x = self.input
        with torch.no_grad():
            for name in ("t2", "t2d"):
                conv = getattr(self.model, name)
                dense = torch.from_numpy(self.dense_weight(name))
                self.assertEqual(tuple(dense.shape[:2]), (conv.in_channels, conv.out_channels))
                want = conv(x)
                got = nn.functional.conv_transpose2d(x, dense, conv.bias, conv.stride,
                                                     conv.padding, conv.output_padding, 1,
                                                     conv.dilation)
                err = float((got - want).abs().max() / want.abs().max())
                self.assertLess(err, 1e-6, name)
                x = torch.relu(want)

    def off_block(self, w, groups):
        """[I][O][kH][kW] values outside the diagonal blocks."""
        i, o = w.shape[0], w.shape[1]
        mask = np.zeros((i, o), bool)
        for c in range(i):
            g = c // (i // groups)
            mask[c, g * (o // groups):(g + 1) * (o // groups)] = True
        return w[~mask], w[mask]

    def test_zeros_outside_the_blocks(self):
        for name, groups in LEGALIZED_T.items():
            off, on = self.off_block(self.dense_weight(name), groups)
            self.assertTrue(np.all(off == 0), name)
            self.assertTrue(np.any(on != 0), name)

    def test_extract_gives_the_exporters_bytes(self):
        for layer in self.manifest["layers"]:
            for role in ("weight", "bias"):
                if role not in layer:
                    continue
                out = os.path.join(self.work, "extracted.bin")
                proc = run([ARGS.dump, self.bundle, "--extract",
                            "%s.%s" % (layer["name"], role), "-o", out])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                with open(out, "rb") as got, \
                        open(os.path.join(self.export_dir, layer[role]), "rb") as want:
                    self.assertEqual(got.read(), want.read(), "%s.%s" % (layer["name"], role))

    def test_dump_shows_legalized(self):
        for name, groups in LEGALIZED_T.items():
            j = next(l for l in self.dump["layers"] if l["name"] == name)
            self.assertEqual(j["legalized_groups"], groups)
            self.assertEqual(j["params"]["groups"], 1)
            weight = next(t for t in j["tensors"] if t["role"] == "weight")
            self.assertEqual(weight["transform"], "conv_transpose_grouped_to_dense_rotated")
            text = run([ARGS.dump, self.bundle, "--layer", name]).stdout
            self.assertIn("groups %d stored as the equivalent dense conv" % groups, text)
        explain = run([ARGS.dump, self.bundle, "--explain"]).stdout
        self.assertEqual(explain.count("legalized: dense form of groups"), len(LEGALIZED_T))
        proc = run([ARGS.dump, self.bundle, "--check", self.manifest_path])
        self.assertEqual(proc.returncode, 0, proc.stderr)

    def test_precisions(self):
        # MPSCNNConvolutionTranspose takes float32 weights only, so every
        # precision keeps the dense weight float32 (docs/LAYERS.md): its
        # zeros stay exact and --check passes.
        for precision in ("float16", "uint8-linear", "uint8-lut"):
            with self.subTest(precision=precision):
                out = os.path.join(self.work, "p.mpsb")
                proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out, "--legalize",
                            "--check", "--json", "--precision", precision])
                self.assertEqual(proc.returncode, 0, proc.stderr)
                report = json.loads(proc.stdout)
                self.assertTrue(all(c["passed"] for c in report["check"]), report["check"])
                dump = json.loads(run([ARGS.dump, out, "--json"]).stdout)
                for name, groups in LEGALIZED_T.items():
                    self.assertIn("layer %s: kept float32" % name, proc.stderr)
                    layer = next(l for l in dump["layers"] if l["name"] == name)
                    self.assertEqual(layer["legalized_groups"], groups)
                    weight = next(t for t in layer["tensors"] if t["role"] == "weight")
                    self.assertEqual(weight["dtype"], "float32")
                    dense = self.dense_weight(name, dump, out)
                    off, _ = self.off_block(dense, groups)
                    self.assertTrue(np.all(off == 0), (name, precision))

    def test_wrong_block_placement_fails_the_check(self):
        out = os.path.join(self.work, "mutated.mpsb")
        proc = run([ARGS.mpsbc, "compile", self.manifest_path, "-o", out, "--legalize",
                    "--check", "--json", "--debug-mutate", "wrong-block"])
        self.assertEqual(proc.returncode, 5, proc.stderr)
        self.assertFalse(os.path.exists(out))
        failed = {c["layer"] for c in json.loads(proc.stdout)["check"] if not c["passed"]}
        self.assertEqual(failed, set(LEGALIZED_T))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpsbc", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--work", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
