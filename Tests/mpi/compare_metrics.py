"""Compare the per-step `loss` (and final eval.top1) of two metrics.jsonl files.

usage: compare_metrics.py A.jsonl B.jsonl RTOL [FIRST_STEP]
Exits non-zero, printing the first difference, when any step's relative difference exceeds RTOL.
"""
import json, sys

def read(path):
    steps, evals = {}, []
    for line in open(path):
        r = json.loads(line)
        if "eval.top1" in r:
            evals.append(r["eval.top1"])
        elif "loss" in r:
            steps[r["step"]] = r["loss"]
    return steps, evals

a, ea = read(sys.argv[1])
b, eb = read(sys.argv[2])
rtol = float(sys.argv[3])
first = int(sys.argv[4]) if len(sys.argv) > 4 else 1
common = sorted(s for s in a if s in b and s >= first)
if not common:
    sys.exit(f"no common steps >= {first} between {sys.argv[1]} and {sys.argv[2]}")
worst = 0.0
for s in common:
    d = abs(a[s] - b[s]) / max(abs(b[s]), 1e-12)
    worst = max(worst, d)
    if d > rtol:
        sys.exit(f"step {s}: loss {a[s]} vs {b[s]} (relative difference {d:.3g} > {rtol})")
if ea and eb and ea[-1] != eb[-1]:
    sys.exit(f"final eval.top1 differs: {ea[-1]} vs {eb[-1]}")
print(f"{len(common)} steps agree (worst relative difference {worst:.3g}), final eval.top1 {ea[-1] if ea else 'n/a'}")
