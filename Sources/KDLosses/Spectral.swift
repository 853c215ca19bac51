import Foundation
import KDCore
import KDTensor

/// How the spectral term solves the teacher eigenproblem (config key `solver`).
public enum SpectralSolver: String, CaseIterable, Sendable {
    /// `iterative` from the measured crossover on (`spectralAutoIterative`), `dense` below it.
    case auto
    /// The whole `n×n` Laplacian on every rank, LAPACK `dsyevd_` (`O(n³)`).
    case dense
    /// Restarted block Krylov on row-distributed products (`topEigenBlockKrylov`), dense on failure.
    case iterative
}

/// The iterative solver's block for `k` eigenvectors: `k − 1` wanted (the top one is locked) plus
/// `max(8, k/4)` guard vectors.
func spectralBlock(_ k: Int) -> Int { k - 1 + max(8, k / 4) }

/// Whether `solver: auto` takes the iterative eigensolver for `n` rows and `k` eigenvectors: from
/// `n ≥ max(256, 6·block)` on, the crossover measured on one core with a clustered teacher (docs/losses.md
/// "Spectral": `k = 10` between 128 and 256 rows, `k = 40` between 256 and 512, `k = 100` between 512
/// and 768 — the solver's work grows as `n·k²`, `dsyevd_`'s as `n³`).
public func spectralAutoIterative(n: Int, k: Int) -> Bool { n >= max(256, 6 * spectralBlock(k)) }

/// The iterative solver's settings: residual bound on the wanted Ritz pairs (`‖N y − θ y‖₂`, `‖N‖ = 1`),
/// Krylov blocks per restart cycle.
let spectralTolerance = 1e-8, spectralBlocksPerCycle = 3

/// The iterative solver's cycle cap for `n` rows and a block of `p` vectors (basis `s = 3p`): a cycle's
/// replicated work is ≈ 12·n·s² flops and `dsyevd_`'s ≈ 5n³ at a higher rate (measured: 0.1 s a cycle,
/// 0.3 s dense at n = 1024, s = 372), so `n²/(2s²)` cycles cost about one dense solve and a fallback at
/// most about two; clamped to 4…30.
func spectralCycleCap(n: Int, block p: Int) -> Int {
    let s = min(spectralBlocksPerCycle * p, n)
    return min(30, max(4, n * n / (2 * s * s)))
}

/// What the spectral term's teacher eigensolves did in this process (each rank counts its own solves;
/// threads of one process share the counts). Nothing is printed from the training path: a fallback
/// is visible here and in `kdgraph bench`'s output.
public struct SpectralSolverStatistics: Equatable, Sendable, Codable {
    /// Solves by `dsyevd_` chosen up front (`dense`, or `auto` below the threshold).
    public var dense = 0
    /// Solves by the iterative method that converged.
    public var iterative = 0
    /// Iterative solves that hit the cycle cap and fell back to `dsyevd_`.
    public var fallbacks = 0
    /// Restart cycles run by the iterative solves (converged or not).
    public var cycles = 0

    /// The counts so far.
    public static var current: SpectralSolverStatistics { spectralStatistics.read() }
}

final class SpectralStatisticsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value = SpectralSolverStatistics()
    func read() -> SpectralSolverStatistics { lock.lock(); defer { lock.unlock() }; return value }
    func update(_ body: (inout SpectralSolverStatistics) -> Void) { lock.lock(); body(&value); lock.unlock() }
}
let spectralStatistics = SpectralStatisticsBox()

/// Eigen-decomposition of the teacher Laplacian by the tensor engine's `symmetricEigen` (LAPACK
/// `dsyevd_`): eigenvalues ascending, eigenvectors as the columns of a column-major `n×n` array
/// (`vectors[j·n + i]` = component `i` of eigenvector `j`).
func spectralEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
    do {
        return try symmetricEigen(a, n: n)
    } catch {
        throw LossError.invalidArgument(loss: "spectral", message: "eigen-decomposition of the \(n)×\(n) "
                                        + "teacher Laplacian failed: \(error)")
    }
}

