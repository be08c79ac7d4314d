#!/usr/bin/python3
"""Tests of the PyTorch exporter (tools/export/mpsb_export) on its own.

Run: /usr/bin/python3 tests/pytorch/export_test.py   (plain unittest)

The end-to-end check against the compiler is fidelity_test.py; this file
checks what the exporter writes: fields per layer kind, graph facts
(input_shape, activation, follows), unsupported modules, probes,
determinism and the command line.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXPORT_DIR = os.path.join(ROOT, "tools", "export")
sys.path[:0] = [EXPORT_DIR, HERE]

import models  # noqa: E402
import mpsb_export  # noqa: E402
from mpsb_export import ExportError, ExportWarning, UnsupportedModuleError  # noqa: E402


def read_bin(path, shape=None):
    a = np.fromfile(path, dtype="<f4")
    return a if shape is None else a.reshape(shape)


def tensor_bytes(t):
    return t.detach().cpu().contiguous().numpy().astype("<f4").tobytes()


def quiet_export(*args, **kwargs):
    """export() with its warnings recorded instead of printed."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = mpsb_export.export(*args, **kwargs)
    return manifest, [str(w.message) for w in caught if issubclass(w.category, ExportWarning)]


def quiet_plan(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = mpsb_export.plan(*args, **kwargs)
    return plan, [str(w.message) for w in caught if issubclass(w.category, ExportWarning)]


def by_name(manifest):
    return {layer["name"]: layer for layer in manifest["layers"]}


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="mpsb_export_test_")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def out(self, name="out"):
        return os.path.join(self.tmp, name)


class AllKinds(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2), dilation=1, groups=2)
        self.conv_same = nn.Conv2d(8, 8, 3, padding="same", dilation=2, bias=False)
        self.conv_valid = nn.Conv2d(8, 8, 1, padding="valid")
        self.bn = nn.BatchNorm2d(8)
        self.bn_plain = nn.BatchNorm2d(8, affine=False)
        self.inorm = nn.InstanceNorm2d(8, affine=True, eps=1e-3)
        self.inorm_plain = nn.InstanceNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1, groups=2)
        self.fc = nn.Linear(4 * 8 * 16, 6)
        self.fc_nobias = nn.Linear(6, 3, bias=False)

    def forward(self, x):
        x = self.conv(x)
        x = self.conv_same(x)
        x = self.conv_valid(x)
        x = self.bn_plain(self.bn(x))
        x = self.inorm_plain(self.inorm(x))
        x = self.up(x)
        x = self.fc(x.view(x.size(0), -1))
        return self.fc_nobias(x)


