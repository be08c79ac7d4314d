#!/usr/bin/env python3
"""Writes a synthetic model (manifest.json + random float32 .bin files) for the
benchmarks.

  gen_model.py resnet50 DIR   ResNet-50's conv, batch-norm and fc shapes (~102 MB)
  gen_model.py large DIR      112 conv 3x3 1152->1152 layers with biases (~5.0 GiB)
"""
import json
import os
import sys

import numpy as np


def resnet50_layers():
    layers = [("conv1", "conv", 3, 64, 7, 1), ("bn1", "bn", 64)]
    inplanes = 64
    for stage, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            out = width * 4
            layers += [(f"{p}.conv1", "conv", inplanes, width, 1, 1), (f"{p}.bn1", "bn", width),
                       (f"{p}.conv2", "conv", width, width, 3, 1), (f"{p}.bn2", "bn", width),
                       (f"{p}.conv3", "conv", width, out, 1, 1), (f"{p}.bn3", "bn", out)]
            if b == 0:
                layers += [(f"{p}.downsample.0", "conv", inplanes, out, 1, 1),
                           (f"{p}.downsample.1", "bn", out)]
            inplanes = out
    layers.append(("fc", "linear", 2048, 1000))
    return layers


def large_layers():
    return [(f"block{i:03d}", "conv", 1152, 1152, 3, 1, True) for i in range(112)]


def main():
    kind, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    # One random block reused with a per-file xor: distinct bytes per file
    # without generating gigabytes of random numbers.
    pool = rng.standard_normal(12 << 20, dtype=np.float32).view(np.uint32)

    def write(name, count):
        n = 0
        with open(os.path.join(out_dir, name), "wb") as f:
            salt = np.uint32(hash(name) & 0x7FFFFF)
            while n < count:
                k = min(count - n, pool.size)
                f.write((pool[:k] ^ salt).tobytes())
                n += k
        return name

    manifest = {"format": "mpsb.manifest/1", "name": kind, "layers": []}
    for spec in resnet50_layers() if kind == "resnet50" else large_layers():
        name, typ = spec[0], spec[1]
        if typ == "conv":
            _, _, cin, cout, k, groups, *bias = spec
            layer = {"name": name, "type": "conv2d", "in_channels": cin, "out_channels": cout,
                     "kernel_size": k, "padding": k // 2, "groups": groups,
                     "weight": write(name + ".weight.bin", cout * cin // groups * k * k)}
            if bias:
                layer["bias"] = write(name + ".bias.bin", cout)
        elif typ == "bn":
            c = spec[2]
            layer = {"name": name, "type": "batch_norm2d", "num_features": c}
            for role in ("weight", "bias", "running_mean", "running_var"):
                layer[role] = write(f"{name}.{role}.bin", c)
        else:
            _, _, cin, cout = spec
            layer = {"name": name, "type": "linear", "in_features": cin, "out_features": cout,
                     "weight": write(name + ".weight.bin", cout * cin),
                     "bias": write(name + ".bias.bin", cout)}
        manifest["layers"].append(layer)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