/// Spectral graph alignment (KDGraph's formulation after SEKD, Wang et al., arXiv 2405.08547;
/// `docs/losses.md` "Spectral"), one rank's share. Over the `n` gathered rows, with `u = n(x)`:
///
///     W_ij = exp(−‖u_i − u_j‖² / σ²),   σ² = Σ_{i≠j} ‖u_i − u_j‖² / (n(n−1)),   W_ii = 1
///     L = I − D^{-½} W D^{-½}
///     U = the k eigenvectors of L^T of smallest eigenvalue (teacher only, constant; `solver`)
///     L_SE = (1/k) trace(Uᵀ L^S U) − (1/k) Σ_{m≤k} λ^T_m
///
/// The student Laplacian is differentiable, `σ²` and the degrees included. With `Π = U Uᵀ`,
/// `trace(Uᵀ L U) = Σ_i Π_ii − Σ_ij d_i W_ij d_j Π_ij` (`d = deg^{-½}`), a sum over rows `i`: the share
/// of rows `R` is `(1/k)(Σ_{i∈R} Π_ii − Σ_{i∈R} d_i α_i) − (|R|/n)(1/k) Σ λ^T_m`,
/// `α_i = Σ_j W_ij d_j Π_ij`.
/// Backward: `∂/∂W_ij = d_i d_j Π_ij − d_i³ α_i` (the second part is `d_i`'s, through `deg_i`, from every
/// row's sum — `2α_i` by the symmetry of `W` and `Π` — so the owner of row `i` carries it), then through
/// `exp`, `σ²` (`∂W_ij/∂σ² = W_ij q_ij/σ⁴`, reaching every off-diagonal `q`), `q_ij = ‖u_i − u_j‖²`
/// (two sgemms) and `n(·)`. Term: `spectral` (share).
///
/// With `comm` (row-sharded, docs/losses.md "share contract"): this rank builds only its rows `R` of the
/// teacher's and student's `W` (`O(|R|·n·D)`), `σ²` from an all-reduce of the ranks' row sums of `q`,
/// every vertex's degree by one all-gather of the rows' degrees, `Π[R,:] = U[R,:]·Uᵀ`, and the `σ²`
/// term of the gradient by an all-reduce of `Σ_{i∈R,j} ∂/∂W_ij · W_ij q_ij` — all in forward — so the
/// ranks' shares and gradients add up to the one-process ones. The teacher's `U` comes from the
/// iterative solver on the rows of `N = D^{-½} W D^{-½}` each rank holds (`spectralTeacherEigen`), or
/// from `dsyevd_` on the whole Laplacian. Per-rank memory `O(|R|·n)` (iterative) and time
/// `O(|R|·n·(D + k))` plus the solver's replicated `O(n·k²)` per cycle. Every rank of `comm` must call
/// it (a rank may have no rows). Without `comm` the whole graph is built and the share is the
/// fraction `|rows|/n` of the whole loss (memory `O(n²)`).
public func spectralLoss(student: Tensor, teacher: Tensor, k: Int, rows: Range<Int>? = nil,
                         comm: Communicator? = nil, solver: SpectralSolver = .auto) throws -> LossShare {
    try spectralShare(student: student, teacher: teacher, k: k, rows: rows, comm: comm, solver: solver)
}

/// One side's graph over the rows `rows` (`m` of the `n` gathered rows): the normalised rows (all `n`)
/// and their norms, the rows' squared distances `q` (`[m, n]`) and their sum; then, once `σ²` is known,
/// the rows' affinities `W` (`[m, n]`) and degrees, and `d = deg^{-½}` of all `n` vertices.
struct SpectralRows {
    let u: Tensor, norms: Tensor, q: Tensor, rows: Range<Int>
    /// The sum of `q` over each chunk of rows (`chunks`): one chunk when the rows are not cut.
    let qSums: [Double]
    var qSum: Double { qSums.reduce(0, +) }
    var sigma2 = 0.0, w: Tensor? = nil, degRows: [Double] = [], d: [Double] = []

