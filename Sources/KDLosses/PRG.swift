import KDTensor

/// Settings of the PRG loss (`docs/losses.md` "PRG"; the edge and weight constants are KDGraph's own).
/// Keys, defaults and ranges: `PRGParameters.keys`, written once.
public struct PRGParameters: Equatable {
    /// KD temperature `T` of the node term.
    public var temperature: Float
    /// Sample–proxy edge temperature `τ_e`.
    public var edgeTemperature: Float
    public var nodeWeight: Float
    public var edgeWeight: Float
    public var pseudoLabelWeight: Float

    /// The `prg` keys. The teacher's `τ_clip` is `teacher.clip_scale` (the teacher computes the prompt
    /// logits and proxies before any loss runs); a `clip_scale` in the loss entry is refused.
    public static let keys: [LossParameter] = [
        .number("temperature", 4, min: 0, exclusiveMin: true),
        .number("edge_temperature", 0.1, min: 0, exclusiveMin: true),
        .number("node_weight", 1, min: 0),
        .number("edge_weight", 1, min: 0),
        .number("pseudo_label_weight", 1, min: 0),
        .refused("clip_scale", replacement: "teacher.clip_scale"),
    ]
    /// Every key at its default.
    public static let defaults = PRGParameters(LossParameterValues(defaults: keys))

    public init(_ v: LossParameterValues) {
        temperature = v.float("temperature"); edgeTemperature = v.float("edge_temperature")
        nodeWeight = v.float("node_weight"); edgeWeight = v.float("edge_weight")
        pseudoLabelWeight = v.float("pseudo_label_weight")
    }
}

