/// The geometry of one step's global batch, computed once — by the sampler for training, by
/// `EvalSharding` for evaluation — and carried by the `Batch` to everything that needs it (the gathers'
/// per-rank counts, the loss's shard, throughput): nothing downstream recomputes it.
///
/// The batch is cut into `n_b = ⌈b/s⌉` blocks of `s` samples (`blockSize`; 1 unless `train.deterministic`,
/// docs/training.md), the last possibly shorter, and rank `r` of `R` owns the contiguous blocks
/// `[⌊r·n_b/R⌋, ⌊(r+1)·n_b/R⌋)`, so the shares concatenated in rank order are the global batch whatever
/// `R` is (docs/data.md, "Sampler"). With `s = 1` that is the sample share `[⌊r·b/R⌋, ⌊(r+1)·b/R⌋)`.
public struct BatchPlan: Equatable, Sendable {
    /// Sampler position of the batch (`step` within `epoch`; the batch number for evaluation).
    public let epoch: Int
    public let step: Int
    /// Samples in the global batch, `b`.
    public let globalSamples: Int
    /// Samples per rank, rank order (`counts.count` = world size; they sum to `globalSamples`).
    public let counts: [Int]
    /// This rank.
    public let rank: Int
    /// Samples per block, `s` (shares are whole blocks).
    public let blockSize: Int

    /// The plan of a batch of `globalSamples` split over `worldSize` ranks in blocks of `blockSize`, seen
    /// from `rank`.
    public init(epoch: Int = 0, step: Int = 0, globalSamples: Int, rank: Int = 0, worldSize: Int = 1,
                blockSize: Int = 1) {
        precondition(worldSize >= 1 && rank >= 0 && rank < worldSize && globalSamples >= 0 && blockSize >= 1)
        self.epoch = epoch; self.step = step; self.globalSamples = globalSamples; self.rank = rank
        self.blockSize = blockSize
        counts = (0..<worldSize).map {
            BatchPlan.share(rank: $0, worldSize: worldSize, batch: globalSamples, blockSize: blockSize).count
        }
    }

    /// Blocks in the global batch, `⌈b/s⌉`.
    public var blocks: Int { (globalSamples + blockSize - 1) / blockSize }

    public var worldSize: Int { counts.count }
    /// This rank's samples, a sub-range of `0..<globalSamples`.
    public var share: Range<Int> {
        BatchPlan.share(rank: rank, worldSize: worldSize, batch: globalSamples, blockSize: blockSize)
    }
    /// Rows per rank when every sample has `views` rows (the counts of the row all-gathers).
    public func rowCounts(views: Int) -> [Int] { counts.map { $0 * views } }

    /// The share of rank `r` of `R` in a batch of `b` samples cut into blocks of `s`: blocks
    /// `[⌊r·n_b/R⌋, ⌊(r+1)·n_b/R⌋)` of the `n_b = ⌈b/s⌉`, in samples. The one formula.
    public static func share(rank r: Int, worldSize R: Int, batch b: Int, blockSize s: Int = 1) -> Range<Int> {
        let nb = (b + s - 1) / s
        return Swift.min(b, (r * nb / R) * s)..<Swift.min(b, ((r + 1) * nb / R) * s)
    }
}