    /// With `chunks` (ranges of `rows`, in order, covering them) each chunk's rows of `q` come from their
    /// own kernel call and have their own sum: a row's values then do not depend on the other chunks.
    init(_ x: Tensor, rows: Range<Int>, chunks: [Range<Int>]? = nil) {
        let n = x.shape[0], dim = x.shape[1], m = rows.count
        u = Tensor(uninitializedShape: [n, dim]); norms = Tensor(uninitializedShape: [n])
        normalizeRows(x.ptr, rows: n, cols: dim, into: u.ptr, norms: norms.ptr)
        q = Tensor(uninitializedShape: [m, n])
        var sums: [Double] = []
        for chunk in chunks ?? [rows] {
            let base = q.ptr + (chunk.lowerBound - rows.lowerBound) * n
            squaredDistanceRows(u.ptr, n: n, d: dim, rows: chunk, into: base)
            var s = 0.0
            for k in 0..<(chunk.count * n) { s += Double(base[k]) }
            sums.append(s)
        }
        qSums = sums; self.rows = rows
    }

    /// `W` and the rows' degrees for `σ² = sigma2`.
    mutating func affinities(sigma2: Double) {
        let n = u.shape[0], m = rows.count
        self.sigma2 = sigma2
        let w = Tensor(uninitializedShape: [m, n])
        degRows = [Double](repeating: 0, count: m)
        for r in 0..<m {
            var deg = 0.0
            for j in 0..<n {
                let v = exp(-Double(q.ptr[r * n + j]) / sigma2)
                w.ptr[r * n + j] = Float(v)
                deg += v
            }
            degRows[r] = deg
        }
        self.w = w
    }

    /// The whole graph of `x` built here (one process's view): `d` from its own degrees. With `exact`
    /// (deterministic training) the rows are built in the loss blocks' chunks and `σ²` is their exact
    /// sum, so the graph is bit for bit the one the ranks build row-sharded.
    static func whole(_ x: Tensor, exact: SpectralBlocks? = nil) throws -> SpectralRows {
        let n = x.shape[0]
        let chunks = exact.map { e in stride(from: 0, to: n, by: e.rows).map { $0..<min(n, $0 + e.rows) } }
        var g = SpectralRows(x, rows: 0..<n, chunks: chunks)
        let sum = try exact.map { e in try ExactSum.sums(g.qSums.map { [$0] }, count: 1, globalBlocks: e.global,
                                                          comm: nil)[0] } ?? g.qSum
        g.affinities(sigma2: sum / Double(n * (n - 1)))
        g.d = g.degRows.map { 1 / $0.squareRoot() }
        return g
    }
}

/// Deterministic training's loss blocks as the spectral term sees them: rows per block (`block_size ×
/// views`) and blocks in the global batch.
struct SpectralBlocks {
    let rows: Int, global: Int
}

/// Every rank's row count, checked on every rank alike: the ranks' `rows` must tile `0..<n` in rank
/// order (one all-gather of the bounds).
func spectralRowCounts(_ rows: Range<Int>, n: Int, comm: Communicator) throws -> [Int] {
    let bounds = [rows.lowerBound, rows.upperBound]
    var all = [Int](repeating: 0, count: 2 * comm.size)
    try bounds.withUnsafeBufferPointer { b in
        try all.withUnsafeMutableBufferPointer { try comm.allGather(b.baseAddress!, count: 2, into: $0.baseAddress!) }
    }
    var next = 0, counts: [Int] = []
    for r in 0..<comm.size {
        guard all[2 * r] == next, all[2 * r + 1] >= next else {
            throw LossError.invalidArgument(loss: "spectral", message: "the ranks' rows \(all) do not tile "
                                            + "0..<\(n) in rank order")
        }
        counts.append(all[2 * r + 1] - next)
        next = all[2 * r + 1]
    }
    guard next == n else {
        throw LossError.invalidArgument(loss: "spectral", message: "the ranks' rows end at \(next), not \(n)")
    }
    return counts
}

/// `spectralLoss` with the iterative solver's cycle cap (nil: `spectralCycleCap`; tests lower it to force
/// the fallback).
func spectralShare(student: Tensor, teacher: Tensor, k: Int, rows: Range<Int>?, comm: Communicator?,
                   solver: SpectralSolver, maxCycles: Int? = nil) throws -> LossShare {
    try spectralBlockShares(student: student, teacher: teacher, k: k, blocks: rows.map { [$0] }, comm: comm,
                            solver: solver, maxCycles: maxCycles, exact: nil)[0]
}

