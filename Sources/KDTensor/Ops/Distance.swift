/// Pairwise Euclidean distances between the rows of a matrix, as in RKD (`metric/utils.py: pdist`).

/// `d_ij = sqrt(max(‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩, 1e-12))` for `x` [N, D], then `d_ii := 0`; [N, N].
///
/// The Gram matrix comes from one sgemm. Where the difference is small next to the norms
/// (`d² ≤ 10⁻³ (‖x_i‖² + ‖x_j‖²)`) the expanded form loses digits to cancellation, so those pairs
/// are recomputed directly as `Σ_k (x_ik − x_jk)²` (closer to the float64 reference, same function).
/// Backward, with `W_ij = (g_ij + g_ji) / d_ij` for `i ≠ j` and `W_ij = 0` on the diagonal and where the
/// clamp is active (`d² < 1e-12`, as PyTorch's `clamp(min=)` passes no gradient there):
/// `gx_i = Σ_j W_ij (x_i − x_j) = (Σ_j W_ij) x_i − (W x)_i` — one more sgemm; the near pairs are
/// applied directly as `W_ij (x_i − x_j)` to avoid the same cancellation.
public func pairwiseDistances(_ x: Tensor) throws -> Tensor {
    guard x.rank == 2 else {
        throw TensorError.invalidArgument(op: "pairwiseDistances", message: "needs [N, D], got shape \(x.shape)")
    }
    let n = x.shape[0], dim = x.shape[1]
    let minSquared: Float = 1e-12
    let out = Tensor(uninitializedShape: [n, n])
    let xp = x.ptr, dp = out.ptr
    var sq = [Float](repeating: 0, count: n)
    for i in 0..<n {
        var s = 0.0
        for k in 0..<dim { let v = Double(xp[i * dim + k]); s += v * v }
        sq[i] = Float(s)
    }
    sgemm(transB: true, m: n, n: n, k: dim, a: xp, lda: dim, b: xp, ldb: dim, c: dp, ldc: n)   // Gram
    // state: 0 regular, 1 clamped (no gradient), 2 near pair (direct formula)
    var state = [UInt8](repeating: 0, count: n * n)
    var near: [(Int, Int)] = []
    for i in 0..<n {
        for j in (i + 1)..<n {
            var d2 = sq[i] + sq[j] - 2 * dp[i * n + j]
            let isNear = d2 <= 1e-3 * (sq[i] + sq[j])
            if isNear {
                var s = 0.0
                for k in 0..<dim { let v = Double(xp[i * dim + k]) - Double(xp[j * dim + k]); s += v * v }
                d2 = Float(s)
            }
            if d2 < minSquared { d2 = minSquared; state[i * n + j] = 1 }
            else if isNear { state[i * n + j] = 2; near.append((i, j)) }
            let d = d2.squareRoot()
            dp[i * n + j] = d; dp[j * n + i] = d
        }
        dp[i * n + i] = 0
    }
    Tape.record("pairwiseDistances", inputs: [x], output: out) { g in
        let gp = g.ptr
        let w = Tensor(uninitializedShape: [n, n])
        let wp = w.ptr
        var rowSum = [Double](repeating: 0, count: n)
        for i in 0..<n {
            wp[i * n + i] = 0
            for j in (i + 1)..<n {
                let st = state[i * n + j]
                let v: Float = st == 0 ? (gp[i * n + j] + gp[j * n + i]) / dp[i * n + j] : 0
                wp[i * n + j] = v; wp[j * n + i] = v
                rowSum[i] += Double(v); rowSum[j] += Double(v)
            }
        }
        let wx = Tensor(uninitializedShape: [n, dim])
        sgemm(m: n, n: dim, k: n, a: wp, lda: n, b: xp, ldb: dim, c: wx.ptr, ldc: dim)
        let (ga, fresh) = x.gradBuffer()
        let wxp = wx.ptr
        for i in 0..<n {
            let r = Float(rowSum[i])
            for k in 0..<dim {
                let v = r * xp[i * dim + k] - wxp[i * dim + k]
                if fresh { ga[i * dim + k] = v } else { ga[i * dim + k] += v }
            }
        }
        for (i, j) in near {
            let c = (gp[i * n + j] + gp[j * n + i]) / dp[i * n + j]
            for k in 0..<dim {
                let diff = c * (xp[i * dim + k] - xp[j * dim + k])
                ga[i * dim + k] += diff
                ga[j * dim + k] -= diff
            }
        }
    }
    return out
}
