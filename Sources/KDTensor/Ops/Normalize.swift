/// L2 normalisation along an axis, PyTorch `F.normalize(x, p=2, dim=axis, eps)`.

/// `n(v) = v / max(‖v‖, ε)` for each line `v` along `axis` (norm accumulated in Double).
/// Backward, with `y = n(v)`: where `‖v‖ > ε`, `gv = (g − y·⟨y, g⟩) / ‖v‖` (the projection off `y`);
/// where `‖v‖ ≤ ε` the op is the linear map `v/ε`, so `gv = g/ε`. Both branches are exact, including
/// at and near the zero vector.
public func l2Normalize(_ x: Tensor, axis: Int = -1, eps: Float = 1e-12) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "l2Normalize")
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    let out = Tensor(uninitializedShape: x.shape)
    var denom = [Float](repeating: 0, count: outer * inner)
    var clamped = [Bool](repeating: false, count: outer * inner)
    let xp = x.ptr, yp = out.ptr
    for o in 0..<outer {
        for j in 0..<inner {
            let base = o * n * inner + j
            var ss = 0.0
            if inner == 1 { ss = dotDouble(xp + base, xp + base, n) }
            else { for k in 0..<n { let v = Double(xp[base + k * inner]); ss += v * v } }
            let norm = Float(ss.squareRoot())
            let d = Swift.max(norm, eps)
            denom[o * inner + j] = d
            clamped[o * inner + j] = !(norm > eps)
            let r = 1 / d
            for k in 0..<n { yp[base + k * inner] = xp[base + k * inner] * r }
        }
    }
    Tape.record("l2Normalize", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        let gp = g.ptr
        for o in 0..<outer {
            for j in 0..<inner {
                let base = o * n * inner + j, line = o * inner + j
                let r = 1 / denom[line]
                var dot: Float = 0
                if !clamped[line] {
                    var s = 0.0
                    if inner == 1 { s = dotDouble(yp + base, gp + base, n) }
                    else { for k in 0..<n { let i = base + k * inner; s += Double(yp[i]) * Double(gp[i]) } }
                    dot = Float(s)
                }
                for k in 0..<n {
                    let i = base + k * inner
                    let v = (gp[i] - yp[i] * dot) * r
                    if fresh { ga[i] = v } else { ga[i] += v }
                }
            }
        }
    }
    return out
}
