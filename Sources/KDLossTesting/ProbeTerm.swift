import KDLosses
import KDTensor

/// A small row-sharded term for the contract's own tests (never registered in the product): the
/// squared distance of the student to the teacher embedding under a teacher-only global normaliser,
///
///     share = (1/(n μ)) Σ_{i∈rows} ‖s_i − t_i‖²,   μ = (1/n) Σ_j ‖t_j‖²,
///
/// backward `∂s_i = 2(s_i − t_i)/(n μ)` on the shard's rows. Without a communicator every rank sums μ
/// over all `n` rows; with one (`LossInputs.comm`) each rank sums its own rows and all-reduces them —
/// unless `forgetsAllReduce`, the bug `LossContract` must catch: each rank then normalises by its own
/// rows only, and the shares no longer add up. Built from the package's loss helpers (`validate`,
/// `require`, `needsGrad`, `recordFused`), like a product loss. Term: none (one part).
public struct NormalisedDistanceTerm: LossTerm {
    public let kind: String
    public var weight: Float
    public let forgetsAllReduce: Bool
    public var needs: LossNeeds { [.studentEmbedding, .teacherEmbedding] }

    public init(kind: String, weight: Float, forgetsAllReduce: Bool) {
        self.kind = kind; self.weight = weight; self.forgetsAllReduce = forgetsAllReduce
    }

    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(x.studentEmbedding, kind, "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        try check2D(kind, "teacher embedding", t, rows: s.shape[0], cols: s.shape[1])
        let n = x.rowCount, d = s.shape[1], rows = x.shardRows
        var mu = 0.0
        for j in (x.comm == nil ? 0..<n : rows) {
            for q in 0..<d { mu += Double(t.ptr[j * d + q]) * Double(t.ptr[j * d + q]) }
        }
        if let comm = x.comm, !forgetsAllReduce {
            var sums = [mu]
            try comm.allReduce(&sums, op: .sum)
            mu = sums[0]
        }
        let scale = 1 / (Double(n) * max(mu / Double(n), 1e-12))
        let grad: Tensor? = needsGrad(s) ? Tensor.zeros(s.shape) : nil
        var total = 0.0
        for i in rows {
            for q in 0..<d {
                let k = i * d + q, r = Double(s.ptr[k]) - Double(t.ptr[k])
                total += r * r
                grad?.ptr[k] = Float(2 * r * scale)
            }
        }
        let out = scalarTensor(total * scale)
        recordFused(kind, output: out, inputs: [s], grads: [grad])
        return LossShare(value: out, terms: [])
    }

    /// Its descriptor under the kind `kind` (no parameters).
    public static func descriptor(kind: String, forgetsAllReduce: Bool) -> LossDescriptor {
        LossDescriptor(kind: kind) { weight, _ in
            NormalisedDistanceTerm(kind: kind, weight: weight, forgetsAllReduce: forgetsAllReduce)
        }
    }
}
