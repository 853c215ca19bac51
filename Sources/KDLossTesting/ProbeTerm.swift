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
/// rows only, and the shares no longer add up. In loss blocks (`evaluateBlocks`, deterministic
/// training) μ's per-block sums go through `LossInputs.blockSums` — or, forgetting, only this rank's.
/// Built from the package's loss helpers (`validate`, `require`, `needsGrad`, `recordFused`,
/// `LossBlocks`), like a product loss. Term: none (one part).
public struct NormalisedDistanceTerm: LossTerm {
    public let kind: String
    public var weight: Float
    public let forgetsAllReduce: Bool
    public var needs: LossNeeds { [.studentEmbedding, .teacherEmbedding] }

    public init(kind: String, weight: Float, forgetsAllReduce: Bool) {
        self.kind = kind; self.weight = weight; self.forgetsAllReduce = forgetsAllReduce
    }

    public func evaluate(_ x: LossInputs) throws -> LossShare { try shares(x, blocks: [x.shard])[0] }

    /// In loss blocks (deterministic training): μ's row sums formed per block and added by `blockSums`.
    public func evaluateBlocks(_ x: LossInputs) throws -> [LossShare] {
        guard x.exact else { return [try evaluate(x)] }
        return try shares(x, blocks: x.lossBlocks)
    }

    /// One share per block of samples `blocks`, each recorded as its loss block's.
    func shares(_ x: LossInputs, blocks: [Range<Int>]) throws -> [LossShare] {
        try x.validate(kind)
        let s = try x.require(x.studentEmbedding, kind, "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        try check2D(kind, "teacher embedding", t, rows: s.shape[0], cols: s.shape[1])
        let n = x.rowCount, d = s.shape[1]
        func squaredNorms(_ rows: Range<Int>) -> Double {
            var sum = 0.0
            for j in rows { for q in 0..<d { sum += Double(t.ptr[j * d + q]) * Double(t.ptr[j * d + q]) } }
            return sum
        }
        let partials = blocks.map { [squaredNorms(rowRange($0, views: x.views))] }
        let mu: Double
        if x.comm == nil { mu = squaredNorms(0..<n) }
        else if forgetsAllReduce { mu = partials.reduce(0) { $0 + $1[0] } }
        else { mu = try x.blockSums(partials, count: 1)[0] }
        let scale = 1 / (Double(n) * max(mu / Double(n), 1e-12))
        return blocks.enumerated().map { b, samples in
            let grad: Tensor? = needsGrad(s) ? Tensor.zeros(s.shape) : nil
            var total = 0.0
            for i in rowRange(samples, views: x.views) {
                for q in 0..<d {
                    let k = i * d + q, r = Double(s.ptr[k]) - Double(t.ptr[k])
                    total += r * r
                    grad?.ptr[k] = Float(2 * r * scale)
                }
            }
            let out = scalarTensor(total * scale)
            LossBlocks.recording(b) { recordFused(kind, output: out, inputs: [s], grads: [grad]) }
            return LossShare(value: out, terms: [])
        }
    }

    /// Its descriptor under the kind `kind` (no parameters).
    public static func descriptor(kind: String, forgetsAllReduce: Bool) -> LossDescriptor {
        LossDescriptor(kind: kind) { weight, _ in
            NormalisedDistanceTerm(kind: kind, weight: weight, forgetsAllReduce: forgetsAllReduce)
        }
    }
}
