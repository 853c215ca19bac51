"""Compare the per-step `loss` (and final eval.top1) of two metrics.jsonl files.

usage: compare_metrics.py A.jsonl B.jsonl RTOL [FIRST_STEP [STRICT_STEPS LOOSE_RTOL [EVAL_TOL]]]

Steps FIRST_STEP .. FIRST_STEP+STRICT_STEPS-1 must agree to RTOL, later steps to LOOSE_RTOL (default:
all steps to RTOL). The final eval.top1 values must differ by at most EVAL_TOL (default 0).
Prints the worst relative difference of each range; exits non-zero with the first violation.
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
strict = int(sys.argv[5]) if len(sys.argv) > 5 else 10**9
loose = float(sys.argv[6]) if len(sys.argv) > 6 else rtol
eval_tol = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
common = sorted(s for s in a if s in b and s >= first)
if not common:
    sys.exit(f"no common steps >= {first} between {sys.argv[1]} and {sys.argv[2]}")
worst = [0.0, 0.0]
for s in common:
    d = abs(a[s] - b[s]) / max(abs(b[s]), 1e-12)
    k = 0 if s < first + strict else 1
    worst[k] = max(worst[k], d)
    tol = rtol if k == 0 else loose
    if d > tol:
        sys.exit(f"step {s}: loss {a[s]} vs {b[s]} (relative difference {d:.3g} > {tol})")
if ea and eb and abs(ea[-1] - eb[-1]) > eval_tol:
    sys.exit(f"final eval.top1 differs: {ea[-1]} vs {eb[-1]} (tolerance {eval_tol})")
n_strict = sum(1 for s in common if s < first + strict)
msg = f"{len(common)} steps agree: steps {first}-{first + n_strict - 1} within {worst[0]:.2g} (≤ {rtol})"
if len(common) > n_strict:
    msg += f", later steps within {worst[1]:.2g} (≤ {loose})"
print(msg + f"; final eval.top1 {ea[-1] if ea else 'n/a'} vs {eb[-1] if eb else 'n/a'}")
