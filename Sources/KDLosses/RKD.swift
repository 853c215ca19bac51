import KDTensor

/// `rkd`: `w_D · L_RKD-D + w_A · L_RKD-A` (Park et al., CVPR 2019) between the student features (or
/// embedding) and the teacher embedding, over all `B·V` rows; anchors = the shard's rows. The kernels
/// are `rkdDistanceLoss` (RKDDistance.swift) and `rkdAngleLoss` (RKDAngle.swift). With `angleAnchors`
/// the angle term uses that many anchors drawn by `rkdAngleAnchorSample(seed, inputs.step)` (unbiased,
/// scaled).
public struct RKDTerm: LossTerm {
    public let kind = "rkd"
    public var weight: Float, distanceWeight: Float, angleWeight: Float, useEmbedding: Bool
    public var angleAnchors: Int? = nil, seed: UInt64 = 0
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
            parts.append((try rkdAngleLoss(student: s, teacher: t, rows: x.shardRows, sampledAnchors: sample),
                          angleWeight, nil))
        }
        let r = weighted(kind, weight: weight, parts)
        return LossShare(value: r.value, terms: r.terms.map {
            ($0.name.replacingOccurrences(of: "loss/rkd/rkd_", with: "loss/rkd/"), $0.value)
        })
    }

    /// `{kind: rkd, weight: 1, distance_weight: 25, angle_weight: 50, input: features | embedding,
    /// angle_anchors: (all), seed: 0}`
    static let fixtures: [(kind: String, run: LossFixtureRunner)] = [
        ("rkd_distance", { f in try runFixture(f, angle: false) }),
        ("rkd_angle", { f in try runFixture(f, angle: true) }),
    ]

    public static let descriptor = LossDescriptor(kind: "rkd", fixtures: fixtures) { weight, p in
        RKDTerm(weight: weight, distanceWeight: try p.float("distance_weight", 25, min: 0),
                angleWeight: try p.float("angle_weight", 50, min: 0),
                useEmbedding: try p.choice("input", "features", ["features", "embedding"]) == "embedding",
                angleAnchors: try p.optionalInteger("angle_anchors", min: 1),
                seed: UInt64(try p.optionalInteger("seed", min: 0) ?? 0))
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
