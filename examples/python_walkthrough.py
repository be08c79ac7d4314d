#!/usr/bin/env python3
"""Runs the README's Python walk-through and prints it as Markdown, each cell
followed by what it really printed.

  python examples/python_walkthrough.py > build/walkthrough.md
  (in a venv with torch, torchvision and mpsb: scripts/torch-venv.sh's)

The README section "Python: `pip install .`" is this script's output.
"""

import contextlib
import io
import os
import sys
import tempfile
import textwrap

CELLS = [
    ("Export a model (random weights, seed 0) with the exporter in the package:", """
import torch, torchvision, mpsb
torch.manual_seed(0)
model = torchvision.models.resnet18(weights=None).eval()
manifest = mpsb.export(model, torch.randn(1, 3, 224, 224), "export/")
print(len(manifest["layers"]), "layers;", manifest["layers"][0]["name"], manifest["layers"][0]["type"])
"""),
    ("Compile it twice with the packaged `mpsbc`, float32 and float16, proving every "
     "layer against PyTorch (`--check`):", """
import subprocess
for precision in ("float32", "float16"):
    r = subprocess.run(["mpsbc", "compile", "export/manifest.json", "-o", f"r18-{precision}.mpsb",
                        "--check", "--precision", precision, "-q"])
    print(precision, "exit", r.returncode)
"""),
    ("Open a bundle (mmap and structural checks; no weight page is read) and look inside:", """
b = mpsb.open("r18-float32.mpsb")
print(b)
print(b.producer, "| format", b.format_version, "| segment at", b.segment_offset,
      "size", b.segment_size, "| tensor alignment", b.tensor_alignment)
for layer in b.layers[:3]:
    print(layer.index, layer.name, layer.kind, layer.activation, layer.params)
w = b["conv1"]["weight"]
print(w.dtype, w.layout, w.shape, "<-", w.source_layout, w.source_shape, "via", w.transform)
print("offset", w.offset, "size", w.size, "checksum %016x" % w.checksum)
"""),
    ("`numpy()` is a read-only view of the mapping in the stored (MPS) layout; "
     "`to_source()` a copy in PyTorch's, byte for byte the exporter's `.bin`:", """
import numpy as np
a = w.numpy()
print(a.dtype, a.shape, "writeable:", a.flags.writeable, "| shares memory with a second view:",
      np.shares_memory(a, w.numpy()))
src = w.to_source()
print(src.shape, "same bytes as export/conv1.weight.bin:",
      src.tobytes() == open("export/conv1.weight.bin", "rb").read())
"""),
    ("Compare the two bundles tensor by tensor (float16 against float32):", """
h = mpsb.open("r18-float16.mpsb")
print("file sizes: %.1f MB vs %.1f MB" % (b.file_size / 1e6, h.file_size / 1e6))
worst = []
for (key, t32), (_, t16) in zip(b.tensors(), h.tensors()):
    x, y = t32.to_source().astype(np.float32), t16.to_source().astype(np.float32)
    scale = np.abs(x).max() or 1.0  # all-zero tensors (fresh batch-norm biases) compare absolutely
    worst.append((float(np.abs(x - y).max() / scale), key, t16.dtype))
for err, key, dtype in sorted(worst, reverse=True)[:3]:
    print("%-24s stored %-8s max rel diff %.2e" % (key, dtype, err))
"""),
    ("Runtime errors are `mpsb.BundleError` with the runtime's code:", """
open("broken.mpsb", "wb").write(open("r18-float32.mpsb", "rb").read()[:1000])
try:
    mpsb.open("broken.mpsb")
except mpsb.BundleError as e:
    print(e.code, e.name, "|", e.message)
"""),
]


def main():
    env = {}
    with tempfile.TemporaryDirectory() as d:
        os.chdir(d)
        print("```python")
        print("# pip install .   (in a venv; add torch and torchvision for the exporter)")
        print("```")
        for text, code in CELLS:
            code = textwrap.dedent(code).strip("\n")
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                exec(compile(code, "<cell>", "exec"), env)  # noqa: S102
            print()
            print(text)
            print()
            print("```python")
            print(code)
            print("```")
            print("<!-- check-docs skip: printed by examples/python_walkthrough.py (needs torch) -->")
            print("```")
            print(buf.getvalue().rstrip("\n"))
            print("```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
