import CBLAS

/// Squared pairwise distances of the rows of a matrix, in Float32 and Float64, and the backward of
/// `Σ_ij G_ij ‖x_i − x_j‖²`: the one implementation behind RKD distance, spectral (Float32) and RKD
/// angle (Float64) in KDLosses. `docs/ops.md` ("Kernels").

/// The squared pairwise distances `q_ij = ‖x_i − x_j‖²` of an `[n, d]` matrix into `q` (`[n, n]`,
/// Float32, each entry computed in Float64 from `q_ij = ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩` with the Gram
/// `⟨x_i, x_j⟩` from one sgemm), diagonal 0, clamped at 0. Where cancellation would dominate
/// (`q_ij < 10⁻³(‖x_i‖² + ‖x_j‖²)`, e.g. duplicated rows) the entry is recomputed directly as
/// `Σ_c (x_ic − x_jc)²`, so equal rows give exactly 0 as an explicit difference does.
public func squaredDistances(_ x: UnsafePointer<Float>, n: Int, d: Int, into q: UnsafeMutablePointer<Float>) {
    squaredDistanceRows(x, n: n, d: d, rows: 0..<n, into: q)
}

/// Gradient of `Σ_ij G_ij ‖x_i − x_j‖²` with respect to `x` (`[n, d]`): `2(rowsum(S) ⊙ x − S·x)` with
/// `S = G + Gᵀ`. `gq` holds `G` (Float32 `[n, n]`) and is overwritten with `S`; the result is added
/// into `gx` (`[n, d]`); `S·x` is one sgemm, the row sums of `S` are Float64.
public func squaredDistancesBackward(_ gq: UnsafeMutablePointer<Float>, x: UnsafePointer<Float>, n: Int, d: Int,
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

/// The full Gram matrix `G = X Xᵀ` of a row-major Float64 `[n, d]` matrix into `g` (`[n, n]`): the
/// upper triangle by `cblas_dsyrk`, mirrored into the lower one.
public func symmetricGramDouble(_ x: UnsafePointer<Double>, n: Int, d: Int, into g: UnsafeMutablePointer<Double>) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(d), 1, x, Int32(d), 0, g, Int32(n))
    for i in 0..<n { for j in 0..<i { g[i * n + j] = g[j * n + i] } }
}

/// Squared pairwise distances `q_ij = ‖x_i − x_j‖²` of an `[n, d]` Float32 matrix in Float64: the
/// Gram of a Float64 copy (`symmetricGramDouble`), `q = ‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩`, diagonal 0,
/// clamped at 0, symmetric by construction; entries where cancellation would dominate
/// (`q_ij < 10⁻³(‖x_i‖² + ‖x_j‖²)`, e.g. duplicated rows) are recomputed directly, so equal rows give
/// exactly 0. With `columns: p` only the distances to the first `p` rows are built (`[n, p]`: the first
/// `p` rows' block symmetric as above, the other rows' by one `cblas_dgemm` against them), for a sweep
/// whose partners are those rows. Returns `n·p` doubles in pooled scratch memory.
public func squaredDistancesDouble(_ x: UnsafePointer<Float>, n: Int, d: Int, columns: Int? = nil) -> DoubleScratch {
    let p = min(columns ?? n, n)
    let xd = DoubleScratch(n * d)
    for k in 0..<(n * d) { xd.ptr[k] = Double(x[k]) }
    let q = DoubleScratch(n * p)
    if n > 0 && d > 0 && p > 0 {
        symmetricGramDouble(xd.ptr, n: p, d: d, into: q.ptr)      // the first p rows: a p×p block, stride p
        if n > p {
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(n - p), Int32(p), Int32(d), 1,
                        xd.ptr + p * d, Int32(d), xd.ptr, Int32(d), 0, q.ptr + p * p, Int32(p))
        }
    } else {
        q.ptr.update(repeating: 0, count: n * p)
    }
    var sq = [Double](repeating: 0, count: n)
    for i in 0..<n {
        if i < p { sq[i] = q.ptr[i * p + i]; continue }
        var s = 0.0
        for c in 0..<d { s += xd.ptr[i * d + c] * xd.ptr[i * d + c] }
        sq[i] = s
    }
    /// The distance from the Gram entry `g` of rows `i` and `j`.
    func distance(_ i: Int, _ j: Int, gram g: Double) -> Double {
        var v = sq[i] + sq[j] - 2 * g
        if v < 1e-3 * (sq[i] + sq[j]) {
            var s = 0.0
            for c in 0..<d { let t = xd.ptr[i * d + c] - xd.ptr[j * d + c]; s += t * t }
            v = s
        }
        return max(v, 0)
    }
    for i in 0..<p {
        q.ptr[i * p + i] = 0
        for j in (i + 1)..<max(i + 1, p) {
            let v = distance(i, j, gram: q.ptr[i * p + j])
            q.ptr[i * p + j] = v; q.ptr[j * p + i] = v
        }
    }
    for i in p..<max(p, n) {
        for j in 0..<p { q.ptr[i * p + j] = distance(i, j, gram: q.ptr[i * p + j]) }
    }
    return q
}

