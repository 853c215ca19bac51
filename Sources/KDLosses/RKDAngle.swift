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
///     P_jk = ⟨x_j − x_i, x_k − x_i⟩ = ½(q_ij + q_ik − q_jk),   a_ijk = P_jk c_ij c_ik,
///     c = 1/max(√q, ε)
///
/// (exactly the reference's function of `x`, degenerate points included). Backward, fused into the
/// same sweep over the upper triangle `j ≤ k` of each anchor block, with `G = Huber'(a^S − a^T)/n³`
/// and `w_jk = G_jk c_j c_k`: `∂q_jk −= ½w_jk` (both orders), `∂q_ij += Σ_k w_jk`,
/// `∂c_j = 2 Σ_k G_jk P_jk c_k`, `∂q_ij += ∂c_j · (−c_j³/2)` where `√q_ij > ε` — in the sweep as
/// `−c_j² Σ_k G_jk a_ijk`; the accumulated `∂q` (Float64) reaches `x` through one sgemm at the end.
/// Time `O(|rows|·n² + n²D)`; memory `O(n²)` (three Float64 `n×n` matrices); anchors are swept in
/// blocks of 8 so the `n×n` rows stream from memory once per block, four triplets per SIMD step
/// (n = 1024, 64 anchors: 159 ms forward + backward on one core). Term: `rkd_angle` (share, unweighted).
///
/// Two optional caps make it an unbiased estimate whose cost no longer grows as `n³`:
/// * `sampledAnchors` — only the anchors `i` in that set count, the sum scaled by `n / |set|`;
/// * `partners` — the vertices `j, k` run over that set `S` only (`|S| = P ≥ 2`, distinct rows), the
///   off-diagonal triplets (`j ≠ k`) scaled by `n(n−1) / (P(P−1))` and the diagonal ones (`j = k`) by
///   `n / P` (their probabilities of being sampled), so `E[share]` is the exact share.
/// With partners the squared distances are built from the anchors and partners to the partners only
/// (`O((a+P)·P·D)` time, three Float64 `[a+P, P]` matrices), the sweep is `O(a·P²)`, and the gradient
/// reaches the rows of both (a row gradient of those rows only). Use `rkdAngleAnchorSample` and
/// `rkdAnglePartnerSample` so every rank draws the same sets.
public func rkdAngleLoss(student: Tensor, teacher: Tensor, rows: Range<Int>? = nil,
                         sampledAnchors: [Int]? = nil, partners: [Int]? = nil) throws -> LossShare {
    let name = "rkd_angle"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    func checkSample(_ sample: [Int], _ what: String, least: Int) throws {
        guard sample.count >= least, sample.allSatisfy({ $0 >= 0 && $0 < n }), Set(sample).count == sample.count else {
            throw LossError.invalidArgument(loss: name, message: "sampled \(what) must be at least \(least) distinct "
                                            + "rows in 0..<\(n), got \(sample.count) of them")
        }
    }
    var anchorList = Array(rows)
    var scale = 1.0
    if let sampled = sampledAnchors {
        try checkSample(sampled, "anchors", least: 1)
        anchorList = sampled.filter { rows.contains($0) }.sorted()
        scale = Double(n) / Double(sampled.count)
    }
    var diagonalRatio = 1.0
    if let partners { try checkSample(partners, "partners", least: 2) }
    let partnerSet = partners.flatMap { $0.count < n ? $0.sorted() : nil }
    if let s = partnerSet {
        let p = Double(s.count), nn = Double(n)
        scale *= nn * (nn - 1) / (p * (p - 1))
        diagonalRatio = (nn / p) / (nn * (nn - 1) / (p * (p - 1)))
    }
    // The points the sweep reads: every row (all partners: the anchors index the rows themselves), or
    // the partners' rows followed by those of the anchors that are not partners. An anchor that is also
    // a partner is that one point, so its own triplets (`j = i`) are exactly degenerate, as in the full loss.
    var points: [Int]? = nil, anchorsAt = anchorList, partnerCount = n
    if let set = partnerSet {
        var position = [Int: Int](uniqueKeysWithValues: set.enumerated().map { ($1, $0) })
        var list = set
        for i in anchorList where position[i] == nil { position[i] = list.count; list.append(i) }
        anchorsAt = anchorList.map { position[$0]! }
        partnerCount = set.count
        points = list
    }
    // Those points' rows, copied; the sweep's gradient of the points goes back to their rows (`RowGradient`).
    let xs = try points.map { p in try withNoGrad { try gather(student, indices: p) } } ?? student
    let xt = try points.map { p in try withNoGrad { try gather(teacher, indices: p) } } ?? teacher
    let result = rkdAngleSweep(student: xs, teacher: xt, anchors: anchorsAt, partners: partnerCount,
                               invN3: scale / (Double(n) * Double(n) * Double(n)), diagonalRatio: diagonalRatio,
                               wantGrad: needsGrad(student))
    let out = scalarTensor(result.share)
    recordFused(name, output: out, inputs: [student],
                rowGrads: [result.grad.map { RowGradient(rows: points ?? Array(0..<n), values: $0) }])
    return LossShare(value: out, terms: [("rkd_angle", result.share)])
}

