#!/usr/bin/python3
"""Probe files: the check that travels with the bundle.

    probe_file_test.py --mpsbc PATH --dump PATH --work DIR

A model with a conv, a batch norm, a transposed conv and a Linear after
flatten is exported (probes from PyTorch's own operators), compiled with
--probes-out, and checked by `mpsb-dump BUNDLE --check PROBES` with the
export folder gone: it passes, folded or not; it fails (exit 1) on a bundle
whose transposed-conv kernel is not rotated (--debug-mutate no-rotation); a
probe file of another bundle, a truncated or bit-flipped one are refused;
--check with nothing to check exits 2 in both tools, never OK.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "export"))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from mpsb_export.exporter import export  # noqa: E402

MPSBC = DUMP = WORK = None


class Probed(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(self.up(x), 1))


def run(*args):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True)


class ProbeFileTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        shutil.rmtree(WORK, ignore_errors=True)
        os.makedirs(WORK)
        torch.manual_seed(0)
        model = Probed()
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        cls.export_dir = os.path.join(WORK, "export")
        export(model.eval(), torch.randn(2, 3, 4, 4), cls.export_dir, name="probed")
        cls.manifest = os.path.join(cls.export_dir, "manifest.json")
        cls.no_probes = os.path.join(WORK, "no_probes")
        export(model.eval(), torch.randn(2, 3, 4, 4), cls.no_probes, name="probed", probes=False)
        cls.bundles = {}
        for variant, flags in [("plain", []), ("folded", ["--fold-batchnorm"]),
                               ("mutated", ["--debug-mutate", "no-rotation"])]:
            bundle = os.path.join(WORK, variant + ".mpsb")
            probes = os.path.join(WORK, variant + ".probes.mpsb")
            r = run(MPSBC, "compile", cls.manifest, "-o", bundle, "--probes-out", probes, *flags)
            if r.returncode != 0:
                raise AssertionError("compile %s exited %d: %s" % (variant, r.returncode, r.stderr))
            cls.bundles[variant] = (bundle, probes)
        # Every check below runs without the manifest and its .bin files.
        cls.hidden = cls.export_dir + ".hidden"
        os.rename(cls.export_dir, cls.hidden)

    @classmethod
    def tearDownClass(cls):
        os.rename(cls.hidden, cls.export_dir)

    def check(self, bundle, probes, *flags):
        return run(DUMP, bundle, "--check", probes, *flags)

    def test_passes_without_the_manifest(self):
        for variant, layers in [("plain", ["conv", "bn", "up", "fc"]),
                                ("folded", ["conv", "up", "fc"])]:
            with self.subTest(variant=variant):
                bundle, probes = self.bundles[variant]
                r = self.check(bundle, probes)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertIn("OK: %d layers checked against %s" % (len(layers), probes),
                              r.stdout)
                j = json.loads(self.check(bundle, probes, "--json").stdout)
                self.assertTrue(j["passed"])
                self.assertEqual(j["probes"], "probe_file")
                self.assertEqual([c["layer"] for c in j["layers"]], layers)

    def test_check_document_keys_are_the_documented_ones(self):
        keys, current = {}, None
        with open(os.path.join(ROOT, "docs", "DUMP_JSON.md"), encoding="utf-8") as f:
            for line in f:
                if line.startswith("### `"):
                    current = line[5:line.index("`", 5)]
                    keys[current] = []
                elif line.startswith("#"):
                    current = None
                elif current and line.startswith("| `"):
                    keys[current].append(line[3:line.index("`", 3)])
        bundle, probes = self.bundles["plain"]
        j = json.loads(self.check(bundle, probes, "--json").stdout)
        self.assertEqual(list(j), keys["check"])
        for layer in j["layers"]:
            self.assertEqual(list(layer), keys["check.layer"])

    def test_unrotated_transposed_conv_fails(self):
        bundle, probes = self.bundles["mutated"]
        r = self.check(bundle, probes)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("FAILED: 4 layers checked", r.stdout)
        self.assertIn(probes + ": layer up: --check: layer up differs from PyTorch", r.stderr)
        self.assertRegex(r.stdout, r"\nup .*FAILED\n")
        self.assertRegex(r.stdout, r"\nconv .*ok\n")

    def test_probe_file_of_another_bundle_is_refused(self):
        bundle, _ = self.bundles["plain"]
        _, other = self.bundles["folded"]
        r = self.check(bundle, other)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(other + ": the probe file of another bundle: it names segment checksum",
                      r.stderr)
        # A refused check prints its error alone, no empty table.
        self.assertEqual(r.stdout, "")

    def test_a_model_bundle_is_not_a_probe_file(self):
        bundle, _ = self.bundles["plain"]
        r = self.check(bundle, bundle)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(bundle + ": an mpsb bundle, not a probe file (no metadata mpsb.probes_for)",
                      r.stderr)
        self.assertEqual(r.stdout, "")

    def test_a_refused_manifest_prints_only_its_error(self):
        bundle, _ = self.bundles["plain"]
        missing = os.path.join(WORK, "absent", "manifest.json")
        r = self.check(bundle, missing)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn(missing, r.stderr)
        self.assertEqual(r.stdout, "")

    def test_hostile_probe_files_are_refused(self):
        bundle, probes = self.bundles["plain"]
        with open(probes, "rb") as f:
            data = f.read()
        truncated = os.path.join(WORK, "truncated.probes.mpsb")
        with open(truncated, "wb") as f:
            f.write(data[:len(data) // 2])
        flipped = os.path.join(WORK, "flipped.probes.mpsb")
        with open(flipped, "wb") as f:
            f.write(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
        # The last bytes of the segment are padding: flip one inside a tensor.
        inside = bytearray(data)
        inside[len(data) // 2 + 8] ^= 0x40
        tensor_flip = os.path.join(WORK, "tensor_flip.probes.mpsb")
        with open(tensor_flip, "wb") as f:
            f.write(inside)
        for path, phrase in [(truncated, "ends past the end of the file"),
                             (flipped, "padding"),
                             (tensor_flip, "checksum")]:
            with self.subTest(path=os.path.basename(path)):
                r = self.check(bundle, path)
                self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
                self.assertIn("mpsb-dump: " + path + ": ", r.stderr)
                self.assertIn(phrase, r.stderr)
                self.assertEqual(r.stdout, "")

    def test_probe_file_is_a_container_the_dump_reads(self):
        _, probes = self.bundles["plain"]
        r = run(DUMP, probes, "--verify")
        self.assertEqual(r.returncode, 0, r.stderr)
        j = json.loads(run(DUMP, probes, "--json").stdout)
        self.assertEqual([l["kind"] for l in j["layers"]], ["probe"] * 4)
        self.assertEqual(sorted(j["metadata"]), ["mpsb.probes_for"])
        # --extract gives PyTorch's bytes back: the exporter's probe .bin.
        for name, role, file in [("up", "probe_input", "up.input.bin"),
                                 ("fc", "probe_output", "fc.output.bin"),
                                 ("conv", "probe_output", "conv.output.bin")]:
            out = os.path.join(WORK, name + "." + role + ".bin")
            r = run(DUMP, probes, "--extract", name + "." + role, "-o", out)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as a, open(os.path.join(self.hidden, "probes", file), "rb") as b:
                self.assertEqual(a.read(), b.read(), name + "." + role)

    def test_the_stored_layout_is_nhwc(self):
        _, probes = self.bundles["plain"]
        j = json.loads(run(DUMP, probes, "--layer", "up", "--json").stdout)
        tensors = {t["role"]: t for t in j["tensors"]}
        self.assertEqual(tensors["probe_input"]["shape"], [2, 4, 4, 8])
        self.assertEqual(tensors["probe_input"]["source_shape"], [2, 8, 4, 4])
        self.assertEqual(tensors["probe_input"]["layout"], "nhwc")
        self.assertEqual(tensors["probe_input"]["transform"], "nchw_to_nhwc")
        j = json.loads(run(DUMP, probes, "--layer", "fc", "--json").stdout)
        tensors = {t["role"]: t for t in j["tensors"]}
        self.assertEqual(tensors["probe_output"]["shape"], [2, 1, 1, 5])
        self.assertEqual(tensors["probe_output"]["transform"], "identity")

    def test_the_example_checks_with_its_folder_gone(self):
        folder = os.path.join(WORK, "tiny_cnn")
        shutil.copytree(os.path.join(ROOT, "examples", "tiny_cnn"), folder)
        bundle = os.path.join(WORK, "tiny_cnn.mpsb")
        probes = os.path.join(WORK, "tiny_cnn.probes.mpsb")
        r = run(MPSBC, "compile", os.path.join(folder, "manifest.json"), "-o", bundle,
                "--check", "--probes-out", probes)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        shutil.rmtree(folder)
        r = self.check(bundle, probes)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("OK: 6 layers checked against " + probes, r.stdout)

    def test_nothing_to_check_is_an_error(self):
        tiny = os.path.join(self.no_probes, "manifest.json")
        out = os.path.join(WORK, "tiny.mpsb")
        for flags in [["--check"], ["--probes-out", os.path.join(WORK, "tiny.probes.mpsb")]]:
            with self.subTest(flags=flags):
                r = run(MPSBC, "compile", tiny, "-o", out, *flags)
                self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
                self.assertIn("no layer of the manifest has a probe, so there is nothing to check",
                              r.stderr)
                self.assertFalse(os.path.exists(out))
        bundle, _ = self.bundles["plain"]
        r = self.check(bundle, tiny)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("nothing to check", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_failed_check_keeps_the_old_probe_file(self):
        os.rename(self.hidden, self.export_dir)
        try:
            bundle = os.path.join(WORK, "keep.mpsb")
            probes = os.path.join(WORK, "keep.probes.mpsb")
            for path in (bundle, probes):
                with open(path, "wb") as f:
                    f.write(b"old")
            r = run(MPSBC, "compile", self.manifest, "-o", bundle, "--probes-out", probes,
                    "--check", "--debug-mutate", "no-rotation")
            self.assertEqual(r.returncode, 5, r.stdout + r.stderr)
            for path in (bundle, probes):
                with open(path, "rb") as f:
                    self.assertEqual(f.read(), b"old", path)
            self.assertEqual([f for f in os.listdir(WORK) if ".tmp-" in f], [])
            # A probe file that cannot be written keeps the old bundle too.
            nowhere = os.path.join(WORK, "no_such_folder", "x.probes.mpsb")
            r = run(MPSBC, "compile", self.manifest, "-o", bundle, "--probes-out", nowhere)
            self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
            self.assertIn(nowhere + ": cannot create a temporary file", r.stderr)
            with open(bundle, "rb") as f:
                self.assertEqual(f.read(), b"old")
            r = run(MPSBC, "compile", self.manifest, "-o", bundle, "--probes-out", bundle)
            self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
            self.assertIn("--probes-out is the bundle's own output path", r.stderr)
        finally:
            os.rename(self.export_dir, self.hidden)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mpsbc", required=True)
    parser.add_argument("--dump", required=True)
    parser.add_argument("--work", required=True)
    args, rest = parser.parse_known_args()
    MPSBC, DUMP, WORK = args.mpsbc, args.dump, args.work
    unittest.main(argv=[sys.argv[0]] + rest)
