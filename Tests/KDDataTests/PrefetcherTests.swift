import Foundation
import XCTest
@testable import KDData

final class PrefetcherTests: XCTestCase {
    struct Boom: Error, Equatable { let k: Int }

    func testDeliversInOrderThenNil() throws {
        let p = Prefetcher<Int>(depth: 2) { k in k < 10 ? k * k : nil }
        var got: [Int] = []
        while let v = try p.next() { got.append(v) }
        XCTAssertEqual(got, (0..<10).map { $0 * $0 })
        XCTAssertNil(try p.next())
        XCTAssertEqual(p.delivered, 10)
    }

    func testErrorReachesTheConsumerAfterEarlierItems() throws {
        let p = Prefetcher<Int>(depth: 3) { k in
            if k == 3 { throw Boom(k: 3) }
            return k
        }
        XCTAssertEqual(try p.next(), 0); XCTAssertEqual(try p.next(), 1); XCTAssertEqual(try p.next(), 2)
        XCTAssertThrowsError(try p.next()) { XCTAssertEqual($0 as? Boom, Boom(k: 3)) }
        XCTAssertNil(try p.next())
    }

    func testBoundedAheadAndCleanShutdown() throws {
        let produced = NSLock()
        var count = 0
        let p = Prefetcher<Int>(depth: 2) { k in produced.lock(); count += 1; produced.unlock(); return k }
        XCTAssertEqual(try p.next(), 0)
        Thread.sleep(forTimeInterval: 0.1)
        produced.lock(); let ahead = count; produced.unlock()
        XCTAssertLessThanOrEqual(ahead, 3)   // the one consumed + at most `depth` queued
        p.shutdown()
        XCTAssertThrowsError(try p.next()) {
            XCTAssertEqual("\($0)", "prefetcher: shut down while a batch was requested")
        }
    }

    func testMeasuresConsumerWait() throws {
        let p = Prefetcher<Int>(depth: 1) { k in Thread.sleep(forTimeInterval: 0.05); return k < 3 ? k : nil }
        while try p.next() != nil {}
        XCTAssertGreaterThan(p.totalWaitSeconds, 0.1)
        XCTAssertGreaterThan(p.lastWaitSeconds, 0.02)
    }

    /// Dropping the last reference runs deinit (the worker does not keep the prefetcher alive), which
    /// stops an endless producer and waits for its thread: no item is produced after it returns.
    func testDeinitStopsTheThread() throws {
        for _ in 0..<20 {
            let lock = NSLock()
            var produced = 0
            weak var released: Prefetcher<Int>?
            do {
                let p = Prefetcher<Int>(depth: 2) { k in lock.lock(); produced += 1; lock.unlock(); return k }
                released = p
                XCTAssertEqual(try p.next(), 0)
            }
            XCTAssertNil(released, "the prefetcher outlived its last reference")
            lock.lock(); let atDeinit = produced; lock.unlock()
            XCTAssertLessThanOrEqual(atDeinit, 4)   // the one consumed + `depth` queued + one in flight
            Thread.sleep(forTimeInterval: 0.02)
            lock.lock(); let later = produced; lock.unlock()
            XCTAssertEqual(later, atDeinit, "the worker kept producing after deinit")
        }
    }

    /// The prefetched training stream yields exactly the batches the loader gives directly, across epochs.
    func testTrainBatchStreamMatchesDirectLoading() throws {
        let ds = PatternDataset(count: 11)
        let loader = try BatchLoader(dataset: ds, views: 2, policy: AugmentPolicy(), normalization: .cifar10, seed: 4)
        let sampler = try Sampler(count: 11, globalBatch: 4, dropLast: true, seed: 1, rank: 1, worldSize: 2)
        let start = SamplerPosition(epoch: 0, step: 1)
        let stream = trainBatchStream(loader: loader, sampler: sampler, start: start, steps: 5)
        var k = 0
        while let b = try stream.next() {
            let pos = start.advanced(by: k, stepsPerEpoch: 2)
            XCTAssertEqual((b.epoch, b.step) == (pos.epoch, pos.step), true)
            let direct = loader.trainBatch(sampler, at: pos)
            XCTAssertEqual(b.images.array, direct.images.array); XCTAssertEqual(b.indices, direct.indices)
            k += 1
        }
        XCTAssertEqual(k, 5)
    }
}
