#!/usr/bin/python3
"""The exporter where torch.fx cannot trace, and the messages it gives.

    fallback_test.py --mpsbc PATH --dump PATH [unittest options]

- torchvision's shufflenet_v2_x1_0 (torch.fx fails on its
  `batchsize, num_channels, height, width = x.size()`), exported from the
  command line with random weights: its graph comes from torch.jit.trace, so
  every batch norm follows its conv and carries the ReLU after it, and
  `mpsbc compile --check --fold-batchnorm` folds and passes, each folded conv
  with that ReLU (mpsb-dump --json);
- a Linear fed by a functional flatten (torch.flatten(x, 1),
  x.view(x.size(0), -1), `n, c, h, w = x.size()` then x.view(n, -1)) gets its
  input_shape, and --check fails with the flatten permutation broken, so the
  compiler did not treat it as a vector; where nothing can trace the model,
  the export stops with the resolution, and --input-shape-of resolves it;
- the messages: the command line names its flags, the API its keywords;
  unsupported modules grouped by type with what to do; torchvision's
  segmentation and detection builders from --model without downloads.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings

import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
EXPORT_DIR = os.path.join(ROOT, "tools", "export")
sys.path[:0] = [EXPORT_DIR, HERE]

import models  # noqa: E402
import mpsb_export  # noqa: E402
from mpsb_export import graph  # noqa: E402
from mpsb_export import ExportWarning, LinearInputError, UnsupportedModuleError  # noqa: E402

MPSBC = DUMP = None
EXIT_CHECK_FAILED = 5   # mpsbc's exit code for a failed --check (README)


def run_export(*args, env=None):
    """python -m mpsb_export ARGS with Debian's or the venv's torch (this interpreter)."""
    full_env = dict(os.environ, PYTHONPATH=EXPORT_DIR, **(env or {}))
    return subprocess.run([sys.executable, "-m", "mpsb_export", *args], env=full_env,
                          capture_output=True, text=True, cwd=ROOT)


def compile_check(manifest, bundle, *extra):
    """mpsbc compile --check --json: (exit code, report or None, stderr)."""
    proc = subprocess.run([MPSBC, "compile", manifest, "-o", bundle, "--check", "--json",
                           *extra], capture_output=True, text=True)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    return proc.returncode, report, proc.stderr


def fx_traces(model):
    """Whether this torch's torch.fx traces `model` (torch 2 traces
    shufflenet's x.size() unpacking, torch 1.13 does not)."""
    try:
        torch.fx.symbolic_trace(model)
        return True
    except Exception:
        return False


