/// The geometry of one step's global batch, computed once — by the sampler for training, by
/// `EvalSharding` for evaluation — and carried by the `Batch` to everything that needs it (the gathers'
/// per-rank counts, the loss's shard, throughput): nothing downstream recomputes it.
///
/// Rank `r` of `R` owns the contiguous share `[⌊r·b/R⌋, ⌊(r+1)·b/R⌋)` of a batch of `b` samples, so the
/// shares concatenated in rank order are the global batch whatever `R` is (docs/data.md, "Sampler").
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

    /// The plan of a batch of `globalSamples` split over `worldSize` ranks, seen from `rank`.
    public init(epoch: Int = 0, step: Int = 0, globalSamples: Int, rank: Int = 0, worldSize: Int = 1) {
        precondition(worldSize >= 1 && rank >= 0 && rank < worldSize && globalSamples >= 0)
        self.epoch = epoch; self.step = step; self.globalSamples = globalSamples; self.rank = rank
        counts = (0..<worldSize).map { BatchPlan.share(rank: $0, worldSize: worldSize, batch: globalSamples).count }
    }

    public var worldSize: Int { counts.count }
    /// This rank's samples, a sub-range of `0..<globalSamples`.
    public var share: Range<Int> { BatchPlan.share(rank: rank, worldSize: worldSize, batch: globalSamples) }
    /// Rows per rank when every sample has `views` rows (the counts of the row all-gathers).
    public func rowCounts(views: Int) -> [Int] { counts.map { $0 * views } }

    /// The share `[⌊r·b/R⌋, ⌊(r+1)·b/R⌋)` of rank `r` of `R` in a batch of `b`: the one formula.
    public static func share(rank r: Int, worldSize R: Int, batch b: Int) -> Range<Int> {
        (r * b / R)..<((r + 1) * b / R)
    }
}