/// Proxy Relational Graph loss (Xu et al., arXiv 2408.12248; `docs/losses.md` "PRG"), annotation-free, one rank's
/// share over the rows `rows` of the gathered global batch (`n` rows). With `u = n(·)` row-normalised
/// embeddings (student `s` projected to the teacher's dimension), proxies `p_c`:
///
///     A_ic = σ_c(⟨u_i, p_c⟩ / τ_e),   G_ij = ⟨u_i, u_j⟩
///     L_node = (1/n) Σ_i (1 − ⟨u^S_i, u^T_i⟩) + T² (1/n) Σ_i KL(σ(z^T_i/T) ‖ σ(z^S_i/T))
///     L_edge = (1/n) Σ_i KL(A^T_i ‖ A^S_i) + (1/n²) Σ_{i,j} Huber_1(G^S_ij − G^T_ij)
///     L_pl   = (1/n) Σ_i CE(z^S_i, argmax_c z^T_i)          (no ground-truth label; ties → lowest c)
///     L_PRG  = λ_node L_node + λ_edge L_edge + λ_pl L_pl
///
/// The shard takes the per-sample terms of its rows and the sample–sample rows `i ∈ rows` (all `j`).
/// Backward (fused): `∂z^S_i = λ_node (T/n)(σ(z^S_i/T) − σ(z^T_i/T)) + λ_pl (σ(z^S_i) − onehot)/n`;
/// `∂u^S_i = −λ_node u^T_i/n + λ_edge (A^S_i − A^T_i) P / (n τ_e) + 2 H_i u^S` with
/// `H = λ_edge Huber'(G^S − G^T)/n²` — `H` is symmetric, so the `j = i` side of every pair gives row `i`
/// as much as its own side, and the shard's gradient is on its own rows only (one sgemm per tile); then
/// through `n(s)`. The pairs are built in tiles of `tileRows` rows (default `pairwiseTileRows(columns: n)`):
/// memory `O(min(|rows|, tile)·n)`. Terms: `node`, `edge`, `pseudo_label` (shares, unweighted).
public func prgLoss(studentEmbedding s: Tensor, studentLogits zs: Tensor, teacherEmbedding t: Tensor,
                    teacherLogits zt: Tensor, proxies: Tensor, parameters p: PRGParameters = .defaults,
                    rows: Range<Int>? = nil, tileRows: Int? = nil) throws -> LossShare {
    let name = "prg"
    try check2D(name, "student embedding", s)
    let n = s.shape[0], d = s.shape[1]
    try check2D(name, "teacher embedding", t, rows: n, cols: d)
    try check2D(name, "student logits", zs, rows: n)
    let c = zs.shape[1]
    try check2D(name, "teacher logits", zt, rows: n, cols: c)
    try check2D(name, "proxies", proxies, rows: c, cols: d)
    guard p.temperature > 0, p.edgeTemperature > 0 else {
        throw LossError.invalidArgument(loss: name, message: "temperature \(p.temperature) and edge_temperature "
                                        + "\(p.edgeTemperature) must be > 0")
    }
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let r0 = rows.lowerBound, nr = rows.count
    let wantS = needsGrad(s), wantZ = needsGrad(zs)
    let invN = 1 / Double(n)

    let uS = Tensor(uninitializedShape: [n, d]), normS = Tensor(uninitializedShape: [n])
    let uT = Tensor(uninitializedShape: [n, d]), normT = Tensor(uninitializedShape: [n])
    normalizeRows(s.ptr, rows: n, cols: d, into: uS.ptr, norms: normS.ptr)
    normalizeRows(t.ptr, rows: n, cols: d, into: uT.ptr, norms: normT.ptr)
    // The gradients of the shard's rows only (row `i` at `i − r0`).
    let gu: Tensor? = wantS ? Tensor.zeros([nr, d]) : nil
    let gz: Tensor? = wantZ ? Tensor.zeros([nr, c]) : nil

    // Node: cosine part and KD part; pseudo-label CE.
    var cosSum = 0.0, klSum = 0.0, plSum = 0.0
    let T = Double(p.temperature)
    var ls = [Double](repeating: 0, count: c), lt = [Double](repeating: 0, count: c)
    for i in rows {
        let us = uS.ptr + i * d, ut = uT.ptr + i * d
        var dot = 0.0
        for q in 0..<d { dot += Double(us[q]) * Double(ut[q]) }
        cosSum += 1 - dot
        if let gu {
            let g = gu.ptr + (i - r0) * d, w = Float(-Double(p.nodeWeight) * invN)
            for q in 0..<d { g[q] += w * ut[q] }
        }
        let zsi = zs.ptr + i * c, zti = zt.ptr + i * c
        rowLogSoftmax(zsi, count: c, invT: 1 / T, into: &ls)
        rowLogSoftmax(zti, count: c, invT: 1 / T, into: &lt)
        klSum += rowKLDivergence(logP: lt, logQ: ls, count: c)
        if let gz {
            rowKLGradient(logP: lt, logQ: ls, count: c, scale: Double(p.nodeWeight) * T * invN,
                          into: gz.ptr + (i - r0) * c, accumulate: true)
        }
        let y = rowArgmax(zti, count: c)
        plSum += rowCrossEntropy(zsi, count: c, label: y, scale: Double(p.pseudoLabelWeight) * invN,
                                 grad: gz.map { $0.ptr + (i - r0) * c }, scratch: &ls)
    }
    let node = (cosSum + T * T * klSum) * invN

    // Sample–proxy edges over the shard's rows: logits ⟨u_i, p_c⟩/τ_e.
    var scSum = 0.0
    if nr > 0 {
        let invTau = 1 / p.edgeTemperature
        let aS = Tensor(uninitializedShape: [nr, c]), aT = Tensor(uninitializedShape: [nr, c])
        sgemm(transA: false, transB: true, m: nr, n: c, k: d, alpha: invTau, a: uS.ptr + r0 * d, lda: d,
              b: proxies.ptr, ldb: d, c: aS.ptr, ldc: c)
        sgemm(transA: false, transB: true, m: nr, n: c, k: d, alpha: invTau, a: uT.ptr + r0 * d, lda: d,
              b: proxies.ptr, ldb: d, c: aT.ptr, ldc: c)
        for r in 0..<nr {
            rowLogSoftmax(aS.ptr + r * c, count: c, invT: 1, into: &ls)
            rowLogSoftmax(aT.ptr + r * c, count: c, invT: 1, into: &lt)
            scSum += rowKLDivergence(logP: lt, logQ: ls, count: c)
            // ∂/∂logit = λ_edge (A^S − A^T)/n, then ∂u = ∂logit · P / τ_e (sgemm below); the row of
            // logits is overwritten by its gradient.
            rowKLGradient(logP: lt, logQ: ls, count: c, scale: Double(p.edgeWeight) * invN * Double(invTau),
                          into: aS.ptr + r * c, accumulate: false)
        }
        if let gu {
            sgemm(transA: false, transB: false, m: nr, n: d, k: c, a: aS.ptr, lda: c, b: proxies.ptr, ldb: d,
                  beta: 1, c: gu.ptr, ldc: d)
        }
    }

    // Sample–sample edges: rows i ∈ shard, all j, tile by tile.
    var ssSum = 0.0
    let w = Float(Double(p.edgeWeight) * invN * invN)
    for tile in pairwiseTiles(rows, columns: n, tileRows: tileRows) {
        let m = tile.count, t0 = tile.lowerBound
        let gS = Tensor(uninitializedShape: [m, n]), gT = Tensor(uninitializedShape: [m, n])
        sgemm(transA: false, transB: true, m: m, n: n, k: d, a: uS.ptr + t0 * d, lda: d, b: uS.ptr, ldb: d,
              c: gS.ptr, ldc: n)
        sgemm(transA: false, transB: true, m: m, n: n, k: d, a: uT.ptr + t0 * d, lda: d, b: uT.ptr, ldb: d,
              c: gT.ptr, ldc: n)
        for k in 0..<(m * n) {
            let x = gS.ptr[k] - gT.ptr[k]
            ssSum += Double(huber(x, 1))
            gS.ptr[k] = w * huberDerivative(x, 1)
        }
        if let gu {
            sgemm(transA: false, transB: false, m: m, n: d, k: n, alpha: 2, a: gS.ptr, lda: n, b: uS.ptr, ldb: d,
                  beta: 1, c: gu.ptr + (t0 - r0) * d, ldc: d)
        }
    }
    let edge = scSum * invN + ssSum * invN * invN
    let pl = plSum * invN

    if let gu {
        for i in rows {
            normalizeBackward(gu.ptr + (i - r0) * d, u: uS.ptr + i * d, norm: normS.ptr[i], count: d)
        }
    }
    let share = Double(p.nodeWeight) * node + Double(p.edgeWeight) * edge + Double(p.pseudoLabelWeight) * pl
    let out = scalarTensor(share)
    recordFused(name, output: out, inputs: [s, zs], rowGrads: [gu.map { RowGradient(rows: rows, values: $0) },
                                                               gz.map { RowGradient(rows: rows, values: $0) }])
    return LossShare(value: out, terms: [("node", node), ("edge", edge), ("pseudo_label", pl)])
}

