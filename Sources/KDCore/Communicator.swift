/// Element types that travel through collectives.
public enum CommScalarKind: Sendable { case float32, float64, int32, int64, uint8 }

public protocol CommScalar: Numeric, Sendable { static var commKind: CommScalarKind { get } }
extension Float: CommScalar { public static var commKind: CommScalarKind { .float32 } }
extension Double: CommScalar { public static var commKind: CommScalarKind { .float64 } }
extension Int32: CommScalar { public static var commKind: CommScalarKind { .int32 } }
extension Int64: CommScalar { public static var commKind: CommScalarKind { .int64 } }
extension Int: CommScalar { public static var commKind: CommScalarKind { .int64 } }
extension UInt8: CommScalar { public static var commKind: CommScalarKind { .uint8 } }

public enum ReduceOp: Sendable { case sum, max, min }

/// A pending non-blocking collective. `test()` drives progress and reports completion; `wait()` blocks.
public protocol CommRequest: AnyObject {
    func test() throws -> Bool
    func wait() throws
}

/// The communication seam of KDGraph, in `KDCore` so that the libraries coding against it link no MPI.
/// One product implementation, `MPICommunicator` (target `KDComm`); a world of one (no `mpirun`) is the
/// same implementation over an MPI singleton. Tests also run several ranks as threads of one process
/// over `InProcessWorld` (target `KDTestSupport`, docs/communication.md).
///
/// All buffers are raw pointers to contiguous elements. Every rank must call collectives in the same
/// order with matching counts (the MPI contract). Variable-count collectives take the per-rank counts,
/// identical on every rank. Code above this protocol never needs the concrete type: everything it
/// configures (hang timeout, step label, per-call message limits) and the one-rank sub-communicator
/// (`alone()`) are requirements here.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }

    func barrier() throws
    /// Root's `count` elements replace every other rank's.
    func broadcast<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int) throws
    /// In place: every rank ends with the element-wise reduction over ranks.
    func allReduce<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, op: ReduceOp) throws
    /// Starts an in-place all-reduce; the buffer must stay alive and untouched until the request
    /// completes (`test()` returns true or `wait()` returns).
    func allReduceAsync<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int,
                                       op: ReduceOp) throws -> CommRequest
    /// Each rank sends `count` elements; `recv` holds `size · count`, rank order.
    func allGather<T: CommScalar>(_ send: UnsafePointer<T>, count: Int, into recv: UnsafeMutablePointer<T>) throws
    /// Rank r sends `counts[r]` elements; `recv` holds `counts.sum`, rank order.
    func allGatherV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                   into recv: UnsafeMutablePointer<T>) throws
    /// `send` holds `counts.sum` elements on every rank; rank r receives the sum over ranks of its
    /// block `counts[r]` (the block after `counts[0..<r]`).
    func reduceScatterV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                       into recv: UnsafeMutablePointer<T>) throws
    /// Point to point, both ways at once (`MPI_Sendrecv`): sends `count` elements of `send` to rank `dest`
    /// and receives `count` elements from rank `source` into `recv` (the two must not overlap; a rank may
    /// name itself). Not a collective: only the ranks that exchange call it, and the k-th message from a
    /// rank to another meets the other's k-th receive from it. Watched like a collective (`timeoutSeconds`).
    func sendReceive<T: CommScalar>(_ send: UnsafePointer<T>, count: Int, to dest: Int,
                                    into recv: UnsafeMutablePointer<T>, from source: Int) throws
    /// Ends the whole job: prints `rank R: message` to stderr and aborts every rank with `code`.
    func abort(_ message: String, code: Int32) -> Never

    /// A communicator of this rank alone (size 1, rank 0): the one-process reference of a distributed
    /// computation inside the same job. Collective over the parent (every rank must call it).
    func alone() throws -> Communicator

    /// Seconds a blocking collective (or `CommRequest.wait`) may take before the job ends with
    /// `collective <name> did not complete within Ts of comm.timeout_s (step S)`; 0 or less disables the check.
    var timeoutSeconds: Double { get set }
    /// The training step named in that message (-1: not in a step).
    var currentStep: Int { get set }
    /// Splittable collectives (broadcast, all-reduce, non-blocking all-reduce) send at most this many
    /// elements per underlying call; larger buffers go as consecutive calls (same result, element-wise).
    var maxElementsPerCall: Int { get set }
    /// Blocking all-reduces larger than `4 × allReduceChunkBytes` are issued as consecutive calls of
    /// `allReduceChunkBytes` (0: one call per `maxElementsPerCall`).
    var allReduceChunkBytes: Int { get set }
}

/// A check run on every rank under a real `mpirun` by `kdgraph-mpi-checks` (Tests/mpi/run.sh).
/// It computes the one-process reference locally on each rank, runs the distributed version, and
/// throws `CheckFailure` with the measured figures when they disagree.
public struct MultiRankCheck {
    public let name: String
    public let run: (Communicator) throws -> Void
    public init(_ name: String, run: @escaping (Communicator) throws -> Void) { self.name = name; self.run = run }
}

public struct CheckFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
