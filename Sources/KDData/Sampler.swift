import Foundation
import KDCore
import KDTensor

/// Where the sampler stands: the next step to run is `step` of `epoch` (saved in checkpoints).
public struct SamplerPosition: Codable, Equatable, Sendable {
    public var epoch: Int
    public var step: Int
    public init(epoch: Int, step: Int) { self.epoch = epoch; self.step = step }

    /// The position `k` steps later, with `stepsPerEpoch` steps in each epoch.
    public func advanced(by k: Int, stepsPerEpoch: Int) -> SamplerPosition {
        let flat = epoch * stepsPerEpoch + step + k
        return SamplerPosition(epoch: flat / stepsPerEpoch, step: flat % stepsPerEpoch)
    }
}

/// The world-size-invariant training sampler (docs/data.md, "Sampler").
///
/// Epoch `e` uses the permutation `π_e = KDRandom(seed, e, 0x5A3D).permutation(N)` of the `N` samples.
/// The global batch of step `s` is `π_e[s·B ..< min((s+1)·B, N)]`; with `dropLast` the final partial batch
/// is skipped, otherwise it is step `⌈N/B⌉ − 1`. `plan(epoch:step:)` splits it over the ranks
/// (`BatchPlan.share`). Nothing here depends on the world size except the share.
public final class Sampler: @unchecked Sendable {
    public let count: Int
    public let globalBatch: Int
    public let dropLast: Bool
    public let seed: UInt64
    public let rank: Int
    public let worldSize: Int
    /// Steps in one epoch.
    public let stepsPerEpoch: Int
    /// Samples per block of a global batch (`BatchPlan.blockSize`; `train.block_size` when deterministic).
    public let blockSize: Int

    private var cachedEpoch = -1
    private var cachedPermutation: [Int] = []
    private let lock = NSLock()

    /// Validates the configuration (before training starts): a non-empty dataset, `1 ≤ B`, at least
    /// one step per epoch, and no rank left without samples in any batch.
    public init(count: Int, globalBatch: Int, dropLast: Bool, seed: UInt64, rank: Int = 0, worldSize: Int = 1,
                blockSize: Int = 1) throws {
        guard count > 0 else { throw DataError.invalidConfig(field: "data", message: "the training split is empty") }
        guard globalBatch >= 1 else {
            throw DataError.invalidConfig(field: "data.global_batch", message: "\(globalBatch) must be ≥ 1")
        }
        guard worldSize >= 1, rank >= 0, rank < worldSize else {
            throw DataError.invalidConfig(field: "rank", message: "rank \(rank) of world size \(worldSize)")
        }
        guard worldSize <= globalBatch else {
            throw DataError.tooManyRanks(ranks: worldSize, batch: globalBatch,
                                         reason: "the global batch (data.global_batch)")
        }
        guard blockSize >= 1, globalBatch % blockSize == 0 else {
            throw DataError.invalidConfig(field: "train.block_size", message: "data.global_batch \(globalBatch) "
                                          + "must be a multiple of the block size \(blockSize) (whole blocks)")
        }
        guard worldSize <= globalBatch / blockSize else {
            throw DataError.invalidConfig(field: "train.block_size", message: "\(worldSize) ranks need at least "
                + "\(worldSize) blocks of \(blockSize) samples, data.global_batch \(globalBatch) has "
                + "\(globalBatch / blockSize): a smaller train.block_size or a larger data.global_batch")
        }
        let full = count / globalBatch, rest = count % globalBatch
        if dropLast {
            guard full >= 1 else {
                throw DataError.invalidConfig(field: "data.global_batch",
                                              message: "\(globalBatch) exceeds the \(count) training samples "
                                                  + "and data.drop_last is true: no step per epoch")
            }
        } else if rest > 0 && (rest + blockSize - 1) / blockSize < worldSize {
            throw blockSize > 1
                ? DataError.tooFewBlocks(ranks: worldSize, batch: rest, blockSize: blockSize,
                                         reason: "the last partial batch")
                : DataError.tooManyRanks(ranks: worldSize, batch: rest, reason: "the last partial batch "
                                             + "(set data.drop_last: true or change data.global_batch)")
        }
        self.count = count; self.globalBatch = globalBatch; self.dropLast = dropLast; self.seed = seed
        self.rank = rank; self.worldSize = worldSize; self.blockSize = blockSize
        stepsPerEpoch = full + (dropLast || rest == 0 ? 0 : 1)
    }

    /// The permutation of epoch `epoch` (cached for the latest epoch).
    public func permutation(epoch: Int) -> [Int] {
        lock.lock(); defer { lock.unlock() }
        if epoch != cachedEpoch {
            var rng = KDRandom(keys: seed, UInt64(epoch), 0x5A3D)
            cachedPermutation = rng.permutation(count)
            cachedEpoch = epoch
        }
        return cachedPermutation
    }

    /// Size of the global batch of `step` (B, or the remainder for a kept last batch).
    public func batchSize(step: Int) -> Int { min(globalBatch, count - step * globalBatch) }

    /// The plan of the global batch `(epoch, step)` seen from this rank: its size, every rank's count,
    /// this rank's share.
    public func plan(epoch: Int, step: Int) -> BatchPlan {
        BatchPlan(epoch: epoch, step: step, globalSamples: batchSize(step: step), rank: rank, worldSize: worldSize,
                  blockSize: blockSize)
    }

    /// Sample indices of the global batch `(epoch, step)`, identical on every rank.
    public func globalIndices(epoch: Int, step: Int) -> [Int] {
        precondition(step >= 0 && step < stepsPerEpoch, "step \(step) outside 0..<\(stepsPerEpoch)")
        let p = permutation(epoch: epoch)
        let lo = step * globalBatch
        return Array(p[lo..<(lo + batchSize(step: step))])
    }

    /// This rank's sample indices of the batch `plan`.
    public func localIndices(_ plan: BatchPlan) -> [Int] {
        Array(globalIndices(epoch: plan.epoch, step: plan.step)[plan.share])
    }
}

/// Evaluation sharding: the evaluation split in index order (no shuffling), cut into batches of `B`
/// (the last one partial, never dropped) and each batch shared between ranks exactly like training.
public enum EvalSharding {
    /// Global batches of the evaluation split.
    public static func globalBatches(count: Int, batch: Int) -> [Range<Int>] {
        precondition(batch >= 1)
        return stride(from: 0, to: count, by: batch).map { $0..<min($0 + batch, count) }
    }

    /// Rank `r`'s plan and sample indices of every evaluation batch (a share may be empty when the last
    /// batch has fewer samples than ranks); `plan.step` is the batch number.
    public static func rankBatches(count: Int, batch: Int, rank: Int,
                                   worldSize: Int) -> [(plan: BatchPlan, indices: [Int])] {
        globalBatches(count: count, batch: batch).enumerated().map { b, g in
            let plan = BatchPlan(step: b, globalSamples: g.count, rank: rank, worldSize: worldSize)
            return (plan, Array((g.lowerBound + plan.share.lowerBound)..<(g.lowerBound + plan.share.upperBound)))
        }
    }

    /// All of rank `r`'s evaluation indices (its batches concatenated).
    public static func rankIndices(count: Int, batch: Int, rank: Int, worldSize: Int) -> [Int] {
        rankBatches(count: count, batch: batch, rank: rank, worldSize: worldSize).flatMap { $0.indices }
    }
}
