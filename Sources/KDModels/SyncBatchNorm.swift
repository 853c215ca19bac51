import KDCore
import KDTensor

/// A statistics reducer that counts the reductions asked for (`kdgraph bench` reports them).
public protocol CountedStatisticsReducer: StatisticsReducer {
    var calls: Int { get }
    var valuesReduced: Int { get }
}

/// SyncBN's statistics reducer over a `Communicator`: an in-place all-reduce SUM of Doubles.
///
/// `batchNorm` calls it in forward with per-channel `[Σx, Σx², n]` and in backward with
/// `[Σdy, Σdy·x̂]`, so every rank normalises with the global batch's mean and (biased) variance and
/// back-propagates the exact gradient of the global-batch BatchNorm. Install it on a model with
/// `model.setStatisticsReducer(CommStatisticsReducer(comm: comm))`. On a world of one it is a no-op
/// reduction, identical to plain BatchNorm.
///
/// `calls` and `valuesReduced` count the reductions asked for (also on a world of one, where nothing
/// is sent), so a benchmark can tell how many small all-reduces a step of this model needs.
public final class CommStatisticsReducer: CountedStatisticsReducer {
    public let comm: Communicator
    public private(set) var calls = 0
    public private(set) var valuesReduced = 0
    public init(comm: Communicator) { self.comm = comm }
    public func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        calls += 1
        valuesReduced += count
        if comm.size > 1 { try comm.allReduce(values, count: count, op: .sum) }
    }
}

/// Deterministic training's SyncBN reducer (docs/training.md): the per-block statistics of every rank
/// summed exactly (`ExactSum`, one fixed-point scale per statistic), so the batch mean and variance —
/// and with them every normalised activation — are the same bits whatever the world size.
/// `globalBlocks` bounds the blocks of a global batch (headroom of the fixed-point sum).
public final class ExactStatisticsReducer: CountedStatisticsReducer {
    public let comm: Communicator
    public let globalBlocks: Int
    public private(set) var calls = 0
    public private(set) var valuesReduced = 0
    public init(comm: Communicator, globalBlocks: Int) { self.comm = comm; self.globalBlocks = globalBlocks }

    /// Without blocks: this rank's totals count as one block.
    public func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        let copy = Array(UnsafeBufferPointer(start: values, count: count))
        try copy.withUnsafeBufferPointer { p in
            try sumBlocksAcrossRanks([BlockPartials(partials: p.baseAddress!, blocks: 1, count: count, result: values)])
        }
    }

    /// Every value of every part is its own `ExactSum` group (its own scale), so a part's sums are the
    /// same bits whether it is reduced alone or with others.
    public func sumBlocksAcrossRanks(_ parts: [BlockPartials]) throws {
        calls += 1
        valuesReduced += parts.reduce(0) { $0 + $1.count }
        let groups = parts.flatMap { p in
            (0..<p.count).map {
                ExactSum.Group(partials: p.partials + $0, blocks: p.blocks, count: 1, blockStride: p.count,
                               result: p.result + $0)
            }
        }
        try ExactSum.reduce(groups, globalBlocks: max(globalBlocks, comm.size), comm: comm)
    }
}
