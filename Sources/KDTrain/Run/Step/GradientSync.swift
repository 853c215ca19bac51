import KDComm
import KDCore
import KDData
import KDLosses
import KDTensor

/// Stage ⑧, the gradient synchronisation of a step, chosen once when the trainer is built
/// (`makeGradientSync`): it owns the sample-block scope the step runs in, the hook backward calls as
/// gradients become final, the reduction that makes every rank's gradients the global gradient, how
/// the loss is shared between the ranks, and the bytes it all-reduces.
public protocol GradientSync: AnyObject {
    /// Leading rows per sample block while a step runs (`SampleBlocks`), nil for none.
    var rowsPerBlock: Int? { get }
    /// Whether each rank evaluates its share of the loss or the whole loss.
    var lossSharing: LossSharing { get }
    /// Called by backward with each parameter whose gradient is final (nil: nothing to start early).
    var onGradReady: ((Tensor) -> Void)? { get }
    /// Makes every parameter's gradient the gradient of the global loss over the global batch `plan`,
    /// after backward. Collective.
    func reduce(_ plan: BatchPlan) throws
    /// Bytes all-reduced by each `reduce`.
    var bytesPerStep: Int { get }
}

extension GradientSync {
    /// Runs `body` (one step) with this strategy's sample blocks, then restores the thread's setting.
    public func scope<T>(_ body: () throws -> T) rethrows -> T {
        try SampleBlocks.with(rowsPerBlock: rowsPerBlock, body)
    }
}

/// How the ranks share the loss (docs/training.md, "The step"): each rank evaluates its share `L_r` of
/// `L = Σ_r L_r` from the gathered rows (row-sharded terms with the communicator); a differentiable
/// gather's backward is a reduce-scatter.
public enum LossSharing: Sendable {
    /// The shares' values and gradients are added by float all-reduces (their grouping follows the ranks).
    case rowShared
    /// Deterministic training: the share is evaluated per loss block (`LossBlocks`), and the blocks' values,
    /// the terms' global sums and the gathered rows' gradients are added exactly (`ExactSum`), whichever
    /// rank holds each block.
    case exactBlocks

    /// The gathers' loss blocks under `plan` (nil: not exact).
    func gatherBlocks(_ plan: BatchPlan) -> LossBlockCounts? {
        guard self == .exactBlocks else { return nil }
        return LossBlockCounts(local: (plan.share.count + plan.blockSize - 1) / plan.blockSize, global: plan.blocks)
    }
}

/// The bucketed SUM all-reduce after backward (`GradientBuckets`, `comm.bucket_mb`): the loss is a sum of
/// rank shares, so the shares' gradients are summed (scale 1).
final class BucketedSync: GradientSync {
    let buckets: GradientBuckets
    init(buckets: GradientBuckets) { self.buckets = buckets }
    var rowsPerBlock: Int? { nil }
    var lossSharing: LossSharing { .rowShared }
    var onGradReady: ((Tensor) -> Void)? { nil }
    func reduce(_ plan: BatchPlan) throws { try buckets.allReduceBlocking() }
    var bytesPerStep: Int { buckets.totalBytes }
}

/// The bucketed SUM all-reduce overlapped with backward (`comm.overlap`): each bucket starts as soon as
/// its gradients are final; `reduce` waits for the last.
final class OverlappedSync: GradientSync {
    let buckets: GradientBuckets
    let onGradReady: ((Tensor) -> Void)?
    init(buckets: GradientBuckets) { self.buckets = buckets; onGradReady = buckets.onGradReady }
    var rowsPerBlock: Int? { nil }
    var lossSharing: LossSharing { .rowShared }
    func reduce(_ plan: BatchPlan) throws { try buckets.finish() }
    var bytesPerStep: Int { buckets.totalBytes }
}

/// Deterministic training (`train.deterministic`, docs/training.md "Bit-identical training at any world
/// size"): the step runs in sample blocks of `train.block_size × views` rows, each rank evaluates its
/// share of the loss block by block, and the gradient is the exact sum of every block's partial
/// (`ExactGradients`).
final class ExactSync: GradientSync {
    let exact: ExactGradients
    let rowsPerBlock: Int?
    init(exact: ExactGradients, rowsPerBlock: Int) { self.exact = exact; self.rowsPerBlock = rowsPerBlock }
    var lossSharing: LossSharing { .exactBlocks }
    var onGradReady: ((Tensor) -> Void)? { nil }
    func reduce(_ plan: BatchPlan) throws { try exact.reduce(globalBlocks: plan.blocks) }
    var bytesPerStep: Int { exact.bytesPerReduce }
}

/// The strategy of `config`: exact with `train.deterministic`, else bucketed, overlapped with `comm.overlap`.
/// The exact sum crosses the ranks as a reduce-scatter and an all-gather when they run on more than one host
/// (`hostNames`: every rank's, `LinkProbe.hostNames`; nil on one rank) — fewer bytes over the network, the same
/// bits; on one host's shared memory one all-reduce is faster (docs/communication.md, "The exact gradient sum
/// across hosts").
func makeGradientSync(config: KDConfig, parameters: [Tensor], comm: Communicator,
                      hostNames: [String]?) throws -> any GradientSync {
    if config.train.deterministic {
        let hosts = Set(hostNames ?? []).count
        return ExactSync(exact: ExactGradients(parameters: parameters, comm: comm, scatterGather: hosts > 1),
                         rowsPerBlock: config.samplesPerBlock * max(1, config.data.views))
    }
    let buckets = try GradientBuckets(parameters: parameters, comm: comm,
                                      bucketBytes: max(1, Int(config.comm.bucketMB * 1_048_576)), scale: 1)
    return config.comm.overlap ? OverlappedSync(buckets: buckets) : BucketedSync(buckets: buckets)
}
