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
/// (three Float64 `n×n` matrices); anchors are swept in blocks of 8 so the `n×n` rows stream
/// from memory once per block. Term: `rkd_angle` (share, unweighted).
///
/// `sampledAnchors` (optional) caps the work: only the anchors `i` in that set count, the sum scaled by
/// `n / |set|` (an unbiased estimate of the full loss). Use `rkdAngleAnchorSample` so every rank
/// draws the same set.
public func rkdAngleLoss(student: Tensor, teacher: Tensor, rows: Range<Int>? = nil,
                         sampledAnchors: [Int]? = nil) throws -> LossShare {
    let name = "rkd_angle"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    var anchorList = Array(rows)
    var scale = 1.0
    if let sampled = sampledAnchors {
        guard !sampled.isEmpty, sampled.allSatisfy({ $0 >= 0 && $0 < n }), Set(sampled).count == sampled.count else {
            throw LossError.invalidArgument(loss: name, message: "sampled anchors must be distinct rows in 0..<\(n), got \(sampled.count) of them")
        }
        anchorList = sampled.filter { rows.contains($0) }.sorted()
        scale = Double(n) / Double(sampled.count)
    }
    let ds = student.shape[1]
    let wantGrad = needsGrad(student)

    let qs = squaredDistancesDouble(student.ptr, n: n, d: ds)
    let qt = squaredDistancesDouble(teacher.ptr, n: n, d: teacher.shape[1])
    let gq: DoubleScratch? = wantGrad ? DoubleScratch.zeros(n * n) : nil
    let eps = Double(lossNormEpsilon)
    let invN3 = scale / (Double(n) * Double(n) * Double(n))
    // Anchors run in blocks of `ab`, so each row j of q^S, q^T and ∂q is streamed once per block
    // (the sweep is memory-bound otherwise). Per anchor: c^S, c^T, Σ_k w_jk, ∂c_j.
    let ab = 8
    let vecs = DoubleScratch(4 * n * ab)
    var total = 0.0

    for blockStart in stride(from: 0, to: anchorList.count, by: ab) {
        let anchors = anchorList[blockStart..<min(blockStart + ab, anchorList.count)]
        for (a, i) in anchors.enumerated() {
            let qsi = qs.ptr + i * n, qti = qt.ptr + i * n, v = vecs.ptr + 4 * n * a
            for j in 0..<n {
                v[j] = 1 / max(qsi[j].squareRoot(), eps)
                v[n + j] = 1 / max(qti[j].squareRoot(), eps)
                v[2 * n + j] = 0; v[3 * n + j] = 0
            }
        }
        for j in 0..<n {
            let qsj = qs.ptr + j * n, qtj = qt.ptr + j * n
            for (a, i) in anchors.enumerated() {
                let qsi = qs.ptr + i * n, qti = qt.ptr + i * n, v = vecs.ptr + 4 * n * a
                let cs = v, ct = v + n, rowW = v + 2 * n, dc = v + 3 * n
                let csj = cs[j], ctj = ct[j], qsij = qsi[j], qtij = qti[j]
                // k = j: the diagonal entry, counted once (P_jj = q_ij).
                let pd = 0.5 * (qsij + qsij - qsj[j])
                let rd = pd * csj * csj - 0.5 * (qtij + qtij - qtj[j]) * ctj * ctj
                let md = min(abs(rd), 1)
                var rowSum = 0.5 * md * (abs(rd) - 0.5 * md)
                if let gq {
                    let gqj = gq.ptr + j * n
                    let gd = max(min(rd, 1), -1) * invN3
                    var wj = gd * csj * csj, dcj = 2 * gd * pd * csj
                    // Four k at a time (SIMD4<Double>), then the scalar tail.
                    var k = j + 1
                    if n - k >= 4 {
                        typealias V = SIMD4<Double>
                        @inline(__always) func ld(_ p: UnsafeMutablePointer<Double>, _ k: Int) -> V {
                            UnsafeRawPointer(p + k).loadUnaligned(as: V.self)
                        }
                        @inline(__always) func st(_ p: UnsafeMutablePointer<Double>, _ k: Int, _ v: V) {
                            UnsafeMutableRawPointer(p + k).storeBytes(of: v, as: V.self)
                        }
                        let qsiM = UnsafeMutablePointer(mutating: qsi), qtiM = UnsafeMutablePointer(mutating: qti)
                        let qsjM = UnsafeMutablePointer(mutating: qsj), qtjM = UnsafeMutablePointer(mutating: qtj)
                        var sumV = V(repeating: 0), wV = V(repeating: 0), dcV = V(repeating: 0)
                        let one = V(repeating: 1), half = V(repeating: 0.5)
                        while k + 4 <= n {
                            let ck = ld(cs, k)
                            let p = half * (qsij + ld(qsiM, k) - ld(qsjM, k))
                            let r = p * (csj * ck) - half * (qtij + ld(qtiM, k) - ld(qtjM, k)) * (ctj * ld(ct, k))
                            let ar = r.replacing(with: -r, where: r .< 0)
                            let m = pointwiseMin(ar, one)
                            sumV += m * (ar - half * m)
                            let g = pointwiseMax(pointwiseMin(r, one), -one) * invN3
                            let w = g * (csj * ck)
                            st(gqj, k, ld(gqj, k) - w)
                            wV += w
                            st(rowW, k, ld(rowW, k) + w)
                            let gp = 2 * g * p
                            dcV += gp * ck
                            st(dc, k, ld(dc, k) + gp * csj)
                            k += 4
                        }
                        rowSum += sumV.sum(); wj += wV.sum(); dcj += dcV.sum()
                    }
                    for k in k..<max(k, n) {
                        let ck = cs[k]
                        let p = 0.5 * (qsij + qsi[k] - qsj[k])
                        let r = p * csj * ck - 0.5 * (qtij + qti[k] - qtj[k]) * ctj * ct[k]
                        let ar = abs(r), m = min(ar, 1)
                        rowSum += m * (ar - 0.5 * m)                  // Huber_1
                        let g = max(min(r, 1), -1) * invN3            // Huber_1'
                        let w = g * csj * ck
                        gqj[k] -= w             // ∂q_jk and ∂q_kj, −w/2 each (the backward symmetrises)
                        wj += w; rowW[k] += w
                        let gp = 2 * g * p
                        dcj += gp * ck; dc[k] += gp * csj
                    }
                    rowW[j] += wj; dc[j] += dcj
                } else {
                    for k in (j + 1)..<max(j + 1, n) {
                        let r = 0.5 * (qsij + qsi[k] - qsj[k]) * csj * cs[k] - 0.5 * (qtij + qti[k] - qtj[k]) * ctj * ct[k]
                        let ar = abs(r), m = min(ar, 1)
                        rowSum += m * (ar - 0.5 * m)
                    }
                }
                total += 2 * rowSum
            }
        }
        if let gq {
            for (a, i) in anchors.enumerated() {
                let qsi = qs.ptr + i * n, gqi = gq.ptr + i * n, v = vecs.ptr + 4 * n * a
                let cs = v, rowW = v + 2 * n, dc = v + 3 * n
                for j in 0..<n {
                    var w = rowW[j]
                    if qsi[j].squareRoot() > eps { w += dc[j] * (-0.5 * cs[j] * cs[j] * cs[j]) }
                    gqi[j] += w
                }
            }
        }
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

/// The deterministic anchor sample of the capped RKD angle loss: `count` distinct rows of `0..<n`
/// drawn by `KDRandom(keys: seed, step, 0xA6)` — keyed by integers only, so every rank draws the same.
public func rkdAngleAnchorSample(rows n: Int, count: Int, seed: UInt64, step: Int) -> [Int] {
    var rng = KDRandom(keys: seed, UInt64(max(step, 0)), 0xA6)
    return Array(rng.permutation(n).prefix(max(1, min(count, n))))
}
