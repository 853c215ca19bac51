import KDCore
import KDTensor

/// RKD distance loss (Park et al., CVPR 2019; source: lenscloth/RKD `metric/loss.py`, `metric/utils.py`),
/// one rank's share over the anchor rows `rows` of the gathered global batch (`n` rows):
///
///     d_ij = sqrt(max(‖x_i‖² + ‖x_j‖² − 2 x_i·x_j, 1e-12)),  d_ii := 0,   μ = mean{ d_ij : d_ij > 0 }
///     share = (1/n²) Σ_{i∈rows} Σ_j Huber_1(d^S_ij/μ_s − d^T_ij/μ_t)
///
/// `μ_s` is computed from the full gathered student matrix on every rank and is differentiable (its
/// gradient reaches every row, not only the shard's); `μ_t` is constant. The clamp makes every
/// off-diagonal distance positive, so `μ` is the off-diagonal mean. Backward, with
/// `h_ij = Huber'(r_ij)/n²` on the shard's rows: `∂/∂d_ij = h_ij/μ_s − (Σ h·d)/(μ_s² n(n−1))` off the
/// diagonal, then `∂d/∂q = 1/(2d)` where unclamped and `∂q/∂x` by one sgemm. Memory `O(n²)`.
/// Term: `rkd_distance` (share, unweighted).
///
/// With `comm` (row-sharded, docs/losses.md "share contract"): only the shard's rows of the two distance
/// matrices are built, in tiles (`O(|rows|·n·D)` time, `O(tile·n)` memory; `rkdDistanceBlockShares`);
/// `μ_s`, `μ_t` come from the ranks' row sums by one all-reduce and `Σ h·d` (the `μ_s` term of the
/// gradient) by a second, both in forward. The distances are symmetric, so rank `r`'s gradient is its
/// own rows' whole gradient (both sides of each of their pairs, the `μ_s` term included), and the ranks'
/// gradients add up to the one-process gradient. Every rank of `comm` must call it (a rank may have no rows).
public func rkdDistanceLoss(student: Tensor, teacher: Tensor, rows: Range<Int>? = nil,
                            comm: Communicator? = nil, tileRows: Int? = nil) throws -> LossShare {
    let name = "rkd_distance"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    guard n >= 2 else { throw LossError.invalidArgument(loss: name, message: "needs at least 2 rows, got \(n)") }
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    if let comm {
        return try rkdDistanceRowShare(student: student, teacher: teacher, rows: rows, comm: comm, tileRows: tileRows)
    }
    let d = student.shape[1]
    let pairs = Double(n * (n - 1))
    let (ds, sumS, clampedS) = rkdDistanceRows(student, rows: 0..<n)
    let (dt, sumT, _) = withNoGrad { rkdDistanceRows(teacher, rows: 0..<n) }
    let muS = sumS / pairs, muT = sumT / pairs

    let invN2 = 1 / Double(n * n)
    let wantGrad = needsGrad(student)
    let gd: Tensor? = wantGrad ? Tensor.zeros([n, n]) : nil
    var total = 0.0, hd = 0.0
    let invS = 1 / muS, invT = 1 / muT
    for i in rows {
        var rowSum = 0.0
        for j in 0..<n {
            let r = Float(Double(ds.ptr[i * n + j]) * invS - Double(dt.ptr[i * n + j]) * invT)
            rowSum += Double(huber(r, 1))
            if let gd {
                let h = Double(huberDerivative(r, 1)) * invN2
                gd.ptr[i * n + j] = Float(h * invS)
                hd += h * Double(ds.ptr[i * n + j])
            }
        }
        total += rowSum
    }
    let share = total * invN2
    if let gd {
        // μ_s term reaches every off-diagonal entry; then ∂d/∂q = 1/(2d) where q was not clamped.
        let cMu = Float(-hd * invS * invS / Double(n * (n - 1)))
        for i in 0..<n {
            for j in 0..<n {
                let k = i * n + j
                if clampedS[k] { gd.ptr[k] = 0; continue }
                gd.ptr[k] = (gd.ptr[k] + cMu) / (2 * ds.ptr[k])
            }
        }
    }
    return squaredDistanceShare(name, term: "rkd_distance", value: share, x: student, dq: gd, n: n, d: d)
}

/// The rows `rows` of RKD's distance matrix of `x` (`[rows.count, n]`: `d_ij = √max(q_ij, ε)`, `d_ii = 0`),
/// their sum, and which entries the clamp held at `√ε` (the diagonal included).
func rkdDistanceRows(_ x: Tensor, rows: Range<Int>) -> (Tensor, Double, [Bool]) {
    let n = x.shape[0], m = rows.count, eps: Float = 1e-12
    let q = Tensor(uninitializedShape: [m, n])
    squaredDistanceRows(x.ptr, n: n, d: x.shape[1], rows: rows, into: q.ptr)
    var clamped = [Bool](repeating: false, count: m * n)
    var s = 0.0
    for (r, i) in rows.enumerated() {
        for j in 0..<n {
            let k = r * n + j
            if i == j { q.ptr[k] = 0; clamped[k] = true; continue }
            if q.ptr[k] < eps { clamped[k] = true }
            q.ptr[k] = max(q.ptr[k], eps).squareRoot()
            s += Double(q.ptr[k])
        }
    }
    return (q, s, clamped)
}

