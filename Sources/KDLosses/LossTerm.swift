import KDTensor

/// One configured term of the objective. `evaluate` returns this rank's WEIGHTED share (a scalar
/// on the tape) and the term values for logging: `loss/<kind>` (the weighted share) and the unweighted
/// sub-terms `loss/<kind>/<sub>` — all shares, so an all-reduce SUM over ranks gives the global values.
public protocol LossTerm {
    /// `kd`, `ce`, `rkd`, `prg`, `vrm` or `spectral`.
    var kind: String { get }
    /// The term's weight in the objective (config key `weight`, default 1).
    var weight: Float { get }
    func evaluate(_ inputs: LossInputs) throws -> LossShare
}

/// Builds a term from one `loss:` config entry, e.g. `{kind: rkd, distance_weight: 25, angle_weight: 50}`.
/// Unknown kinds and keys are errors. Keys and defaults (LOSSES.md):
/// - `kd`: `weight` 1, `temperature` 4, `ce_weight` 0 (supervised CE, needs labels)
/// - `ce`: `weight` 1 (needs labels)
/// - `rkd`: `weight` 1, `distance_weight` 25, `angle_weight` 50, `input` features|embedding (features),
///   `angle_anchors` (all; a cap samples that many anchors per step), `seed` 0 (of that sampling)
/// - `prg`: `weight` 1, `temperature` 4, `edge_temperature` 0.1, `node_weight` 1, `edge_weight` 1,
///   `pseudo_label_weight` 1, `clip_scale` 100 (read by the teacher side, `prgTeacher`)
/// - `vrm`: `weight` 1, `q` 0.1, `temperature` 4, `delta` 1, `inter_sample_weight` 1,
///   `inter_class_weight` 1, `kd_weight` 1
/// - `spectral`: `weight` 1, `k` (default C capped at rows/2), `input` embedding|features (embedding)
public func makeLossTerm(_ config: [String: Any]) throws -> LossTerm {
    var r = try LossConfigReader(config)
    let weight = try r.float("weight", 1)
    let term: LossTerm
    switch r.kind {
    case "kd":
        term = KDTerm(weight: weight, temperature: try r.float("temperature", 4), ceWeight: try r.float("ce_weight", 0))
    case "ce":
        term = CETerm(weight: weight)
    case "rkd":
        term = RKDTerm(weight: weight, distanceWeight: try r.float("distance_weight", 25),
                       angleWeight: try r.float("angle_weight", 50),
                       useEmbedding: try r.string("input", "features", allowed: ["features", "embedding"]) == "embedding",
                       angleAnchors: try r.int("angle_anchors"), seed: UInt64(max(0, try r.int("seed") ?? 0)))
        if let a = (term as? RKDTerm)?.angleAnchors, a < 1 {
            throw LossError.config("rkd.angle_anchors: expected a positive count, got \(a)")
        }
    case "prg":
        term = PRGTerm(weight: weight, parameters: PRGParameters(
            temperature: try r.float("temperature", 4), edgeTemperature: try r.float("edge_temperature", 0.1),
            nodeWeight: try r.float("node_weight", 1), edgeWeight: try r.float("edge_weight", 1),
            pseudoLabelWeight: try r.float("pseudo_label_weight", 1)), clipScale: try r.float("clip_scale", 100))
    case "vrm":
        term = VRMTerm(weight: weight, parameters: VRMParameters(
            pruneFraction: try r.double("q", 0.1), temperature: try r.float("temperature", 4),
            delta: try r.float("delta", 1), interSampleWeight: try r.float("inter_sample_weight", 1),
            interClassWeight: try r.float("inter_class_weight", 1), kdWeight: try r.float("kd_weight", 1)))
    case "spectral":
        term = SpectralTerm(weight: weight, k: try r.int("k"),
                            useFeatures: try r.string("input", "embedding", allowed: ["embedding", "features"]) == "features")
    default:
        throw LossError.config("unknown loss kind '\(r.kind)' (known: kd, ce, rkd, prg, vrm, spectral)")
    }
    try r.finish()
    return term
}

