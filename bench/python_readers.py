#!/usr/bin/env python3
"""Python readers side by side on the same ResNet-50-sized weights, in one run.

  bench/python_readers.py [--mpsbc PATH] [--work DIR] [--reps N]
  (scripts/bench-python.sh runs it in the venv it needs)

Writes ResNet-50's tensors (bench/gen_model.py resnet50: 267 float32 tensors,
~102 MB) once, then stores them as
  .mpsb         mpsbc compile of the manifest (weights in MPS layout)
  .safetensors  safetensors.numpy.save_file
  .gguf         gguf.GGUFWriter, float32
  .pt           torch.save of a state dict of torch tensors
and for each reader, in a fresh process each time (files already in the page
cache: a warm-up pass reads them first), times
  open+numpy   open the file and get every tensor as a numpy array
  touch        then read every byte of every array (page-in / copy cost)
and records the process's RSS before opening, after open+numpy and after
touch (VmRSS from /proc/self/status; the peak is VmHWM). Prints medians of
--reps processes and ratios against mpsb.open.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
READERS = ["mpsb", "safetensors", "gguf", "torch", "torch-mmap"]


def rss_kib():
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                fields[k] = int(v.split()[0])
    return fields["VmRSS"], fields["VmHWM"]


def open_all(reader, path):
    """Opens `path` with `reader` and returns (keep-alive object, [arrays])."""
    if reader == "mpsb":
        import mpsb
        b = mpsb.open(path)
        return b, [t.numpy() for _, t in b.tensors()]
    if reader == "safetensors":
        from safetensors import safe_open
        f = safe_open(path, framework="numpy")
        return f, [f.get_tensor(k) for k in f.keys()]
    if reader == "gguf":
        import gguf
        r = gguf.GGUFReader(path)
        return r, [t.data for t in r.tensors]
    if reader in ("torch", "torch-mmap"):
        import torch
        sd = torch.load(path, weights_only=True, mmap=(reader == "torch-mmap"))
        return sd, [t.numpy() for t in sd.values()]
    raise ValueError(reader)


def child(reader, path):
    import numpy as np
    # Import the reader's module before the clock starts: import cost is not
    # what is compared.
    {"mpsb": lambda: __import__("mpsb"), "safetensors": lambda: __import__("safetensors.numpy"),
     "gguf": lambda: __import__("gguf"), "torch": lambda: __import__("torch"),
     "torch-mmap": lambda: __import__("torch")}[reader]()
    rss0, _ = rss_kib()
    t0 = time.perf_counter()
    keep, arrays = open_all(reader, path)
    t1 = time.perf_counter()
    rss1, _ = rss_kib()
    acc = 0
    for a in arrays:
        acc ^= int(np.bitwise_xor.reduce(a.reshape(-1).view(np.uint8)))
    t2 = time.perf_counter()
    rss2, hwm = rss_kib()
    nbytes = sum(a.nbytes for a in arrays)
    print(json.dumps({"open_numpy_s": t1 - t0, "touch_s": t2 - t1, "rss_before_kib": rss0,
                      "rss_open_kib": rss1, "rss_touch_kib": rss2, "peak_kib": hwm,
                      "tensors": len(arrays), "bytes": nbytes, "xor": acc}))
    del keep


def write_formats(work, mpsbc):
    import numpy as np
    src = work / "resnet50"
    if not (src / "manifest.json").exists():
        subprocess.run([sys.executable, str(HERE / "gen_model.py"), "resnet50", str(src)],
                       check=True)
    manifest = json.loads((src / "manifest.json").read_text())
    tensors = {}
    for layer in manifest["layers"]:
        for role in ("weight", "bias", "running_mean", "running_var"):
            if role in layer:
                entry = layer[role]
                path = entry["path"] if isinstance(entry, dict) else entry
                tensors["%s.%s" % (layer["name"], role)] = (src / path, layer)
    arrays = {}
    for key, (path, layer) in tensors.items():
        a = np.fromfile(path, dtype="<f4")
        if key.endswith(".weight") and layer["type"] == "conv2d":
            k = layer["kernel_size"]
            kh, kw = (k, k) if isinstance(k, int) else k
            a = a.reshape(layer["out_channels"], layer["in_channels"] // layer.get("groups", 1),
                          kh, kw)
        elif key.endswith(".weight") and layer["type"] == "linear":
            a = a.reshape(layer["out_features"], layer["in_features"])
        arrays[key] = a
    files = {"mpsb": work / "resnet50.mpsb", "safetensors": work / "resnet50.safetensors",
             "gguf": work / "resnet50.gguf", "torch": work / "resnet50.pt"}
    subprocess.run([mpsbc, "compile", str(src / "manifest.json"), "-o", str(files["mpsb"]), "-q"],
                   check=True)
    from safetensors.numpy import save_file
    save_file(arrays, str(files["safetensors"]))
    import gguf
    w = gguf.GGUFWriter(str(files["gguf"]), "resnet50")
    for k, a in arrays.items():
        w.add_tensor(k, a)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    import torch
    torch.save({k: torch.from_numpy(a) for k, a in arrays.items()}, str(files["torch"]))
    files["torch-mmap"] = files["torch"]
    return files, sum(a.nbytes for a in arrays.values()), len(arrays)


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mpsbc", help="mpsbc to compile with (default: the installed package's)")
    ap.add_argument("--work", default="build/bench-python")
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--child", nargs=2, metavar=("READER", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)

    import mpsb
    from mpsb import _tools
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    files, nbytes, count = write_formats(work, args.mpsbc or _tools.tool_path("mpsbc"))
    import gguf
    import safetensors
    import torch
    print("CPU: %s; Python %s; numpy %s, torch %s, safetensors %s, gguf %s, mpsb runtime %s"
          % (cpu_name(), platform.python_version(), __import__("numpy").__version__,
             torch.__version__, safetensors.__version__,
             getattr(gguf, "__version__", "0.19.0"), mpsb.runtime_version))
    print("%d tensors, %.1f MB of float32; %d processes per reader, medians\n"
          % (count, nbytes / 1e6, args.reps))

    for path in set(files.values()):  # warm the page cache
        Path(path).read_bytes()
    runs = {r: [] for r in READERS}
    for _ in range(args.reps):  # interleaved: drift hits every reader alike
        for r in READERS:
            out = subprocess.run([sys.executable, __file__, "--child", r, str(files[r])],
                                 check=True, capture_output=True, text=True).stdout
            runs[r].append(json.loads(out))
    # XOR of every byte does not depend on order, so the MPS layout agrees too.
    xors = {runs[r][0]["xor"] for r in READERS}
    assert len(xors) == 1, "the readers disagree on the bytes: %s" % xors

    def med(r, k):
        return statistics.median(x[k] for x in runs[r])

    base = med("mpsb", "open_numpy_s")
    base_all = med("mpsb", "open_numpy_s") + med("mpsb", "touch_s")
    print("| reader | file MB | open+numpy ms | ratio | +touch ms | ratio | RSS +open MiB "
          "| RSS +touch MiB | peak RSS MiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    names = {"mpsb": "mpsb.open", "safetensors": 'safetensors.safe_open(framework="numpy")',
             "gguf": "gguf.GGUFReader", "torch": "torch.load(weights_only=True)",
             "torch-mmap": "torch.load(weights_only=True, mmap=True)"}
    for r in READERS:
        o, t = med(r, "open_numpy_s"), med(r, "touch_s")
        grow_open = med(r, "rss_open_kib") - med(r, "rss_before_kib")
        grow_touch = med(r, "rss_touch_kib") - med(r, "rss_before_kib")
        print("| %s | %.1f | %.3f | %.1f | %.1f | %.2f | %.2f | %.1f | %.1f |"
              % (names[r], os.path.getsize(files[r]) / 1e6, o * 1e3, o / base, (o + t) * 1e3,
                 (o + t) / base_all, grow_open / 1024, grow_touch / 1024,
                 med(r, "peak_kib") / 1024))
    b = mpsb.open(files["mpsb"])
    print("\nmpsb metadata: %d bytes (RSS target on open: metadata + 1 MiB = %.2f MiB)"
          % (b.metadata_size, (b.metadata_size + (1 << 20)) / (1 << 20)))


if __name__ == "__main__":
    sys.exit(main())