/// The blocked angle sweep of `rkdAngleLoss` over the points `x` (student) and `t` (teacher): anchors
/// `anchors` (indices of `x`'s rows), vertices `j, k` the first `partners` rows of `x`. Returns
/// the share `invN3 · Σ_i Σ_{j,k} Huber_1(a^S_ijk − a^T_ijk)` (the diagonal `j = k` weighted by an extra
/// `diagonalRatio`) and, with `wantGrad`, its gradient with respect to `x`.
func rkdAngleSweep(student: Tensor, teacher: Tensor, anchors anchorList: [Int], partners hi: Int,
                   invN3: Double, diagonalRatio: Double, wantGrad: Bool) -> (share: Double, grad: Tensor?) {
    let n = student.shape[0]
    let ds = student.shape[1]
    // The distances of every point to the partners only (`[n, hi]`, stride `hi`): the sweep reads no other.
    let qs = squaredDistancesDouble(student.ptr, n: n, d: ds, columns: hi)
    let qt = squaredDistancesDouble(teacher.ptr, n: n, d: teacher.shape[1], columns: hi)
    let gq: DoubleScratch? = wantGrad ? DoubleScratch.zeros(n * hi) : nil   // ∂q, unscaled by 1/n³ to the end
    let eps = Double(rowNormEpsilon)
    // Per anchor i, with α_k = ½c_k and β_k = ½c_k q_ik (student and teacher), every angle of the
    // anchor is a_jk = c_j (α_k (q_ij − q_jk) + β_k): two multiply-adds and a multiply per triplet.
    // With G = Huber'(r) (the 1/n³ applied at the end) and t_jk = G α_k, the fused backward adds
    //     ∂q_jk −= 2c_j t_jk,   ∂q_ij += Σ_k 2c_j t_jk (both orders),   γ_j = Σ_k G a_jk (both orders),
    // and at the end of the block ∂q_ij += −c_j² γ_j where √q_ij > ε (the ∂c_j = −c_j³/2 ∂√q chain).
    // Anchors run in blocks of `ab`, so each row j of q^S, q^T and ∂q is read once per block.
    let ab = 8
    let vecs = DoubleScratch(6 * hi * ab)
    var total = 0.0
    typealias V = SIMD4<Double>
    @inline(__always) func ld(_ p: UnsafeMutablePointer<Double>, _ k: Int) -> V {
        UnsafeRawPointer(p + k).loadUnaligned(as: V.self)
    }
    @inline(__always) func st(_ p: UnsafeMutablePointer<Double>, _ k: Int, _ v: V) {
        UnsafeMutableRawPointer(p + k).storeBytes(of: v, as: V.self)
    }

    for blockStart in stride(from: 0, to: anchorList.count, by: ab) {
        let anchors = anchorList[blockStart..<min(blockStart + ab, anchorList.count)]
        for (a, i) in anchors.enumerated() {
            let qsi = qs.ptr + i * hi, qti = qt.ptr + i * hi, v = vecs.ptr + 6 * hi * a
            for k in 0..<hi {
                let cs = 1 / max(qsi[k].squareRoot(), eps), ct = 1 / max(qti[k].squareRoot(), eps)
                v[k] = 0.5 * cs; v[hi + k] = 0.5 * cs * qsi[k]
                v[2 * hi + k] = 0.5 * ct; v[3 * hi + k] = 0.5 * ct * qti[k]
                v[4 * hi + k] = 0; v[5 * hi + k] = 0
            }
        }
        for j in 0..<hi {
            let qsj = qs.ptr + j * hi, qtj = qt.ptr + j * hi
            for (a, i) in anchors.enumerated() {
                let v = vecs.ptr + 6 * hi * a
                let aS = v, bS = v + hi, aT = v + 2 * hi, bT = v + 3 * hi, rowW = v + 4 * hi, gamma = v + 5 * hi
                let qsij = qs.ptr[i * hi + j], qtij = qt.ptr[i * hi + j]
                let csj = 2 * aS[j], ctj = 2 * aT[j]
                let qsijV = V(repeating: qsij), qtijV = V(repeating: qtij)
                let csjV = V(repeating: csj), ctjV = V(repeating: ctj)
                /// The student and teacher angles `a_jk = c_j(α_k(q_ij − q_jk) + β_k)` at k…k+3 and at k.
                /// (A helper returning `(a^S, r)` as one tuple made the sweep 36% slower, 209 vs 154 ms: kept apart.)
                @inline(__always) func studentAngle4(_ k: Int) -> V {
                    csjV * (ld(aS, k) * (qsijV - ld(qsj, k)) + ld(bS, k))
                }
                @inline(__always) func teacherAngle4(_ k: Int) -> V {
                    ctjV * (ld(aT, k) * (qtijV - ld(qtj, k)) + ld(bT, k))
                }
                @inline(__always) func studentAngle1(_ k: Int) -> Double { csj * (aS[k] * (qsij - qsj[k]) + bS[k]) }
                @inline(__always) func teacherAngle1(_ k: Int) -> Double { ctj * (aT[k] * (qtij - qtj[k]) + bT[k]) }
                // k = j: the diagonal entry, counted once (total gets 2·rowSum).
                let asd = studentAngle1(j), rd = asd - teacherAngle1(j)
                var rowSum = 0.5 * diagonalRatio * huberUnit(rd)
                var sumV = V(repeating: 0)
                var k = j + 1
                if let gq {
                    let gqj = gq.ptr + j * hi
                    let gd = diagonalRatio * huberUnitDerivative(rd)
                    var tj = gd * aS[j], gj = gd * asd
                    let c2 = 2 * csj, c2V = V(repeating: c2)
                    var tV = V(repeating: 0), gV = V(repeating: 0)
                    while k + 4 <= hi {
                        let sa = studentAngle4(k), r = sa - teacherAngle4(k)
                        sumV += huberUnit(r)
                        let g = huberUnitDerivative(r)
                        let t = g * ld(aS, k), tc = t * c2V
                        st(gqj, k, ld(gqj, k) - tc)
                        st(rowW, k, ld(rowW, k) + tc)
                        tV += t
                        let ga = g * sa
                        gV += ga
                        st(gamma, k, ld(gamma, k) + ga)
                        k += 4
                    }
                    tj += tV.sum(); gj += gV.sum()
                    while k < hi {
                        let sa = studentAngle1(k), r = sa - teacherAngle1(k)
                        rowSum += huberUnit(r)
                        let g = huberUnitDerivative(r)
                        let t = g * aS[k], tc = t * c2
                        gqj[k] -= tc; rowW[k] += tc; tj += t
                        gj += g * sa; gamma[k] += g * sa
                        k += 1
                    }
                    rowW[j] += tj * c2; gamma[j] += gj
                } else {
                    while k + 4 <= hi { sumV += huberUnit(studentAngle4(k) - teacherAngle4(k)); k += 4 }
                    while k < hi { rowSum += huberUnit(studentAngle1(k) - teacherAngle1(k)); k += 1 }
                }
                total += 2 * (rowSum + sumV.sum())
            }
        }
        if let gq {
            for (a, i) in anchors.enumerated() {
                let qsi = qs.ptr + i * hi, gqi = gq.ptr + i * hi, v = vecs.ptr + 6 * hi * a
                let aS = v, rowW = v + 4 * hi, gamma = v + 5 * hi
                for j in 0..<hi {
                    var w = rowW[j]
                    if qsi[j].squareRoot() > eps { let c = 2 * aS[j]; w -= c * c * gamma[j] }
                    gqi[j] += w
                }
            }
        }
    }
    // ∂x from ∂q (`[n, hi]`), transposed to the partners' rows `[hi, n]` for `squaredDistanceRowsBackward`.
    let grad = gq.map { gq in
        let g32 = Tensor(uninitializedShape: [hi, n])
        for i in 0..<n { for k in 0..<hi { g32.ptr[k * n + i] = Float(gq.ptr[i * hi + k] * invN3) } }
        let g = Tensor.zeros([n, ds])
        squaredDistanceRowsBackward(g32.ptr, x: student.ptr, n: n, d: ds, rows: 0..<hi, into: g.ptr)
        return g
    }
    return (total * invN3, grad)
}

/// The deterministic anchor sample of the capped RKD angle loss: `count` distinct rows of `0..<n`
/// drawn by `KDRandom(keys: seed, step, 0xA6)` — keyed by integers only, so every rank draws the same.
public func rkdAngleAnchorSample(rows n: Int, count: Int, seed: UInt64, step: Int) -> [Int] {
    var rng = KDRandom(keys: seed, UInt64(max(step, 0)), 0xA6)
    return Array(rng.permutation(n).prefix(max(1, min(count, n))))
}

/// The deterministic partner sample of the RKD angle loss: `count` distinct rows of `0..<n` (at least 2)
/// drawn by `KDRandom(keys: seed, step, 0xA7)` — independent of the anchor sample, the same on every rank.
public func rkdAnglePartnerSample(rows n: Int, count: Int, seed: UInt64, step: Int) -> [Int] {
    var rng = KDRandom(keys: seed, UInt64(max(step, 0)), 0xA7)
    return Array(rng.permutation(n).prefix(max(2, min(count, n))))
}