def read_manifest(folder):
    with open(os.path.join(folder, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def by_name(manifest):
    return {layer["name"]: layer for layer in manifest["layers"]}


def quiet(call, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = call(*args, **kwargs)
    return value, [str(w.message) for w in caught if issubclass(w.category, ExportWarning)]


class TempDirTest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="mpsb_fallback_test_")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def write_factory(self, source):
        path = os.path.join(self.tmp, "model.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        return path + ":make"


# ---------------------------------------------------------------------------
# shufflenet_v2_x1_0


class ShufflenetTest(unittest.TestCase):
    """32 x 32 input: the five stride-2 stages leave a 1 x 1 map, the
    smallest input the model takes."""

    @classmethod
    def setUpClass(cls):
        import torchvision
        cls._tmp = tempfile.TemporaryDirectory(prefix="mpsb_fallback_shufflenet_")
        cls.out = os.path.join(cls._tmp.name, "export")
        cls.proc = run_export("--model", "torchvision:shufflenet_v2_x1_0", "--input-shape",
                              "1,3,32,32", "--seed", "0", "--out", cls.out)
        cls.model = torchvision.models.shufflenet_v2_x1_0(weights=None)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()

    def setUp(self):
        self.assertEqual(self.proc.returncode, 0, self.proc.stderr)

    def test_the_route_is_named(self):
        jit = ("torch.fx could not trace the model (TraceError: Proxy object cannot be "
               "iterated); the graph (fused activations, batch norms that follow a conv, what "
               "feeds each Linear) comes from torch.jit.trace")
        if fx_traces(self.model):
            self.assertNotIn("could not trace", self.proc.stderr)
        else:
            self.assertIn(jit, self.proc.stderr)

    def test_batch_norms_follow_their_convs_and_carry_the_relu_after_them(self):
        """The oracle is the torchvision model's own structure: in its
        Sequentials, every BatchNorm2d comes right after a Conv2d, and a
        ReLU right after a BatchNorm2d is that norm's activation."""
        L = by_name(read_manifest(self.out))
        expected_follows, expected_relu = {}, set()
        for name, module in self.model.named_modules():
            if not isinstance(module, nn.Sequential):
                continue
            children = list(module.named_children())
            for i, (child, m) in enumerate(children):
                if isinstance(m, nn.BatchNorm2d):
                    before = children[i - 1]
                    self.assertIsInstance(before[1], nn.Conv2d)
                    expected_follows["%s.%s" % (name, child)] = "%s.%s" % (name, before[0])
                    if i + 1 < len(children) and isinstance(children[i + 1][1], nn.ReLU):
                        expected_relu.add("%s.%s" % (name, child))
        norms = {n: e for n, e in L.items() if e["type"] == "batch_norm2d"}
        self.assertEqual({n: e.get("follows") for n, e in norms.items()}, expected_follows)
        self.assertEqual({n for n, e in norms.items() if e.get("activation") == "relu"},
                         expected_relu)
        self.assertEqual({e.get("activation") for n, e in norms.items() if n not in expected_relu},
                         {None})
        # No conv carries an activation: a batch norm follows each of them.
        self.assertEqual([n for n, e in L.items() if e["type"] == "conv2d" and "activation" in e],
                         [])

    def test_fc_is_shown_to_be_a_vector(self):
        # shufflenet feeds fc with x.mean([2, 3]): a vector, no input_shape.
        fc = by_name(read_manifest(self.out))["fc"]
        self.assertNotIn("input_shape", fc)
        self.assertNotIn("cannot tell", self.proc.stderr)

    def test_folded_and_checked(self):
        manifest = read_manifest(self.out)
        rc, report, err = compile_check(os.path.join(self.out, "manifest.json"),
                                        os.path.join(self.out, "folded.mpsb"),
                                        "--fold-batchnorm")
        self.assertEqual(rc, 0, err[-2000:])
        self.assertTrue(report["ok"])
        norms = {e["name"] for e in manifest["layers"] if e["type"] == "batch_norm2d"}
        in_bundle = {layer["name"] for layer in report["layers"]}
        self.assertEqual(norms & in_bundle, set())
        self.assertEqual(len(in_bundle), len(manifest["layers"]) - len(norms))
        checked = {c["layer"]: c["passed"] for c in report["check"]}
        self.assertEqual(set(checked), in_bundle)
        self.assertTrue(all(checked.values()), [n for n, ok in checked.items() if not ok])
        # The batch norm's ReLU is now the folded conv's fused neuron.
        proc = subprocess.run([DUMP, os.path.join(self.out, "folded.mpsb"), "--json"],
                              capture_output=True, text=True)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        acts = {layer["name"]: layer["activation"] for layer in json.loads(proc.stdout)["layers"]}
        want = {e["follows"]: e.get("activation", "none") for e in manifest["layers"]
                if e["type"] == "batch_norm2d"}
        self.assertIn("relu", want.values())
        self.assertEqual({n: acts[n] for n in want}, want)


# ---------------------------------------------------------------------------
# A Linear after a functional flatten


class _Head(nn.Module):
    """conv -> relu -> pool to 3 x 5 -> (flatten in forward) -> fc. The
    3 x 5 map makes C, H, W order differ from H, W, C."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((3, 5))
        self.fc = nn.Linear(8 * 3 * 5, 4)

    def features(self, x):
        return self.pool(F.relu(self.conv(x)))


class TorchFlatten(_Head):
    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class ViewSize(_Head):
    def forward(self, x):
        x = self.features(x)
        return self.fc(x.view(x.size(0), -1))


class Unpacked(_Head):
    def forward(self, x):
        n, c, h, w = x.size()   # torch.fx 1.13: a Proxy cannot be unpacked
        if x.sum() > 1e30:      # and in any torch.fx: data-dependent control flow
            x = x * 2
        return self.fc(self.features(x).view(n, -1))


class Untraceable(_Head):
    def forward(self, x):
        n, c, h, w = x.size()
        if x.sum() > 1e30:
            x = x * 2
        if torch.jit.is_tracing():   # stands for whatever defeats torch.jit.trace
            raise RuntimeError("this model cannot be traced")
        # Scaled after the pool: no module's output equals what fc reads.
        return self.fc((self.features(x) * 0.5).view(n, -1))


UNTRACEABLE_FACTORY = """
import sys
sys.path.insert(0, %r)
import torch
from fallback_test import Untraceable

def make():
    return Untraceable(), torch.randn(1, 3, 6, 10)
""" % HERE


def flatten_example(cls):
    torch.manual_seed(0)
    return cls(), torch.randn(1, 3, 6, 10)


class FlattenTest(TempDirTest):

    def assert_compiled_with_the_flatten_permutation(self, out):
        """--check passes, and fails on fc alone with the permutation broken:
        the compiler reordered fc's columns as a [8, 3, 5] map, not a vector."""
        manifest = os.path.join(out, "manifest.json")
        rc, report, err = compile_check(manifest, os.path.join(out, "m.mpsb"))
        self.assertEqual(rc, 0, err)
        self.assertTrue(all(c["passed"] for c in report["check"]))
        rc, report, err = compile_check(manifest, os.path.join(out, "bad.mpsb"),
                                        "--debug-mutate", "no-flatten-permute")
        self.assertEqual(rc, EXIT_CHECK_FAILED, err)
        self.assertEqual({c["layer"] for c in report["check"] if not c["passed"]}, {"fc"})

    def test_input_shape_found_through_each_route(self):
        for cls, route in ((TorchFlatten, "torch.fx"), (ViewSize, "torch.fx"),
                           (Unpacked, "torch.jit.trace")):
            with self.subTest(model=cls.__name__):
                model, x = flatten_example(cls)
                plan, _ = quiet(mpsb_export.plan, model, x, probes=False)
                self.assertEqual(plan.route, route)
                out = os.path.join(self.tmp, cls.__name__)
                manifest, _ = quiet(mpsb_export.export, model, x, out)
                self.assertEqual(by_name(manifest)["fc"]["input_shape"], [8, 3, 5])
                self.assert_compiled_with_the_flatten_permutation(out)

    def test_untraceable_is_refused_with_the_keyword_that_resolves_it(self):
        model, x = flatten_example(Untraceable)
        out = os.path.join(self.tmp, "out")
        with self.assertRaises(LinearInputError) as cm:
            quiet(mpsb_export.export, model, x, out)
        text = str(cm.exception)
        # torch 1.13 stops at x.size(), torch 2 at the `if`.
        self.assertRegex(text, r"^1 Linear layer\(s\): cannot tell whether the input is a plain "
                               r"vector or a flattened \[C, H, W\] feature map: torch.fx could "
                               r"not trace the model \(TraceError: [^()]*\), nor torch.jit.trace "
                               r"\(RuntimeError: this model cannot be traced\)")
        self.assertIn("  fc (Linear, in_features 120): input_shape_of={'fc': (C, H, W)} with "
                      "C*H*W = 120, or input_shape_of={'fc': \"vector\"}", text)
        self.assertNotIn("--input-shape-of", text)
        self.assertFalse(os.path.exists(out))

    def test_untraceable_from_the_command_line_names_the_flag(self):
        out = os.path.join(self.tmp, "out")
        spec = self.write_factory(UNTRACEABLE_FACTORY)
        r = run_export("--model", spec, "--out", out)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("  fc (Linear, in_features 120): --input-shape-of fc=C,H,W with "
                      "C*H*W = 120, or --input-shape-of fc=vector", r.stderr)
        self.assertNotIn("input_shape_of=", r.stderr)
        self.assertFalse(os.path.exists(out))

    def test_input_shape_of_resolves_it(self):
        out = os.path.join(self.tmp, "out")
        r = run_export("--model", self.write_factory(UNTRACEABLE_FACTORY), "--out", out,
                       "--input-shape-of", "fc=8,3,5")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(by_name(read_manifest(out))["fc"]["input_shape"], [8, 3, 5])
        self.assert_compiled_with_the_flatten_permutation(out)
        # The API takes the same.
        model, x = flatten_example(Untraceable)
        manifest, _ = quiet(mpsb_export.export, model, x, os.path.join(self.tmp, "api"),
                            input_shape_of={"fc": (8, 3, 5)})
        self.assertEqual(by_name(manifest)["fc"]["input_shape"], [8, 3, 5])
        manifest, _ = quiet(mpsb_export.export, model, x, os.path.join(self.tmp, "vec"),
                            input_shape_of={"fc": "vector"})
        self.assertNotIn("input_shape", by_name(manifest)["fc"])

    def test_input_shape_of_refusals(self):
        spec = self.write_factory(UNTRACEABLE_FACTORY)
        cases = [
            (["fc2=8,3,5"], 1, "mpsb_export: --input-shape-of names fc2, which is no Linear "
                               "layer of the model (its Linear layers: fc)"),
            (["fc=8,3"], 2, "--input-shape-of fc: expected three positive integers C,H,W "
                            "(like 8,3,5) or \"vector\", found '8,3'"),
            (["8,3,5"], 2, "--input-shape-of: expected LAYER=C,H,W or LAYER=vector"),
            (["fc=2,3,5"], 1, "fc (Linear): its input is a flattened [2, 3, 5] map, but "
                              "in_features is 120"),
        ]
        for values, code, message in cases:
            with self.subTest(values=values):
                args = []
                for v in values:
                    args += ["--input-shape-of", v]
                out = os.path.join(self.tmp, "out")
                r = run_export("--model", spec, "--out", out, *args)
                self.assertEqual(r.returncode, code, r.stderr)
                self.assertIn(message, r.stderr)
                self.assertFalse(os.path.exists(out))

    def test_input_shape_of_against_what_the_graph_shows(self):
        model, x = flatten_example(TorchFlatten)
        with self.assertRaises(mpsb_export.ExportError) as cm:
            quiet(mpsb_export.plan, model, x, input_shape_of={"fc2": (8, 3, 5)})
        self.assertEqual(str(cm.exception), "input_shape_of names fc2, which is no Linear layer "
                                            "of the model (its Linear layers: fc)")
        with self.assertRaises(mpsb_export.ExportError) as cm:
            quiet(mpsb_export.plan, model, x, input_shape_of={"fc": "vector"})
        self.assertEqual(str(cm.exception),
                         "fc (Linear): the input shape given for it is a vector, but the "
                         "torch.fx graph shows its input is a flattened [8, 3, 5] map")
        plan, _ = quiet(mpsb_export.plan, model, x, input_shape_of={"fc": (8, 3, 5)})
        self.assertEqual(plan.layers[-1].input_shape, [8, 3, 5])


class JitRouteTest(unittest.TestCase):
    """Where torch.fx traces, torch.jit.trace must find the same facts."""

    def facts(self, model, x):
        names = {n for n, m in model.named_modules()
                 if isinstance(m, mpsb_export.layers.MAPPED_TYPES)}
        model.eval()
        fx = graph.analyze(model, (x,), names)
        jit = graph.analyze_jit(model, (x,), names)
        return fx, jit

    def test_same_facts_as_torch_fx(self):
        import torchvision
        cases = [("resnet18", models.make_resnet18), ("corners", models.make_corners),
                 ("neurons", models.make_neurons), ("dcgan", models.make_dcgan),
                 ("mobilenet_v2", models.make_mobilenet_v2),
                 ("torch_flatten", lambda: flatten_example(TorchFlatten)),
                 ("view_size", lambda: flatten_example(ViewSize))]
        shufflenet = torchvision.models.shufflenet_v2_x1_0(weights=None)
        if fx_traces(shufflenet):
            cases.append(("shufflenet_v2_x1_0",
                          lambda: (shufflenet, torch.randn(1, 3, 32, 32))))
        for name, make in cases:
            with self.subTest(model=name):
                model, x = make()
                fx, jit = self.facts(model, x)
                self.assertTrue(fx.follows or fx.activations or fx.input_shapes or fx.vectors)
                self.assertEqual(jit.follows, fx.follows)
                self.assertEqual(jit.activations, fx.activations)
                self.assertEqual(jit.input_shapes, fx.input_shapes)
                self.assertEqual(jit.vectors, fx.vectors)
                self.assertEqual(jit.fused_prelus, fx.fused_prelus)
                self.assertEqual({k: sorted(a.reason for a in v) for k, v in jit.unfused.items()},
                                 {k: sorted(a.reason for a in v) for k, v in fx.unfused.items()})


# ---------------------------------------------------------------------------
# Messages


UNSUPPORTED_FACTORY = """
import torch
from torch import nn

class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.lstm_a = nn.LSTM(4, 4)
        self.conv3d = nn.Conv3d(1, 1, 1)
        self.lstm_b = nn.LSTM(4, 4)

    def forward(self, x):
        y = self.conv(x)
        s = y.flatten(2).permute(2, 0, 1)
        s, _ = self.lstm_b(self.lstm_a(s)[0])
        return s, self.conv3d(x[:, :1].unsqueeze(1))

def make():
    return Mixed(), torch.randn(1, 3, 4, 4)
"""


class MessagesTest(TempDirTest):
    def test_unsupported_grouped_by_type_and_the_cli_names_its_flag(self):
        out = os.path.join(self.tmp, "out")
        r = run_export("--model", self.write_factory(UNSUPPORTED_FACTORY), "--out", out)
        self.assertEqual(r.returncode, 1, r.stderr)
        lines = r.stderr.splitlines()
        start = lines.index("mpsb_export: 3 module(s) of 2 type(s) cannot be exported to an "
                            "mpsb manifest:")
        self.assertEqual(lines[start + 1:start + 7], [
            "  LSTM, 2 module(s): mpsb has no mapping yet: MPS has the kernel "
            "(MPSRNNMatrixInferenceLayer with an MPSLSTMDescriptor), but mpsb does not write "
            "its weights; run it in the app outside the bundle",
            "    lstm_a (LSTM): owns weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 and "
            "has no MPS mapping",
            "    lstm_b (LSTM): owns weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0 and "
            "has no MPS mapping",
            "  Conv3d, 1 module(s): MPS has no such layer (MPS's CNN kernels have no 3-D "
            "convolution): run it outside MPS, or change the model",
            "    conv3d (Conv3d): owns weight, bias and has no MPS mapping",
            "Pass --allow-unsupported to export the rest: these modules are then listed under "
            "\"skipped\" in the manifest, and the app must run them outside the bundle.",
        ])
        self.assertNotIn("allow_unsupported", r.stderr)
        self.assertFalse(os.path.exists(out))
        r = run_export("--model", self.write_factory(UNSUPPORTED_FACTORY), "--out", out,
                       "--allow-unsupported")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual([s["name"] for s in read_manifest(out)["skipped"]],
                         ["lstm_a", "conv3d", "lstm_b"])

    def test_a_subclass_gets_the_advice_of_its_base(self):
        class LayerNorm2d(nn.LayerNorm):   # as torchvision's convnext has
            def forward(self, x):
                return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

        model = nn.Sequential(nn.Conv2d(3, 4, 1), LayerNorm2d(4))
        with self.assertRaises(UnsupportedModuleError) as cm:
            quiet(mpsb_export.plan, model, torch.randn(1, 3, 4, 4))
        self.assertIn("  LayerNorm2d, 1 module(s): MPS has no such layer (MPS's CNN kernels have "
                      "no layer normalization): run it outside MPS, or change the model\n"
                      "    1 (LayerNorm2d): owns weight, bias", str(cm.exception))

    def test_the_api_names_its_keyword(self):
        namespace = {}
        exec(UNSUPPORTED_FACTORY, namespace)
        model, x = namespace["make"]()
        with self.assertRaises(UnsupportedModuleError) as cm:
            quiet(mpsb_export.plan, model, x)
        self.assertIn("Pass allow_unsupported=True to export the rest", str(cm.exception))
        self.assertNotIn("--allow-unsupported", str(cm.exception))

    def test_a_mapped_type_mps_cannot_serve_says_what_to_change(self):
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"))
        with self.assertRaises(UnsupportedModuleError) as cm:
            quiet(mpsb_export.plan, model, torch.randn(1, 3, 4, 4))
        self.assertIn("  Conv2d, 1 module(s): mpsb maps Conv2d, but not in the configuration "
                      "below: change it as the reason says, or run the module outside the "
                      "bundle\n    0 (Conv2d): padding_mode='reflect'", str(cm.exception))

    def test_torchvision_segmentation_and_detection_builders_without_downloads(self):
        torch_home = os.path.join(self.tmp, "torch_home")   # where a download would go
        # Named with its package, and found by looking in each package.
        for spec, size in (("torchvision:segmentation.lraspp_mobilenet_v3_large", 32),
                           ("torchvision:ssdlite320_mobilenet_v3_large", 32)):
            with self.subTest(model=spec):
                out = os.path.join(self.tmp, spec.replace(":", "_"))
                r = run_export("--model", spec, "--input-shape", "1,3,%d,%d" % (size, size),
                               "--no-probes", "--out", out, env={"TORCH_HOME": torch_home})
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                self.assertRegex(r.stdout, r"wrote .*manifest\.json: \d+ layers")
                self.assertEqual(read_manifest(out)["name"], "lraspp_mobilenet_v3_large"
                                 if "lraspp" in spec else "ssdlite320_mobilenet_v3_large")
        self.assertFalse(os.path.exists(torch_home))
        r = run_export("--model", "torchvision:segmentation.no_such_net", "--input-shape",
                       "1,3,8,8", "--out", os.path.join(self.tmp, "x"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("torchvision.models has no model builder 'segmentation.no_such_net' "
                      "(looked in torchvision.models, torchvision.models.segmentation, "
                      "torchvision.models.detection)", r.stderr)


def main():
    global MPSBC, DUMP
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True, help="path to the mpsbc executable")
    parser.add_argument("--dump", required=True, help="path to the mpsb-dump executable")
    args, rest = parser.parse_known_args()
    MPSBC, DUMP = args.mpsbc, args.dump
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
