import CMPI
import Foundation
import KDCore
import KDTensor

/// The MPI datatype of a `CommScalar` (`Int` travels as `MPI_INT64_T`).
@inline(__always)
func mpiType<T: CommScalar>(_: T.Type) -> MPI_Datatype {
    switch T.commKind {
    case .float32: return kd_mpi_float()
    case .float64: return kd_mpi_double()
    case .int32: return kd_mpi_int32()
    case .int64: return kd_mpi_int64()
    case .uint8: return kd_mpi_uint8()
    }
}

@inline(__always)
func mpiOp(_ op: ReduceOp) -> MPI_Op {
    switch op {
    case .sum: return kd_mpi_op_sum()
    case .max: return kd_mpi_op_max()
    case .min: return kd_mpi_op_min()
    }
}

/// MPI's text for an error code (`MPI_Error_string`; OpenMPI aborts if it is called outside
/// `MPI_Init` … `MPI_Finalize`, so then only the code is given).
func mpiErrorString(_ code: Int32) -> String {
    guard MPICommunicator.isActive else { return "MPI error code \(code) (MPI not active)" }
    var buf = [CChar](repeating: 0, count: Int(kd_mpi_max_error_string()) + 1)
    var len: Int32 = 0
    if MPI_Error_string(code, &buf, &len) != kd_mpi_success() { return "unknown MPI error" }
    return String(cString: buf)
}

/// Throws `CommError.mpi` naming `op` unless `rc` is `MPI_SUCCESS`.
@inline(__always)
func checkMPI(_ rc: Int32, _ op: @autoclosure () -> String) throws {
    if rc != kd_mpi_success() { throw CommError.mpi(op: op(), code: rc, message: mpiErrorString(rc)) }
}

/// The largest count or displacement one MPI call accepts (MPI's `int`).
public let mpiIntLimit = Int(Int32.max)

