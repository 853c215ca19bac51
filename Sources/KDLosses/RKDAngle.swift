import Foundation
import CBLAS
import KDTensor

/// RKD angle loss (Park et al., CVPR 2019; source: lenscloth/RKD `metric/loss.py`), one rank's share
/// over the anchors `rows` of the gathered global batch (`n` rows):
///
///     e_ij = n(x_j − x_i),   a_ijk = ⟨e_ij, e_ik⟩,   n(v) = v / max(‖v‖, 1e-12)
///     share = (1/n³) Σ_{i∈rows} Σ_{j,k} Huber_1(a^S_ijk − a^T_ijk)
///
/// Degenerate triplets (j = i, k = i, or equal rows) count in `n³`. The `n×n×n` tensor is never
/// materialised: for each anchor `i` the `n×D` matrix `E_i` of normalised differences is built and the
/// angle block `A_i = E_i E_iᵀ` comes from one `ssyrk` per side (teacher side constant). Backward,
/// fused into the same sweep: `H = Huber'(A^S_i − A^T_i)/n³` (symmetric), `∂E_i = 2 H E_i` (one
/// `ssymm`), then through the normalisation, `∂x_j += ∂v_ij`, `∂x_i −= Σ_j ∂v_ij`. Memory
/// `O(n² + n·D)` scratch; time `O(|rows|·n²·(D_S + D_T))`. Term: `rkd_angle` (share, unweighted).
public func rkdAngleLoss(student: Tensor, teacher: Tensor, rows: Range<Int>? = nil) throws -> LossShare {
    let name = "rkd_angle"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let ds = student.shape[1], dt = teacher.shape[1]
    let wantGrad = needsGrad(student)

    let es = Tensor(uninitializedShape: [n, ds]), et = Tensor(uninitializedShape: [n, dt])
    let ns = Tensor(uninitializedShape: [n]), nt = Tensor(uninitializedShape: [n])
    let asb = Tensor(uninitializedShape: [n, n]), atb = Tensor(uninitializedShape: [n, n])
    let ge: Tensor? = wantGrad ? Tensor(uninitializedShape: [n, ds]) : nil
    let grad: Tensor? = wantGrad ? Tensor.zeros([n, ds]) : nil
    let invN3 = 1 / (Double(n) * Double(n) * Double(n))
    var total = 0.0

    /// Rows `e_j = n(x_j − x_i)` of one anchor into `e`, norms `‖x_j − x_i‖` into `norms`.
    func differences(_ x: Tensor, anchor i: Int, d: Int, into e: Tensor, norms: Tensor) {
        let xi = x.ptr + i * d
        for j in 0..<n {
            let xj = x.ptr + j * d, ej = e.ptr + j * d
            var s = 0.0
            for c in 0..<d { let v = xj[c] - xi[c]; ej[c] = v; s += Double(v) * Double(v) }
            let r = Float(s.squareRoot())
            norms.ptr[j] = r
            let inv = 1 / max(r, lossNormEpsilon)
            for c in 0..<d { ej[c] *= inv }
        }
    }

    for i in rows {
        differences(student, anchor: i, d: ds, into: es, norms: ns)
        differences(teacher, anchor: i, d: dt, into: et, norms: nt)
        // Upper triangles (row-major j ≤ k) of A = E Eᵀ.
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(ds), 1, es.ptr, Int32(ds), 0, asb.ptr, Int32(n))
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(dt), 1, et.ptr, Int32(dt), 0, atb.ptr, Int32(n))
        var blockSum = 0.0
        for j in 0..<n {
            let a = asb.ptr + j * n, b = atb.ptr + j * n
            var rowSum: Float = 0
            let diagDiff = a[j] - b[j]
            rowSum += 0.5 * huber(diagDiff, 1)
            if wantGrad { a[j] = huberGrad(diagDiff, 1) }
            for k in (j + 1)..<max(j + 1, n) {
                let r = a[k] - b[k]
                rowSum += huber(r, 1)
                if wantGrad { a[k] = huberGrad(r, 1) }
            }
            blockSum += 2 * Double(rowSum)
        }
        total += blockSum
        guard let ge, let grad else { continue }
        // ∂E = 2·H·E / n³ with H symmetric (upper triangle stored).
        cblas_ssymm(CblasRowMajor, CblasLeft, CblasUpper, Int32(n), Int32(ds), Float(2 * invN3), asb.ptr, Int32(n),
                    es.ptr, Int32(ds), 0, ge.ptr, Int32(ds))
        let gi = grad.ptr + i * ds
        for j in 0..<n {
            let gj = ge.ptr + j * ds
            normalizeBackward(gj, u: es.ptr + j * ds, norm: ns.ptr[j], count: ds)
            let gxj = grad.ptr + j * ds
            for c in 0..<ds { gxj[c] += gj[c]; gi[c] -= gj[c] }
        }
    }
    let share = total * invN3
    let out = scalarTensor(share)
    recordFused(name, output: out, inputs: [student], grads: [grad])
    return LossShare(value: out, terms: [("rkd_angle", share)])
}
