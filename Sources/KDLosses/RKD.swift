import KDTensor

/// `rkd`: `w_D · L_RKD-D + w_A · L_RKD-A` (Park et al., CVPR 2019) between the student features (or
/// embedding) and the teacher embedding, over all `B·V` rows; anchors = the shard's rows. The kernels
/// are `rkdDistanceLoss` (RKDDistance.swift) and `rkdAngleLoss` (RKDAngle.swift). The angle term's
/// vertices `j, k` are `anglePartners` rows drawn by `rkdAnglePartnerSample(seed, inputs.step)` once the
/// batch has more rows than that (default 256: exact up to 256 rows; nil: every row), and with
/// `angleAnchors` its anchors are that many rows drawn by `rkdAngleAnchorSample` — unbiased, scaled.
public struct RKDTerm: LossTerm {
    public let kind = "rkd"
    public var weight: Float, distanceWeight: Float, angleWeight: Float, useEmbedding: Bool
    public var angleAnchors: Int? = nil, anglePartners: Int? = RKDTerm.defaultAnglePartners, seed: UInt64 = 0
    /// The default partner cap: RKD's usual batches (≤ 256 rows) keep the exact loss; beyond, one rank's
    /// angle share is `O(|rows|·256²)` instead of `O(|rows|·n²)` (docs/losses.md "Capping the angle triplets").
    public static let defaultAnglePartners = 256
    public var needs: LossNeeds { [useEmbedding ? .studentEmbedding : .studentFeatures, .teacherEmbedding] }

    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(useEmbedding ? x.studentEmbedding : x.studentFeatures, kind,
                              useEmbedding ? "student embedding" : "student features")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        var parts: [(LossShare, Float, String?)] = []
        if distanceWeight != 0 {
            parts.append((try rkdDistanceLoss(student: s, teacher: t, rows: x.shardRows, comm: x.comm),
                          distanceWeight, nil))
        }
        if angleWeight != 0 {
            let sample = angleAnchors.flatMap {
                $0 < x.rowCount ? rkdAngleAnchorSample(rows: x.rowCount, count: $0, seed: seed, step: x.step) : nil
            }
            let partners = anglePartners.flatMap {
                $0 < x.rowCount ? rkdAnglePartnerSample(rows: x.rowCount, count: $0, seed: seed, step: x.step) : nil
            }
            parts.append((try rkdAngleLoss(student: s, teacher: t, rows: x.shardRows, sampledAnchors: sample,
                                           partners: partners), angleWeight, nil))
        }
        let r = weighted(kind, weight: weight, parts)
        return LossShare(value: r.value, terms: r.terms.map {
            ($0.name.replacingOccurrences(of: "loss/rkd/rkd_", with: "loss/rkd/"), $0.value)
        })
    }

    /// `{kind: rkd, weight: 1, distance_weight: 25, angle_weight: 50, input: features | embedding,
    /// angle_anchors: (all), angle_partners: 256 (0: all), seed: 0}`
    static let fixtures: [(kind: String, run: LossFixtureRunner)] = [
        ("rkd_distance", { f in try runFixture(f, angle: false) }),
        ("rkd_angle", { f in try runFixture(f, angle: true) }),
    ]

    public static let descriptor = LossDescriptor(kind: "rkd", fixtures: fixtures) { weight, p in
        RKDTerm(weight: weight, distanceWeight: try p.float("distance_weight", 25, min: 0),
                angleWeight: try p.float("angle_weight", 50, min: 0),
                useEmbedding: try p.choice("input", "features", ["features", "embedding"]) == "embedding",
                angleAnchors: try p.optionalInteger("angle_anchors", min: 1),
                anglePartners: try anglePartners(try p.optionalInteger("angle_partners", min: 0)),
                seed: UInt64(try p.optionalInteger("seed", min: 0) ?? 0))
    }

    /// `angle_partners`: absent → the default, 0 → every row, 1 → refused (a pair needs two vertices).
    static func anglePartners(_ value: Int?) throws -> Int? {
        guard let value else { return defaultAnglePartners }
        guard value != 1 else {
            throw LossError.config("angle_partners: expected 0 (every row) or an integer ≥ 2, got 1")
        }
        return value == 0 ? nil : value
    }

    /// Fixtures `rkd_distance` and `rkd_angle`: inputs `student`, `teacher`.
    static func runFixture(_ f: any LossFixture, angle: Bool) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let s = try f.input("student"), t = try f.input("teacher")
        s.requiresGrad = true
        let r = angle ? try rkdAngleLoss(student: s, teacher: t) : try rkdDistanceLoss(student: s, teacher: t)
        r.value.backward()
        return (Double(r.value.item), [("grad_student", s.grad ?? Tensor.zeros(s.shape))])
    }
}
