#!/usr/bin/env python3
"""The error of Winograd F(m×m, 3×3) for larger tiles, simulated in float32 with numpy (docs/ops.md, "What the
targets leave beside the GEMMs"). Not used by the project; it answers whether a larger tile than F(4×4) fits
`runtime.conv_algorithm: auto`'s budget of 2e-5 per layer.

Each transform is the Toom-Cook construction from its points (0, ±p…, ∞): Aᵀ and G from the points, Bᵀ solved
from the identity Aᵀ[(G g) ⊙ (Bᵀ d)] = d ⋆ g and checked exact. As the project computes F(4×4): the filter
transform in float64 rounded once to float32; the input transform, the products summed over the input
channels and the output transform in float32. The error is the tuner's: max|Δ| / max|y| against a float64
direct convolution, on standard-normal images (padding 1) and He-normal weights, 4 images, 8 output
channels, the worse of two seeds.

Usage: python3 launch/winograd_tile_error.py   (numpy; about a minute)
"""
import numpy as np


def matrices(points, m, r=3):
    n = m + r - 1
    a = np.array(points, dtype=np.float64)
    assert len(a) == n - 1
    AT = np.zeros((m, n))
    G = np.zeros((n, r))
    for i in range(m):
        AT[i, :n - 1] = a ** i
    AT[m - 1, n - 1] = 1
    for j in range(n - 1):
        G[j] = a[j] ** np.arange(r) / np.prod([a[j] - a[l] for l in range(n - 1) if l != j])
    G[n - 1, r - 1] = 1
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for t in range(n):
                row = np.zeros((n, n))
                row[:, t] = AT[i] * G[:, k]
                rows.append(row.ravel())
                rhs.append(1.0 if t == i + k else 0.0)
    rows, rhs = np.array(rows), np.array(rhs)
    BT = np.linalg.lstsq(rows, rhs, rcond=None)[0]
    assert np.abs(rows @ BT - rhs).max() < 1e-9, "the points give no exact F(m, 3)"
    return AT, G, BT.reshape(n, n)


def error(m, points, cin, hw, cout=8, images=4, seed=0):
    rng = np.random.default_rng(seed)
    AT, G, BT = matrices(points, m)
    n, f32 = m + 2, np.float32
    x = np.zeros((images, hw + 2, hw + 2, cin))
    x[:, 1:-1, 1:-1, :] = rng.standard_normal((images, hw, hw, cin))
    w = rng.standard_normal((cout, 3, 3, cin)) * np.sqrt(2 / (9 * cin))
    y = sum(np.einsum('nhwc,oc->nhwo', x[:, u:u + hw, v:v + hw, :], w[:, u, v, :])
            for u in range(3) for v in range(3))
    U = np.einsum('ak,oklc,bl->oabc', G, w, G).astype(f32)
    BT32, AT32 = BT.astype(f32), AT.astype(f32)
    tiles = (hw + m - 1) // m
    xp = np.zeros((images, tiles * m + 2, tiles * m + 2, cin), dtype=f32)
    xp[:, :hw + 2, :hw + 2, :] = x
    yw = np.zeros((images, tiles * m, tiles * m, cout), dtype=f32)
    for ti in range(tiles):
        for tj in range(tiles):
            d = xp[:, ti * m:ti * m + n, tj * m:tj * m + n, :]
            V = np.einsum('najc,bj->nabc', np.einsum('ai,nijc->najc', BT32, d).astype(f32), BT32).astype(f32)
            M = np.einsum('nabc,oabc->nabo', V, U).astype(f32)
            Y = np.einsum('nibo,jb->nijo', np.einsum('ia,nabo->nibo', AT32, M).astype(f32), AT32)
            yw[:, ti * m:ti * m + m, tj * m:tj * m + m, :] = Y.astype(f32)
    return np.abs(yw[:, :hw, :hw, :].astype(np.float64) - y).max() / np.abs(y).max()


if __name__ == "__main__":
    for m, points in ((4, [0, 1, -1, 2, -2]), (6, [0, 1, -1, 2, -2, 0.5, -0.5]),
                      (8, [0, 1, -1, 2, -2, 0.5, -0.5, 1.5, -1.5]), (8, [0, 1, -1, 2, -2, 0.5, -0.5, 3, -3]),
                      (8, [0, 1, -1, 2, -2, 0.5, -0.5, 4, -4])):
        for cin, hw in ((64, 32), (128, 16), (256, 8)):
            e = max(error(m, points, cin, hw, seed=s) for s in range(2))
            print(f"F({m}x{m}, 3x3), points 0, ±{', ±'.join(str(p) for p in points[1::2])}, ∞; "
                  f"{hw}x{hw}x{cin}: {e:.2e}")