/// The spectral term over the row blocks `blocks` (nil: all rows, one block), one share per block, each
/// recorded as its block's (`LossBlocks`). With `exact` (deterministic training) the blocks are this
/// rank's loss blocks: every row-block product (`q`, `Π`, the solver's `N·X`) is its own kernel call,
/// and `σ²` and the `σ²` term of the gradient are exact sums over every block of every rank
/// (`ExactSum`), so each block's value and gradient — and the teacher's eigenvectors — are the same
/// at every world size (the dense solver builds the whole graph in the same blocks).
func spectralBlockShares(student: Tensor, teacher: Tensor, k: Int, blocks given: [Range<Int>]?,
                         comm givenComm: Communicator?, solver: SpectralSolver, maxCycles: Int? = nil,
                         exact: SpectralBlocks?) throws -> [LossShare] {
    let name = "spectral"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    guard n >= 2 else { throw LossError.invalidArgument(loss: name, message: "needs at least 2 rows, got \(n)") }
    guard k >= 1 && k <= n else { throw LossError.invalidArgument(loss: name, message: "k = \(k) outside 1...\(n)") }
    let blocks = given ?? [0..<n]
    for rows in blocks { try checkRows(name, rows, n) }
    // A world of one holds every row (or, in `kdgraph bench`'s projection, stands in for a larger world
    // whose other rows no rank here holds): the whole graph, as without a communicator — unless exact,
    // whose blocks are row-sharded at every world size.
    let comm = (givenComm?.size ?? 1) > 1 ? givenComm : nil
    let rowSharded = comm != nil || exact != nil
    // Without row sharding this process builds the whole graph and each block takes its fraction |rows|/n.
    let own = rowSharded ? (blocks.first?.lowerBound ?? 0)..<(blocks.last?.upperBound ?? 0) : 0..<n, m = own.count
    let chunks = rowSharded ? blocks : nil
    let counts = try comm.map { try spectralRowCounts(own, n: n, comm: $0) } ?? [n]
    /// Sums of per-block vectors over every block of every rank.
    func sums(_ partials: [[Double]], _ count: Int) throws -> [Double] {
        try blockSums(partials, count: count, comm: comm, exactBlocks: exact?.global)
    }

    // σ² of both graphs from the blocks' sums, then every vertex's degree (teacher's, student's).
    var tg = withNoGrad { SpectralRows(teacher, rows: own, chunks: chunks) }
    var sg = SpectralRows(student, rows: own, chunks: chunks)
    let total = try sums(zip(tg.qSums, sg.qSums).map { [$0, $1] }, 2)
    let pairs = Double(n * (n - 1))
    for (who, s) in [("teacher", total[0]), ("student", total[1])] where !(s > 0 && s.isFinite) {
        throw LossError.invalidArgument(loss: name, message: "\(who) rows are all equal (σ² = \(s / pairs))")
    }
    tg.affinities(sigma2: total[0] / pairs)
    sg.affinities(sigma2: total[1] / pairs)
    var degrees = tg.degRows + sg.degRows
    if let comm { degrees = try comm.allGatherV(degrees, counts: counts.map { 2 * $0 }) }
    var offset = 0
    for c in counts {
        tg.d += degrees[offset..<(offset + c)].map { 1 / $0.squareRoot() }
        sg.d += degrees[(offset + c)..<(offset + 2 * c)].map { 1 / $0.squareRoot() }
        offset += 2 * c
    }

    // Teacher: U (rows of [k, n]), the baseline; Π's rows of this rank, block by block.
    let (ut, base) = try withNoGrad {
        try spectralTeacherEigen(tg, teacher: teacher, k: k, counts: counts, comm: comm, solver: solver,
                                 maxCycles: maxCycles, exact: exact, chunks: chunks)
    }
    let uf = Tensor(uninitializedShape: [k, n])
    for i in 0..<(k * n) { uf.ptr[i] = Float(ut[i]) }
    let pi = Tensor(uninitializedShape: [m, n])
    for chunk in chunks ?? [own] where !chunk.isEmpty {
        sgemm(transA: true, m: chunk.count, n: n, k: k, a: uf.ptr + chunk.lowerBound, lda: n, b: uf.ptr, ldb: n,
              c: pi.ptr + (chunk.lowerBound - own.lowerBound) * n, ldc: n)
    }

    let w = sg.w!, d = sg.d, q = sg.q
    // α_i and each block's trace terms, row by row (every row without row sharding).
    var alpha = [Double](repeating: 0, count: m)
    func traceTerms(_ rows: Range<Int>) -> Double {
        var trace = 0.0, sTerm = 0.0
        for i in rows {
            let r = i - own.lowerBound
            trace += Double(pi.ptr[r * n + i])
            var ai = 0.0
            for j in 0..<n { ai += Double(w.ptr[r * n + j]) * d[j] * Double(pi.ptr[r * n + j]) }
            alpha[r] = ai
            sTerm += d[i] * ai
        }
        return (trace - sTerm) / Double(k) - base * Double(rows.count) / Double(n)
    }
    precondition(rowSharded || blocks.count == 1, "spectral: several blocks need row sharding")
    let scales = blocks.map { rowSharded ? 1 : Double($0.count) / Double(n) }
    let shares = rowSharded ? blocks.map(traceTerms) : [scales[0] * traceTerms(0..<n)]

    // ∂share/∂q per block (over its rows of q, or a scaled copy of the whole q), and each block's part
    // of ∂share/∂σ².
    let wantGrad = needsGrad(student), sigma2 = sg.sigma2
    var dq: [Tensor?] = [], gSigma: [[Double]] = []
    for (b, rows) in blocks.enumerated() {
        let gRows = rowSharded ? rows : 0..<n
        guard wantGrad && scales[b] > 0 && !gRows.isEmpty else { dq.append(nil); gSigma.append([0]); continue }
        let coef = -scales[b] / Double(k)
        let g = Tensor(uninitializedShape: [gRows.count, n])
        var part = 0.0
        for (r, i) in gRows.enumerated() {
            let ro = i - own.lowerBound
            let bi = -d[i] * d[i] * d[i] * alpha[ro]
            for j in 0..<n {
                let kk = ro * n + j
                let gw = coef * (d[i] * d[j] * Double(pi.ptr[kk]) + bi)
                let wv = Double(w.ptr[kk])
                part += gw * wv * Double(q.ptr[kk])
                g.ptr[r * n + j] = Float(-gw * wv / sigma2)
            }
        }
        dq.append(g); gSigma.append([part])
    }
    let gSigmaAll = try sums(gSigma, 1)[0]    // every rank, rows or not
    let dim = student.shape[1]
    return blocks.enumerated().map { b, rows in
        var grad: Tensor? = nil
        if let g = dq[b] {
            let gRows = rowSharded ? rows : 0..<n
            let add = Float(gSigmaAll / (sigma2 * sigma2) / pairs)
            for (r, i) in gRows.enumerated() {
                for j in 0..<n { g.ptr[r * n + j] = i == j ? 0 : g.ptr[r * n + j] + add }
            }
            let gu = Tensor.zeros([n, dim])
            squaredDistanceRowsBackward(g.ptr, x: sg.u.ptr, n: n, d: dim, rows: gRows, into: gu.ptr)
            for i in 0..<n {
                normalizeBackward(gu.ptr + i * dim, u: sg.u.ptr + i * dim, norm: sg.norms.ptr[i], count: dim)
            }
            grad = gu
        }
        let out = scalarTensor(shares[b])
        LossBlocks.recording(b) { recordFused(name, output: out, inputs: [student], grads: [grad]) }
        return LossShare(value: out, terms: [("spectral", shares[b])])
    }
}

