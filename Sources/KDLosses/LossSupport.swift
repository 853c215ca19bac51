import Foundation
import KDTensor

/// Errors raised by the losses: each names the loss (or file/field) and the offending values.
public enum LossError: Error, CustomStringConvertible, Equatable {
    /// A loss input is missing from `LossInputs` (e.g. PRG without proxies).
    case missingInput(loss: String, input: String)
    /// A value outside its domain (e.g. `temperature: 0`, a shard outside the batch).
    case invalidArgument(loss: String, message: String)
    /// A config entry is malformed or carries a key the loss does not know.
    case config(String)

    public var description: String {
        switch self {
        case let .missingInput(loss, input): return "\(loss): missing input '\(input)'"
        case let .invalidArgument(loss, message): return "\(loss): \(message)"
        case let .config(message): return "loss config: \(message)"
        }
    }
}

/// One rank's share of a loss: a scalar tensor on the tape plus named term values for logging.
///
/// `terms` are this rank's shares of each sub-term too: summing `value` and every term over the ranks
/// (all-reduce SUM) gives the one-process values.
public struct LossShare {
    public let value: Tensor
    public let terms: [(name: String, value: Double)]
    public init(value: Tensor, terms: [(name: String, value: Double)]) { self.value = value; self.terms = terms }
}

/// The norm floor of `n(v) = v / max(‖v‖, ε)` everywhere in KDLosses (LOSSES.md: ε = 1e-12).
public let lossNormEpsilon: Float = 1e-12

/// `Huber_δ(x) = ½x²` if `|x| ≤ δ`, else `δ(|x| − ½δ)`.
@inline(__always) func huber(_ x: Float, _ delta: Float) -> Float {
    let a = abs(x)
    return a <= delta ? 0.5 * x * x : delta * (a - 0.5 * delta)
}

/// `Huber_δ'(x) = x` if `|x| ≤ δ`, else `δ·sign(x)`.
@inline(__always) func huberGrad(_ x: Float, _ delta: Float) -> Float {
    abs(x) <= delta ? x : (x > 0 ? delta : -delta)
}

/// Row normalisation `u_i = x_i / max(‖x_i‖, ε)` of an `[n, d]` matrix; `norms[i] = ‖x_i‖` (unclamped).
@inline(__always)
func normalizeRows(_ x: UnsafePointer<Float>, rows n: Int, cols d: Int,
                   into u: UnsafeMutablePointer<Float>, norms: UnsafeMutablePointer<Float>) {
    for i in 0..<n {
        let xi = x + i * d, ui = u + i * d
        var s = 0.0
        for c in 0..<d { s += Double(xi[c]) * Double(xi[c]) }
        let r = Float(s.squareRoot())
        norms[i] = r
        let inv = 1 / max(r, lossNormEpsilon)
        for c in 0..<d { ui[c] = xi[c] * inv }
    }
}

/// Backward of `u = v / max(‖v‖, ε)` for one vector, in place on `g` (dL/du → dL/dv):
/// `dv = (du − u⟨u, du⟩) / ‖v‖` when `‖v‖ > ε`, else `dv = du / ε` (the clamp is constant).
@inline(__always)
func normalizeBackward(_ g: UnsafeMutablePointer<Float>, u: UnsafePointer<Float>, norm: Float, count d: Int) {
    if norm > lossNormEpsilon {
        var dot = 0.0
        for c in 0..<d { dot += Double(u[c]) * Double(g[c]) }
        let inv = 1 / norm, fd = Float(dot)
        for c in 0..<d { g[c] = (g[c] - u[c] * fd) * inv }
    } else {
        let inv = 1 / lossNormEpsilon
        for c in 0..<d { g[c] *= inv }
    }
}

/// Row-wise log-softmax of `z / T` in Float64, `[n, c]` → `out` (`[n·c]`).
@inline(__always)
func logSoftmaxRow(_ z: UnsafePointer<Float>, count c: Int, invT: Double, into out: UnsafeMutablePointer<Double>) {
    var m = -Double.infinity
    for j in 0..<c { m = max(m, Double(z[j]) * invT) }
    var s = 0.0
    for j in 0..<c { s += exp(Double(z[j]) * invT - m) }
    let lse = m + log(s)
    for j in 0..<c { out[j] = Double(z[j]) * invT - lse }
}


/// Sample shard → row range for `views` views per sample (sample-major rows: `row = sample·V + view`).
@inline(__always) func rowRange(_ shard: Range<Int>, views: Int) -> Range<Int> {
    (shard.lowerBound * views)..<(shard.upperBound * views)
}

/// Checks a row range against `n` rows.
func checkRows(_ loss: String, _ rows: Range<Int>, _ n: Int) throws {
    if rows.lowerBound < 0 || rows.upperBound > n {
        throw LossError.invalidArgument(loss: loss, message: "shard rows \(rows) outside 0..<\(n)")
    }
}

