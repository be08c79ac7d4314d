#!/usr/bin/env python3
"""Prints the benchmark table (Markdown) from one run's raw results.

  report.py LAYOUT_JSON RESULTS_TXT...

LAYOUT_JSON is Google Benchmark's JSON with aggregates (medians); each
RESULTS_TXT holds "<metric> <value> <unit>" lines from compile_bench.py and
mpsb_open_bench. Every ratio compares numbers measured in the same run.
"""
import json
import sys

MB = 1e6
MiB = 1 << 20


def verdict(ok):
    return "PASS" if ok else "MISS"


def main():
    layout = json.load(open(sys.argv[1]))
    med, order = {}, {}
    for b in layout["benchmarks"]:
        if b.get("aggregate_name") != "median":
            continue
        _, case, method = b["run_name"].split("/")[:3]
        med.setdefault(case, {})[method] = (b["real_time"], b["bytes_per_second"],
                                            b["tensor_bytes"])
        # Registration order (the runs themselves are interleaved at random).
        order[case] = min(order.get(case, b.get("family_index", 0)), b.get("family_index", 0))
    med = dict(sorted(med.items(), key=lambda kv: order[kv[0]]))
    r = {}
    for path in sys.argv[2:]:
        for line in open(path):
            parts = line.split()
            if len(parts) == 3:
                r[parts[0]] = float(parts[1])

    # One table per vector level: the best one ("fast") and each lower one
    # the benchmark ran (the same transform capped at that level), each
    # against memcpy and the naive loop measured in the same run.
    best = layout['context'].get('mpsb_isa', '?')
    levels = [("fast", best)] + [(lv, lv) for lv in ("avx2", "sse2", "scalar")
                                 if any(lv in m for m in med.values())]
    print(f"## Layout transform (single thread, {layout['context'].get('num_cpus', '?')}-CPU "
          "host, median GB/s of tensor bytes)\n")
    for key, name in levels:
        print(f"### Vector level {name}" + (" (the best this CPU has)" if key == "fast" else
                                            f" (MPSB_MAX_CPU_ISA={name})") + "\n")
        # The memcpy target is for the vector levels: the portable scalar
        # code moves one element per load and store (BENCHMARKS.md).
        vector = name != "scalar"
        target = ("target (>=1 MB: >=0.7x memcpy; all: >=1x naive)" if vector else
                  "target (>=1x naive; no memcpy target without vectors)")
        print(f"| tensor | size | {name} GB/s | memcpy GB/s | naive GB/s | {name}/memcpy "
              f"| {name}/naive | {target} |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for case, m in med.items():
            if key not in m:
                continue
            f, c, n = m[key][1] / 1e9, m["memcpy"][1] / 1e9, m["naive"][1] / 1e9
            size = m[key][2]
            t = (f"{verdict(f / c >= 0.7)} memcpy, " if vector and size >= MB else "") + \
                f"{verdict(f / n >= 1)} naive"
            print(f"| {case} | {size / MB:.2f} MB | {f:.2f} | {c:.2f} | {n:.2f} | {f / c:.2f}x "
                  f"| {f / n:.1f}x | {t} |")
        print()

    print("\n## End-to-end compile (median wall time and peak RSS)\n")
    print("| model | input | mpsbc compile | cp -r + sync | compile/cp | compile peak RSS "
          "| target |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for label in ("resnet50", "large"):
        if f"{label}_compile_wall" not in r:
            continue
        cw, pw = r[f"{label}_compile_wall"], r[f"{label}_cp_wall"]
        rss = r[f"{label}_compile_rss"]
        if label == "large":
            t = f"{verdict(rss <= 256 * MiB)} RSS <=256 MiB"
        else:
            t = f"{verdict(cw / pw <= 1.1)} <=1.1x cp, {verdict(rss <= 32 * MiB)} RSS <=32 MiB"
        print(f"| {label} | {r[f'{label}_input_bytes'] / MB:.0f} MB | {cw:.3f} s | {pw:.3f} s "
              f"| {cw / pw:.2f}x | {rss / MiB:.1f} MiB | {t} |")

    print("\n## Open at app launch (Bundle::open with all structural checks + find every "
          "layer; median)\n")
    print("| case | metadata | time | target |")
    print("|---|---:|---:|---|")
    for n in (10, 1000, 100000):
        ms = r[f"open_lookup_{n}"]
        t = f"{verdict(ms <= 1.0)} <=1 ms" if n == 1000 else ""
        print(f"| {n} layers | {r[f'metadata_bytes_{n}'] / 1024:.0f} KiB | {ms:.3f} ms | {t} |")
    a, b = r["open_lookup_100layers_40MB"], r["open_lookup_100layers_4GiB"]
    print(f"| 100 layers, 40 MB file | | {a:.4f} ms | |")
    print(f"| 100 layers, 4 GiB file (sparse) | | {b:.4f} ms | 4GiB/40MB = {b / a:.2f}x: "
          f"{verdict(b / a <= 1.2)} <=1.2x |")
    if "open_lookup_resnet50" in r:
        o, lr = r["open_lookup_resnet50"], r["load_reorder_resnet50"]
        print(f"| ResNet-50-sized: open + find all | {r['metadata_bytes_resnet50'] / 1024:.0f} KiB "
              f"| {o:.4f} ms | |")
        print(f"| ResNet-50-sized: read loose .bin + naive reorder | | {lr:.2f} ms "
              f"| speed-up {lr / o:.0f}x: {verdict(lr / o >= 100)} >=100x |")
        g, meta = r["rss_growth_open_resnet50"], r["metadata_bytes_resnet50"]
        print(f"| ResNet-50-sized: RSS growth from open | | {g / 1024:.0f} KiB "
              f"| {verdict(g <= meta + MiB)} <= metadata + 1 MiB ({(meta + MiB) / 1024:.0f} KiB) |")

        print("\n## First touch (ResNet-50-sized bundle, every weight read once, page cache "
              "warm; median)\n")
        tm, tr = r["touch_mapped_resnet50"], r["touch_read_resnet50"]
        seg = r["segment_bytes_resnet50"]
        print("| method | time | GB/s | mapped/read |")
        print("|---|---:|---:|---:|")
        print(f"| fresh mapping, page faults | {tm:.2f} ms | {seg / tm / 1e6:.2f} | {tm / tr:.2f}x |")
        print(f"| read() into a 1 MiB buffer | {tr:.2f} ms | {seg / tr / 1e6:.2f} | |")


if __name__ == "__main__":
    main()