class LayerFieldsTest(TempDirTest):
    @classmethod
    def setUpClass(cls):
        torch.manual_seed(0)
        cls.model = models.randomize_norms(AllKinds()).eval()
        cls.x = torch.randn(1, 4, 8, 8)

    def test_fields_match_modules(self):
        m, out = self.model, self.out()
        manifest, _ = quiet_export(m, self.x, out, name="kinds")
        L = by_name(manifest)
        self.assertEqual(manifest["format"], "mpsb.manifest/1")
        self.assertEqual(manifest["name"], "kinds")
        self.assertEqual(manifest["metadata"]["exporter"], "mpsb_export")
        self.assertEqual(manifest["metadata"]["torch"], torch.__version__)

        c = L["conv"]
        self.assertEqual(c["type"], "conv2d")
        self.assertEqual((c["in_channels"], c["out_channels"], c["groups"]), (4, 8, 2))
        self.assertEqual(c["kernel_size"], [3, 5])
        self.assertEqual(c["stride"], [2, 1])
        self.assertEqual(c["padding"], [1, 2])
        self.assertEqual(c["dilation"], [1, 1])
        self.assertEqual(c["weight"], "conv.weight.bin")
        self.assertEqual(c["bias"], "conv.bias.bin")

        self.assertEqual(L["conv_same"]["padding"], [2, 2])   # dilation 2 * (3 - 1) / 2
        self.assertNotIn("bias", L["conv_same"])
        self.assertEqual(L["conv_valid"]["padding"], [0, 0])

        u = L["up"]
        self.assertEqual(u["type"], "conv_transpose2d")
        self.assertEqual((u["in_channels"], u["out_channels"], u["groups"]), (8, 4, 2))
        self.assertEqual(u["output_padding"], [1, 1])
        self.assertEqual(u["stride"], [2, 2])

        b = L["bn"]
        self.assertEqual(b["type"], "batch_norm2d")
        self.assertEqual(b["num_features"], 8)
        self.assertEqual(b["eps"], 1e-5)
        for role in ("weight", "bias", "running_mean", "running_var"):
            self.assertEqual(b[role], "bn.%s.bin" % role)
        self.assertNotIn("weight", L["bn_plain"])
        self.assertNotIn("bias", L["bn_plain"])
        self.assertIn("running_var", L["bn_plain"])

        i = L["inorm"]
        self.assertEqual(i["type"], "instance_norm2d")
        self.assertEqual((i["num_features"], i["eps"]), (8, 1e-3))
        self.assertEqual(i["weight"], "inorm.weight.bin")
        self.assertNotIn("weight", L["inorm_plain"])
        self.assertNotIn("running_mean", L["inorm_plain"])

        f = L["fc"]
        self.assertEqual(f["type"], "linear")
        self.assertEqual((f["in_features"], f["out_features"]), (512, 6))
        self.assertEqual(f["input_shape"], [4, 8, 16])  # view(N, -1) of the [4, 8, 16] map
        self.assertNotIn("input_shape", L["fc_nobias"])
        self.assertNotIn("bias", L["fc_nobias"])

        # Every tensor file holds exactly the module's tensor as float32.
        for name, module in m.named_modules():
            if name not in L:
                continue
            for role in ("weight", "bias", "running_mean", "running_var"):
                if role in L[name]:
                    with open(os.path.join(out, L[name][role]), "rb") as fh:
                        self.assertEqual(fh.read(), tensor_bytes(getattr(module, role)),
                                         "%s.%s" % (name, role))

    def test_layers_in_execution_order_not_definition_order(self):
        class Reversed(nn.Module):
            def __init__(self):
                super().__init__()
                self.last = nn.Conv2d(8, 4, 1)
                self.first = nn.Conv2d(3, 8, 1)

            def forward(self, x):
                return self.last(self.first(x))

        plan, _ = quiet_plan(Reversed(), torch.randn(1, 3, 4, 4))
        self.assertEqual([layer.name for layer in plan.layers], ["first", "last"])

    def test_metadata_merged_and_checked(self):
        manifest, _ = quiet_export(nn.Conv2d(3, 4, 1), torch.randn(1, 3, 2, 2), self.out(),
                                   metadata={"license": "MIT"})
        self.assertEqual(manifest["metadata"],
                         {"exporter": "mpsb_export", "torch": torch.__version__,
                          "license": "MIT"})
        # The root module itself is a layer; its qualified name is "", so
        # the layer is named after its kind.
        self.assertEqual(manifest["layers"][0]["name"], "conv2d")
        self.assertEqual(manifest["layers"][0]["weight"], "conv2d.weight.bin")
        with self.assertRaisesRegex(ExportError, "strings"):
            mpsb_export.export(nn.Conv2d(3, 4, 1), torch.randn(1, 3, 2, 2), self.out("b"),
                               metadata={"epochs": 10})


