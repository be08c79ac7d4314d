#!/usr/bin/python3
"""Kernel placement (runtime mpsb/placement.h) against PyTorch.

    placement_test.py --shapes PATH_TO_mpsb_placement_shapes

For every conv kind (dense, depthwise, depthwise with multiplier 2,
grouped, transposed, grouped transposed), stride 1-3, kernel 1-7, dilation
1-3 and padding 0-3 on the height axis, with the width axis taking the same
sweep in another (seeded) order so height and width differ, on odd and even
input sizes, and for transposed convs every output_padding up to and
including the first value PyTorch refuses:

- PyTorch computes the output shape by running F.conv2d /
  F.conv_transpose2d on a small tensor. place_kernel must give that height,
  width and channel count, and must refuse exactly the cases PyTorch
  refuses.
- The offsets are checked numerically against an emulation of Apple's
  documented placement, written here independently of the C++: an
  MPSCNNConvolution's window for output x starts at x*stride + offset.x -
  (kW_dilated >> 1) (MPSCNNConvolutionDescriptor, MPSCNNKernel.offset);
  an MPSCNNConvolutionTranspose puts stride-1 zeros between input pixels and
  convolves that image with stride 1, its window starting at x +
  kernelOffsetX - (kW_dilated >> 1) (offset 0, totalOffset = offset*stride +
  kernelOffset). Pixels outside the image read zero (MPSImageEdgeModeZero).
  The emulation's result must equal PyTorch's. This checks the numbers
  against Apple's documentation as written; no Metal device runs here.
"""

import argparse
import random
import subprocess
import sys
import unittest

import torch
import torch.nn.functional as F

SHAPES = None
torch.set_num_threads(1)  # tiny tensors: threads only add overhead

# (name, transposed, in_channels, out_channels, groups)
KINDS = [
    ("conv", False, 4, 4, 1),
    ("depthwise", False, 4, 4, 4),
    ("depthwise_x2", False, 4, 8, 4),
    ("grouped", False, 6, 4, 2),
    ("transposed", True, 4, 6, 1),
    ("grouped_transposed", True, 4, 6, 2),
]

AXIS_SWEEP = [(k, s, d, p) for s in (1, 2, 3) for k in range(1, 8) for d in (1, 2, 3)
              for p in range(4)]


def cases():
    rng = random.Random(15)
    out = []
    for name, transposed, cin, cout, groups in KINDS:
        widths = AXIS_SWEEP[:]
        rng.shuffle(widths)
        for (kh, sh, dh, ph), (kw, sw, dw, pw) in zip(AXIS_SWEEP, widths):
            # Odd height with even width and the other way round, in turn.
            odd, even = rng.randrange(1, 14, 2), rng.randrange(2, 15, 2)
            for h, w in [(odd, even) if len(out) % 2 else (even, odd)]:
                oph = rng.randrange(max(sh, dh) + 1) if transposed else 0
                opw = rng.randrange(max(sw, dw) + 1) if transposed else 0
                out.append(dict(name=name, transposed=transposed, cin=cin, cout=cout,
                                groups=groups, k=(kh, kw), s=(sh, sw), p=(ph, pw), d=(dh, dw),
                                op=(oph, opw), h=h, w=w))
    return out


