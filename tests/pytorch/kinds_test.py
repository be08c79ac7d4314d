#!/usr/bin/python3
"""The exporter's table of kinds and activations against the compiler's.

    kinds_test.py --mpsbc PATH

tools/export/mpsb_export/layers.py keeps one list of the layer kinds and
fused activations it writes (KINDS, ACTIVATIONS); the compiler reads
runtime/include/mpsb/kinds.h. `mpsbc kinds --json` prints the latter, and
every difference fails: a kind or activation on one side only, another
PyTorch module, other manifest fields or tensor fields, other activation
parameters or defaults. The defaults kinds.h gives are also compared with
PyTorch's own (the signature of the module's constructor), so a wrong
default in the C++ table fails here too.
"""

import argparse
import inspect
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

from torch import nn  # noqa: E402

from mpsb_export import layers  # noqa: E402

MPSBC = None


def module_name(cls):
    return None if cls is None else "nn." + cls.__name__


def torch_defaults(cls):
    """PyTorch's defaults of a module's constructor arguments."""
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


def as_manifest_value(value):
    """A PyTorch default as the manifest spells it: an int pair's one int."""
    if isinstance(value, tuple) and len(set(value)) == 1:
        return value[0]
    return value


class KindsTableTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        proc = subprocess.run([MPSBC, "kinds", "--json"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise AssertionError("mpsbc kinds --json exited %d: %s" % (proc.returncode,
                                                                       proc.stderr))
        cls.table = json.loads(proc.stdout)
        # The probe files' kind is no manifest type: the exporter never writes it.
        cls.cpp_kinds = {k["name"]: k for k in cls.table["kinds"] if k["manifest"]}
        cls.cpp_activations = {a["name"]: a for a in cls.table["activations"]}

    def test_same_kinds(self):
        self.assertEqual(sorted(k.name for k in layers.KINDS), sorted(self.cpp_kinds))

    def test_same_module_fields_and_tensors(self):
        for kind in layers.KINDS:
            cpp = self.cpp_kinds.get(kind.name)
            if cpp is None:
                continue  # test_same_kinds reports it
            with self.subTest(kind=kind.name):
                self.assertEqual(module_name(kind.module), cpp["pytorch"])
                self.assertEqual(list(kind.fields), [f["name"] for f in cpp["fields"]])
                self.assertEqual(list(kind.tensors),
                                 [r["field"] for r in cpp["roles"] if r["field"] is not None])
                self.assertEqual(kind.fused_activation, cpp["fused_activation"])

    def test_same_activations_in_order(self):
        self.assertEqual([a.name for a in layers.ACTIVATIONS],
                         [a["name"] for a in self.table["activations"]])
        for act in layers.ACTIVATIONS:
            cpp = self.cpp_activations.get(act.name)
            if cpp is None:
                continue
            with self.subTest(activation=act.name):
                self.assertEqual(module_name(act.module), cpp["pytorch"])
                self.assertEqual([list(p) for p in act.params],
                                 [[p["name"], p["default"]] for p in cpp["params"]])
                option = cpp["option"]
                self.assertEqual(act.option,
                                 None if option is None else (option["name"], option["value"]))

    def test_tensor_roles_cover_every_tensor_field(self):
        fields = {r["field"] for k in self.table["kinds"] for r in k["roles"] if r["field"]}
        self.assertEqual(set(layers.TENSOR_ROLES), fields)

    def test_cpp_defaults_are_pytorchs(self):
        """Every default kinds.h gives equals the module constructor's."""
        compared = 0
        for kind in layers.KINDS:
            theirs = torch_defaults(kind.module)
            for field in self.cpp_kinds.get(kind.name, {"fields": []})["fields"]:
                if field["default"] is None or field["name"] not in theirs:
                    continue
                with self.subTest(kind=kind.name, field=field["name"]):
                    want = as_manifest_value(theirs[field["name"]])
                    self.assertEqual(field["default"], want)
                    compared += 1
        for act in layers.ACTIVATIONS:
            if act.module is None:
                continue
            theirs = torch_defaults(act.module)
            for p in self.cpp_activations.get(act.name, {"params": []})["params"]:
                with self.subTest(activation=act.name, param=p["name"]):
                    self.assertIn(p["name"], theirs)
                    self.assertEqual(p["default"], theirs[p["name"]])
                    compared += 1
            if act.option is not None:
                with self.subTest(activation=act.name, option=act.option[0]):
                    self.assertEqual(theirs.get(act.option[0], act.option[1]), act.option[1])
        # Not a count of cases: proof that the loop above compared anything.
        self.assertGreater(compared, 0)

    def test_mapped_types_follow_the_list(self):
        self.assertEqual(layers.MAPPED_TYPES, tuple(k.module for k in layers.KINDS))
        for kind in layers.KINDS:
            self.assertEqual(layers.kind_of(self._instance(kind.module)), kind.name)

    @staticmethod
    def _instance(cls):
        args = {nn.Conv2d: (1, 1, 1), nn.ConvTranspose2d: (1, 1, 1), nn.Linear: (1, 1),
                nn.BatchNorm2d: (1,), nn.InstanceNorm2d: (1,), nn.GroupNorm: (1, 1),
                nn.PReLU: ()}
        return cls(*args[cls])


def main():
    global MPSBC
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mpsbc", required=True, help="path to the mpsbc executable")
    args, rest = parser.parse_known_args()
    MPSBC = args.mpsbc
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
