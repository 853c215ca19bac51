import KDComm
import KDTensor

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
public final class CommStatisticsReducer: StatisticsReducer {
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
