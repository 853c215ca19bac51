"""Compare the per-step `loss` (and final eval.top1) of two metrics.jsonl files.

usage: compare_metrics.py A.jsonl B.jsonl RTOL [FIRST_STEP [STRICT_STEPS LATER_RTOL [EVAL_TOL]]]

Steps FIRST_STEP .. FIRST_STEP+STRICT_STEPS-1 must agree to RTOL, later steps to LATER_RTOL (default:
all steps to RTOL); LATER_RTOL "skip" compares no later step. The final eval.top1 values must differ by
at most EVAL_TOL (default 0); EVAL_TOL "skip" does not compare them (e.g. runs that ended at other
steps). Prints the worst relative difference of each range; exits non-zero with the first violation.
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
later_arg = sys.argv[6] if len(sys.argv) > 6 else str(rtol)
later = None if later_arg == "skip" else float(later_arg)
eval_arg = sys.argv[7] if len(sys.argv) > 7 else "0"
eval_tol = None if eval_arg == "skip" else float(eval_arg)
common = sorted(s for s in a if s in b and s >= first and (later is not None or s < first + strict))
if not common:
    sys.exit(f"no common steps >= {first} between {sys.argv[1]} and {sys.argv[2]}")
worst = [0.0, 0.0]
for s in common:
    d = abs(a[s] - b[s]) / max(abs(b[s]), 1e-12)
    k = 0 if s < first + strict else 1
    worst[k] = max(worst[k], d)
    tol = rtol if k == 0 else later
    if d > tol:
        sys.exit(f"step {s}: loss {a[s]} vs {b[s]} (relative difference {d:.3g} > {tol})")
if eval_tol is not None and ea and eb and abs(ea[-1] - eb[-1]) > eval_tol:
    sys.exit(f"final eval.top1 differs: {ea[-1]} vs {eb[-1]} (tolerance {eval_tol})")
n_strict = sum(1 for s in common if s < first + strict)
last = first + n_strict - 1
msg = f"{len(common)} steps agree: " + (f"step {first}" if last == first else f"steps {first}-{last}")
msg += f" within {worst[0]:.2g} (≤ {rtol})"
if len(common) > n_strict:
    msg += f", later steps within {worst[1]:.2g} (≤ {later})"
if eval_tol is not None:
    msg += f"; final eval.top1 {ea[-1] if ea else 'n/a'} vs {eb[-1] if eb else 'n/a'}"
print(msg)
