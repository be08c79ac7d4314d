#!/usr/bin/python3
"""Writes examples/tiny_cnn/: a small real CNN as an mpsb manifest + .bin files.

The network covers the conv2d shapes the compiler and runtime must get right:
a strided 3x3 stem, a depthwise 3x3 (groups == channels), a 1x1 pointwise
without bias, a grouped 3x3 (4 groups of 8 channels: MPS wants a multiple of 4
channels per group), a dilated 3x3 and a non-square 3x5 head.

Weights come from PyTorch's default initialisation under torch.manual_seed(0),
so every run writes the same bytes. Each layer also gets a probe (docs/MANIFEST.md):
its real input and its output before the fused activation (where the
exporter takes probes: --check proves the weights' layout, docs/LAYERS.md)
from one PyTorch run on a random 1x3x32x32 input drawn after the weights,
computed by PyTorch's own operators. With
them `mpsbc compile --check` proves every layer and `--probes-out` writes the
probe file `mpsb-dump BUNDLE --check` reads. Run it with Debian's interpreter, which is
the one that sees python3-torch:

    /usr/bin/python3 examples/make_example.py [OUTPUT_DIR]
"""

import json
import os
import sys

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, kernel_size=3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 32, kernel_size=1, bias=False)
        self.grouped = nn.Conv2d(32, 32, kernel_size=3, padding=1, groups=4)
        self.dilated = nn.Conv2d(32, 32, kernel_size=3, padding=2, dilation=2)
        self.head = nn.Conv2d(32, 8, kernel_size=(3, 5), padding=(1, 2))
        self.relu = nn.ReLU()

    # Network order; the head has no activation (it produces logits).
    ORDER = [("stem", "relu"), ("dw", "relu"), ("pw", "relu"),
             ("grouped", "relu"), ("dilated", "relu"), ("head", None)]

    def forward(self, x):
        for name, act in self.ORDER:
            x = getattr(self, name)(x)
            if act == "relu":
                x = self.relu(x)
        return x


def pair(v):
    """PyTorch stores pairs as tuples; the manifest takes an int when h == w."""
    h, w = v
    return h if h == w else [h, w]


def write_tensor(t, folder, filename):
    # Exactly what docs/MANIFEST.md expects: raw little-endian float32 in
    # PyTorch's own (contiguous) layout.
    t.detach().contiguous().numpy().astype("<f4").tofile(os.path.join(folder, filename))
    return filename


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "tiny_cnn")
    os.makedirs(out_dir, exist_ok=True)

    torch.manual_seed(0)
    model = TinyCNN().eval()

    # A forward pass proves the layer chain is consistent before we write it.
    with torch.no_grad():
        y = model(torch.zeros(1, 3, 32, 32))
    assert tuple(y.shape) == (1, 8, 16, 16), y.shape

    probes_dir = os.path.join(out_dir, "probes")
    os.makedirs(probes_dir, exist_ok=True)
    x = torch.randn(1, 3, 32, 32)
    input_file = write_tensor(x, probes_dir, "input.bin")

    layers = []
    total_bytes = 0
    for name, act in TinyCNN.ORDER:
        conv = getattr(model, name)
        layer = {
            "name": name,
            "type": "conv2d",
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "kernel_size": pair(conv.kernel_size),
            "stride": pair(conv.stride),
            "padding": pair(conv.padding),
            "dilation": pair(conv.dilation),
            "groups": conv.groups,
            "weight": write_tensor(conv.weight, out_dir, f"{name}.weight.bin"),
        }
        total_bytes += conv.weight.numel() * 4
        if conv.bias is not None:
            layer["bias"] = write_tensor(conv.bias, out_dir, f"{name}.bias.bin")
            total_bytes += conv.bias.numel() * 4
        if act is not None:
            layer["activation"] = act
        with torch.no_grad():
            y = conv(x)
        output_file = write_tensor(y, probes_dir, f"{name}.output.bin")
        layer["probe"] = {"input": "probes/" + input_file, "input_shape": list(x.shape),
                          "output": "probes/" + output_file, "output_shape": list(y.shape)}
        # The next layer's input: this one's after its activation.
        x, input_file = y, output_file
        if act == "relu":
            with torch.no_grad():
                x = model.relu(y)
            input_file = write_tensor(x, probes_dir, f"{name}.activated.bin")
        layers.append(layer)
    assert total_bytes < 1 << 20, total_bytes

    manifest = {
        "format": "mpsb.manifest/1",
        "name": "tiny_cnn",
        "metadata": {
            "license": "MIT",
            "generator": "examples/make_example.py",
            "torch_seed": "0",
            "input_shape": "1x3x32x32",
        },
        "layers": layers,
    }
    with open(os.path.join(out_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {len(layers)} layers, {total_bytes} bytes of weights to {out_dir}")


if __name__ == "__main__":
    main()
