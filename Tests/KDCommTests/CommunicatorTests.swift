import CMPI
import XCTest
@testable import KDComm
import KDCore
@testable import KDTensor

/// Every collective on the singleton world of one (no mpirun), argument errors and MPI errors.
final class CommunicatorTests: XCTestCase {
    var comm: MPICommunicator!

    override func setUpWithError() throws {
        comm = try MPICommunicator.initialize()
        XCTAssertTrue(MPICommunicator.isActive)
    }

    func testWorldOfOne() throws {
        XCTAssertEqual(comm.rank, 0)
        XCTAssertEqual(comm.size, 1)
        XCTAssertTrue(try MPICommunicator.initialize() === comm, "initialize returns the same world")
        try comm.barrier()
    }

    func collectives<T: CommScalar & Comparable>(_: T.Type, _ values: [T]) throws {
        var a = values
        for op in [ReduceOp.sum, .max, .min] {
            try comm.allReduce(&a, op: op)
            XCTAssertEqual(a, values, "allReduce \(op) on one rank is the identity (\(T.self))")
        }
        XCTAssertEqual(try comm.allReduce(values[0], op: .sum), values[0])
        try comm.broadcast(&a, root: 0)
        XCTAssertEqual(a, values)
        var out = [T](repeating: 0, count: values.count)
        try values.withUnsafeBufferPointer { s in
            try out.withUnsafeMutableBufferPointer {
                try comm.allGather(s.baseAddress!, count: values.count, into: $0.baseAddress!)
            }
        }
        XCTAssertEqual(out, values)
        XCTAssertEqual(try comm.allGatherV(values), values)
        XCTAssertEqual(try comm.allGatherV([T]()), [])
        var rs = [T](repeating: 0, count: values.count)
        try values.withUnsafeBufferPointer { s in
            try rs.withUnsafeMutableBufferPointer {
                try comm.reduceScatterV(s.baseAddress!, counts: [values.count], into: $0.baseAddress!)
            }
        }
        XCTAssertEqual(rs, values)
        var b = values
        let req = try b.withUnsafeMutableBufferPointer {
            try comm.allReduceAsync($0.baseAddress!, count: values.count, op: .max)
        }
        var spins = 0
        while try !req.test() { spins += 1; XCTAssertLessThan(spins, 1_000_000) }
        try req.wait()
        XCTAssertEqual(b, values)
    }

    func testEveryCollectiveEveryType() throws {
        try collectives(Float.self, [1.5, -2, 3, 0])
        try collectives(Double.self, [1.25, -2, 1e300])
        try collectives(Int32.self, [7, -8, Int32.max])
        try collectives(Int64.self, [Int64.min, 3, 4])
        try collectives(Int.self, [1, 2, 3, 4, 5])
        try collectives(UInt8.self, [0, 255, 17])
    }

    func testZeroCountsAreNoOps() throws {
        var x: Float = 4
        try comm.allReduce(&x, count: 0, op: .sum)
        try comm.broadcast(&x, count: 0, root: 0)
        let req = try comm.allReduceAsync(&x, count: 0, op: .sum)
        XCTAssertTrue(try req.test())
        XCTAssertEqual(x, 4)
        XCTAssertEqual(try comm.allGatherInts([]), [])
    }

    func testSplittingAboveTheLimit() throws {
        comm.maxElementsPerCall = 3
        defer { comm.maxElementsPerCall = mpiIntLimit }
        XCTAssertEqual(comm.maxElementsPerCall, 3)
        var a: [Int32] = Array(0..<10)
        try comm.allReduce(&a, op: .sum)
        XCTAssertEqual(a, Array(0..<10))
        let req = try a.withUnsafeMutableBufferPointer { try comm.allReduceAsync($0.baseAddress!, count: 10, op: .sum) }
        XCTAssertEqual((req as! MPIRequest).requests.count, 4, "10 elements in calls of at most 3")
        try req.wait()
        comm.maxElementsPerCall = 0
        XCTAssertEqual(comm.maxElementsPerCall, 1, "clamped to at least one element")
        comm.maxElementsPerCall = mpiIntLimit
        comm.allReduceChunkBytes = 8             // 2 Int32 per call above 32 bytes
        defer { comm.allReduceChunkBytes = 1 << 20 }
        var big: [Int32] = Array(0..<101)
        try comm.allReduce(&big, op: .max)
        XCTAssertEqual(big, Array(0..<101))
    }

