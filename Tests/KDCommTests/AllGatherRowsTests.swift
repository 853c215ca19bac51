import XCTest
@testable import KDComm
import KDCore
@testable import KDTensor

final class AllGatherRowsTests: XCTestCase {
    var comm: MPICommunicator!
    override func setUpWithError() throws {
        comm = try MPICommunicator.initialize()
        Tape.reset()
        GradMode.isEnabled = true
    }

    func testForwardIsTheLocalRowsOnAWorldOfOne() throws {
        let x = Tensor(shape: [2, 2, 3], data: (0..<12).map(Float.init))
        let y = try allGatherRows(x, comm: comm)
        XCTAssertEqual(y.shape, [2, 2, 3])
        XCTAssertEqual(y.array, x.array)
        let z = try allGatherRows(Tensor.zeros([0, 5]), comm: comm)
        XCTAssertEqual(z.shape, [0, 5])
    }

    func testGradientCheck() throws {
        var rng = KDRandom(keys: 1, 2)
        let x = Tensor.randn([3, 4], rng: &rng), w = Tensor.randn([4, 2], rng: &rng)
        let r = try gradientCheck([x, w]) { xs in try matmul(try allGatherRows(xs[0], comm: comm), xs[1]) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testGradientAccumulatesOverTwoGathersOfTheSameRows() throws {
        var rng = KDRandom(keys: 3, 4)
        let x = Tensor.randn([3, 3], rng: &rng)
        let r = try gradientCheck([x]) { xs in
            try matmul(try allGatherRows(xs[0], comm: comm), try allGatherRows(xs[0], comm: comm), transposeB: true)
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testBackwardRunsEvenWhenTheShareIgnoresTheGather() throws {
        // The gathered tensor starts with a zero gradient, so its node (and its collective) always runs.
        let x = Tensor(shape: [2, 2], data: [1, 2, 3, 4], requiresGrad: true)
        let y = try allGatherRows(x, comm: comm)
        XCTAssertEqual(y.grad?.array, [0, 0, 0, 0])
        let a = Tensor(shape: [1, 1], data: [2], requiresGrad: true)
        let other = try matmul(a, a)       // the share: a term that does not use y
        _ = y
        Tape.backward(other)
        XCTAssertEqual(a.grad?.array, [4])
        XCTAssertEqual(x.grad?.array, [0, 0, 0, 0], "node ran and reduce-scattered zeros")
    }

    func testNoGradVariantRecordsNothing() throws {
        let x = Tensor(shape: [2, 2], data: [1, 2, 3, 4], requiresGrad: true)
        let before = Tape.current.nodeCount
        let y = try allGatherRowsNoGrad(x, comm: comm)
        XCTAssertEqual(Tape.current.nodeCount, before)
        XCTAssertFalse(y.requiresGrad)
        XCTAssertNil(y.grad)
        XCTAssertEqual(y.array, [1, 2, 3, 4])
    }

    func testCountsGivenOrExchanged() throws {
        let x = Tensor(shape: [3, 1], data: [5, 6, 7])
        XCTAssertEqual(try allGatherRowsNoGrad(x, comm: comm, counts: [3]).array, [5, 6, 7])
        XCTAssertEqual(try comm.rowLayout(localRows: 3), RowLayout(counts: [3]))
        let layout = RowLayout(counts: [2, 0, 3])
        XCTAssertEqual(layout.offsets, [0, 2, 2])
        XCTAssertEqual(layout.total, 5)
        XCTAssertEqual(layout.rows(of: 2), 2..<5)
        XCTAssertEqual(try comm.allGatherInts([4, 5, 6]), [4, 5, 6])
    }

    func testErrors() throws {
        XCTAssertThrowsError(try allGatherRows(Tensor.scalar(1), comm: comm)) {
            XCTAssertEqual("\($0)", "allGatherRows: needs a tensor with a row axis, got shape []")
        }
        XCTAssertThrowsError(try allGatherRowsNoGrad(Tensor.zeros([2, 3]), comm: comm, counts: [4])) {
            XCTAssertEqual("\($0)", "allGatherRowsNoGrad: counts [4] do not give rank 0 its 2 rows (world of 1)")
        }
    }
}