/// Checks that `t` is 2-D with `rows` rows (and `cols` columns when given).
func check2D(_ loss: String, _ name: String, _ t: Tensor, rows: Int? = nil, cols: Int? = nil) throws {
    guard t.rank == 2 else {
        throw LossError.invalidArgument(loss: loss, message: "\(name) must be 2-D, got shape \(t.shape)")
    }
    if let rows, t.shape[0] != rows {
        throw TensorError.shapeMismatch(op: "\(loss) (\(name) rows)", lhs: t.shape, rhs: [rows, cols ?? t.shape[1]])
    }
    if let cols, t.shape[1] != cols {
        throw TensorError.shapeMismatch(op: "\(loss) (\(name) columns)", lhs: t.shape, rhs: [rows ?? t.shape[0], cols])
    }
}

/// Whether the fused op must produce a gradient for `t` (recording on and `t` requires grad).
@inline(__always) func needsGrad(_ t: Tensor) -> Bool { GradMode.isEnabled && t.requiresGrad }

/// Records a fused loss node: `out` (scalar) with precomputed gradients `grads[k]` for `inputs[k]`
/// (nil = no gradient). The backward accumulates `gOut · grads[k]`.
func recordFused(_ name: String, output out: Tensor, inputs: [Tensor], grads: [Tensor?]) {
    Tape.record(name, inputs: inputs, output: out) { gOut in
        let s = gOut.ptr[0]
        for (x, g) in zip(inputs, grads) where x.requiresGrad {
            if let g { x.accumulateGrad(g.ptr, scale: s) }
        }
    }
}

/// The scalar output of a fused loss.
@inline(__always) func scalarTensor(_ v: Double) -> Tensor { Tensor(shape: [], data: [Float(v)]) }

/// The squared pairwise distances `q_ij = ‖x_i − x_j‖²` of an `[n, d]` matrix into `q` (`[n, n]`,
/// Float32, computed in Float64), diagonal 0. The Gram comes from sgemm; where cancellation would dominate
/// (`q_ij < 1e-3·(‖x_i‖² + ‖x_j‖²)`, e.g. duplicated rows) the entry is recomputed directly, so equal
/// rows give exactly 0 as the reference's explicit difference does.
func squaredDistances(_ x: UnsafePointer<Float>, n: Int, d: Int, into q: UnsafeMutablePointer<Float>) {
    let gram = Tensor(uninitializedShape: [n, n])
    sgemm(transA: false, transB: true, m: n, n: n, k: d, a: x, lda: d, b: x, ldb: d, c: gram.ptr, ldc: n)
    var sq = [Double](repeating: 0, count: n)
    for i in 0..<n {
        var s = 0.0
        for c in 0..<d { s += Double(x[i * d + c]) * Double(x[i * d + c]) }
        sq[i] = s
    }
    for i in 0..<n {
        for j in 0..<n {
            if i == j { q[i * n + j] = 0; continue }
            var v = sq[i] + sq[j] - 2 * Double(gram.ptr[i * n + j])
            if v < 1e-3 * (sq[i] + sq[j]) {
                var s = 0.0
                for c in 0..<d { let t = Double(x[i * d + c]) - Double(x[j * d + c]); s += t * t }
                v = s
            }
            q[i * n + j] = Float(max(v, 0))
        }
    }
}

/// Gradient of `Σ_ij G_ij ‖x_i − x_j‖²` w.r.t. `x`: `2(rowsum(S) ⊙ x − S·x)` with `S = G + Gᵀ`;
/// `gq` is overwritten with `S` (Float32 `[n, n]`), the result is added into `gx` (`[n, d]`).
func squaredDistancesBackward(_ gq: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, d: Int,
                              into gx: UnsafeMutablePointer<Float>) {
    // S = G + Gᵀ in 64×64 tiles, so the column walk of Gᵀ stays in cache (a plain row-by-row
    // sweep misses on every `gq[j·n + i]` once n² no longer fits).
    let tile = 64
    for ib in stride(from: 0, to: n, by: tile) {
        for jb in stride(from: ib, to: n, by: tile) {
            for i in ib..<min(ib + tile, n) {
                for j in (jb == ib ? i : jb)..<min(jb + tile, n) {
                    let s = gq[i * n + j] + gq[j * n + i]
                    gq[i * n + j] = s; gq[j * n + i] = s
                }
            }
        }
    }
    for i in 0..<n {
        var r = 0.0
        for j in 0..<n { r += Double(gq[i * n + j]) }
        let fr = Float(2 * r)
        for c in 0..<d { gx[i * d + c] += fr * x[i * d + c] }
    }
    sgemm(transA: false, transB: false, m: n, n: d, k: n, alpha: -2, a: gq, lda: n, b: x, ldb: d,
          beta: 1, c: gx, ldc: d)
}