    func testArgumentErrors() throws {
        var x: Float = 0
        var y: Float = 0
        XCTAssertThrowsError(try comm.allReduce(&x, count: -1, op: .sum)) {
            XCTAssertEqual("\($0)", "MPI_Allreduce: negative count -1")
        }
        XCTAssertThrowsError(try comm.broadcast(&x, count: 1, root: 1)) {
            XCTAssertEqual("\($0)", "MPI_Bcast: root 1 outside 0..<1")
        }
        XCTAssertThrowsError(try comm.allGatherV(&x, counts: [1, 1], into: &y)) {
            XCTAssertEqual("\($0)", "MPI_Allgatherv: needs 1 counts (one per rank), got 2")
        }
        XCTAssertThrowsError(try comm.reduceScatterV(&x, counts: [-2], into: &y)) {
            XCTAssertEqual("\($0)", "MPI_Reduce_scatter: negative count -2 for rank 0")
        }
        // Rejected before any memory is touched.
        XCTAssertThrowsError(try comm.allGather(&x, count: mpiIntLimit + 1, into: &y)) {
            XCTAssertEqual("\($0)", "MPI_Allgather: count 2147483648 exceeds the MPI limit of 2147483647 elements "
                           + "per call (split the buffer into smaller messages)")
        }
        XCTAssertThrowsError(try comm.allGatherV(&x, counts: [mpiIntLimit + 5], into: &y)) {
            XCTAssertEqual($0 as? CommError,
                           .countTooLarge(op: "MPI_Allgatherv", count: mpiIntLimit + 5, limit: mpiIntLimit))
        }
        XCTAssertThrowsError(try comm.allGatherV([1, 2, 3], counts: [2])) {
            XCTAssertEqual("\($0)", "allGatherV: counts [2] do not give rank 0 its 3 elements")
        }
    }

    func testMPIErrorsBecomeSwiftErrors() throws {
        // MPI_ERRORS_RETURN is set: an invalid root reaches MPI and comes back as an error code.
        var x: Float = 0
        XCTAssertThrowsError(try comm.call("MPI_Bcast") { MPI_Bcast(&x, 1, kd_mpi_float(), 5, comm.handle) }) { e in
            guard case let .mpi(op, code, message) = e as? CommError else { return XCTFail("not an MPI error: \(e)") }
            XCTAssertEqual(op, "MPI_Bcast")
            XCTAssertEqual(code, MPI_ERR_ROOT)
            XCTAssertTrue(message.contains("MPI_ERR_ROOT"), message)
        }
        XCTAssertThrowsError(try checkMPI(MPI_ERR_COUNT, "MPI_Allreduce")) {
            XCTAssertEqual("\($0)", "MPI_Allreduce: MPI error 2: MPI_ERR_COUNT: invalid count argument")
        }
    }

    func testDuplicateIsIndependent() throws {
        let dup = try comm.duplicate()
        XCTAssertFalse(dup === comm)
        XCTAssertEqual(dup.size, 1)
        XCTAssertEqual(try dup.allReduce(Int32(5), op: .max), 5)
    }

    func testVerifyIdenticalOnOneRank() throws {
        try comm.verifyIdentical(3.5, what: "checksum")
        try comm.verifyIdentical(.nan, what: "checksum")
        let mismatch = CommError.rankMismatch(
            op: "verifyIdentical", message: "checksum differs across ranks: min 1.0, max 2.0 (this rank 1.0)")
        XCTAssertEqual("\(mismatch)",
                       "verifyIdentical: ranks disagree: checksum differs across ranks: "
                       + "min 1.0, max 2.0 (this rank 1.0)")
    }

    func testRunOrAbortPassesResults() {
        XCTAssertEqual(runOrAbort(comm) { 42 }, 42)
    }

    func testErrorDescriptions() {
        XCTAssertEqual("\(CommError.rankMismatch(op: "allGatherRows", message: "row sizes [3, 4]"))",
                       "allGatherRows: ranks disagree: row sizes [3, 4]")
        XCTAssertEqual("\(CommError.injectedFailure(rank: 1, message: "x"))", "injected failure on rank 1: x")
    }
}