/// `prg`: Proxy Relational Graph (proxies and teacher logits from `LossInputs`; for a foundation-model
/// teacher both come from its prompts, computed by the teacher with `teacher.clip_scale`).
public struct PRGTerm: LossTerm {
    public let kind = "prg"
    public var weight: Float, parameters: PRGParameters
    public var needs: LossNeeds { [.studentEmbedding, .studentLogits, .teacherEmbedding, .teacherLogits, .proxies] }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(x.studentEmbedding, kind, "student embedding")
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        guard let p = x.proxies else { throw LossError.missingInput(loss: kind, input: "proxies") }
        return try prgLoss(studentEmbedding: s, studentLogits: zs, teacherEmbedding: t, teacherLogits: zt, proxies: p,
                           parameters: parameters, rows: x.shardRows)
    }

    public static let descriptor = LossDescriptor(kind: "prg", parameters: PRGParameters.keys,
                                                  parts: ["node_weight", "edge_weight", "pseudo_label_weight"],
                                                  fixtures: [("prg", runFixture)]) { weight, v in
        PRGTerm(weight: weight, parameters: PRGParameters(v))
    }

    /// Fixture `prg`: inputs `teacher_features`, `prompt_embeddings`, `student_embedding`,
    /// `student_logits`; the teacher side (`prgTeacher`, parameter `clip_scale`) is checked too
    /// (`teacher_logits`, `proxies`).
    static func runFixture(_ f: any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let feats = try f.input("teacher_features"), prompts = try f.input("prompt_embeddings")
        let s = try f.input("student_embedding"), zs = try f.input("student_logits")
        let (zt, proxies) = try prgTeacher(features: feats, prompts: prompts,
                                           clipScale: Float(f.parameter("clip_scale", Double(prgDefaultClipScale))))
        s.requiresGrad = true; zs.requiresGrad = true
        let r = try prgLoss(studentEmbedding: s, studentLogits: zs, teacherEmbedding: feats, teacherLogits: zt,
                            proxies: proxies, parameters: PRGParameters(LossParameterValues(PRGParameters.keys,
                                                                                            fixture: f)),
                            rows: f.share(samples: s.shape[0]))
        r.value.backward()
        return (Double(r.value.item), [("teacher_logits", zt), ("proxies", proxies),
                                       ("grad_student_embedding", s.grad ?? Tensor.zeros(s.shape)),
                                       ("grad_student_logits", zs.grad ?? Tensor.zeros(zs.shape))])
    }
}
