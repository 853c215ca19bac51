import KDTensor

/// `rkd`: `w_D · L_RKD-D + w_A · L_RKD-A` (Park et al., CVPR 2019) between the student features (or
/// embedding) and the teacher embedding, over all `B·V` rows; anchors = the shard's rows. The kernels
/// are `rkdDistanceLoss` (RKDDistance.swift) and `rkdAngleLoss` (RKDAngle.swift). The angle term's
/// vertices `j, k` are `anglePartners` rows drawn by `rkdAnglePartnerSample(seed, inputs.step)` once the
/// batch has more rows than that (`angle_partners`, `parameters`; nil: every row), and with
/// `angleAnchors` its anchors are that many rows drawn by `rkdAngleAnchorSample` — unbiased, scaled.
public struct RKDTerm: LossTerm {
    public let kind = "rkd"
    public var weight: Float, distanceWeight: Float, angleWeight: Float, useEmbedding: Bool
    public var angleAnchors: Int?, anglePartners: Int?, seed: UInt64
    public var needs: LossNeeds { [useEmbedding ? .studentEmbedding : .studentFeatures, .teacherEmbedding] }

    /// Fewer than 3 rows carry no relation: the distances, divided by their mean, are the constant 1 for 2
    /// rows (the loss is 0 whatever the student does) and undefined for 1 (NaN), and an angle needs 3 points.
    public func refusal(rows: Int, graph: String) -> (key: String?, message: String)? {
        guard rows < 3 else { return nil }
        return (nil, "rkd needs a graph of at least 3 rows (its distances are divided by their mean, the constant 1 "
                + "for 2 rows, and an angle needs 3 points), but \(graph)")
    }

    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let (s, t) = try inputs(x)
        let distance = distanceWeight == 0 ? nil : try rkdDistanceLoss(student: s, teacher: t, rows: x.shardRows,
                                                                       comm: x.comm)
        return try share(x, student: s, teacher: t, distance: distance)
    }

    /// Per loss block: the distance term's blocks at once (its `μ` and `Σ h·d` are sums over every block),
    /// then each block's angle term.
    public func evaluateBlocks(_ x: LossInputs) throws -> [LossShare] {
        guard x.exact, distanceWeight != 0 else { return try evaluateEachBlock(x) }
        try x.validate(kind)
        let (s, t) = try inputs(x)
        let blocks = x.lossBlocks
        let distances = try rkdDistanceBlockShares(student: s, teacher: t,
                                                   blocks: blocks.map { rowRange($0, views: x.views) },
                                                   sums: x.blockSums)
        return try blocks.enumerated().map { b, samples in
            try LossBlocks.recording(b) {
                try share(x.restricted(to: samples), student: s, teacher: t, distance: distances[b])
            }
        }
    }

    func inputs(_ x: LossInputs) throws -> (Tensor, Tensor) {
        let s = try x.require(useEmbedding ? x.studentEmbedding : x.studentFeatures, kind,
                              useEmbedding ? "student embedding" : "student features")
        return (s, try x.require(x.teacherEmbedding, kind, "teacher embedding"))
    }

    /// The weighted parts of the share of `x.shard`, given its distance share.
    func share(_ x: LossInputs, student s: Tensor, teacher t: Tensor, distance: LossShare?) throws -> LossShare {
        var parts: [(Tensor, Float)] = []
        var terms: [(name: String, value: Double)] = []
        if let d = distance {
            parts.append((d.value, distanceWeight))
            terms.append(("distance", d.term("rkd_distance")))
        }
        if angleWeight != 0 {
            let sample = angleAnchors.flatMap {
                $0 < x.rowCount ? rkdAngleAnchorSample(rows: x.rowCount, count: $0, seed: seed, step: x.step) : nil
            }
            let partners = anglePartners.flatMap {
                $0 < x.rowCount ? rkdAnglePartnerSample(rows: x.rowCount, count: $0, seed: seed, step: x.step) : nil
            }
            let a = try rkdAngleLoss(student: s, teacher: t, rows: x.shardRows, sampledAnchors: sample,
                                     partners: partners)
            parts.append((a.value, angleWeight))
            terms.append(("angle", a.term("rkd_angle")))
        }
        return LossShare(value: weightedScalarSum(parts), terms: terms)
    }

    /// The `rkd` keys, their defaults and ranges (`angle_anchors` absent: every anchor; `angle_partners`
    /// 0: every row, 1: refused). The default partner cap, 256: RKD's usual batches (≤ 256 rows) keep the
    /// exact loss; beyond, one rank's angle share is `O(|rows|·256²)` instead of `O(|rows|·n²)`
    /// (docs/losses.md "Capping the angle triplets").
    public static let parameters: [LossParameter] = [
        .number("distance_weight", 25, min: 0),
        .number("angle_weight", 50, min: 0),
        .choice("input", "features", ["features", "embedding"]),
        .integer("angle_anchors", min: 1),
        .integer("angle_partners", 256, min: 0),
        .integer("seed", 0, min: 0),
    ]

    static let fixtures: [(kind: String, run: LossFixtureRunner)] = [
        ("rkd_distance", { f in try runFixture(f, angle: false) }),
        ("rkd_angle", { f in try runFixture(f, angle: true) }),
    ]

    public static let descriptor = LossDescriptor(kind: "rkd", parameters: parameters,
                                                  parts: ["distance_weight", "angle_weight"],
                                                  fixtures: fixtures) { weight, v in
        RKDTerm(weight: weight, distanceWeight: v.float("distance_weight"), angleWeight: v.float("angle_weight"),
                useEmbedding: v.choice("input") == "embedding", angleAnchors: v.integer("angle_anchors"),
                anglePartners: try anglePartners(v.integer("angle_partners")),
                seed: UInt64(v.integer("seed") ?? 0))
    }

    /// `angle_partners`: 0 → every row (nil), 1 → refused (a pair needs two vertices).
    static func anglePartners(_ value: Int?) throws -> Int? {
        guard let value else { return nil }
        guard value != 1 else {
            throw LossError.config("angle_partners: expected 0 (every row) or an integer ≥ 2, got 1")
        }
        return value == 0 ? nil : value
    }

    /// Fixtures `rkd_distance` and `rkd_angle`: inputs `student`, `teacher`.
    static func runFixture(_ f: any LossFixture, angle: Bool) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let s = try f.input("student"), t = try f.input("teacher")
        s.requiresGrad = true
        let rows = f.share(samples: s.shape[0])
        let r = angle ? try rkdAngleLoss(student: s, teacher: t, rows: rows)
                      : try rkdDistanceLoss(student: s, teacher: t, rows: rows, comm: f.comm)
        r.value.backward()
        return (Double(r.value.item), [("grad_student", s.grad ?? Tensor.zeros(s.shape))])
    }
}
