#!/usr/bin/env python3
"""Tabulates the per-round lines of a `tenure-chaos run` log (stderr), so a
run stopped early still yields its figures: rounds, overlaps, stale writes
accepted, fail-over p50/p99/max per fault."""
import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"round (\d+): (\S+) overlap ([\d.]+) ms, stale accepted (\d+), fail-over (?:Some\(([\d.]+)\)|None) ms"
)


def pct(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)] if xs else None


rows = defaultdict(lambda: {"n": 0, "ov": 0, "maxov": 0.0, "stale": 0, "fo": []})
for line in open(sys.argv[1]):
    m = LINE.search(line)
    if not m:
        continue
    _, fault, ov, stale, fo = m.groups()
    r = rows[fault]
    r["n"] += 1
    r["ov"] += float(ov) > 0
    r["maxov"] = max(r["maxov"], float(ov))
    r["stale"] += int(stale)
    if fo:
        r["fo"].append(float(fo))
total = sum(r["n"] for r in rows.values())
print(f"{total} rounds")
print("| fault | rounds | rounds with overlap | max overlap ms | stale writes accepted | fail-over p50 / p99 / max ms |")
print("|---|---|---|---|---|---|")
for fault, r in sorted(rows.items()):
    fo = r["fo"]
    f = f"{pct(fo, .5):.0f} / {pct(fo, .99):.0f} / {max(fo):.0f}" if fo else "–"
    print(f"| {fault} | {r['n']} | {r['ov']} | {r['maxov']:.1f} | {r['stale']} | {f} |")
