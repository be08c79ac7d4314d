#!/usr/bin/python3
"""The exporter's manifest as the compiler reads it, strictly: every
top-level key the exporter writes is one the compiler knows (a strict
compile, without --allow-unknown-fields, accepts it), and the modules it
lists under "skipped" reach the bundle and are shown by mpsbc and mpsb-dump.

Run: /usr/bin/python3 tests/pytorch/strict_test.py --mpsbc BIN --dump BIN
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
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path[:0] = [os.path.join(ROOT, "tools", "export")]

import mpsb_export  # noqa: E402

ARGS = None


class Partial(nn.Module):
    """Two convs, each followed by an activation MPS has no neuron for, and
    a module the forward pass never calls: three skipped modules."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.hswish = nn.Hardswish()
        self.conv2 = nn.Conv2d(4, 4, 1)
        self.silu = nn.SiLU()
        self.aux = nn.Conv2d(4, 2, 1)

    def forward(self, x):
        return self.silu(self.conv2(self.hswish(self.conv1(x))))


def run(*cmd):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)


def skipped_line(skipped):
    n = len(skipped)
    return "%d module%s of the PyTorch model %s not in this bundle: %s" % (
        n, "" if n == 1 else "s", "is" if n == 1 else "are",
        ", ".join("%s (%s)" % (s["name"] or "<root>", s["type"]) for s in skipped))


class StrictTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.out = os.path.join(cls.tmp.name, "model")
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls.manifest = mpsb_export.export(Partial().eval(), torch.randn(1, 3, 6, 6), cls.out,
                                              name="partial", metadata={"license": "MIT"})
        cls.manifest_path = os.path.join(cls.out, "manifest.json")
        cls.bundle = os.path.join(cls.tmp.name, "partial.mpsb")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_the_exporter_lists_the_skipped_modules(self):
        with open(self.manifest_path, encoding="utf-8") as f:
            written = json.load(f)
        self.assertEqual(written, json.loads(json.dumps(self.manifest)))
        self.assertEqual(sorted(s["name"] for s in written["skipped"]), ["aux", "hswish", "silu"])
        # Every top-level key the exporter can write is in this manifest.
        self.assertEqual(sorted(written), ["format", "layers", "metadata", "name", "skipped"])

    def test_a_strict_compile_knows_every_key_and_keeps_the_skipped_modules(self):
        r = run(ARGS.mpsbc, "compile", self.manifest_path, "-o", self.bundle)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("unknown field", r.stderr)
        self.assertTrue(r.stdout.endswith(skipped_line(self.manifest["skipped"]) + "\n"),
                        r.stdout)
        report = run(ARGS.mpsbc, "check", self.manifest_path, "--json")
        self.assertEqual(report.returncode, 0, report.stderr)
        parsed = json.loads(report.stdout)
        self.assertEqual(parsed["diagnostics"], [])
        self.assertEqual(parsed["skipped_modules"], self.manifest["skipped"])

        dump = run(ARGS.dump, self.bundle, "--color", "never")
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertIn(skipped_line(self.manifest["skipped"]), dump.stdout)
        as_json = run(ARGS.dump, self.bundle, "--json")
        self.assertEqual(as_json.returncode, 0, as_json.stderr)
        self.assertEqual(json.loads(as_json.stdout)["skipped_modules"], self.manifest["skipped"])

    def test_a_key_the_compiler_does_not_know_fails_the_compile(self):
        # The same manifest with "skipped" misspelt: proof that the compile
        # above would have failed on a key it does not know.
        m = json.loads(json.dumps(self.manifest))
        m["skiped"] = m.pop("skipped")
        path = os.path.join(self.out, "misspelt.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(m, f)
        r = run(ARGS.mpsbc, "check", path)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn('%s: /skiped: unknown field for a manifest; did you mean "skipped"?' % path,
                      r.stderr)
        allowed = run(ARGS.mpsbc, "check", path, "--allow-unknown-fields")
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        self.assertIn("/skiped: warning: unknown field for a manifest, ignored", allowed.stderr)


    def test_dump_check_is_strict_unless_allowed(self):
        build = run(ARGS.mpsbc, "compile", self.manifest_path, "-o", self.bundle)
        self.assertEqual(build.returncode, 0, build.stderr)
        m = json.loads(json.dumps(self.manifest))
        m["author"] = "someone"
        path = os.path.join(self.out, "with_author.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(m, f)
        strict = run(ARGS.dump, self.bundle, "--check", path)
        self.assertEqual(strict.returncode, 1, strict.stdout)
        self.assertIn("mpsb-dump: %s: /author: unknown field for a manifest\n" % path,
                      strict.stderr)
        allowed = run(ARGS.dump, self.bundle, "--check", path, "--allow-unknown-fields")
        self.assertEqual(allowed.returncode, 0, allowed.stderr)
        self.assertIn("mpsb-dump: %s: /author: warning: unknown field for a manifest, ignored\n"
                      % path, allowed.stderr)
        self.assertIn("OK: 2 layers checked", allowed.stdout)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpsbc", required=True)
    parser.add_argument("--dump", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
