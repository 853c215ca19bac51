"""Deterministic training's check: two runs are the same bits (docs/training.md).

usage: compare_exact.py RUN_A RUN_B [FIRST_STEP]

Every `loss*` and `eval.*` field of every step record from FIRST_STEP on (default 1) in the two
metrics.jsonl files must be equal (no tolerance), the runs must have the same steps from there, and
every tensor of checkpoints/final.safetensors (parameters, buffers, optimizer state; metadata ignored)
must have the same SHA-256 of its dtype, shape and data. Prints the steps compared and the digest.
"""
import hashlib, json, struct, sys

def records(run, first):
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        r = json.loads(line)
        if r.get("step", 0) >= first:
            key = (r["step"], "eval" if any(k.startswith("eval.") for k in r) else "train")
            out[key] = {k: v for k, v in r.items() if k.startswith("loss") or k.startswith("eval.")}
    return out

def digests(run):
    raw = open(f"{run}/checkpoints/final.safetensors", "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n]); header.pop("__metadata__", None)
    out = {}
    for name in sorted(header):
        h = header[name]; a, b = h["data_offsets"]
        out[name] = hashlib.sha256(f"{h['dtype']}{h['shape']}".encode() + raw[8 + n + a:8 + n + b]).hexdigest()
    return out

a_run, b_run = sys.argv[1], sys.argv[2]
first = int(sys.argv[3]) if len(sys.argv) > 3 else 1
a, b = records(a_run, first), records(b_run, first)
if set(a) != set(b):
    sys.exit(f"steps differ: {sorted(set(a) ^ set(b))[:5]}")
for key in sorted(a):
    if a[key] != b[key]:
        diff = [k for k in a[key] if a[key][k] != b[key].get(k)]
        sys.exit(f"step {key[0]} ({key[1]}): {diff[0]} {a[key][diff[0]]!r} vs {b[key].get(diff[0])!r}")
da, db = digests(a_run), digests(b_run)
if da.keys() != db.keys():
    sys.exit(f"tensor names differ: {sorted(set(da) ^ set(db))[:5]}")
bad = [k for k in da if da[k] != db[k]]
if bad:
    sys.exit(f"{len(bad)} of {len(da)} tensors differ, first {bad[0]}")
total = hashlib.sha256("".join(da[k] for k in sorted(da)).encode()).hexdigest()[:16]
steps = sorted({s for s, _ in a})
print(f"steps {steps[0]}-{steps[-1]} bit-identical ({len(a)} records), {len(da)} tensors identical (sha256 {total})")
