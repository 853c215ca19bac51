#!/usr/bin/env python3
"""Verify KDGraph checkpoints without KDGraph or PyTorch (Python standard library + NumPy).

Usage:  python3 launch/checkpoint_check.py FILE.safetensors [FILE ...]

For each file: parses the safetensors header, verifies the checksum KDGraph stores in `__metadata__`
(`kdgraph.file_sha256`: SHA-256 of the whole file with the digest's own 64 hex digits read as '0',
covering the header -- names, dtypes, shapes, offsets, metadata -- and the data; older checkpoints'
`kdgraph.data_sha256` covers the data section only), and checks that every floating-point tensor is
finite; a training-state file (X.state.safetensors) must name X.safetensors's checksum
(`kdgraph.weights_sha256`). Prints one JSON line per file; exit status 1 if any file fails (docs/reliability.md).
"""
import hashlib
import json
import struct
import sys

import numpy as np

FILE_KEY = "kdgraph.file_sha256"
DATA_KEY = "kdgraph.data_sha256"
WEIGHTS_KEY = "kdgraph.weights_sha256"   # in X.state.safetensors: the checksum of X.safetensors
FLOATS = {"F16": np.float16, "BF16": None, "F32": np.float32, "F64": np.float64}


def read(path):
    """(header dict without __metadata__, metadata dict, raw bytes, data-section start)."""
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {}) or {}
    return header, metadata, raw, 8 + n


def digest_problem(path):
    """None when the stored checksum matches (or there is none), else a message."""
    header, metadata, raw, start = read(path)
    if FILE_KEY in metadata:
        stored = metadata[FILE_KEY]
        marker = f'"{FILE_KEY}":"{stored}"'.encode()
        at = raw.find(marker, 8, start)
        if at < 0 or raw.find(marker, at + 1, start) >= 0:
            return f"{FILE_KEY} is not written verbatim once in the header (rewritten by another tool?)"
        digits = at + len(marker) - 65
        actual = hashlib.sha256(raw[:digits] + b"0" * 64 + raw[digits + 64:]).hexdigest()
        if actual != stored:
            return f"checksum mismatch (stored sha256 {stored}, file has {actual})"
    if DATA_KEY in metadata:
        actual = hashlib.sha256(raw[start:]).hexdigest()
        if actual != metadata[DATA_KEY]:
            return f"data checksum mismatch (stored {metadata[DATA_KEY]}, data has {actual})"
    return None


def nonfinite(path):
    """{tensor name: count of NaN/Inf values} for the floating-point tensors."""
    header, _, raw, start = read(path)
    out = {}
    for name, h in header.items():
        a, b = h["data_offsets"]
        if h["dtype"] not in FLOATS:
            continue
        if h["dtype"] == "BF16":   # the top half of a float32
            v = (np.frombuffer(raw[start + a:start + b], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            v = np.frombuffer(raw[start + a:start + b], dtype=np.dtype(FLOATS[h["dtype"]]).newbyteorder("<"))
        bad = int(np.count_nonzero(~np.isfinite(v)))
        if bad:
            out[name] = bad
    return out


def main(argv):
    ok = True
    for path in argv[1:]:
        header, metadata, _, _ = read(path)
        report = {"file": path, "tensors": len(header),
                  "checksum": FILE_KEY if FILE_KEY in metadata else DATA_KEY if DATA_KEY in metadata else None}
        problem = digest_problem(path)
        if not problem and WEIGHTS_KEY in metadata:
            state = ".state.safetensors"
            weights = path[:-len(state)] + ".safetensors" if path.endswith(state) else None
            if weights is None or read(weights)[1].get(FILE_KEY) != metadata[WEIGHTS_KEY]:
                problem = f"state file does not match its weights file {weights}"
        bad = nonfinite(path)
        if problem:
            report["error"] = problem
        if bad:
            report["nonfinite"] = bad
        report["ok"] = not problem and not bad
        ok = ok and report["ok"]
        print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