/// The `Communicator` over real OpenMPI.
///
/// `MPICommunicator.initialize()` calls `MPI_Init_thread` once per process: `MPI_THREAD_MULTIPLE`, so
/// the watchdog thread's `StallProbe` can ask the other ranks which of them a timed-out collective
/// waits for (every other MPI call comes from the thread that initialised MPI; `KDGRAPH_STALL_PROBE=0`
/// asks for `MPI_THREAD_FUNNELED` and no probe). It works without `mpirun` as a singleton world
/// of one, sets `MPI_ERRORS_RETURN` on the world so MPI failures become `CommError`s naming the
/// collective, and registers `MPI_Finalize` to run at exit. Every blocking collective is watched by the
/// process `Watchdog` (default 300 s); `abort` ends every rank of the job.
///
/// Counts above `Int32.max` are split into several calls where the collective allows it (all-reduce,
/// broadcast, non-blocking all-reduce) and rejected with `CommError.countTooLarge` where it does not
/// (all-gather, all-gather-v, reduce-scatter-v). Large blocking all-reduces are also split into 1 MiB
/// calls (`allReduceChunkBytes`), which measured faster than one large message.
public final class MPICommunicator: Communicator, @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// The MPI communicator handle (the world, or a duplicate of it).
    public let handle: MPI_Comm
    /// Splittable collectives send at most this many elements per MPI call (clamped to
    /// `1...Int32.max`; tests lower it to exercise the splitting).
    public var maxElementsPerCall: Int = mpiIntLimit {
        didSet { maxElementsPerCall = Swift.min(Swift.max(1, maxElementsPerCall), mpiIntLimit) }
    }

    /// Exit code of `abort` for errors raised by `runOrAbort`.
    public static let errorExitCode: Int32 = 1
    /// Exit code when the watchdog ends the job.
    public static let timeoutExitCode: Int32 = 3

    nonisolated(unsafe) private static var worldInstance: MPICommunicator?
    nonisolated(unsafe) private static var ownsMPI = false

    init(handle: MPI_Comm) throws {
        self.handle = handle
        try checkMPI(MPI_Comm_set_errhandler(handle, kd_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var r: Int32 = 0, s: Int32 = 0
        try checkMPI(MPI_Comm_rank(handle, &r), "MPI_Comm_rank")
        try checkMPI(MPI_Comm_size(handle, &s), "MPI_Comm_size")
        rank = Int(r)
        size = Int(s)
    }

    /// True once `MPI_Init_thread` has run and `MPI_Finalize` has not.
    public static var isActive: Bool {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        return initialized != 0 && finalized == 0
    }

    /// The world communicator, initialising MPI on first use.
    ///
    /// - Parameter blasThreads: OpenBLAS threads for this process. `nil`: one thread per rank when
    ///   the world has more than one rank and `OPENBLAS_NUM_THREADS` is unset, else unchanged.
    public static func initialize(blasThreads: Int? = nil) throws -> MPICommunicator {
        if let w = worldInstance {
            if let n = blasThreads { setBLASThreads(n) }
            return w
        }
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        if finalized != 0 {
            throw CommError.invalidArgument(op: "MPICommunicator.initialize", message: "MPI was already finalized")
        }
        var provided: Int32 = 0
        if initialized == 0 {
            let wanted = stallProbeEnabled ? kd_mpi_thread_multiple() : kd_mpi_thread_funneled()
            try checkMPI(MPI_Init_thread(nil, nil, wanted, &provided), "MPI_Init_thread")
            ownsMPI = true
            atexit { MPICommunicator.finalize() }
        } else {
            MPI_Query_thread(&provided)
        }
        let world = try MPICommunicator(handle: kd_mpi_comm_world())
        worldInstance = world
        Watchdog.shared.rank = world.rank
        Watchdog.shared.onTimeout = { message in world.abort(message, code: MPICommunicator.timeoutExitCode) }
        // Every rank takes the same branch (same environment, same MPI library): MPI_Comm_dup is collective.
        if stallProbeEnabled && world.size > 1 && provided >= kd_mpi_thread_multiple() {
            Watchdog.shared.setProbe(try StallProbe(world: world.handle, rank: world.rank, size: world.size))
        }
        if let n = blasThreads {
            setBLASThreads(n)
        } else if world.size > 1, ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"] == nil {
            setBLASThreads(1)
        }
        return world
    }

    /// False when `KDGRAPH_STALL_PROBE=0`: MPI at `MPI_THREAD_FUNNELED`, timeouts name no rank.
    static var stallProbeEnabled: Bool { ProcessInfo.processInfo.environment["KDGRAPH_STALL_PROBE"] != "0" }

    /// Calls `MPI_Finalize` once (also registered with `atexit` by `initialize`). The watchdog guards it
    /// like a collective: a rank stuck in finalize (a peer never got there) is aborted.
    public static func finalize() {
        guard ownsMPI, isActive else { return }
        Watchdog.shared.setProbe(nil)   // the watchdog thread makes no MPI call from here on
        Watchdog.shared.begin("MPI_Finalize", collective: false)
        MPI_Finalize()
        Watchdog.shared.end()
    }

    /// A new communicator over the same ranks (`MPI_Comm_dup`): its collectives never match the
    /// original's, so a side channel (e.g. agreeing on check results) cannot be confused with them.
    public func duplicate() throws -> MPICommunicator {
        var dup: MPI_Comm? = nil
        try call("MPI_Comm_dup") { MPI_Comm_dup(handle, &dup) }   // collective: watched like the others
        guard let dup else {
            throw CommError.mpi(op: "MPI_Comm_dup", code: -1, message: "returned a null communicator")
        }
        return try MPICommunicator(handle: dup)
    }

    /// A communicator of this rank alone (`MPI_Comm_split` with the rank as colour). Multi-rank checks
    /// use it to compute the one-process reference of a distributed run inside the same job.
    public func alone() throws -> Communicator {
        var c: MPI_Comm? = nil
        try call("MPI_Comm_split") { MPI_Comm_split(handle, Int32(rank), 0, &c) }
        guard let c else {
            throw CommError.invalidArgument(op: "MPI_Comm_split", message: "returned no communicator")
        }
        return try MPICommunicator(handle: c)
    }

    // MARK: watchdog

    /// Seconds a blocking collective (or `wait`) may take before the job is aborted (process-wide,
    /// default 300, `KDGRAPH_COMM_TIMEOUT` overrides; 0 disables). Set from a config, the message names
    /// `comm.timeout_s`.
    public var timeoutSeconds: Double {
        get { Watchdog.shared.timeoutSeconds }
        set { Watchdog.shared.setTimeout(newValue, setting: "comm.timeout_s") }
    }

    /// Sets the timeout from another `setting`, which the message names (a tool's option).
    public func setTimeout(_ seconds: Double, setting: String) {
        Watchdog.shared.setTimeout(seconds, setting: setting)
    }

    /// The training step named by the watchdog's message.
    public var currentStep: Int {
        get { Watchdog.shared.currentStep }
        set { Watchdog.shared.currentStep = newValue }
    }

    /// Runs one blocking MPI call under the watchdog and converts its return code.
    @inline(__always)
    func call(_ name: StaticString, _ body: () -> Int32) throws {
        Watchdog.shared.begin(name)
        let rc = body()
        Watchdog.shared.end()
        if rc != kd_mpi_success() { throw CommError.mpi(op: "\(name)", code: rc, message: mpiErrorString(rc)) }
    }

    // MARK: argument checks

    @inline(__always)
    func checkCount(_ op: String, _ count: Int) throws {
        if count < 0 { throw CommError.invalidArgument(op: op, message: "negative count \(count)") }
    }

    /// Validates per-rank counts and returns them with their displacements as MPI `int`s.
    func countsAndDisplacements(_ op: String,
                                _ counts: [Int]) throws -> (counts: [Int32], displs: [Int32], total: Int) {
        guard counts.count == size else {
            throw CommError.invalidArgument(op: op, message: "needs \(size) counts (one per rank), got \(counts.count)")
        }
        var c32 = [Int32](repeating: 0, count: size), d32 = [Int32](repeating: 0, count: size)
        var off = 0
        for (r, c) in counts.enumerated() {
            if c < 0 { throw CommError.invalidArgument(op: op, message: "negative count \(c) for rank \(r)") }
            if c > mpiIntLimit { throw CommError.countTooLarge(op: op, count: c, limit: mpiIntLimit) }
            if off > mpiIntLimit {
                throw CommError.countTooLarge(op: op + " (displacement)", count: off, limit: mpiIntLimit)
            }
            c32[r] = Int32(c)
            d32[r] = Int32(off)
            off += c
        }
        if off > mpiIntLimit { throw CommError.countTooLarge(op: op + " (total)", count: off, limit: mpiIntLimit) }
        return (c32, d32, off)
    }

    // MARK: collectives

    public func barrier() throws {
        try call("MPI_Barrier") { MPI_Barrier(handle) }
    }

    public func broadcast<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int) throws {
        try checkCount("MPI_Bcast", count)
        guard root >= 0, root < size else {
            throw CommError.invalidArgument(op: "MPI_Bcast", message: "root \(root) outside 0..<\(size)")
        }
        let type = mpiType(T.self)
        var off = 0
        while off < count {
            let n = Swift.min(count - off, maxElementsPerCall)
            try call("MPI_Bcast") { MPI_Bcast(buffer + off, Int32(n), type, Int32(root), handle) }
            off += n
        }
    }

    /// Blocking all-reduces of more than `4 × allReduceChunkBytes` are issued as consecutive calls of
    /// `allReduceChunkBytes` (default 1 MiB; 0 disables). Measured here at np 2 (docs/communication.md):
    /// a 64 MB sum took 62–130 ms as one call and 16–46 ms as 1 MiB calls; the 16-core node showed
    /// the same (2.2× at 16 ranks).
    public var allReduceChunkBytes: Int = 1 << 20

    public func allReduce<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, op: ReduceOp) throws {
        try checkCount("MPI_Allreduce", count)
        let type = mpiType(T.self), mop = mpiOp(op)
        let stride = MemoryLayout<T>.stride
        var perCall = maxElementsPerCall
        if allReduceChunkBytes > 0 && count * stride > 4 * allReduceChunkBytes {
            perCall = Swift.min(perCall, Swift.max(1, allReduceChunkBytes / stride))
        }
        var off = 0
        while off < count {
            let n = Swift.min(count - off, perCall)
            try call("MPI_Allreduce") { MPI_Allreduce(kd_mpi_in_place(), buffer + off, Int32(n), type, mop, handle) }
            off += n
        }
    }

    public func allReduceAsync<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int,
                                              op: ReduceOp) throws -> CommRequest {
        try checkCount("MPI_Iallreduce", count)
        let type = mpiType(T.self), mop = mpiOp(op)
        let request = MPIRequest(name: "MPI_Iallreduce")
        var off = 0
        while off < count {
            let n = Swift.min(count - off, maxElementsPerCall)
            var req = kd_mpi_request_null()
            try checkMPI(MPI_Iallreduce(kd_mpi_in_place(), buffer + off, Int32(n), type, mop, handle, &req),
                         "MPI_Iallreduce")
            request.requests.append(req)
            off += n
        }
        return request
    }

    public func allGather<T: CommScalar>(_ send: UnsafePointer<T>, count: Int,
                                         into recv: UnsafeMutablePointer<T>) throws {
        try checkCount("MPI_Allgather", count)
        if count > mpiIntLimit { throw CommError.countTooLarge(op: "MPI_Allgather", count: count, limit: mpiIntLimit) }
        if count == 0 { return }
        let type = mpiType(T.self)
        try call("MPI_Allgather") { MPI_Allgather(send, Int32(count), type, recv, Int32(count), type, handle) }
    }

    public func allGatherV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                          into recv: UnsafeMutablePointer<T>) throws {
        let (c32, d32, total) = try countsAndDisplacements("MPI_Allgatherv", counts)
        if total == 0 { return }
        let type = mpiType(T.self)
        try call("MPI_Allgatherv") {
            MPI_Allgatherv(send, c32[rank], type, recv, c32, d32, type, handle)
        }
    }

    public func reduceScatterV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                              into recv: UnsafeMutablePointer<T>) throws {
        try reduceScatterV(send, counts: counts, into: recv, op: .sum)
    }

    /// `reduceScatterV` with any reduction (`MPI_Reduce_scatter`).
    public func reduceScatterV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                              into recv: UnsafeMutablePointer<T>,
                                              op: ReduceOp) throws {
        let (c32, _, total) = try countsAndDisplacements("MPI_Reduce_scatter", counts)
        if total == 0 { return }
        let type = mpiType(T.self), mop = mpiOp(op)
        try call("MPI_Reduce_scatter") { MPI_Reduce_scatter(send, recv, c32, type, mop, handle) }
    }

    /// The tag of `sendReceive`'s messages (the application's own: collectives never match tags).
    static let sendReceiveTag: Int32 = 7201

    public func sendReceive<T: CommScalar>(_ send: UnsafePointer<T>, count: Int, to dest: Int,
                                           into recv: UnsafeMutablePointer<T>, from source: Int) throws {
        try checkCount("MPI_Sendrecv", count)
        if count > mpiIntLimit { throw CommError.countTooLarge(op: "MPI_Sendrecv", count: count, limit: mpiIntLimit) }
        for (role, r) in [("destination", dest), ("source", source)] where r < 0 || r >= size {
            throw CommError.invalidArgument(op: "MPI_Sendrecv", message: "\(role) rank \(r) outside 0..<\(size)")
        }
        let type = mpiType(T.self), tag = MPICommunicator.sendReceiveTag
        // Not a collective: ranks that take no part do not count it (`Watchdog.begin(collective:)`).
        Watchdog.shared.begin("MPI_Sendrecv", collective: false)
        let rc = MPI_Sendrecv(send, Int32(count), type, Int32(dest), tag, recv, Int32(count), type, Int32(source), tag,
                              handle, kd_mpi_status_ignore())
        Watchdog.shared.end()
        try checkMPI(rc, "MPI_Sendrecv")
    }

    // MARK: failure

    /// Prints `rank R: message` to stderr (flushed) and calls `MPI_Abort(world, code)`, which ends every
    /// rank of the job (mpirun kills the others within seconds).
    public func abort(_ message: String, code: Int32) -> Never {
        fputs("rank \(rank): \(message)\n", stderr)
        fflush(stderr)
        fflush(stdout)
        // A world of one has nobody to take down: exit without OpenMPI's MPI_ABORT banner.
        let worldSize = MPICommunicator.worldInstance?.size ?? size
        if MPICommunicator.isActive && worldSize > 1 {
            // MPI_Abort ends every rank within seconds, but waits for mpirun's answer: on a host cut off
            // from it (a link down) this rank would live on, spinning. SIGALRM's default action ends it.
            signal(SIGALRM, SIG_DFL)
            alarm(MPICommunicator.abortExitSeconds)
            MPI_Abort(kd_mpi_comm_world(), code)
        }
        _exit(code)
    }

    /// Seconds `abort` gives `MPI_Abort` before the process ends itself (SIGALRM).
    public static let abortExitSeconds: UInt32 = 10
}