/// Weighted contribution of a raw share: `(weight · value, terms)`, as one tape node.
func weighted(_ kind: String, weight: Float, _ parts: [(LossShare, Float, String?)]) -> LossShare {
    let out = weightedScalarSum(parts.map { ($0.0.value, weight * $0.1) })
    var terms: [(name: String, value: Double)] = [("loss/\(kind)", Double(out.item))]
    for (share, _, prefix) in parts {
        for t in share.terms { terms.append(("loss/\(kind)/\(prefix.map { $0 + "_" } ?? "")\(t.name)", t.value)) }
    }
    return LossShare(value: out, terms: terms)
}

/// `Σ_k w_k x_k` of scalar tensors, one node: backward `∂x_k += w_k · g`.
public func weightedScalarSum(_ parts: [(Tensor, Float)]) -> Tensor {
    var s = 0.0
    for (x, w) in parts { s += Double(w) * Double(x.ptr[0]) }
    let out = Tensor(shape: [], data: [Float(s)])
    Tape.record("weighted_sum", inputs: parts.map { $0.0 }, output: out) { g in
        for (x, w) in parts where x.requiresGrad { x.accumulateGrad([w * g.ptr[0]]) }
    }
    return out
}

/// `kd`: Hinton KD over all rows (`B·V`, normaliser `1/(B·V)`), optional supervised CE.
public struct KDTerm: LossTerm {
    public let kind = "kd"
    public var weight: Float, temperature: Float, ceWeight: Float
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        let labels = ceWeight != 0 ? try x.rowLabels("kd (ce_weight)") : nil
        let s = try kdLoss(student: zs, teacher: zt, temperature: temperature, rows: x.shardRows, count: x.rowCount,
                           labels: labels, ceWeight: ceWeight)
        return weighted(kind, weight: weight, [(s, 1, nil)])
    }
}

/// `ce`: supervised cross-entropy with the ground-truth labels.
public struct CETerm: LossTerm {
    public let kind = "ce"
    public var weight: Float
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let s = try crossEntropyLoss(logits: zs, labels: try x.rowLabels(kind), rows: x.shardRows, count: x.rowCount)
        return LossShare(value: weightedScalarSum([(s.value, weight)]), terms: [("loss/ce", Double(weight) * s.terms[0].value)])
    }
}

/// `rkd`: `w_D · L_RKD-D + w_A · L_RKD-A` between the student features (or embedding) and the
/// teacher embedding, over all `B·V` rows; anchors = the shard's rows. With `angleAnchors` the angle
/// term uses that many anchors drawn by `rkdAngleAnchorSample(seed, inputs.step)` (unbiased, scaled).
public struct RKDTerm: LossTerm {
    public let kind = "rkd"
    public var weight: Float, distanceWeight: Float, angleWeight: Float, useEmbedding: Bool
    public var angleAnchors: Int? = nil, seed: UInt64 = 0
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(useEmbedding ? x.studentEmbedding : x.studentFeatures, kind,
                              useEmbedding ? "student embedding" : "student features")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        var parts: [(LossShare, Float, String?)] = []
        if distanceWeight != 0 { parts.append((try rkdDistanceLoss(student: s, teacher: t, rows: x.shardRows), distanceWeight, nil)) }
        if angleWeight != 0 {
            let sample = angleAnchors.flatMap { $0 < x.rowCount ? rkdAngleAnchorSample(rows: x.rowCount, count: $0, seed: seed, step: x.step) : nil }
            parts.append((try rkdAngleLoss(student: s, teacher: t, rows: x.shardRows, sampledAnchors: sample), angleWeight, nil))
        }
        let r = weighted(kind, weight: weight, parts)
        return LossShare(value: r.value, terms: r.terms.map { ($0.name.replacingOccurrences(of: "loss/rkd/rkd_", with: "loss/rkd/"), $0.value) })
    }
}