/// `L = I − D^{-½} W D^{-½}` of a whole graph (`g` holds every row), row-major Float64 `n×n`.
func spectralLaplacian(_ g: SpectralRows) -> [Double] {
    let n = g.u.shape[0], w = g.w!
    var lap = [Double](repeating: 0, count: n * n)
    for i in 0..<n {
        for j in 0..<n { lap[i * n + j] = (i == j ? 1 : 0) - g.d[i] * Double(w.ptr[i * n + j]) * g.d[j] }
    }
    return lap
}

/// The teacher's `k` lowest Laplacian eigenvectors (the rows of a `[k, n]` Float64 array) and the mean
/// of their eigenvalues, from the graph rows `tg` this rank holds.
///
/// * dense: `L = I − D^{-½} W D^{-½}` whole (rebuilt here when `tg` holds only some rows) and `dsyevd_`.
/// * iterative: the `k` largest eigenpairs of `N = D^{-½} W D^{-½}` (`λ^L = 1 − θ`; `W` is a Gaussian
///   kernel, so `N` is PSD with eigenvalues in `[0, 1]`), the top one known in closed form
///   (`D^{½}1/‖D^{½}1‖`, `θ = 1`, locked) and the other `k − 1` by `topEigenBlockKrylov` with a block of
///   `k − 1 + max(8, k/4)` vectors: each rank multiplies its rows of `N` by the block and one all-gather
///   assembles the product; the start block is seeded and everything after the gather is replicated,
///   so every rank computes the same `U`. Residual test `‖N y − θ y‖₂ ≤ spectralTolerance` on the
///   `k − 1` wanted pairs (agreed by an all-reduce MAX); past `maxCycles` (`spectralCycleCap`) cycles it
///   falls back to dense (counted in `SpectralSolverStatistics.fallbacks`).
func spectralTeacherEigen(_ tg: SpectralRows, teacher: Tensor, k: Int, counts: [Int], comm: Communicator?,
                          solver: SpectralSolver, maxCycles: Int?, exact: SpectralBlocks? = nil,
                          chunks: [Range<Int>]? = nil) throws -> (ut: [Double], base: Double) {
    let n = teacher.shape[0], own = tg.rows, m = own.count
    func dense() throws -> ([Double], Double) {
        let lap = spectralLaplacian(own == 0..<n ? tg : try SpectralRows.whole(teacher, exact: exact))
        let (values, vectors) = try spectralEigen(lap, n: n)
        return (Array(vectors[0..<(k * n)]), values[0..<k].reduce(0, +) / Double(k))
    }
    guard solver == .iterative || (solver == .auto && spectralAutoIterative(n: n, k: k)) else {
        spectralStatistics.update { $0.dense += 1 }
        return try dense()
    }
    // This rank's rows of N, and the locked top eigenvector D^{½}1 (d = deg^{-½}).
    let w = tg.w!, d = tg.d
    var rowsN = [Double](repeating: 0, count: m * n)
    for r in 0..<m {
        let di = d[own.lowerBound + r]
        for j in 0..<n { rowsN[r * n + j] = di * Double(w.ptr[r * n + j]) * d[j] }
    }
    var top = d.map { 1 / $0 }
    let norm = top.reduce(0) { $0 + $1 * $1 }.squareRoot()
    for i in 0..<n { top[i] /= norm }
    /// `N x` for the rows of `x` (`[p, n]`): this rank's rows of the product, gathered, transposed back.
    func apply(_ x: UnsafePointer<Double>, _ p: Int, _ into: UnsafeMutablePointer<Double>) throws {
        var y = [Double](repeating: 0, count: m * p)
        rowsN.withUnsafeBufferPointer { a in
            y.withUnsafeMutableBufferPointer { c in
                for chunk in chunks ?? [own] where !chunk.isEmpty {     // one product per row block
                    let r = chunk.lowerBound - own.lowerBound
                    dgemm(transB: true, m: chunk.count, n: p, k: n, a: a.baseAddress! + r * n, lda: n, b: x, ldb: n,
                          c: c.baseAddress! + r * p, ldc: p)
                }
            }
        }
        if let comm { y = try comm.allGatherV(y, counts: counts.map { $0 * p }) }
        for i in 0..<n { for c in 0..<p { into[c * n + i] = y[i * p + c] } }
    }
    func agree(_ v: Double) throws -> Double { try comm?.allReduce(v, op: .max) ?? v }
    let block = spectralBlock(k)
    let r = try topEigenBlockKrylov(n: n, count: k - 1, locked: top, lockedValue: 1, block: block,
                                    blocksPerCycle: spectralBlocksPerCycle,
                                    maxCycles: maxCycles ?? spectralCycleCap(n: n, block: block),
                                    tolerance: spectralTolerance, apply: apply, agree: agree)
    spectralStatistics.update { $0.cycles += r.cycles }
    guard r.converged else {
        spectralStatistics.update { $0.fallbacks += 1 }
        return try dense()
    }
    spectralStatistics.update { $0.iterative += 1 }
    return (r.vectors, r.values.reduce(0) { $0 + (1 - $1) } / Double(k))
}

