"""Compare the float32 tensors of two safetensors files (max relative difference per tensor).

usage: compare_safetensors.py A B RTOL   (metadata is ignored; names must match)
"""
import json, struct, sys

def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        if h["dtype"] == "F32":
            out[name] = struct.unpack(f"<{(b - a) // 4}f", raw[base + a:base + b])
    return out

A, B, rtol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
if set(A) != set(B):
    sys.exit(f"tensor names differ: {sorted(set(A) ^ set(B))[:5]}")
worst, where = 0.0, ""
for name in A:
    scale = max(max((abs(x) for x in B[name]), default=0.0), 1e-12)
    d = max((abs(x - y) for x, y in zip(A[name], B[name])), default=0.0) / scale
    if d > worst:
        worst, where = d, name
if worst > rtol:
    sys.exit(f"{where}: relative difference {worst:.3g} > {rtol}")
print(f"{len(A)} tensors agree (worst relative difference {worst:.3g})")