/// `prg`: Proxy Relational Graph (proxies and teacher logits from `LossInputs`; prompt-derived ones
/// preferred). `clipScale` is the teacher-side `τ_clip` for `prgTeacher`.
public struct PRGTerm: LossTerm {
    public let kind = "prg"
    public var weight: Float, parameters: PRGParameters, clipScale: Float
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(x.studentEmbedding, kind, "student embedding")
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let zt = try x.require(x.promptTeacherLogits ?? x.teacherLogits, kind, "teacher logits")
        guard let p = x.proxies else { throw LossError.missingInput(loss: kind, input: "proxies") }
        let r = try prgLoss(studentEmbedding: s, studentLogits: zs, teacherEmbedding: t, teacherLogits: zt, proxies: p,
                            parameters: parameters, rows: x.shardRows)
        return weighted(kind, weight: weight, [(r, 1, nil)])
    }
}

/// `vrm`: Virtual Relation Matching over views 0 (real) and 1 (virtual) of the student/teacher logits.
public struct VRMTerm: LossTerm {
    public let kind = "vrm"
    public var weight: Float, parameters: VRMParameters
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        let r = try vrmLoss(student: zs, teacher: zt, views: x.views, parameters: parameters, shard: x.shard)
        return weighted(kind, weight: weight, [(r, 1, nil)])
    }
}

/// `spectral`: spectral graph alignment of the student embedding (or features) to the teacher
/// embedding's Laplacian, over all `B·V` rows.
public struct SpectralTerm: LossTerm {
    public let kind = "spectral"
    public var weight: Float, k: Int?, useFeatures: Bool
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(useFeatures ? x.studentFeatures : x.studentEmbedding, kind,
                              useFeatures ? "student features" : "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let n = x.rowCount
        let kk: Int
        if let k { kk = k } else {
            guard let c = x.studentLogits?.shape.last ?? x.proxies?.shape.first else {
                throw LossError.invalidArgument(loss: kind, message: "k not set and the class count is unknown (no logits or proxies)")
            }
            kk = max(1, min(c, n / 2))
        }
        let r = try spectralLoss(student: s, teacher: t, k: kk, rows: x.shardRows)
        return LossShare(value: weightedScalarSum([(r.value, weight)]), terms: [("loss/spectral", Double(weight) * r.terms[0].value)])
    }
}

/// A run's objective: the weighted sum of its configured terms (config `loss:` list).
public struct LossObjective {
    public let terms: [LossTerm]
    public init(terms: [LossTerm]) { self.terms = terms }
    /// From the `loss:` list of the config, e.g. `[["kind": "prg", "weight": 1.0], ["kind": "rkd"]]`.
    public init(config: [[String: Any]]) throws {
        guard !config.isEmpty else { throw LossError.config("the 'loss' list is empty") }
        terms = try config.map(makeLossTerm)
    }
    /// This rank's share of the objective (one scalar on the tape) and every term's share, named
    /// `loss/<kind>` (a kind repeated gets `#2`, `#3`, …) plus sub-terms.
    public func evaluate(_ inputs: LossInputs) throws -> LossShare {
        var parts: [(Tensor, Float)] = []
        var terms: [(name: String, value: Double)] = []
        var seen: [String: Int] = [:]
        for t in terms_ {
            let r = try t.evaluate(inputs)
            parts.append((r.value, 1))
            seen[t.kind, default: 0] += 1
            let suffix = seen[t.kind]! > 1 ? "#\(seen[t.kind]!)" : ""
            for (name, v) in r.terms {
                let base = "loss/\(t.kind)"
                terms.append((name.hasPrefix(base) && !suffix.isEmpty ? base + suffix + name.dropFirst(base.count) : name, v))
            }
        }
        return LossShare(value: weightedScalarSum(parts), terms: terms)
    }
    private var terms_: [LossTerm] { terms }
}