class GraphFactsTest(unittest.TestCase):
    def test_alexnet_linear_after_flatten_gets_input_shape(self):
        m, x = models.make_alexnet()
        plan, _ = quiet_plan(m, x, probes=False)
        self.assertTrue(plan.traced)
        shapes = {layer.name: layer.input_shape for layer in plan.layers if layer.kind == "linear"}
        self.assertEqual(shapes, {"classifier.1": [256, 6, 6], "classifier.4": None,
                                  "classifier.6": None})

    def test_activation_fusion(self):
        m, x = models.make_corners()
        plan, _ = quiet_plan(m, x)
        acts = {layer.name: layer.activation for layer in plan.layers}
        self.assertEqual(acts, {
            "conv_1x7": ("relu", None),           # torch.relu
            "conv_7x1": None,
            "dilated": ("leaky_relu", 0.2),       # nn.LeakyReLU(0.2)
            "grouped2": ("relu6", None),          # F.relu6
            "grouped4": None,
            "strided": None,                      # followed by a batch norm
            "bn": None,
            "up_grouped": ("sigmoid", None),      # torch.sigmoid
            "up_dilated": None,
            "up_asym": ("tanh", None),            # Tensor.tanh
            "fc_map": ("relu", None),             # F.relu(inplace=True)
            "fc_vec": None,
        })
        self.assertEqual({layer.name: layer.input_shape for layer in plan.layers
                          if layer.kind == "linear"}, {"fc_map": [8, 2, 3], "fc_vec": None})

    def test_activation_written_to_manifest(self):
        m, x = models.make_corners()
        with tempfile.TemporaryDirectory() as out:
            manifest, _ = quiet_export(m, x, out)
        L = by_name(manifest)
        self.assertEqual(L["dilated"]["activation"], "leaky_relu")
        self.assertEqual(L["dilated"]["negative_slope"], 0.2)
        self.assertEqual(L["grouped2"]["activation"], "relu6")
        self.assertNotIn("activation", L["conv_7x1"])
        self.assertNotIn("negative_slope", L["grouped2"])

    def test_activation_after_a_batch_norm_written_on_it(self):
        class NormActs(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.bn = nn.BatchNorm2d(4)
                self.act = nn.LeakyReLU(0.3)
                self.conv2 = nn.Conv2d(4, 4, 1)
                self.bn2 = nn.BatchNorm2d(4)
                self.prelu = nn.PReLU(4)
                self.conv3 = nn.Conv2d(4, 4, 1)
                self.bn3 = nn.BatchNorm2d(4)

            def forward(self, x):
                x = self.act(self.bn(self.conv(x)))
                x = self.prelu(self.bn2(self.conv2(x)))
                y = self.bn3(self.conv3(x))
                return F.relu(y) + y   # the norm's output has two users: nothing fused

        m = models.randomize_norms(NormActs()).eval()
        with tempfile.TemporaryDirectory() as out:
            manifest, _ = quiet_export(m, torch.randn(1, 3, 5, 5), out)
            L = by_name(manifest)
            with open(os.path.join(out, L["bn2"]["activation_weight"]), "rb") as f:
                slopes = f.read()
        self.assertEqual([layer["name"] for layer in manifest["layers"]],
                         ["conv", "bn", "conv2", "bn2", "conv3", "bn3"])   # no prelu layer
        self.assertEqual((L["bn"]["activation"], L["bn"]["negative_slope"], L["bn"]["follows"]),
                         ("leaky_relu", 0.3, "conv"))
        self.assertEqual((L["bn2"]["activation"], L["bn2"]["num_parameters"]), ("prelu", 4))
        self.assertEqual(slopes, tensor_bytes(m.prelu.weight))
        self.assertNotIn("activation", L["bn3"])
        for conv in ("conv", "conv2", "conv3"):
            self.assertNotIn("activation", L[conv])

    def test_no_fusion_when_output_has_another_user(self):
        class TwoUsers(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
                self.relu = nn.ReLU(inplace=True)
                self.conv2 = nn.Conv2d(3, 4, 1)
                self.act = nn.ReLU6()

            def forward(self, x):
                y = self.conv(x)
                z = self.conv2(x)
                return self.relu(y) + y, self.act(z)

        plan, _ = quiet_plan(TwoUsers(), torch.randn(1, 3, 4, 4))
        acts = {layer.name: layer.activation for layer in plan.layers}
        self.assertEqual(acts, {"conv": None, "conv2": ("relu6", None)})

    def test_resnet18_batch_norms_follow_their_convs(self):
        m, x = models.make_resnet18()
        plan, _ = quiet_plan(m, x, probes=False)
        follows = {layer.name: layer.follows for layer in plan.layers
                   if layer.kind == "batch_norm2d"}
        self.assertEqual(len(follows), 20)
        for bn, conv in follows.items():
            if bn.endswith("downsample.1"):
                self.assertEqual(conv, bn[:-1] + "0")
            else:
                self.assertEqual(conv, bn.replace("bn", "conv"), bn)

    def test_no_follows_when_conv_output_is_shared(self):
        class Shared(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
                self.bn = nn.BatchNorm2d(4)
                self.conv2 = nn.Conv2d(3, 4, 1)
                self.bn2 = nn.BatchNorm2d(4)

            def forward(self, x):
                y = self.conv(x)
                return self.bn(y) + y, self.bn2(self.conv2(x))

        plan, _ = quiet_plan(Shared(), torch.randn(1, 3, 4, 4))
        self.assertEqual({layer.name: layer.follows for layer in plan.layers
                          if layer.kind == "batch_norm2d"}, {"bn": None, "bn2": "conv2"})

    def test_model_fx_cannot_trace_gets_its_graph_from_jit_trace(self):
        class DataDependent(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.relu = nn.ReLU()
                self.bn = nn.BatchNorm2d(4)
                self.conv2 = nn.Conv2d(4, 4, 1)
                self.bn2 = nn.BatchNorm2d(4)
                self.pool = nn.AdaptiveAvgPool2d((2, 3))
                self.fc = nn.Linear(24, 5)

            def forward(self, x):
                if x.sum() > 1e9:   # data-dependent control flow: fx cannot trace it
                    x = x * 2
                x = self.bn(self.relu(self.conv(x)))
                x = self.pool(F.leaky_relu(self.bn2(self.conv2(x)), 0.3))
                return self.fc(torch.flatten(x, 1))

        plan, warns = quiet_plan(DataDependent(), torch.randn(1, 3, 8, 8))
        self.assertFalse(plan.traced)
        self.assertEqual(plan.route, "torch.jit.trace")
        self.assertTrue(any("torch.fx could not trace" in w and "TraceError" in w and
                            "comes from torch.jit.trace" in w for w in warns), warns)
        layers = {layer.name: layer for layer in plan.layers}
        self.assertEqual(layers["conv"].activation, ("relu", None))
        self.assertIsNone(layers["bn"].follows)           # a ReLU between them
        self.assertEqual(layers["bn2"].follows, "conv2")
        self.assertEqual(layers["bn2"].activation, ("leaky_relu", 0.3))
        self.assertEqual(layers["fc"].input_shape, [4, 2, 3])

    def test_model_nothing_traces_falls_back_to_hooks_naming_the_layers(self):
        class Labelled(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 3, padding=1)
                self.bn = nn.BatchNorm2d(4)
                self.pool = nn.AdaptiveAvgPool2d((2, 3))
                self.fc = nn.Linear(24, 5)

            def forward(self, x):
                n, c, h, w = x.size()   # torch.fx 1.13: a Proxy cannot be unpacked
                if x.sum() > 1e30:      # and in any torch.fx: data-dependent control flow
                    x = x * 2
                if torch.jit.is_tracing():   # stands for whatever defeats torch.jit.trace
                    raise RuntimeError("this model cannot be traced")
                y = self.pool(F.relu(self.bn(self.conv(x))))
                return self.fc(y.reshape(n, -1))

        plan, warns = quiet_plan(Labelled(), torch.randn(1, 3, 8, 8))
        self.assertIsNone(plan.route)
        self.assertIn("TraceError", plan.trace_error)
        self.assertIn("RuntimeError", plan.jit_error)
        layers = {layer.name: layer for layer in plan.layers}
        self.assertIsNone(layers["bn"].activation)
        self.assertIsNone(layers["bn"].follows)
        # Still found: the flattened map is the pool module's output.
        self.assertEqual(layers["fc"].input_shape, [4, 2, 3])
        text = "\n".join(warns)
        self.assertIn("fc (Linear): input_shape [4, 2, 3] comes from the forward hooks (its "
                      "input equals the output of pool flattened)", text)
        self.assertIn("no activation is fused into conv, bn, fc", text)
        self.assertIn("--fold-batchnorm folds none of bn", text)


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.conv3d = nn.Conv3d(1, 1, 1)
        self.lstm = nn.LSTM(8, 4)
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        y = self.conv(x) * self.scale
        s = y.flatten(2).permute(2, 0, 1)
        out, _ = self.lstm(s)
        return out, self.conv3d(x[:, :1].unsqueeze(1))


class NeuronTest(TempDirTest):
    """GroupNorm, PReLU and the neurons beyond ReLU's family (models.Neurons)."""

    def test_fused_activations_and_their_parameters(self):
        m, x = models.make_neurons()
        plan, _ = quiet_plan(m, x)
        acts = {layer.name: (layer.activation, dict(layer.activation_params))
                for layer in plan.layers}
        self.assertEqual(acts, {
            "conv_elu": (("elu", 0.7), {"alpha": 0.7}),                   # nn.ELU(0.7)
            "gn_one": (None, {}),
            "conv_prelu_c": (("prelu", 16), {"num_parameters": 16}),      # nn.PReLU(16)
            "gn_four": (None, {}),
            "prelu_alone": (None, {}),
            "conv_prelu_1": (("prelu", 1), {"num_parameters": 1}),        # nn.PReLU()
            "conv_hsig": (("hardsigmoid", None), {}),                     # nn.Hardsigmoid
            "gn_c": (None, {}),
            "prelu_alone_c": (None, {}),
            "conv_softplus": (("softplus", 2.0), {"beta": 2.0, "threshold": 15.0}),
            "conv_gelu": (("gelu", None), {}),                            # nn.GELU()
            "up_f_elu": (("elu", 1.3), {"alpha": 1.3}),                   # F.elu(alpha=1.3)
            "conv_f_hsig": (("hardsigmoid", None), {}),                   # F.hardsigmoid
            "conv_f_softplus": (("softplus", 0.5), {"beta": 0.5, "threshold": 30.0}),
            "conv_f_gelu": (("gelu", None), {}),                          # F.gelu
            "fc_prelu": (("prelu", 12), {"num_parameters": 12}),          # after a Linear
            "fc_gelu": (("gelu", None), {}),
        })

    def test_fused_prelu_weight_is_the_activation_weight_and_no_layer_of_its_own(self):
        m, x = models.make_neurons()
        manifest, _ = quiet_export(m, x, self.out())
        L = by_name(manifest)
        for prelu in ("prelu_c", "prelu_1", "fc_prelu_act"):
            self.assertNotIn(prelu, L)
        for conv, prelu in (("conv_prelu_c", m.prelu_c), ("conv_prelu_1", m.prelu_1),
                            ("fc_prelu", m.fc_prelu_act)):
            self.assertEqual(L[conv]["activation"], "prelu")
            self.assertEqual(L[conv]["num_parameters"], prelu.num_parameters)
            path = os.path.join(self.out(), L[conv]["activation_weight"])
            with open(path, "rb") as f:
                self.assertEqual(f.read(), tensor_bytes(prelu.weight), conv)

    def test_group_norm_and_standalone_prelu_fields(self):
        m, x = models.make_neurons()
        manifest, _ = quiet_export(m, x, self.out())
        L = by_name(manifest)
        self.assertEqual({k: L["gn_four"].get(k) for k in ("type", "num_groups", "num_channels",
                                                           "eps", "affine", "weight")},
                         {"type": "group_norm", "num_groups": 4, "num_channels": 16,
                          "eps": 1e-5, "affine": False, "weight": None})
        self.assertEqual(L["gn_c"]["eps"], 1e-3)
        self.assertTrue(L["gn_c"]["affine"])
        self.assertEqual({k: L["prelu_alone_c"][k] for k in ("type", "num_parameters",
                                                             "num_channels")},
                         {"type": "prelu", "num_parameters": 16, "num_channels": 16})
        self.assertEqual(L["prelu_alone"]["num_parameters"], 1)
        for name, module in (("prelu_alone", m.prelu_alone), ("gn_c", m.gn_c)):
            with open(os.path.join(self.out(), L[name]["weight"]), "rb") as f:
                self.assertEqual(f.read(), tensor_bytes(module.weight), name)

    def test_activations_mps_cannot_fuse_are_reported_by_module_name(self):
        class Unfusable(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv_hswish = nn.Conv2d(3, 4, 1)
                self.hswish = nn.Hardswish()
                self.conv_silu = nn.Conv2d(4, 4, 1)
                self.silu = nn.SiLU()
                self.conv_f_silu = nn.Conv2d(4, 4, 1)
                self.conv_gelu = nn.Conv2d(4, 4, 1)
                self.gelu_tanh = nn.GELU(approximate="tanh")
                self.conv_softplus = nn.Conv2d(4, 4, 1)
                self.softplus = nn.Softplus(threshold=10)
                self.fc = nn.Linear(4, 2)
                self.head = nn.Hardswish()   # after a Linear

            def forward(self, x):
                x = self.silu(self.conv_silu(self.hswish(self.conv_hswish(x))))
                x = self.gelu_tanh(self.conv_gelu(F.silu(self.conv_f_silu(x))))
                x = self.softplus(self.conv_softplus(x))
                return self.head(self.fc(x.mean((2, 3))))

        manifest, warns = quiet_export(Unfusable(), torch.randn(1, 3, 4, 4), self.out())
        for layer in manifest["layers"]:
            self.assertNotIn("activation", layer, layer["name"])
        skipped = {s["name"]: (s["type"], s["reason"]) for s in manifest["skipped"]}
        self.assertEqual(sorted(skipped), ["gelu_tanh", "head", "hswish", "silu",
                                           "softplus"])
        for name in ("hswish", "silu", "head"):
            self.assertIn("MPS has no neuron for %s" % skipped[name][0], skipped[name][1])
        self.assertIn("approximate='tanh'", skipped["gelu_tanh"][1])
        self.assertIn("threshold=10", skipped["softplus"][1])
        text = "\n".join(warns)
        for name in ("hswish (Hardswish)", "silu (SiLU)", "head (Hardswish)",
                     "gelu_tanh (GELU)", "softplus (Softplus)"):
            self.assertIn(name, text)
        # The functional form is named by the conv it follows.
        self.assertTrue(any(w.startswith("conv_f_silu: the activation after it is not fused")
                            and "MPS has no neuron for silu" in w for w in warns), warns)


class UnsupportedTest(TempDirTest):
    def test_unsupported_modules_named_and_nothing_written(self):
        out = self.out()
        with self.assertRaises(UnsupportedModuleError) as cm:
            quiet_export(Odd(), torch.randn(1, 3, 4, 4), out)
        names = [n for n, _, _ in cm.exception.modules]
        self.assertEqual(names, ["", "conv3d", "lstm"])
        text = str(cm.exception)
        self.assertIn("conv3d (Conv3d)", text)
        self.assertIn("lstm (LSTM)", text)
        self.assertIn("<root> (Odd): owns scale", text)
        self.assertFalse(os.path.exists(out))

    def test_allow_unsupported_lists_them_as_skipped(self):
        manifest, warns = quiet_export(Odd(), torch.randn(1, 3, 4, 4), self.out(),
                                       allow_unsupported=True)
        self.assertEqual([layer["name"] for layer in manifest["layers"]], ["conv"])
        self.assertEqual([s["name"] for s in manifest["skipped"]], ["", "conv3d", "lstm"])
        self.assertEqual(manifest["skipped"][2]["type"], "LSTM")
        self.assertTrue(any("lstm (LSTM)" in w for w in warns), warns)

    def test_configurations_mps_cannot_serve(self):
        cases = [
            (nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
            (nn.Conv2d(3, 4, 4, padding="same"), "unevenly"),
            (nn.BatchNorm2d(3, track_running_stats=False), "batch's statistics"),
            (nn.InstanceNorm2d(3, track_running_stats=True), "running statistics"),
        ]
        for module, reason in cases:
            model = nn.Sequential(nn.Identity(), module)
            with self.subTest(module=repr(module)):
                with self.assertRaises(UnsupportedModuleError) as cm:
                    quiet_plan(model, torch.randn(1, 3, 8, 8))
                self.assertEqual(cm.exception.modules[0][0], "1")
                self.assertIn(reason, str(cm.exception))

    def test_linear_on_a_4d_input_is_unsupported(self):
        with self.assertRaisesRegex(UnsupportedModuleError, r"fc \(Linear\): applied to a 4-D"):
            quiet_plan(_LinearOn4d(), torch.randn(1, 3, 4, 4))

    def test_module_never_called_is_skipped_with_a_warning(self):
        class Unused(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 4, 1)
                self.aux = nn.Conv2d(3, 4, 1)

            def forward(self, x):
                return self.conv(x)

        manifest, warns = quiet_export(Unused(), torch.randn(1, 3, 2, 2), self.out())
        self.assertEqual([layer["name"] for layer in manifest["layers"]], ["conv"])
        self.assertEqual(manifest["skipped"][0]["name"], "aux")
        self.assertTrue(any("aux (Conv2d) was not called" in w for w in warns), warns)


class _LinearOn4d(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)   # over the last axis of [N, C, H, W]


class ProbeTest(TempDirTest):
    def test_probes_are_real_inputs_and_outputs(self):
        m, x = models.make_corners()
        out = self.out()
        manifest, _ = quiet_export(m, x, out)
        modules = dict(m.named_modules())
        for layer in manifest["layers"]:
            p = layer["probe"]
            self.assertEqual(p["input"], "probes/%s.input.bin" % layer["name"])
            inp = torch.from_numpy(read_bin(os.path.join(out, p["input"]), p["input_shape"]))
            got = read_bin(os.path.join(out, p["output"]), p["output_shape"])
            with torch.no_grad():
                want = modules[layer["name"]](inp).numpy()
            self.assertEqual(list(want.shape), p["output_shape"], layer["name"])
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6, err_msg=layer["name"])
        # The first layer's input is the model input itself.
        first = manifest["layers"][0]["probe"]
        np.testing.assert_array_equal(read_bin(os.path.join(out, first["input"]),
                                               first["input_shape"]), x.numpy())

    def test_probe_taken_before_an_inplace_relu_changes_the_output(self):
        m, x = models.make_resnet18()
        plan, _ = quiet_plan(m, x)
        bn1 = next(layer for layer in plan.layers if layer.name == "bn1")
        with torch.no_grad():
            want = m.bn1(m.conv1(x))
        self.assertTrue((want < 0).any())   # so a ReLU'd probe would differ
        self.assertTrue(torch.equal(bn1.probe.output, want))

    def test_linear_probe_shapes_are_2d(self):
        m, x = models.make_corners()
        plan, _ = quiet_plan(m, x)
        fc = next(layer for layer in plan.layers if layer.name == "fc_map")
        self.assertEqual(list(fc.probe.input.shape), [1, 48])
        self.assertEqual(list(fc.probe.output.shape), [1, 16])

    def test_module_run_twice_keeps_first_probe_and_warns(self):
        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(4, 4, 3, padding=1)

            def forward(self, x):
                return self.conv(self.conv(x))

        m, x = Twice(), torch.randn(1, 4, 5, 5)
        plan, warns = quiet_plan(m, x)
        self.assertTrue(any("ran 2 times" in w for w in warns), warns)
        self.assertTrue(torch.equal(plan.layers[0].probe.input, x))

    def test_no_probes(self):
        manifest, _ = quiet_export(nn.Conv2d(3, 4, 1), torch.randn(1, 3, 2, 2), self.out(),
                                   probes=False)
        self.assertNotIn("probe", manifest["layers"][0])
        self.assertFalse(os.path.exists(os.path.join(self.out(), "probes")))


def replay(entry, folder, x):
    """Recomputes a layer from its manifest entry and .bin files alone,
    with PyTorch's functional ops (no activation: probes are taken before it)."""
    def load(role, shape):
        if role not in entry:
            return None
        return torch.from_numpy(read_bin(os.path.join(folder, entry[role]))).reshape(shape)

    t = entry["type"]
    if t in ("conv2d", "conv_transpose2d"):
        kh, kw = entry["kernel_size"]
        g = entry["groups"]
        if t == "conv2d":
            w = load("weight", (entry["out_channels"], entry["in_channels"] // g, kh, kw))
            return F.conv2d(x, w, load("bias", (-1,)), entry["stride"], entry["padding"],
                            entry["dilation"], g)
        w = load("weight", (entry["in_channels"], entry["out_channels"] // g, kh, kw))
        return F.conv_transpose2d(x, w, load("bias", (-1,)), entry["stride"], entry["padding"],
                                  entry["output_padding"], g, entry["dilation"])
    if t == "linear":
        if "input_shape" in entry:
            c, h, w_ = entry["input_shape"]
            assert c * h * w_ == entry["in_features"]
        w = load("weight", (entry["out_features"], entry["in_features"]))
        return F.linear(x, w, load("bias", (-1,)))
    n = entry["num_features"]
    if t == "batch_norm2d":
        return F.batch_norm(x, load("running_mean", (n,)), load("running_var", (n,)),
                            load("weight", (n,)), load("bias", (n,)), False, 0.0, entry["eps"])
    if t == "instance_norm2d":
        return F.instance_norm(x, weight=load("weight", (n,)), bias=load("bias", (n,)),
                               eps=entry["eps"])
    raise AssertionError("unknown type %s" % t)


def fold(conv, bn, folder):
    """Apple's folding formula, s = gamma / sqrt(var + eps), W' = W s,
    b' = (b - mean) s + beta, as (weight, bias) in PyTorch's layout."""
    def load(entry, role, default):
        if role not in entry:
            return default
        return torch.from_numpy(read_bin(os.path.join(folder, entry[role])))

    o, i, g = conv["out_channels"], conv["in_channels"], conv["groups"]
    kh, kw = conv["kernel_size"]
    mean, var = load(bn, "running_mean", None), load(bn, "running_var", None)
    gamma, beta = load(bn, "weight", torch.ones(o)), load(bn, "bias", torch.zeros(o))
    s = gamma / torch.sqrt(var + bn["eps"])
    b = load(conv, "bias", torch.zeros(o))
    w = load(conv, "weight", None)
    if conv["type"] == "conv2d":
        w = w.reshape(o, i // g, kh, kw) * s.reshape(o, 1, 1, 1)
    else:   # [I][O/g][kH][kW]: output channel g*(O/g) + o' of group g
        w = w.reshape(g, i // g, o // g, kh, kw) * s.reshape(g, 1, o // g, 1, 1)
        w = w.reshape(i, o // g, kh, kw)
    return w, (b - mean) * s + beta


class ManifestReplayTest(TempDirTest):
    """The manifest alone (fields + .bin files) reproduces every probe, so
    nothing a layer needs is missing or wrong in what the exporter wrote."""

    def test_every_zoo_layer_replays_from_the_manifest(self):
        for name in ("corners", "dcgan", "transformer_net", "resnet18", "mobilenet_v2",
                     "squeezenet1_1"):
            with self.subTest(model=name):
                m, x = models.MODELS[name]()
                out = self.out(name)
                manifest, _ = quiet_export(m, x, out)
                for entry in manifest["layers"]:
                    p = entry["probe"]
                    inp = torch.from_numpy(read_bin(os.path.join(out, p["input"]),
                                                    p["input_shape"]))
                    want = read_bin(os.path.join(out, p["output"]), p["output_shape"])
                    with torch.no_grad():
                        got = replay(entry, out, inp).numpy()
                    scale = max(1.0, float(np.abs(want).max()))
                    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale,
                                               err_msg="%s %s" % (name, entry["name"]))

    def test_folding_the_follows_pairs_matches_conv_then_bn(self):
        for name in ("resnet18", "dcgan", "corners"):
            with self.subTest(model=name):
                m, x = models.MODELS[name]()
                out = self.out(name)
                manifest, _ = quiet_export(m, x, out)
                L = by_name(manifest)
                pairs = [(L[e["follows"]], e) for e in manifest["layers"] if "follows" in e]
                self.assertTrue(pairs)
                for conv, bn in pairs:
                    w, b = fold(conv, bn, out)
                    folded = dict(conv, weight=None, bias=None)
                    cp, bp = conv["probe"], bn["probe"]
                    inp = torch.from_numpy(read_bin(os.path.join(out, cp["input"]),
                                                    cp["input_shape"]))
                    want = read_bin(os.path.join(out, bp["output"]), bp["output_shape"])
                    s, pd, d, g = folded["stride"], folded["padding"], folded["dilation"], \
                        folded["groups"]
                    with torch.no_grad():
                        if conv["type"] == "conv2d":
                            got = F.conv2d(inp, w, b, s, pd, d, g)
                        else:
                            got = F.conv_transpose2d(inp, w, b, s, pd, folded["output_padding"],
                                                     g, d)
                    scale = max(1.0, float(np.abs(want).max()))
                    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-5 * scale,
                                               err_msg="%s %s+%s" % (name, conv["name"],
                                                                     bn["name"]))


def all_files(folder):
    found = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, folder)] = fh.read()
    return found


class DeterminismTest(TempDirTest):
    def test_same_model_same_bytes(self):
        for make in (models.make_corners, models.make_transformer_net):
            with self.subTest(model=make.__name__):
                m, x = make()
                a, b = self.out(make.__name__ + "_a"), self.out(make.__name__ + "_b")
                quiet_export(m, x, a)
                m2, x2 = make()
                quiet_export(m2, x2, b)
                fa, fb = all_files(a), all_files(b)
                self.assertEqual(sorted(fa), sorted(fb))
                for k in fa:
                    self.assertEqual(fa[k], fb[k], k)
                with open(os.path.join(a, "manifest.json"), encoding="utf-8") as fh:
                    text = fh.read()
                self.assertTrue(text.endswith("}\n"))

    def test_reexport_removes_stale_files(self):
        out = self.out()
        quiet_export(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 1)),
                     torch.randn(1, 3, 2, 2), out)
        keep = os.path.join(out, "notes.txt")
        with open(keep, "w") as fh:
            fh.write("mine")
        quiet_export(nn.Sequential(nn.Conv2d(3, 4, 1, bias=False)), torch.randn(1, 3, 2, 2), out)
        self.assertEqual(sorted(all_files(out)),
                         ["0.weight.bin", "manifest.json", "notes.txt",
                          os.path.join("probes", "0.input.bin"),
                          os.path.join("probes", "0.output.bin")])


class CommandLineTest(TempDirTest):
    def run_cli(self, *args):
        env = dict(os.environ, PYTHONPATH=EXPORT_DIR)
        return subprocess.run([sys.executable, "-m", "mpsb_export", *args], env=env,
                              capture_output=True, text=True, cwd=ROOT)

    def test_factory_file(self):
        out = self.out()
        r = self.run_cli("--model", os.path.join("tests", "pytorch", "models.py") + ":make_corners",
                         "--out", out, "--metadata", "license=MIT")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("12 layers", r.stdout)
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        self.assertEqual(manifest["name"], "corners")
        self.assertEqual(manifest["metadata"]["license"], "MIT")

    def test_torchvision_model_with_input_shape(self):
        out = self.out()
        r = self.run_cli("--model", "torchvision:squeezenet1_1", "--input-shape", "1,3,64,64",
                         "--seed", "0", "--out", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(out, "manifest.json"), encoding="utf-8") as fh:
            manifest = json.load(fh)
        self.assertEqual(manifest["layers"][0]["probe"]["input_shape"], [1, 3, 64, 64])

    def test_usage_errors(self):
        r = self.run_cli("--model", "torchvision:no_such_net", "--input-shape", "1,3,8,8",
                         "--out", self.out())
        self.assertEqual(r.returncode, 2)
        self.assertIn("no_such_net", r.stderr)
        r = self.run_cli("--model", "torchvision:resnet18", "--input-shape", "1,3,x",
                         "--out", self.out())
        self.assertEqual(r.returncode, 2)

    def test_unsupported_model_exits_1_naming_the_module(self):
        path = os.path.join(self.tmp, "odd.py")
        with open(path, "w") as fh:
            fh.write("import torch\nfrom torch import nn\n"
                     "def make():\n"
                     "    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.LayerNorm([4, 4, 4])), "
                     "torch.randn(1, 3, 4, 4)\n")
        r = self.run_cli("--model", path + ":make", "--out", self.out())
        self.assertEqual(r.returncode, 1)
        self.assertIn("1 (LayerNorm)", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
