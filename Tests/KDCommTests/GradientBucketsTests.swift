import XCTest
@testable import KDComm
@testable import KDTensor

final class GradientBucketsTests: XCTestCase {
    var comm: MPICommunicator!
    override func setUpWithError() throws {
        comm = try MPICommunicator.initialize()
        Tape.reset()
        GradMode.isEnabled = true
    }

    func params(_ counts: [Int]) -> [Tensor] {
        counts.enumerated().map { (p, c) in
            let t = Tensor.zeros([c])
            t.name = "p\(p)"
            t.grad = Tensor(shape: [c], data: (0..<c).map { Float(p * 100 + $0) })
            return t
        }
    }

    func testLayoutIsReverseOrderWithinTheByteBudget() throws {
        // 50 floats per bucket; reverse order: p3 (40) | p2 (30) + p1 (20) | p0 (10).
        let b = try GradientBuckets(parameters: params([10, 20, 30, 40]), comm: comm, bucketBytes: 200)
        XCTAssertEqual(b.buckets.map(\.parameterIndices), [[3], [2, 1], [0]])
        XCTAssertEqual(b.buckets.map(\.offsets), [[0], [0, 30], [0]])
        XCTAssertEqual(b.buckets.map(\.elementCount), [40, 50, 10])
        XCTAssertEqual(b.totalBytes, 400)
        // A parameter larger than the budget gets a bucket of its own.
        let big = try GradientBuckets(parameters: params([5, 1000, 5]), comm: comm, bucketBytes: 64)
        XCTAssertEqual(big.buckets.map(\.parameterIndices), [[2], [1], [0]])
        let one = try GradientBuckets(parameters: params([5, 1000, 5]), comm: comm)
        XCTAssertEqual(one.buckets.map(\.parameterIndices), [[2, 1, 0]], "default 4 MiB holds all")
    }

    func testBlockingRoundTripScaleAndMissingGradients() throws {
        let ps = params([3, 4, 5])
        ps[1].grad = nil
        let b = try GradientBuckets(parameters: ps, comm: comm, bucketBytes: 16, scale: 0.5)
        try b.allReduceBlocking()
        XCTAssertEqual(ps[0].grad?.array, [0, 0.5, 1])
        XCTAssertEqual(ps[1].grad?.array, [0, 0, 0, 0], "nil gradient counts as zero and is written back")
        XCTAssertEqual(ps[2].grad?.array, [100, 100.5, 101, 101.5, 102])
        XCTAssertEqual(b.lastStats.bytesReduced, 48)
        XCTAssertEqual(b.lastStats.buckets, 3)
        XCTAssertEqual(b.lastStats.startedEarly, 0)
    }

    func testOverlappedStartsBucketsInOrderOnly() throws {
        let ps = params([4, 4, 4])
        let b = try GradientBuckets(parameters: ps, comm: comm, bucketBytes: 16)   // one per bucket: [2], [1], [0]
        b.markReady(ps[1])                 // bucket 1 complete, but bucket 0 has not started
        XCTAssertEqual(b.nextToStart, 0)
        b.markReady(Tensor.zeros([4]))     // not a parameter: ignored
        b.markReady(ps[2])                 // starts bucket 0, then bucket 1
        XCTAssertEqual(b.nextToStart, 2)
        b.markReady(ps[2])                 // repeated: ignored
        XCTAssertEqual(b.stepStats.startedEarly, 2)
        try b.finish()                     // starts bucket 2 (p0 never marked)
        XCTAssertEqual(b.lastStats.startedEarly, 2)
        XCTAssertEqual(b.lastStats.bytesReduced, 48)
        XCTAssertEqual(ps[0].grad?.array, [0, 1, 2, 3])
        XCTAssertEqual(ps[2].grad?.array, [200, 201, 202, 203])
        XCTAssertEqual(b.nextToStart, 0, "state reset for the next step")
        // A second step works the same way.
        for p in ps.reversed() { b.markReady(p) }
        try b.finish()
        XCTAssertEqual(b.lastStats.startedEarly, 3)
    }

    func testOverlapDrivenByTheTape() throws {
        var rng = KDRandom(keys: 9, 9)
        let w1 = Tensor.randn([4, 3], rng: &rng, requiresGrad: true)
        let w2 = Tensor.randn([2, 4], rng: &rng, requiresGrad: true)
        let x = Tensor.randn([5, 3], rng: &rng)
        let y1 = try matmul(try matmul(x, w1, transposeB: true), w2, transposeB: true)
        Tape.backward(y1, seed: Tensor(shape: y1.shape, repeating: 1))
        let ref1 = w1.grad!.array, ref2 = w2.grad!.array
        w1.grad = nil; w2.grad = nil
        let b = try GradientBuckets(parameters: [w1, w2], comm: comm, bucketBytes: 16)
        let y = try matmul(try matmul(x, w1, transposeB: true), w2, transposeB: true)
        Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1), onGradReady: b.onGradReady)
        XCTAssertEqual(b.nextToStart, 2, "both buckets started during backward")
        try b.finish()
        XCTAssertEqual(w1.grad!.array, ref1)
        XCTAssertEqual(w2.grad!.array, ref2)
    }

    func testBlockingRefusedWhileAnOverlappedStepIsInFlight() throws {
        let ps = params([4, 4])
        let b = try GradientBuckets(parameters: ps, comm: comm, bucketBytes: 16)
        b.markReady(ps[1])
        XCTAssertThrowsError(try b.allReduceBlocking()) {
            XCTAssertEqual("\($0)", "GradientBuckets.allReduceBlocking: an overlapped step is in progress "
                           + "(1 buckets started); call finish()")
        }
        try b.finish()
        XCTAssertEqual(ps[1].grad?.array, [100, 101, 102, 103])
        try b.allReduceBlocking()
    }

    func testErrors() throws {
        XCTAssertThrowsError(try GradientBuckets(parameters: [], comm: comm, bucketBytes: 0)) {
            XCTAssertEqual("\($0)", "GradientBuckets: bucketBytes must be positive, got 0")
        }
        let p = Tensor.zeros([2]); p.name = "fc.weight"
        XCTAssertThrowsError(try GradientBuckets(parameters: [p, p], comm: comm)) {
            XCTAssertEqual("\($0)", "GradientBuckets: parameter 0 (fc.weight) appears twice")
        }
    }
}
