#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-2-Clause
"""bench-report.py RUN.csv [RUN.csv ...] -- medians of mm-bench-alloc runs.

mm-bench-alloc already reports the median of three rounds per point; with
several runs, this takes the median of their medians.

Prints a markdown table of the medians (operations per second) and the
ratios against the baselines, and writes docs/results/alloc.svg: throughput
against threads, one line per implementation (log scale).  Needs only the
Python standard library.
"""
import csv
import math
import statistics
import sys
from collections import defaultdict

runs = defaultdict(list)
for path in sys.argv[1:]:
    with open(path) as f:
        for r in csv.DictReader(f):
            runs[(r["bench"], r["impl"], int(r["bytes"]), int(r["threads"]))].append(
                float(r["ops_per_s"]))
med = {k: statistics.median(v) for k, v in runs.items()}
threads = sorted({k[3] for k in med})
series = sorted({k[:3] for k in med}, key=lambda s: (s[0], s[2], s[1]))

print("| bench | impl | bytes | " + " | ".join(f"{t} thr" for t in threads) + " |")
print("|---|---|---:|" + "---:|" * len(threads))
for s in series:
    cells = " | ".join(f"{med[s + (t,)] / 1e6:.2f} M" for t in threads)
    print(f"| {s[0]} | {s[1]} | {s[2]} | {cells} |")

def ratio(a, b):
    return " | ".join(f"{med[a + (t,)] / med[b + (t,)]:.2f}" for t in threads)

print()
print("| ratio | " + " | ".join(f"{t} thr" for t in threads) + " |")
print("|---|" + "---:|" * len(threads))
print(f"| accounting mm-c ÷ mutex | {ratio(('accounting', 'mm-c', 4096), ('accounting', 'mutex', 4096))} |")
print(f"| accounting mm-c ÷ atomic | {ratio(('accounting', 'mm-c', 4096), ('accounting', 'atomic', 4096))} |")
print(f"| accounting mm-id ÷ mm-c | {ratio(('accounting', 'mm-id', 4096), ('accounting', 'mm-c', 4096))} |")
for b in (64, 4096, 65536, 1 << 20):
    print(f"| {b} B mm-c ÷ mallocx | {ratio(('memory', 'mm-c', b), ('memory', 'mallocx', b))} |")
    print(f"| {b} B mm-c ÷ glibc | {ratio(('memory', 'mm-c', b), ('memory', 'glibc', b))} |")
    print(f"| {b} B mm-id ÷ mm-c | {ratio(('memory', 'mm-id', b), ('memory', 'mm-c', b))} |")

# The plot: accounting and 4 KiB memory, ops/s against threads, log y.
W, H, L, R, T, B = 760, 420, 70, 200, 30, 50
lines = [s for s in series if s[2] == 4096]
vals = [med[s + (t,)] for s in lines for t in threads]
lo, hi = math.log10(min(vals)) - 0.1, math.log10(max(vals)) + 0.1
def x(i): return L + i * (W - L - R) / (len(threads) - 1)
def y(v): return T + (hi - math.log10(v)) * (H - T - B) / (hi - lo)
colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{L}" y="18">operations per second, 4 KiB, medians (log scale)</text>']
for e in range(math.ceil(lo), math.floor(hi) + 1):
    out.append(f'<line x1="{L}" x2="{W - R}" y1="{y(10 ** e):.1f}" y2="{y(10 ** e):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L - 8}" y="{y(10 ** e) + 4:.1f}" text-anchor="end">1e{e}</text>')
for i, t in enumerate(threads):
    out.append(f'<text x="{x(i):.1f}" y="{H - B + 18}" text-anchor="middle">{t}</text>')
out.append(f'<text x="{(L + W - R) / 2}" y="{H - 10}" text-anchor="middle">threads (2-core machine)</text>')
for n, s in enumerate(lines):
    c = colors[n % len(colors)]
    pts = " ".join(f"{x(i):.1f},{y(med[s + (t,)]):.1f}" for i, t in enumerate(threads))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="2"/>')
    out.append(f'<text x="{W - R + 10}" y="{T + 20 + 18 * n}" fill="{c}">{s[0]}: {s[1]}</text>')
out.append("</svg>")
with open("docs/results/alloc.svg", "w") as f:
    f.write("\n".join(out) + "\n")
