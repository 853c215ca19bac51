import Foundation
import KDTensor

/// RKD angle loss (Park et al., CVPR 2019; source: lenscloth/RKD `metric/loss.py`), one rank's share
/// over the anchors `rows` of the gathered global batch (`n` rows):
///
///     e_ij = n(x_j − x_i),   a_ijk = ⟨e_ij, e_ik⟩,   n(v) = v / max(‖v‖, 1e-12)
///     share = (1/n³) Σ_{i∈rows} Σ_{j,k} Huber_1(a^S_ijk − a^T_ijk)
///
/// Degenerate triplets (j = i, k = i, equal rows) count in `n³`. The `n×n×n` tensor is never
/// materialised, and no per-anchor GEMM is needed: with the squared distances `q` (one Float64 Gram,
/// `O(n²D)`), the law of cosines gives every angle of anchor `i` elementwise,
///
///     P_jk = ⟨x_j − x_i, x_k − x_i⟩ = ½(q_ij + q_ik − q_jk),   a_ijk = P_jk c_ij c_ik,   c = 1/max(√q, ε)
///
/// (exactly the reference's function of `x`, degenerate points included). Backward, fused into the
/// same sweep over the upper triangle `j ≤ k` of each anchor block, with `G = Huber'(a^S − a^T)/n³`
/// and `w_jk = G_jk c_j c_k`: `∂q_jk −= ½w_jk` (both orders), `∂q_ij += Σ_k w_jk`,
/// `∂c_j = 2 Σ_k G_jk P_jk c_k`, `∂q_ij += ∂c_j · (−c_j³/2)` where `√q_ij > ε`; the accumulated `∂q`
/// (Float64) reaches `x` through one sgemm at the end. Time `O(|rows|·n² + n²D)`; memory `O(n²)`
/// (three Float64 `n×n` matrices). Term: `rkd_angle` (share, unweighted).
public func rkdAngleLoss(student: Tensor, teacher: Tensor, rows: Range<Int>? = nil) throws -> LossShare {
    let name = "rkd_angle"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let ds = student.shape[1]
    let wantGrad = needsGrad(student)

    let qs = squaredDistancesDouble(student.ptr, n: n, d: ds)
    let qt = squaredDistancesDouble(teacher.ptr, n: n, d: teacher.shape[1])
    let gq: DoubleScratch? = wantGrad ? DoubleScratch.zeros(n * n) : nil
    let eps = Double(lossNormEpsilon)
    let invN3 = 1 / (Double(n) * Double(n) * Double(n))
    var cs = [Double](repeating: 0, count: n), ct = [Double](repeating: 0, count: n)
    var rowW = [Double](repeating: 0, count: n), dc = [Double](repeating: 0, count: n)
    var total = 0.0

    for i in rows {
        let qsi = qs.ptr + i * n, qti = qt.ptr + i * n
        for j in 0..<n {
            cs[j] = 1 / max(qsi[j].squareRoot(), eps)
            ct[j] = 1 / max(qti[j].squareRoot(), eps)
        }
        var anchorSum = 0.0
        if let gq {
            for j in 0..<n { rowW[j] = 0; dc[j] = 0 }
            for j in 0..<n {
                let qsj = qs.ptr + j * n, qtj = qt.ptr + j * n, gqj = gq.ptr + j * n
                let csj = cs[j], ctj = ct[j], qsij = qsi[j], qtij = qti[j]
                var rowSum = 0.0, wj = 0.0, dcj = 0.0
                // k = j: the diagonal entry, counted once.
                do {
                    let p = 0.5 * (qsij + qsij - qsj[j]), a = p * csj * csj
                    let pt = 0.5 * (qtij + qtij - qtj[j]), at = pt * ctj * ctj
                    let r = a - at
                    let ar = abs(r)
                    rowSum += 0.5 * (ar <= 1 ? 0.5 * r * r : ar - 0.5)
                    let g = (ar <= 1 ? r : (r > 0 ? 1 : -1)) * invN3
                    let w = g * csj * csj
                    wj += w
                    dcj += 2 * g * p * csj
                }
                for k in (j + 1)..<max(j + 1, n) {
                    let p = 0.5 * (qsij + qsi[k] - qsj[k]), a = p * csj * cs[k]
                    let pt = 0.5 * (qtij + qti[k] - qtj[k]), at = pt * ctj * ct[k]
                    let r = a - at
                    let ar = abs(r)
                    rowSum += ar <= 1 ? 0.5 * r * r : ar - 0.5
                    let g = (ar <= 1 ? r : (r > 0 ? 1 : -1)) * invN3
                    let w = g * csj * cs[k]
                    gqj[k] -= w                 // ∂q_jk and ∂q_kj, −w/2 each (the backward symmetrises)
                    wj += w; rowW[k] += w
                    let gp = 2 * g * p
                    dcj += gp * cs[k]; dc[k] += gp * csj
                }
                anchorSum += 2 * rowSum
                rowW[j] += wj; dc[j] += dcj
            }
            let gqi = gq.ptr + i * n
            for j in 0..<n {
                var v = rowW[j]
                if qsi[j].squareRoot() > eps { v += dc[j] * (-0.5 * cs[j] * cs[j] * cs[j]) }
                gqi[j] += v
            }
        } else {
            for j in 0..<n {
                let qsj = qs.ptr + j * n, qtj = qt.ptr + j * n
                let csj = cs[j], ctj = ct[j], qsij = qsi[j], qtij = qti[j]
                let r0 = 0.5 * (qsij + qsij - qsj[j]) * csj * csj - 0.5 * (qtij + qtij - qtj[j]) * ctj * ctj
                var rowSum = 0.5 * (abs(r0) <= 1 ? 0.5 * r0 * r0 : abs(r0) - 0.5)
                for k in (j + 1)..<max(j + 1, n) {
                    let r = 0.5 * (qsij + qsi[k] - qsj[k]) * csj * cs[k] - 0.5 * (qtij + qti[k] - qtj[k]) * ctj * ct[k]
                    let ar = abs(r)
                    rowSum += ar <= 1 ? 0.5 * r * r : ar - 0.5
                }
                anchorSum += 2 * rowSum
            }
        }
        total += anchorSum
    }
    let share = total * invN3
    var grad: Tensor? = nil
    if let gq {
        let g32 = Tensor(uninitializedShape: [n, n])
        for k in 0..<(n * n) { g32.ptr[k] = Float(gq.ptr[k]) }
        let g = Tensor.zeros([n, ds])
        squaredDistancesBackward(g32.ptr, x: student.ptr, n: n, d: ds, into: g.ptr)
        grad = g
    }
    let out = scalarTensor(share)
    recordFused(name, output: out, inputs: [student], grads: [grad])
    return LossShare(value: out, terms: [("rkd_angle", share)])
}
