import Foundation

/// Row kernels: loops over one row of `count` contiguous Float32 values, accumulating in Float64.
/// They are the one implementation of row-wise log-softmax, KL divergence and L2 normalisation that
/// the losses (KDLosses) and the evaluation (KDTrain) share; `docs/ops.md` ("Kernels") lists them.

/// The norm floor `ε` of `n(v) = v / max(‖v‖, ε)` everywhere (PyTorch `F.normalize`'s default;
/// `docs/losses.md` "The losses": `ε = 1e-12`).
public let rowNormEpsilon: Float = 1e-12

// MARK: - Log-softmax with temperature

/// `m = max_j x_j` and `s = Σ_j e^{x_j − m}` of the row `x_j = Double(z_j) · invT` (`invT = 1/T`), in
/// Float64 and in index order. Every exponent is ≤ 0, so `s ∈ [1, count]` and `ln s` is finite;
/// `max_j σ(x)_j = 1/s`.
@inlinable
public func rowMaxExpSum(_ z: UnsafePointer<Float>, count c: Int, invT: Double) -> (max: Double, sum: Double) {
    var m = -Double.infinity
    for j in 0..<c { m = max(m, Double(z[j]) * invT) }
    var s = 0.0
    for j in 0..<c { s += exp(Double(z[j]) * invT - m) }
    return (m, s)
}

/// Row log-softmax of `z / T` in Float64: `out_j = x_j − (m + ln s)` with `x_j = Double(z_j) · invT`
/// and `(m, s)` from `rowMaxExpSum` (`out` holds `count` doubles; `z` and `out` must not overlap).
@inlinable
public func rowLogSoftmax(_ z: UnsafePointer<Float>, count c: Int, invT: Double,
                          into out: UnsafeMutablePointer<Double>) {
    let (m, s) = rowMaxExpSum(z, count: c, invT: invT)
    let lse = m + log(s)
    for j in 0..<c { out[j] = Double(z[j]) * invT - lse }
}

// MARK: - KL divergence between two log-softmax rows

/// `start + Σ_j p_j (ln p_j − ln q_j)` with `p_j = e^{logP_j}`, terms with `p_j = 0` skipped (the
/// `0 · ln 0 = 0` convention), summed in index order onto `start` — so a caller may run one sum over
/// many rows (`start` = the sum so far) or take one row's `KL(p ‖ q)` (`start` = 0).
@inlinable
public func rowKLDivergence(logP: UnsafePointer<Double>, logQ: UnsafePointer<Double>, count c: Int,
                            adding start: Double = 0) -> Double {
    var kl = start
    for j in 0..<c {
        let p = exp(logP[j])
        if p > 0 { kl += p * (logP[j] - logQ[j]) }
    }
    return kl
}

/// The gradient of `KL(p ‖ q)`, `q = σ(x)`, with respect to the logits `x` of `q`, scaled:
/// `g_j = Float(scale · (e^{logQ_j} − e^{logP_j}))` (`= scale · (q_j − p_j)`), written into `grad`
/// (`accumulate: false`) or added to it (`accumulate: true`). For `q = σ(z/T)` the chain rule's `1/T`
/// is the caller's part of `scale` (KD: `scale = T · w / n`, from `∂(T² KL)/∂z = T (q − p)`).
@inlinable
public func rowKLGradient(logP: UnsafePointer<Double>, logQ: UnsafePointer<Double>, count c: Int,
                          scale: Double, into grad: UnsafeMutablePointer<Float>, accumulate: Bool) {
    if accumulate {
        for j in 0..<c { grad[j] += Float(scale * (exp(logQ[j]) - exp(logP[j]))) }
    } else {
        for j in 0..<c { grad[j] = Float(scale * (exp(logQ[j]) - exp(logP[j]))) }
    }
}

// MARK: - Row normalisation

/// Row normalisation `u_i = x_i / max(‖x_i‖, ε)` of an `[n, d]` matrix (`ε = rowNormEpsilon`);
/// `norms[i] = ‖x_i‖` (unclamped, Float64 sum of squares rounded once). `u` may be `x` itself.
@inlinable
public func normalizeRows(_ x: UnsafePointer<Float>, rows n: Int, cols d: Int,
                          into u: UnsafeMutablePointer<Float>, norms: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
        let xi = x + i * d, ui = u + i * d
        var s = 0.0
        for c in 0..<d { s += Double(xi[c]) * Double(xi[c]) }
        let r = Float(s.squareRoot())
        norms[i] = r
        let inv = 1 / max(r, rowNormEpsilon)
        for c in 0..<d { ui[c] = xi[c] * inv }
    }
}

/// Backward of `u = v / max(‖v‖, ε)` for one vector of `count` values, in place on `g` (`∂L/∂u` in,
/// `∂L/∂v` out): `g ← (g − u⟨u, g⟩) / ‖v‖` when `‖v‖ > ε` (the projection off `u`, `⟨u, g⟩` in
/// Float64), else `g ← g / ε` (the clamp is constant, the map is linear).
@inlinable
public func normalizeBackward(_ g: UnsafeMutablePointer<Float>, u: UnsafePointer<Float>, norm: Float,
                              count d: Int) {
    if norm > rowNormEpsilon {
        var dot = 0.0
        for c in 0..<d { dot += Double(u[c]) * Double(g[c]) }
        let inv = 1 / norm, fd = Float(dot)
        for c in 0..<d { g[c] = (g[c] - u[c] * fd) * inv }
    } else {
        let inv = 1 / rowNormEpsilon
        for c in 0..<d { g[c] *= inv }
    }
}