def weight(c):
    g = torch.Generator().manual_seed(hash((c["k"], c["cin"], c["cout"])) & 0xFFFF)
    if c["transposed"]:
        shape = (c["cin"], c["cout"] // c["groups"], *c["k"])
    else:
        shape = (c["cout"], c["cin"] // c["groups"], *c["k"])
    return torch.randn(shape, generator=g, dtype=torch.float64)


def pytorch(c, x, w):
    """PyTorch's output, or None when PyTorch refuses the case."""
    try:
        if c["transposed"]:
            return F.conv_transpose2d(x, w, stride=c["s"], padding=c["p"],
                                      output_padding=c["op"], groups=c["groups"],
                                      dilation=c["d"])
        return F.conv2d(x, w, stride=c["s"], padding=c["p"], dilation=c["d"],
                        groups=c["groups"])
    except RuntimeError:
        return None


def span(image, left, length, axis):
    """The `length` pixels of `image` from position `left` along `axis` (2 = H,
    3 = W), zero where they fall outside it: what MPS reads with
    MPSImageEdgeModeZero."""
    size = image.shape[axis]
    front, back = max(0, -left), max(0, left + length - size)
    pad = [front, back, 0, 0] if axis == 3 else [0, 0, front, back]
    return F.pad(image, pad).narrow(axis, left + front, length)


def mps_emulation(c, x, w, placed):
    """What Apple's documentation says MPS computes with the placement."""
    dest_h, dest_w = placed["dest_h"], placed["dest_w"]
    (kh, kw), (sh, sw), (dh, dw) = c["k"], c["s"], c["d"]
    reach_h, reach_w = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if c["transposed"]:
        # stride - 1 zeros between source pixels, then a stride-1 convolution
        # with the kernel as the data source serves it (rotated 180 degrees,
        # per group [O][I] swapped: what the compiler stores).
        n, cin, h, wd = x.shape
        expanded = torch.zeros(n, cin, (h - 1) * sh + 1, (wd - 1) * sw + 1, dtype=x.dtype)
        expanded[:, :, ::sh, ::sw] = x
        g = c["groups"]
        k = w.view(g, cin // g, c["cout"] // g, kh, kw).transpose(1, 2)
        k = k.reshape(c["cout"], cin // g, kh, kw).flip(2, 3)
        left_x = placed["offset_x"] * sw + placed["kernel_offset_x"] - (reach_w >> 1)
        left_y = placed["offset_y"] * sh + placed["kernel_offset_y"] - (reach_h >> 1)
        src = span(span(expanded, left_y, dest_h + reach_h - 1, 2), left_x,
                   dest_w + reach_w - 1, 3)
        return F.conv2d(src, k, dilation=c["d"], groups=g)
    left_x = placed["offset_x"] - (reach_w >> 1)
    left_y = placed["offset_y"] - (reach_h >> 1)
    # Output x reads from x*stride + left on: the pixels from `left` that
    # dest windows at the stride cover.
    src = span(span(x, left_y, (dest_h - 1) * sh + reach_h, 2), left_x,
               (dest_w - 1) * sw + reach_w, 3)
    return F.conv2d(src, w, stride=c["s"], dilation=c["d"], groups=c["groups"])


def run_shapes(all_cases):
    lines = []
    for c in all_cases:
        kind = "conv_transpose2d" if c["transposed"] else "conv2d"
        fields = [kind, c["cin"], c["cout"], c["groups"], *c["k"], *c["s"], *c["p"], *c["d"],
                  *c["op"], c["h"], c["w"]]
        lines.append(" ".join(str(f) for f in fields))
    out = subprocess.run([SHAPES], input="\n".join(lines) + "\n", capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == len(all_cases), (len(out), len(all_cases))
    results = []
    for line in out:
        word, _, rest = line.partition(" ")
        if word == "refused":
            results.append(dict(refused=rest))
            continue
        v = [int(t) for t in rest.split()]
        results.append(dict(dest_h=v[0], dest_w=v[1], dest_c=v[2], offset_x=v[3],
                            offset_y=v[4], kernel_offset_x=v[5], kernel_offset_y=v[6]))
    return results


class PlacementTest(unittest.TestCase):
    def test_place_kernel_matches_pytorch_shapes_and_refusals_and_apple_placement(self):
        all_cases = cases()
        placed = run_shapes(all_cases)
        counts = {"ok": 0, "refused": 0}
        failures = []
        for c, r in zip(all_cases, placed):
            x = torch.randn(1, c["cin"], c["h"], c["w"], dtype=torch.float64,
                            generator=torch.Generator().manual_seed(c["h"] * 31 + c["w"]))
            w = weight(c)
            want = pytorch(c, x, w)
            where = f"{c['name']} k{c['k']} s{c['s']} p{c['p']} d{c['d']} op{c['op']} " \
                    f"in {c['h']}x{c['w']}"
            if want is None:
                counts["refused"] += 1
                if "refused" not in r:
                    failures.append(f"{where}: PyTorch refuses, mpsb placed {r}")
                continue
            counts["ok"] += 1
            if "refused" in r:
                failures.append(f"{where}: PyTorch gives {tuple(want.shape)}, mpsb refused: "
                                f"{r['refused']}")
                continue
            got = (1, r["dest_c"], r["dest_h"], r["dest_w"])
            if got != tuple(want.shape):
                failures.append(f"{where}: shape {got}, PyTorch {tuple(want.shape)}")
                continue
            if c["transposed"]:
                if r["offset_x"] or r["offset_y"]:
                    failures.append(f"{where}: transposed conv with MPSCNNKernel offset set")
            elif r["kernel_offset_x"] or r["kernel_offset_y"]:
                failures.append(f"{where}: conv with kernelOffset set")
            emulated = mps_emulation(c, x, w, r)
            if emulated.shape != want.shape or not torch.allclose(emulated, want, atol=1e-9):
                failures.append(f"{where}: Apple's placement with offsets {r} differs from "
                                f"PyTorch")
        print(f"{counts['ok']} placed and matched, {counts['refused']} refused by both")
        self.assertEqual(failures[:20], [], f"{len(failures)} failures")
        # Both outcomes must occur, or the sweep tests less than it says.
        self.assertGreater(counts["refused"], 0)
        self.assertGreater(counts["ok"], 0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--shapes", required=True)
    args, rest = parser.parse_known_args()
    SHAPES = args.shapes
    unittest.main(argv=[sys.argv[0]] + rest)