/// `rkdDistanceLoss` row-sharded over `comm`: the shard's rows of the distance matrices only.
func rkdDistanceRowShare(student: Tensor, teacher: Tensor, rows: Range<Int>, comm: Communicator,
                         tileRows: Int? = nil) throws -> LossShare {
    try rkdDistanceBlockShares(student: student, teacher: teacher, blocks: [rows], tileRows: tileRows) {
        try blockSums($0, count: $1, comm: comm, exactBlocks: nil)
    }[0]
}

/// RKD distance over the anchor rows of each loss block of `blocks` (row ranges; `LossBlocks`), one share
/// per block, each recorded as its block's. `sums(partials, count)` adds per-block vectors over every
/// block of every rank (`LossInputs.blockSums`): `Σd` of student and teacher for `μ_s`, `μ_t`, then
/// `Σ h·d` for the `μ_s` term of the gradient. A block's rows are built in tiles of `tileRows` rows
/// (default `pairwiseTileRows(columns: n)`), three times (for the sums, for the values and `Σ h·d`, for the
/// gradient), so memory stays `O(tile·n)` whatever the shard; every tile by its own kernel calls, so a
/// block's values and gradient do not depend on the rank's other blocks. The distances are symmetric, so
/// each block's gradient is on its own rows only (`symmetricSquaredDistanceRowsBackward`).
func rkdDistanceBlockShares(student: Tensor, teacher: Tensor, blocks: [Range<Int>], tileRows: Int? = nil,
                            sums: ([[Double]], Int) throws -> [Double]) throws -> [LossShare] {
    let n = student.shape[0], d = student.shape[1]
    func tiles(_ rows: Range<Int>) -> [Range<Int>] { pairwiseTiles(rows, columns: n, tileRows: tileRows) }
    // ① Σd of each block, for μ_s and μ_t.
    let distanceSums = blocks.map { rows -> [Double] in
        tiles(rows).reduce(into: [0.0, 0.0]) { s, tile in
            s[0] += rkdDistanceRows(student, rows: tile).1
            s[1] += withNoGrad { rkdDistanceRows(teacher, rows: tile).1 }
        }
    }
    let total = try sums(distanceSums, 2)
    let pairs = Double(n * (n - 1)), invS = pairs / total[0], invT = pairs / total[1], invN2 = 1 / Double(n * n)
    /// `h_ij = Huber'(d^S_ij/μ_s − d^T_ij/μ_t)/n²` and the Huber value of one tile's entry `k`.
    func residual(_ s: Float, _ t: Float) -> (huber: Double, h: Double) {
        let r = Float(Double(s) * invS - Double(t) * invT)
        return (Double(huber(r, 1)), Double(huberDerivative(r, 1)) * invN2)
    }
    // ② each block's value and Σ h·d.
    var values: [Double] = [], hds: [[Double]] = []
    for rows in blocks {
        var huberSum = 0.0, hd = 0.0
        for tile in tiles(rows) {
            let s = rkdDistanceRows(student, rows: tile).0, t = withNoGrad { rkdDistanceRows(teacher, rows: tile).0 }
            for k in 0..<(tile.count * n) {
                let (v, h) = residual(s.ptr[k], t.ptr[k])
                huberSum += v; hd += h * Double(s.ptr[k])
            }
        }
        values.append(huberSum * invN2); hds.append([hd])
    }
    let hdAll = try sums(hds, 1)[0]     // Σ over every block of Σ h·d: the μ_s term of every block's gradient
    let cMu = Float(-hdAll * invS * invS / pairs)
    // ③ each block's gradient, on its own rows: ∂/∂d_ij = h_ij/μ_s + cMu, then ∂d/∂q = 1/(2d) where
    // unclamped.
    let wantGrad = needsGrad(student)
    return blocks.enumerated().map { b, rows in
        var grad: RowGradient? = nil
        if wantGrad {
            let g = Tensor.zeros([rows.count, d])
            for tile in tiles(rows) {
                let (s, _, clamped) = rkdDistanceRows(student, rows: tile)
                let t = withNoGrad { rkdDistanceRows(teacher, rows: tile).0 }
                let gd = Tensor(uninitializedShape: [tile.count, n])
                for k in 0..<(tile.count * n) {
                    let h = Float(residual(s.ptr[k], t.ptr[k]).h * invS)
                    gd.ptr[k] = clamped[k] ? 0 : (h + cMu) / (2 * s.ptr[k])
                }
                symmetricSquaredDistanceRowsBackward(gd.ptr, x: student.ptr, n: n, d: d, rows: tile,
                                                     into: g.ptr + (tile.lowerBound - rows.lowerBound) * d)
            }
            grad = RowGradient(rows: rows, values: g)
        }
        let out = scalarTensor(values[b])
        LossBlocks.recording(b) { recordFused("rkd_distance", output: out, inputs: [student], rowGrads: [grad]) }
        return LossShare(value: out, terms: [("rkd_distance", values[b])])
    }
}