/// `spectral`: spectral graph alignment of the student embedding (or features) to the teacher
/// embedding's Laplacian, over all `B·V` rows. Without `k` it uses the class count (from the logits)
/// capped at half the rows. `solver` picks the teacher eigensolver; with `LossInputs.comm` set the term is
/// row-sharded.
public struct SpectralTerm: LossTerm {
    public let kind = "spectral"
    public var weight: Float, k: Int?, useFeatures: Bool
    public var solver: SpectralSolver
    public var needs: LossNeeds {
        let inputs: LossNeeds = [useFeatures ? .studentFeatures : .studentEmbedding, .teacherEmbedding]
        return k == nil ? inputs.union(.studentLogits) : inputs
    }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(useFeatures ? x.studentFeatures : x.studentEmbedding, kind,
                              useFeatures ? "student features" : "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let r = try spectralLoss(student: s, teacher: t, k: try eigenvectors(x), rows: x.shardRows, comm: x.comm,
                                 solver: solver)
        return LossShare(value: r.value, terms: [])     // one part: the objective's `loss/spectral` is all
    }

    /// Every loss block at once: `σ²` and its gradient term are sums over every block, and the teacher's
    /// eigenvectors come from products over every block's rows.
    public func evaluateBlocks(_ x: LossInputs) throws -> [LossShare] {
        guard x.exact else { return [try evaluate(x)] }
        try x.validate(kind)
        let s = try x.require(useFeatures ? x.studentFeatures : x.studentEmbedding, kind,
                              useFeatures ? "student features" : "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let blocks = SpectralBlocks(rows: x.plan.blockSize * x.views, global: x.plan.blocks)
        let shares = try spectralBlockShares(student: s, teacher: t, k: try eigenvectors(x),
                                             blocks: x.lossBlocks.map { rowRange($0, views: x.views) },
                                             comm: x.comm, solver: solver, exact: blocks)
        return shares.map { LossShare(value: $0.value, terms: []) }
    }

    /// A graph of `rows` rows has `rows` eigenvectors, and one row no spectrum: a `k` beyond them, or a single
    /// row, would fail at the step that builds it.
    public func refusal(rows: Int, graph: String) -> (key: String?, message: String)? {
        if rows < 2 { return (nil, "spectral needs a graph of at least 2 rows, but \(graph)") }
        guard let k, k > rows else { return nil }
        return ("k", "\(k) eigenvectors, but \(graph), so at most \(rows)")
    }

    /// `k`, or the class count (from the logits or proxies) capped at half the rows.
    func eigenvectors(_ x: LossInputs) throws -> Int {
        if let k { return k }
        guard let c = x.studentLogits?.shape.last ?? x.proxies?.shape.first else {
            throw LossError.invalidArgument(loss: kind, message: "k not set and the class count is unknown "
                                            + "(no logits or proxies)")
        }
        return max(1, min(c, x.rowCount / 2))
    }

    /// The `spectral` keys (`k` absent: the class count, at most rows/2).
    public static let parameters: [LossParameter] = [
        .integer("k", min: 1),
        .choice("input", "embedding", ["embedding", "features"]),
        .choice("solver", SpectralSolver.auto.rawValue, SpectralSolver.allCases.map(\.rawValue)),
    ]

    public static let descriptor = LossDescriptor(kind: "spectral", parameters: parameters,
                                                  fixtures: [("spectral", runFixture)]) { weight, v in
        SpectralTerm(weight: weight, k: v.integer("k"), useFeatures: v.choice("input") == "features",
                     solver: SpectralSolver(rawValue: v.choice("solver"))!)
    }

    /// Fixture `spectral`: inputs `student`, `teacher`; parameter `k` (required).
    static func runFixture(_ f: any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let s = try f.input("student"), t = try f.input("teacher")
        guard f.hasParameter("k") else {
            throw LossError.invalidArgument(loss: "spectral", message: "the case needs params.k")
        }
        s.requiresGrad = true
        let r = try spectralLoss(student: s, teacher: t, k: Int(f.parameter("k", 1)),
                                 rows: f.share(samples: s.shape[0]), comm: f.comm)
        r.value.backward()
        return (Double(r.value.item), [("grad_student", s.grad ?? Tensor.zeros(s.shape))])
    }
}
