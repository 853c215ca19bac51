import Foundation

/// Softmax and log-softmax along an axis, numerically stable: the row maximum `m` is subtracted before
/// exponentiating (`eˣ⁻ᵐ ≤ 1`, no overflow for logits of ±1e4), and the normaliser `Σ eˣ⁻ᵐ ≥ 1` is
/// accumulated in Double, so `log` never sees 0.

/// For a line of `n` values (stride `s`): `m = max x` and `logZ = ln Σ eˣ⁻ᵐ ∈ [0, ln n]`. Callers form
/// `x − m` first (exact for nearby values, even at ±1e4) and then subtract `logZ`, rather than
/// subtracting a rounded `lse = m + logZ`.
@inline(__always)
func logSumExpLine(_ x: UnsafePointer<Float>, n: Int, stride s: Int) -> (max: Float, logZ: Float) {
    var m = -Float.infinity
    for k in 0..<n { m = Swift.max(m, x[k * s]) }
    if m == -.infinity { return (m, .nan) }
    var z = 0.0
    for k in 0..<n { z += Double(Foundation.exp(x[k * s] - m)) }
    return (m, Float(Foundation.log(z)))
}

/// `yᵢ = eˣⁱ⁻ᵐ / Σⱼ eˣʲ⁻ᵐ` along `axis` (one exp per element, the sum in Double) (`m` the max along it). Backward: `gx = y ⊙ (g − Σⱼ gⱼ yⱼ)`.
public func softmax(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "softmax")
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    for o in 0..<outer {
        for j in 0..<inner {
            let base = o * n * inner + j
            var m = -Float.infinity
            for k in 0..<n { m = Swift.max(m, xp[base + k * inner]) }
            var z = 0.0
            for k in 0..<n {
                let e = Foundation.exp(xp[base + k * inner] - m)
                yp[base + k * inner] = e
                z += Double(e)
            }
            let r = Float(1 / z)
            for k in 0..<n { yp[base + k * inner] *= r }
        }
    }
    Tape.record("softmax", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        let gp = g.ptr
        for o in 0..<outer {
            for j in 0..<inner {
                let base = o * n * inner + j
                var dot = 0.0
                if inner == 1 { dot = dotDouble(gp + base, yp + base, n) }
                else { for k in 0..<n { let i = base + k * inner; dot += Double(gp[i]) * Double(yp[i]) } }
                let d = Float(dot)
                for k in 0..<n {
                    let i = base + k * inner
                    let v = yp[i] * (gp[i] - d)
                    if fresh { ga[i] = v } else { ga[i] += v }
                }
            }
        }
    }
    return out
}

/// `yᵢ = (xᵢ − m) − ln Σⱼ eˣʲ⁻ᵐ` along `axis`. Backward: `gx = g − softmax(x) · Σⱼ gⱼ`.
public func logSoftmax(_ x: Tensor, axis: Int = -1) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "logSoftmax")
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    for o in 0..<outer {
        for j in 0..<inner {
            let base = o * n * inner + j
            let (m, logZ) = logSumExpLine(xp + base, n: n, stride: inner)
            for k in 0..<n { yp[base + k * inner] = (xp[base + k * inner] - m) - logZ }
        }
    }
    Tape.record("logSoftmax", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        let gp = g.ptr
        for o in 0..<outer {
            for j in 0..<inner {
                let base = o * n * inner + j
                var s = 0.0
                if inner == 1 { s = sumDouble(gp + base, n) } else { for k in 0..<n { s += Double(gp[base + k * inner]) } }
                let sf = Float(s)
                for k in 0..<n {
                    let i = base + k * inner
                    let v = gp[i] - Foundation.exp(yp[i]) * sf
                    if fresh { ga[i] = v } else { ga[i] += v }
                }
            }
        }
    }
    return out
}
