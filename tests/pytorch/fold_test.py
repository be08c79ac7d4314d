#!/usr/bin/python3
"""conv -> BatchNorm2d -> activation against PyTorch, folded and not.

    fold_test.py --mpsbc PATH --dump PATH [unittest args]

Each block (conv2d -> BatchNorm2d -> ReLU or LeakyReLU, random weights and
randomized running statistics) is written as a manifest by hand, with the
activation on the batch norm, and compiled with and without
--fold-batchnorm under --check (which compares each layer's output before
its activation, as the probes hold it). The whole block's output is then
rebuilt from the bundle: PyTorch's batch norm output, which --check proved
the bundle's layer reproduces, through Apple's neuron formula
(MPSCNNNeuronType.h) with the activation and parameters the bundle gives
the layer that carries it (the batch norm unfolded, the conv folded), and
compared with PyTorch's relu(bn(conv(x))).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import models  # noqa: E402

MPSBC = DUMP = None


def mps_neuron(kind, x, params):
    """Apple's formulas with the a the runtime's neuron() sets (a = 0 for
    ReLU, negative_slope for LeakyReLU; runtime/src/sources.cc)."""
    if kind == "none":
        return x
    if kind == "relu":
        return np.where(x >= 0, x, 0.0)
    if kind == "leaky_relu":
        return np.where(x >= 0, x, params["negative_slope"] * x)
    raise AssertionError("no formula for %r in this test" % kind)


def write(path, t):
    t.detach().contiguous().numpy().astype("<f4").tofile(path)


class Block:
    """A conv -> BN -> activation block and its manifest in `folder`."""

    def __init__(self, folder, activation, negative_slope=None, conv_bias=True, seed=0):
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=conv_bias)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU() if activation == "relu" else nn.LeakyReLU(negative_slope)
        models.randomize_norms(self.bn)
        for m in (self.conv, self.bn):
            m.eval()
        self.x = torch.randn(1, 3, 12, 12)
        with torch.no_grad():
            self.y_conv = self.conv(self.x)
            self.y_bn = self.bn(self.y_conv)
            self.y = self.act(self.y_bn)
        self.folder = folder
        os.makedirs(os.path.join(folder, "probes"), exist_ok=True)
        conv = {"name": "c", "type": "conv2d", "in_channels": 3, "out_channels": 8,
                "kernel_size": 3, "padding": 1, "weight": "c.weight.bin",
                "probe": self._probe("c", self.x, self.y_conv)}
        write(os.path.join(folder, "c.weight.bin"), self.conv.weight)
        if conv_bias:
            conv["bias"] = "c.bias.bin"
            write(os.path.join(folder, "c.bias.bin"), self.conv.bias)
        bn = {"name": "bn", "type": "batch_norm2d", "num_features": 8, "eps": self.bn.eps,
              "follows": "c", "activation": activation,
              "probe": self._probe("bn", self.y_conv, self.y_bn)}
        if negative_slope is not None:
            bn["negative_slope"] = negative_slope
        for role in ("weight", "bias", "running_mean", "running_var"):
            bn[role] = "bn.%s.bin" % role
            write(os.path.join(folder, bn[role]), getattr(self.bn, role))
        self.manifest = os.path.join(folder, "manifest.json")
        with open(self.manifest, "w") as f:
            json.dump({"format": "mpsb.manifest/1", "name": "block", "layers": [conv, bn]}, f,
                      indent=2)

    def _probe(self, name, x, y):
        write(os.path.join(self.folder, "probes", name + ".in.bin"), x)
        write(os.path.join(self.folder, "probes", name + ".out.bin"), y)
        return {"input": "probes/%s.in.bin" % name, "input_shape": list(x.shape),
                "output": "probes/%s.out.bin" % name, "output_shape": list(y.shape)}


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)


class FoldActivationTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.dir = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def compile(self, block, fold):
        bundle = os.path.join(self.dir, "folded.mpsb" if fold else "plain.mpsb")
        cmd = [MPSBC, "compile", block.manifest, "-o", bundle, "--check", "--json"]
        if fold:
            cmd.append("--fold-batchnorm")
        r = run(*cmd)
        self.assertEqual(r.returncode, 0, r.stderr)
        report = json.loads(r.stdout)
        self.assertTrue(report["check"], "nothing was checked")
        self.assertTrue(all(c["passed"] for c in report["check"]), report["check"])
        return bundle, report

    def layers(self, bundle):
        r = run(DUMP, bundle, "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        return {l["name"]: l for l in json.loads(r.stdout)["layers"]}

    def check_block(self, block, kind, fold):
        bundle, report = self.compile(block, fold)
        layers = self.layers(bundle)
        carrier = "c" if fold else "bn"
        if fold:
            self.assertNotIn("bn", layers)
            self.assertEqual([c["layer"] for c in report["check"]], ["c"])
        else:
            self.assertEqual(layers["c"]["activation"], "none")
        self.assertEqual(layers[carrier]["activation"], kind)
        got = mps_neuron(layers[carrier]["activation"], block.y_bn.double().numpy(),
                         layers[carrier]["activation_params"])
        want = block.y.double().numpy()
        rel = float(np.max(np.abs(got - want)) / max(float(np.max(np.abs(want))), 1e-12))
        self.assertLessEqual(rel, 1e-6, "%s (fold %s): block output differs" % (kind, fold))

    def test_folded_bundle_says_it_is_folded(self):
        """Layer.folded_batchnorm in mpsb-dump's views; --extract refuses the
        folded weight and bias instead of giving other bytes than PyTorch's;
        mpsb-dump --check needs no --fold-batchnorm."""
        block = Block(os.path.join(self.dir, "m"), "relu")
        folded, _ = self.compile(block, fold=True)
        plain, _ = self.compile(block, fold=False)
        self.assertEqual(self.layers(folded)["c"]["folded_batchnorm"], "bn")
        self.assertIsNone(self.layers(plain)["c"]["folded_batchnorm"])
        summary = run(DUMP, folded)
        self.assertIn("folded          1 batch norm: bn into c", summary.stdout)
        layer = run(DUMP, folded, "--layer", "c")
        self.assertIn("source     float32 oihw 8x3x3x3, folded with batch norm 'bn'", layer.stdout)
        explain = run(DUMP, folded, "--explain")
        self.assertIn("c.weight float32 ohwi 8x3x3x3, folded with batch norm bn", explain.stdout)

        out = os.path.join(self.dir, "w.bin")
        for role in ("weight", "bias"):
            r = run(DUMP, folded, "--extract", "c." + role, "-o", out)
            self.assertEqual(r.returncode, 1, r.stderr)
            self.assertIn("c.%s holds folded values: batch norm 'bn' was folded into c "
                          "(--fold-batchnorm)" % role, r.stderr)
            self.assertFalse(os.path.exists(out))
            r = run(DUMP, plain, "--extract", "c." + role, "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as got, open(os.path.join(block.folder, "c.%s.bin" % role),
                                              "rb") as want:
                self.assertEqual(got.read(), want.read())
            os.remove(out)

        for bundle in (folded, plain):
            r = run(DUMP, bundle, "--check", block.manifest)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("OK: %d layers checked" % (1 if bundle == folded else 2), r.stdout)
        # The same with --fold-batchnorm: the bundle decides, the flag
        # changes nothing for a bundle that records its folds.
        r = run(DUMP, plain, "--check", block.manifest, "--fold-batchnorm")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("OK: 2 layers checked", r.stdout)

        # A manifest whose bn follows no conv: the folded bundle says where
        # bn went instead of only "no layer bn".
        with open(block.manifest) as f:
            manifest = json.load(f)
        del manifest["layers"][1]["follows"]
        other = os.path.join(block.folder, "unfollowed.json")
        with open(other, "w") as f:
            json.dump(manifest, f)
        r = run(DUMP, folded, "--check", other)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("/layers/1: --check: the bundle has no layer bn; it was folded into c "
                      "(--fold-batchnorm), but in this manifest it follows no conv", r.stderr)

    def test_conv_bn_relu(self):
        for fold in (False, True):
            with self.subTest(fold=fold):
                self.check_block(Block(os.path.join(self.dir, "relu"), "relu"), "relu", fold)

    def test_conv_bn_leaky_relu_without_conv_bias(self):
        for fold in (False, True):
            with self.subTest(fold=fold):
                block = Block(os.path.join(self.dir, "leaky"), "leaky_relu", 0.1, conv_bias=False)
                self.check_block(block, "leaky_relu", fold)
                layer = self.layers(os.path.join(
                    self.dir, "folded.mpsb" if fold else "plain.mpsb"))["c" if fold else "bn"]
                self.assertAlmostEqual(layer["activation_params"]["negative_slope"], 0.1, 6)


def main():
    global MPSBC, DUMP
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True, help="path to the mpsbc executable")
    parser.add_argument("--dump", required=True, help="path to the mpsb-dump executable")
    args, rest = parser.parse_known_args()
    MPSBC, DUMP = args.mpsbc, args.dump
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
