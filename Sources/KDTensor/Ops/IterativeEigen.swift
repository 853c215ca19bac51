import CBLAS

/// The `k` largest eigenpairs of a symmetric operator found by `topEigenBlockKrylov`.
public struct TopEigenResult {
    /// Eigenvalues, descending (the locked vector's first).
    public var values: [Double]
    /// The eigenvectors as the rows of a row-major `[values.count, n]` array (orthonormal).
    public var vectors: [Double]
    /// Whether every wanted Ritz pair met the residual test; false: the cycle cap was reached.
    public var converged: Bool
    /// Restart cycles run.
    public var cycles: Int
    /// Vectors multiplied by the operator (the block products, summed over their widths).
    public var products: Int
    /// The largest residual `‖A y − θ y‖₂` over the wanted pairs in the last cycle.
    public var maxResidual: Double
}

/// The `k` largest eigenpairs of a symmetric `n×n` operator `A` known only through block products,
/// by a restarted block Krylov method with Rayleigh–Ritz (block Lanczos with full reorthogonalisation):
///
///     cycle:  Q = orth[X, A X, A² X, …]  (blocksPerCycle blocks of `block` vectors, ⟂ locked)
///             T = Qᵀ A Q,  T = S Θ Sᵀ (dsyevd, tiny),  X ← the top `block` Ritz vectors Q S,  A X ← (A Q) S
///             converged when ‖A x_i − θ_i x_i‖₂ ≤ tolerance for the k wanted Ritz pairs.
///
/// `locked` (rows of a row-major `[l, n]` array, orthonormal) are known eigenvectors of value `lockedValue`
/// (e.g. a normalised Laplacian's `D^{½}1`); every basis vector is kept orthogonal to them and they are
/// returned first, so `values.count = l + k`. `apply(x, count, into)` writes `A x_i` for the `count`
/// vectors stored as the rows of `x` (`[count, n]`) into the rows of `into`; a distributed operator
/// multiplies its rows and gathers the result there. `agree` takes the maximum of a value over the
/// processes that share the operator (an all-reduce MAX; identity for one process): of the convergence
/// measure, so that all of them take the same branch, and of each new block's width (negated: its
/// minimum), so that all of them multiply blocks of the same width even if their replicated arithmetic
/// differed (e.g. different BLAS kernels).
///
/// Every step after `apply` is deterministic on identical data: with the same `seed` (the start block is
/// `KDRandom(keys: seed, n)` normals) and the same gathered products, every process computes the same
/// vectors. Orthogonalisation, all level-3: two passes of block Gram–Schmidt against the basis, then the
/// block among itself through the eigendecomposition of its Gram matrix (SVQB, Stathopoulos & Wu 2002),
/// one more pass of each when that Gram is ill-conditioned; a vector that loses more than `1 − 10⁻⁸` of
/// its norm is replaced by a fresh random one (once), then dropped. Cost per cycle:
/// `(blocksPerCycle − 1)·block` products and `O(n·s²)` for the basis of `s = blocksPerCycle·block`
/// vectors; memory `2·s·n` Float64.
public func topEigenBlockKrylov(n: Int, count k: Int, locked: [Double] = [], lockedValue: Double = 0,
                                block: Int, blocksPerCycle: Int = 3, maxCycles: Int, tolerance: Double,
                                seed: UInt64 = 0x5EC7,
                                apply: (UnsafePointer<Double>, Int, UnsafeMutablePointer<Double>) throws -> Void,
                                agree: (Double) throws -> Double = { $0 }) throws -> TopEigenResult {
    let l = locked.count / max(n, 1)
    guard n > 0, locked.count == l * n, k >= 0, k <= n - l else {
        throw TensorError.invalidArgument(op: "topEigenBlockKrylov", message: "needs 0 ≤ k ≤ n − locked, "
                                          + "got k = \(k), n = \(n), locked \(l)")
    }
    if k == 0 {
        return TopEigenResult(values: [Double](repeating: lockedValue, count: l), vectors: locked, converged: true,
                              cycles: 0, products: 0, maxResidual: 0)
    }
    let free = n - l                                   // the dimension of the space ⟂ locked
    let p = min(max(block, k), free), cap = min(max(blocksPerCycle, 1) * p, free)
    var rng = KDRandom(keys: seed, UInt64(n))
    // Basis Q and A·Q as the rows of [cap, n] arrays; `s` rows in use.
    var q = [Double](repeating: 0, count: cap * n), aq = [Double](repeating: 0, count: cap * n)
    var s = 0

    /// `z`'s `count` rows minus their components along `locked` and `q[0..<s]` (block Gram–Schmidt).
    func project(_ zp: UnsafeMutablePointer<Double>, _ count: Int) {
        var coef = [Double](repeating: 0, count: max(l, s, 1) * count)
        for (basis, rowsIn) in [(locked, l), (q, s)] where rowsIn > 0 {
            basis.withUnsafeBufferPointer { bp in
                dgemm(transB: true, m: rowsIn, n: count, k: n, a: bp.baseAddress!, lda: n, b: zp, ldb: n,
                      c: &coef, ldc: count)
                dgemm(transA: true, m: count, n: n, k: rowsIn, alpha: -1, a: coef, lda: count,
                      b: bp.baseAddress!, ldb: n, beta: 1, c: zp, ldc: n)
            }
        }
    }

    /// Orthonormalises `z`'s `count` rows among themselves by the eigendecomposition of their Gram
    /// `Z Zᵀ = V Λ Vᵀ`: `Z ← Λ^{-½} Vᵀ Z` over the eigenvalues above `10⁻¹²` (the rows have unit norm on
    /// entry, so this drops only directions they do not span); returns the rows kept.
    func svqb(_ z: inout [Double], _ count: Int) throws -> (kept: Int, smallest: Double) {
        guard count > 0 else { return (0, 1) }
        var g = [Double](repeating: 0, count: count * count)
        dgemm(transB: true, m: count, n: count, k: n, a: z, lda: n, b: z, ldb: n, c: &g, ldc: count)
        let (lambda, v) = try symmetricEigen(g, n: count)
        var y: [Double] = []
        for j in (0..<count).reversed() where lambda[j] > 1e-12 {
            let f = 1 / lambda[j].squareRoot()
            y += v[(j * count)..<((j + 1) * count)].map { $0 * f }
        }
        let kept = y.count / count
        var out = [Double](repeating: 0, count: max(kept, 1) * n)
        dgemm(m: kept, n: n, k: count, a: y, lda: count, b: z, ldb: n, c: &out, ldc: n)
        z = out
        return (kept, lambda.first { $0 > 1e-12 } ?? 1)
    }

    /// Orthonormalises the `count` rows of `z` against `locked` and `q[0..<s]` and among themselves
    /// (block Gram–Schmidt twice; rows left with less than `10⁻⁸` of their norm dropped, the others
    /// scaled to unit norm; `svqb`; once more each if that Gram was ill-conditioned, smallest eigenvalue
    /// below `10⁻⁴`); returns the rows kept (the first rows of `z`).
    func orthonormalise(_ z: inout [Double], _ count: Int) throws -> Int {
        var kept = 0
        z.withUnsafeMutableBufferPointer { zb in
            let zp = zb.baseAddress!
            var norm0 = [Double](repeating: 0, count: count)
            for i in 0..<count { norm0[i] = cblas_dnrm2(Int32(n), zp + i * n, 1) }
            project(zp, count)
            project(zp, count)
            for i in 0..<count {
                let zi = zp + i * n
                let r = cblas_dnrm2(Int32(n), zi, 1)
                guard r > 1e-8 * norm0[i], r > 0 else { continue }
                cblas_dscal(Int32(n), 1 / r, zi, 1)
                if kept != i { (zp + kept * n).update(from: zi, count: n) }
                kept += 1
            }
        }
        let first = try svqb(&z, kept)
        // Λ^{-½} amplifies the rows' remaining components along the basis by at most 1/√smallest.
        if first.smallest >= 1e-4 { return first.kept }
        z.withUnsafeMutableBufferPointer { project($0.baseAddress!, first.kept) }
        return try svqb(&z, first.kept).kept
    }

    /// `count` new orthonormal rows from `z` (random replacements for the ones lost), appended to `q`,
    /// their products to `aq`; returns how many were appended.
    func extend(_ zIn: [Double], _ count: Int, products: inout Int) throws -> Int {
        let room = min(count, cap - s)
        guard room > 0 else { return 0 }
        var z = Array(zIn.prefix(room * n))
        var kept = try orthonormalise(&z, room)
        if kept < room {
            var fresh = [Double](repeating: 0, count: (room - kept) * n)
            for i in fresh.indices { fresh[i] = Double(rng.nextNormal()) }
            // Orthogonal to the basis so far and to the kept rows of z.
            let keptRows = Array(z.prefix(kept * n))
            var all = keptRows + fresh
            let more = try orthonormalise(&all, kept + fresh.count / n)
            kept = more
            z = all
        }
        // The processes must multiply blocks of one width: the fewest kept anywhere (−max(−kept)); on
        // identical data this is `kept` itself.
        kept = min(kept, Int(-(try agree(-Double(kept)))))
        guard kept > 0 else { return 0 }
        let az = UnsafeMutablePointer<Double>.allocate(capacity: kept * n)
        defer { az.deallocate() }
        try z.withUnsafeBufferPointer { try apply($0.baseAddress!, kept, az) }
        products += kept
        for i in 0..<(kept * n) { q[s * n + i] = z[i]; aq[s * n + i] = az[i] }
        s += kept
        return kept
    }

    var start = [Double](repeating: 0, count: p * n)
    for i in start.indices { start[i] = Double(rng.nextNormal()) }
    var products = 0
    _ = try extend(start, p, products: &products)
    var cycles = 0, worst = Double.infinity
    var values: [Double] = [], ritz: [Double] = []
    while true {
        cycles += 1
        // Krylov blocks: A times the last block added, against everything before.
        var last = 0..<s
        for _ in 1..<max(blocksPerCycle, 1) where s < cap && !last.isEmpty {
            let z = Array(aq[(last.lowerBound * n)..<(last.upperBound * n)])
            let added = try extend(z, last.count, products: &products)
            last = (s - added)..<s
        }
        // Rayleigh–Ritz on span(Q): T = Q (AQ)ᵀ, symmetrised.
        var t = [Double](repeating: 0, count: s * s)
        dgemm(transB: true, m: s, n: s, k: n, a: q, lda: n, b: aq, ldb: n, c: &t, ldc: s)
        for i in 0..<s {
            for j in 0..<i { let v = 0.5 * (t[i * s + j] + t[j * s + i]); t[i * s + j] = v; t[j * s + i] = v }
        }
        let (theta, sv) = try symmetricEigen(t, n: s)
        let r = min(p, s)
        // The top r Ritz vectors, descending: rows of S (LAPACK's eigenvector j is the run sv[j·s ..< (j+1)·s]).
        var y = [Double](repeating: 0, count: r * s)
        values = []
        for i in 0..<r {
            let j = s - 1 - i
            values.append(theta[j])
            for c in 0..<s { y[i * s + c] = sv[j * s + c] }
        }
        var x = [Double](repeating: 0, count: r * n), ax = [Double](repeating: 0, count: r * n)
        dgemm(m: r, n: n, k: s, a: y, lda: s, b: q, ldb: n, c: &x, ldc: n)
        dgemm(m: r, n: n, k: s, a: y, lda: s, b: aq, ldb: n, c: &ax, ldc: n)
        var mine = 0.0
        for i in 0..<min(k, r) {
            var e = 0.0
            for c in 0..<n { let d = ax[i * n + c] - values[i] * x[i * n + c]; e += d * d }
            mine = max(mine, e.squareRoot())
        }
        if r < k { mine = .infinity }
        worst = try agree(mine)
        ritz = x
        // A basis of the whole space ⟂ locked makes Rayleigh–Ritz exact.
        if worst <= tolerance || cycles >= maxCycles || (s == free && r >= k) { break }
        // Restart from the Ritz block (already orthonormal): Q = X, AQ = AX.
        s = r
        for i in 0..<(r * n) { q[i] = x[i]; aq[i] = ax[i] }
    }
    let converged = worst <= tolerance || (s == free && values.count >= k)
    return TopEigenResult(values: [Double](repeating: lockedValue, count: l) + values.prefix(k),
                          vectors: locked + ritz.prefix(k * n), converged: converged, cycles: cycles,
                          products: products, maxResidual: worst)
}