/// A pending `MPI_Iallreduce` (one request per chunk when the count was split).
public final class MPIRequest: CommRequest {
    var requests: [MPI_Request?] = []
    let name: StaticString
    /// True once every underlying request has completed.
    public private(set) var isComplete = false

    init(name: StaticString) { self.name = name }

    /// `MPI_Testall`: drives progress (OpenMPI progresses non-blocking collectives only inside MPI
    /// calls) and reports completion.
    public func test() throws -> Bool {
        if isComplete { return true }
        var flag: Int32 = 0
        let rc = requests.withUnsafeMutableBufferPointer {
            MPI_Testall(Int32($0.count), $0.baseAddress, &flag, kd_mpi_statuses_ignore())
        }
        try checkMPI(rc, "MPI_Test(\(name))")
        if flag != 0 { isComplete = true }
        return isComplete
    }

    /// `MPI_Waitall`, watched by the watchdog.
    public func wait() throws {
        if isComplete { return }
        Watchdog.shared.begin("MPI_Wait(MPI_Iallreduce)", collective: false)   // skipped when `test` completed it
        let rc = requests.withUnsafeMutableBufferPointer {
            MPI_Waitall(Int32($0.count), $0.baseAddress, kd_mpi_statuses_ignore())
        }
        Watchdog.shared.end()
        try checkMPI(rc, "MPI_Wait(\(name))")
        isComplete = true
    }
}

/// Runs `body`; on any error ends the whole job with `comm.abort(<error description>)`, so one rank's
/// failure cannot leave the others waiting in a collective.
@discardableResult
public func runOrAbort<T>(_ comm: Communicator, code: Int32 = MPICommunicator.errorExitCode,
                          _ body: () throws -> T) -> T {
    do {
        return try body()
    } catch {
        comm.abort(String(describing: error), code: code)
    }
}
