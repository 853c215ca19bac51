import KDCore
import KDTensor

/// Everything a loss term may read for one step: the GLOBAL (all-gathered, rank order) matrices, the
/// batch layout, and this rank's shard.
///
/// Rows are sample-major: `row = sample·views + view` (view 0 = real, view 1 = virtual for VRM), so a
/// matrix has `batchSize·views` rows. Student tensors are on the tape (the gathered student rows,
/// whose gradient the all-gather's backward reduce-scatters to their owners); teacher tensors are
/// constants. `plan` is the step's batch plan (from the sampler, carried by the batch): the global
/// batch size and this rank's `shard` in SAMPLE units; the rank evaluates the share of the loss that
/// belongs to those samples, and the shares of all ranks add up to the one-process loss.
public struct LossInputs {
    /// Pooled penultimate student features `h` `[B·V, D_h]` (RKD's default input).
    public var studentFeatures: Tensor?
    /// Student embedding `s` after the projection head `[B·V, D_t]` (PRG, spectral).
    public var studentEmbedding: Tensor?
    /// Student logits `z^S` `[B·V, C]`.
    public var studentLogits: Tensor?
    /// Teacher embedding `t` `[B·V, D_t]` (for a foundation-model teacher, its image features `f`).
    public var teacherEmbedding: Tensor?
    /// Teacher logits `z^T` `[B·V, C]`: a network teacher's classifier output, or a foundation-model
    /// teacher's prompt logits (`prgTeacher`, from its image embeddings and `teacher.prompts`).
    public var teacherLogits: Tensor?
    /// Class proxies `p_c` `[C, D_t]` in the teacher's space.
    public var proxies: Tensor?
    /// Ground-truth labels, one per sample (`B`) or per row (`B·V`); only `ce` and KD's `ce_weight` read them.
    public var labels: [Int]?
    /// Views per sample `V`.
    public var views: Int
    /// The global batch and this rank's share of it.
    public var plan: BatchPlan
    /// The global step: keys the deterministic sampling of capped terms (RKD `angle_anchors`), the
    /// same on every rank.
    public var step: Int
    /// The ranks sharing the batch. Set: terms that are row-sharded (RKD distance, VRM's inter-class
    /// graph, spectral) build only the shard's rows of their global matrices and combine global
    /// normalisers with small all-reduces inside the term, so every rank of `comm` must evaluate the
    /// objective. Nil: every term builds the global matrices itself (single-process tools).
    public var comm: Communicator?
    /// Deterministic training (docs/training.md, "Bit-identical training at any world size"): the share
    /// is evaluated in loss blocks of `plan.blockSize` samples (`lossBlocks`, `LossBlocks`), and every
    /// sum over rows a term combines between ranks is formed per block and added exactly (`blockSums`).
    public var exact = false
    /// The samples this share covers: `plan.share`, or one loss block of it (`restricted(to:)`).
    public private(set) var shard: Range<Int>

    public init(plan: BatchPlan, views: Int = 1,
                studentFeatures: Tensor? = nil, studentEmbedding: Tensor? = nil, studentLogits: Tensor? = nil,
                teacherEmbedding: Tensor? = nil, teacherLogits: Tensor? = nil, proxies: Tensor? = nil,
                labels: [Int]? = nil, step: Int = 0, comm: Communicator? = nil, exact: Bool = false) {
        self.plan = plan; self.views = views; self.step = step; self.comm = comm; self.exact = exact
        shard = plan.share
        self.studentFeatures = studentFeatures; self.studentEmbedding = studentEmbedding
        self.studentLogits = studentLogits; self.teacherEmbedding = teacherEmbedding
        self.teacherLogits = teacherLogits
        self.proxies = proxies; self.labels = labels
    }

    /// Global batch size `B` in samples.
    public var batchSize: Int { plan.globalSamples }
    /// Total rows `B·V`.
    public var rowCount: Int { batchSize * views }
    /// This rank's rows (`shard` expanded by the views).
    public var shardRows: Range<Int> { (shard.lowerBound * views)..<(shard.upperBound * views) }

    /// This share's loss blocks, in samples: the blocks of `plan.blockSize` in `shard` when `exact`, else
    /// `shard` whole (one block).
    public var lossBlocks: [Range<Int>] {
        guard exact else { return [shard] }
        return stride(from: shard.lowerBound, to: shard.upperBound, by: plan.blockSize).map {
            $0..<min(shard.upperBound, $0 + plan.blockSize)
        }
    }

    /// These inputs with the share cut down to `samples` (one loss block of `shard`).
    public func restricted(to samples: Range<Int>) -> LossInputs {
        var x = self
        x.shard = samples
        return x
    }

    /// The sums over all ranks of `count` values whose parts are `partials[b]`, one vector per loss block
    /// of this share (`lossBlocks`). `exact`: every block's part added exactly (`ExactSum`), whichever rank
    /// holds it; else the blocks added here and the ranks by one all-reduce SUM (none without `comm`).
    /// Collective over `comm`: every rank calls it with the same `count`.
    public func blockSums(_ partials: [[Double]], count: Int) throws -> [Double] {
        try KDLosses.blockSums(partials, count: count, comm: comm, exactBlocks: exact ? plan.blocks : nil)
    }

    /// Validates the layout (batch, views, shard) for the loss `loss`.
    package func validate(_ loss: String) throws {
        guard batchSize > 0, views > 0 else {
            throw LossError.invalidArgument(loss: loss,
                                            message: "batch size \(batchSize) and views \(views) must be > 0")
        }
        guard shard.lowerBound >= 0, shard.upperBound <= batchSize else {
            throw LossError.invalidArgument(loss: loss, message: "shard \(shard) outside the batch 0..<\(batchSize)")
        }
    }

    /// `t` unwrapped, checked to hold `B·V` rows.
    package func require(_ t: Tensor?, _ loss: String, _ input: String) throws -> Tensor {
        guard let t else { throw LossError.missingInput(loss: loss, input: input) }
        guard t.rank == 2, t.shape[0] == rowCount else {
            throw LossError.invalidArgument(loss: loss, message: "\(input) has shape \(t.shape), expected "
                                            + "[\(rowCount), *] (batch \(batchSize) × views \(views))")
        }
        return t
    }

    /// Labels expanded to one per row.
    package func rowLabels(_ loss: String) throws -> [Int] {
        guard let labels else { throw LossError.missingInput(loss: loss, input: "labels") }
        if labels.count == rowCount { return labels }
        if labels.count == batchSize { return (0..<rowCount).map { labels[$0 / views] } }
        throw LossError.invalidArgument(loss: loss,
                                        message: "\(labels.count) labels for batch \(batchSize) × views \(views)")
    }
}

/// The sums over all ranks of `count` values whose parts are `partials[b]`, one vector per block: with
/// `exactBlocks` (the blocks of the global batch) every block's part added exactly (`ExactSum`); else the
/// blocks added here and the ranks by one all-reduce SUM over `comm` (none without it). What
/// `LossInputs.blockSums` and the row-sharded kernels called without `LossInputs` use. Collective.
package func blockSums(_ partials: [[Double]], count: Int, comm: Communicator?,
                       exactBlocks: Int?) throws -> [Double] {
    if let exactBlocks {
        return try ExactSum.sums(partials, count: count, globalBlocks: exactBlocks, comm: comm)
    }
    var total = [Double](repeating: 0, count: count)
    for p in partials { for i in 0..<count { total[i] += p[i] } }
    if let comm, count > 0 { try comm.allReduce(&total, op: .sum) }
    return total
}
