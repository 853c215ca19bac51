import XCTest
import KDComm
import KDCore
import KDTensor
@testable import KDModels

/// Counts and checks the reductions BatchNorm asks for; `copies` simulates that many ranks holding
/// identical slices (each sum is multiplied by `copies`).
final class CountingReducer: StatisticsReducer {
    var calls: [Int] = []
    let copies: Double
    init(copies: Double) { self.copies = copies }
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        calls.append(count)
        for i in 0..<count { values[i] *= copies }
    }
}

final class SyncBatchNormTests: XCTestCase {
    func testReducerIsInstalledOnEveryBatchNorm() throws {
        let m = try ModelZoo.make(name: "resnet8", classes: 10)
        let r = CountingReducer(copies: 1)
        m.setStatisticsReducer(r)
        let bns = m.namedModules().compactMap { $0.1 as? BatchNorm2d }
        XCTAssertEqual(bns.count, 9)
        XCTAssertTrue(bns.allSatisfy { $0.reducer === r })
        m.setStatisticsReducer(nil)
        XCTAssertTrue(bns.allSatisfy { $0.reducer == nil })
    }

    /// Forward reduces [Σx, Σx², n] (2C + 1 values) per BN, backward [Σdy, Σdy·x̂] (2C); with identical
    /// slices on two "ranks" the output equals plain BN and the running variance uses the global n.
    func testReductionsInForwardAndBackward() throws {
        var rng = KDRandom(keys: 4)
        let x = Tensor.randn([2, 3, 3, 4], rng: &rng, requiresGrad: true)
        let plain = BatchNorm2d(4), synced = BatchNorm2d(4, reducer: CountingReducer(copies: 2))
        let y0 = try plain(x), y1 = try synced(x)
        for (a, b) in zip(y0.array, y1.array) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        let r = synced.reducer as! CountingReducer
        XCTAssertEqual(r.calls, [9])
        Tape.backward(sum(y1))
        XCTAssertEqual(r.calls, [9, 8])
        // running_var = 0.9 + 0.1 · σ²·n/(n − 1) with n = 18 (plain) vs 36 (two ranks).
        for c in 0..<4 {
            let v0 = (plain.runningVar.ptr[c] - 0.9) / 0.1 * 17 / 18
            let v1 = (synced.runningVar.ptr[c] - 0.9) / 0.1 * 35 / 36
            XCTAssertEqual(v0, v1, accuracy: 1e-5)
        }
        XCTAssertEqual(synced.numBatchesTracked.item, 1)
        Tape.reset()
    }

    /// On a world of one the communicator reducer sends nothing (output identical to plain BN) but
    /// counts what a step asks for: resnet8 has 9 BNs, one reduction each in forward and backward,
    /// (2C + 1) + 2C values for C channels (16×3, 32×3, 64×3).
    func testCommReducerCountsOnAWorldOfOne() throws {
        let comm = try MPICommunicator.initialize()
        XCTAssertEqual(comm.size, 1)
        let plain = try ModelZoo.make(name: "resnet8", classes: 10, seed: 3)
        let synced = try ModelZoo.make(name: "resnet8", classes: 10, seed: 3)
        let reducer = CommStatisticsReducer(comm: comm)
        synced.setStatisticsReducer(reducer)
        var rng = KDRandom(keys: 5)
        let x = Tensor.randn([2, 8, 8, 3], rng: &rng)
        plain.train(true); synced.train(true)
        let (_, z0) = try plain(x)
        let (_, z1) = try synced(x)
        XCTAssertEqual(z0.array, z1.array)
        XCTAssertEqual(reducer.calls, 9)
        Tape.backward(sum(z1))
        XCTAssertEqual(reducer.calls, 18)
        let channels = [16, 16, 16, 32, 32, 32, 64, 64, 64]
        XCTAssertEqual(reducer.valuesReduced, channels.reduce(0) { $0 + (2 * $1 + 1) + 2 * $1 })
        Tape.reset()
    }
}