/// The rows `rows` of the squared-distance matrix of an `[n, d]` matrix: `q[i − rows.lowerBound, j] =
/// ‖x_i − x_j‖²` for `i ∈ rows`, all `j` (`[rows.count, n]`, Float32), each entry as `squaredDistances`
/// describes (the Gram from one sgemm of the row block against all rows). A row-sharded loss builds only
/// its anchors' rows: `O(|rows|·n·d)` instead of `O(n²·d)`.
public func squaredDistanceRows(_ x: UnsafePointer<Float>, n: Int, d: Int, rows: Range<Int>,
                                into q: UnsafeMutablePointer<Float>) {
    let m = rows.count
    guard m > 0 else { return }
    let gram = Tensor(uninitializedShape: [m, n])
    sgemm(transA: false, transB: true, m: m, n: n, k: d, a: x + rows.lowerBound * d, lda: d, b: x, ldb: d,
          c: gram.ptr, ldc: n)
    var sq = [Double](repeating: 0, count: n)
    for i in 0..<n {
        var s = 0.0
        for c in 0..<d { s += Double(x[i * d + c]) * Double(x[i * d + c]) }
        sq[i] = s
    }
    for (r, i) in rows.enumerated() {
        for j in 0..<n {
            if i == j { q[r * n + j] = 0; continue }
            var v = sq[i] + sq[j] - 2 * Double(gram.ptr[r * n + j])
            if v < 1e-3 * (sq[i] + sq[j]) {
                var s = 0.0
                for c in 0..<d { let t = Double(x[i * d + c]) - Double(x[j * d + c]); s += t * t }
                v = s
            }
            q[r * n + j] = Float(max(v, 0))
        }
    }
}

/// Gradient of `Σ_{i∈rows, j} G_ij ‖x_i − x_j‖²` with respect to `x` (`[n, d]`), `G` the `[rows.count, n]`
/// block: `x_i` (`i ∈ rows`) gets `2(Σ_j G_ij x_i − Σ_j G_ij x_j)` and every `x_j` gets
/// `2(Σ_i G_ij x_j − Σ_i G_ij x_i)` — two sgemms (`G·X`, `Gᵀ·X_rows`), Float64 row and column sums;
/// added into `gx`.
public func squaredDistanceRowsBackward(_ g: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int, d: Int,
                                        rows: Range<Int>, into gx: UnsafeMutablePointer<Float>) {
    let m = rows.count
    guard m > 0 else { return }
    var colSums = [Double](repeating: 0, count: n)
    for r in 0..<m {
        var rowSum = 0.0
        for j in 0..<n { let v = Double(g[r * n + j]); rowSum += v; colSums[j] += v }
        let i = rows.lowerBound + r, fr = Float(2 * rowSum)
        for c in 0..<d { gx[i * d + c] += fr * x[i * d + c] }
    }
    for j in 0..<n {
        let fc = Float(2 * colSums[j])
        for c in 0..<d { gx[j * d + c] += fc * x[j * d + c] }
    }
    let xr = x + rows.lowerBound * d
    sgemm(transA: false, transB: false, m: m, n: d, k: n, alpha: -2, a: g, lda: n, b: x, ldb: d,
          beta: 1, c: gx + rows.lowerBound * d, ldc: d)
    sgemm(transA: true, transB: false, m: n, n: d, k: m, alpha: -2, a: g, lda: n, b: xr, ldb: d,
          beta: 1, c: gx, ldc: d)
}

/// Gradient with respect to its own rows of a rank's share `Σ_{i∈rows} Σ_j G_ij ‖x_i − x_j‖²` of the
/// symmetric sum `Σ_ij G_ij ‖x_i − x_j‖²` (`G = Gᵀ`): row `i` of the whole sum gets
/// `2 Σ_j (G_ij + G_ji)(x_i − x_j) = 4(Σ_j G_ij x_i − Σ_j G_ij x_j)`, from its own row of `G` alone — so a
/// row-sharded loss whose pairs are symmetric gives each rank its own rows' whole gradient, with no part
/// for other ranks' rows. `g` holds the rows `rows` of `G` (`[rows.count, n]`); the result is added into
/// `gx` (`[rows.count, d]`, row `i` at `i − rows.lowerBound`): Float64 row sums and one sgemm.
public func symmetricSquaredDistanceRowsBackward(_ g: UnsafePointer<Float>, x: UnsafePointer<Float>, n: Int,
                                                 d: Int, rows: Range<Int>, into gx: UnsafeMutablePointer<Float>) {
    let m = rows.count
    guard m > 0 else { return }
    for r in 0..<m {
        var rowSum = 0.0
        for j in 0..<n { rowSum += Double(g[r * n + j]) }
        let i = rows.lowerBound + r, fr = Float(4 * rowSum)
        for c in 0..<d { gx[r * d + c] += fr * x[i * d + c] }
    }
    sgemm(transA: false, transB: false, m: m, n: d, k: n, alpha: -4, a: g, lda: n, b: x, ldb: d,
          beta: 1, c: gx, ldc: d)
}
