import Foundation
import KDCore

/// One rank of an `InProcessWorld`: the whole `Communicator` contract over shared memory, for tests.
///
/// Every collective copies this rank's contribution into the world's slot for its sequence number
/// and (blocking collectives) waits until every rank has arrived; the last to arrive checks that the
/// calls match and combines them in rank order (`WorldState`). Argument errors are thrown at the call,
/// as `MPICommunicator` throws them (`CommError.invalidArgument`); calls that disagree across ranks
/// throw `CommError.rankMismatch` on every rank, where MPI would hang or fail. Splittable collectives
/// honour `maxElementsPerCall` and `allReduceChunkBytes` the way `MPICommunicator` does, one slot per
/// underlying call, so code that tunes them is exercised too.
public final class InProcessCommunicator: Communicator {
    public let rank: Int
    public let size: Int
    let world: WorldState
    public var timeoutSeconds: Double
    public var currentStep = -1
    public var maxElementsPerCall = Int(Int32.max) {
        didSet { maxElementsPerCall = Swift.min(Swift.max(1, maxElementsPerCall), Int(Int32.max)) }
    }
    public var allReduceChunkBytes = 1 << 20

    init(world: WorldState, rank: Int, timeoutSeconds: Double) {
        self.world = world
        self.rank = rank
        self.size = world.size
        self.timeoutSeconds = timeoutSeconds
    }

    // MARK: the rendezvous

    /// Deposits one call and, unless `async`, waits for it and returns the combined elements.
    func collective<T: CommScalar>(_ name: String, op: ReduceOp? = nil, root: Int? = nil, counts: [Int],
                                   data: [T]) throws -> [T] {
        let slot = deposit(name, op: op, root: root, counts: counts, data: data)
        world.cond.lock()
        defer { world.cond.unlock() }
        world.waitLocked(slot, rank: rank, name: name, timeout: timeoutSeconds, step: currentStep)
        return try world.departLocked(slot, as: T.self)
    }

    func deposit<T: CommScalar>(_ name: String, op: ReduceOp? = nil, root: Int? = nil, counts: [Int],
                                data: [T]) -> Slot {
        let call = CollectiveCall(name: name, kind: T.commKind, op: op, root: root, counts: counts, data: data)
        world.cond.lock()
        defer { world.cond.unlock() }
        return world.depositLocked(call, rank: rank, as: T.self)
    }

    func checkCount(_ op: String, _ count: Int) throws {
        if count < 0 { throw CommError.invalidArgument(op: op, message: "negative count \(count)") }
    }

    func checkCounts(_ op: String, _ counts: [Int]) throws -> Int {
        guard counts.count == size else {
            throw CommError.invalidArgument(op: op, message: "needs \(size) counts (one per rank), got \(counts.count)")
        }
        for (r, c) in counts.enumerated() where c < 0 {
            throw CommError.invalidArgument(op: op, message: "negative count \(c) for rank \(r)")
        }
        return counts.reduce(0, +)
    }

    /// The chunks `[offset, offset + n)` a splittable collective of `count` elements is issued as.
    func chunks(_ count: Int, perCall: Int) -> [(Int, Int)] {
        stride(from: 0, to: count, by: perCall).map { ($0, Swift.min(perCall, count - $0)) }
    }

    // MARK: collectives

    public func barrier() throws {
        _ = try collective("barrier", counts: [0], data: [UInt8]())
    }

    public func broadcast<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, root: Int) throws {
        try checkCount("broadcast", count)
        guard root >= 0, root < size else {
            throw CommError.invalidArgument(op: "broadcast", message: "root \(root) outside 0..<\(size)")
        }
        for (off, n) in chunks(count, perCall: maxElementsPerCall) {
            let mine = rank == root ? Array(UnsafeBufferPointer(start: buffer + off, count: n)) : []
            let out = try collective("broadcast", root: root, counts: [n], data: mine)
            out.withUnsafeBufferPointer { (buffer + off).update(from: $0.baseAddress!, count: n) }
        }
    }

    public func allReduce<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int, op: ReduceOp) throws {
        try checkCount("allReduce", count)
        let stride = MemoryLayout<T>.stride
        var perCall = maxElementsPerCall
        if allReduceChunkBytes > 0 && count * stride > 4 * allReduceChunkBytes {
            perCall = Swift.min(perCall, Swift.max(1, allReduceChunkBytes / stride))
        }
        for (off, n) in chunks(count, perCall: perCall) {
            let out = try collective("allReduce", op: op, counts: [n],
                                     data: Array(UnsafeBufferPointer(start: buffer + off, count: n)))
            out.withUnsafeBufferPointer { (buffer + off).update(from: $0.baseAddress!, count: n) }
        }
    }

    public func allReduceAsync<T: CommScalar>(_ buffer: UnsafeMutablePointer<T>, count: Int,
                                              op: ReduceOp) throws -> CommRequest {
        try checkCount("allReduceAsync", count)
        let parts = chunks(count, perCall: maxElementsPerCall).map { off, n in
            (offset: off, slot: deposit("allReduce", op: op, counts: [n],
                                        data: Array(UnsafeBufferPointer(start: buffer + off, count: n))))
        }
        return InProcessRequest(communicator: self, buffer: buffer, parts: parts)
    }

    public func allGather<T: CommScalar>(_ send: UnsafePointer<T>, count: Int,
                                         into recv: UnsafeMutablePointer<T>) throws {
        try checkCount("allGather", count)
        if count == 0 { return }
        let out = try collective("allGather", counts: [count],
                                 data: Array(UnsafeBufferPointer(start: send, count: count)))
        out.withUnsafeBufferPointer { recv.update(from: $0.baseAddress!, count: out.count) }
    }

    public func allGatherV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                          into recv: UnsafeMutablePointer<T>) throws {
        let total = try checkCounts("allGatherV", counts)
        if total == 0 { return }
        let out = try collective("allGatherV", counts: counts,
                                 data: Array(UnsafeBufferPointer(start: send, count: counts[rank])))
        out.withUnsafeBufferPointer { recv.update(from: $0.baseAddress!, count: total) }
    }

    public func reduceScatterV<T: CommScalar>(_ send: UnsafePointer<T>, counts: [Int],
                                              into recv: UnsafeMutablePointer<T>) throws {
        let total = try checkCounts("reduceScatterV", counts)
        if total == 0 { return }
        let out = try collective("reduceScatterV", op: .sum, counts: counts,
                                 data: Array(UnsafeBufferPointer(start: send, count: total)))
        let offset = counts[..<rank].reduce(0, +)
        if counts[rank] > 0 {
            out.withUnsafeBufferPointer { recv.update(from: $0.baseAddress! + offset, count: counts[rank]) }
        }
    }

    /// Posts a copy of `send` in `dest`'s mailbox, then waits for the oldest message from `source`. A
    /// message of another element type or count throws `CommError.rankMismatch` on the receiving rank
    /// (MPI would truncate or fail there).
    public func sendReceive<T: CommScalar>(_ send: UnsafePointer<T>, count: Int, to dest: Int,
                                           into recv: UnsafeMutablePointer<T>, from source: Int) throws {
        try checkCount("sendReceive", count)
        for (role, r) in [("destination", dest), ("source", source)] where r < 0 || r >= size {
            throw CommError.invalidArgument(op: "sendReceive", message: "\(role) rank \(r) outside 0..<\(size)")
        }
        let out = Message(kind: T.commKind, count: count, data: Array(UnsafeBufferPointer(start: send, count: count)))
        world.cond.lock()
        defer { world.cond.unlock() }
        world.postLocked(out, from: rank, to: dest)
        let m = world.receiveLocked(from: source, rank: rank, timeout: timeoutSeconds, step: currentStep)
        guard m.kind == T.commKind, m.count == count else {
            throw CommError.rankMismatch(op: "sendReceive", message: "rank \(source) sent \(m.count) \(m.kind), "
                                         + "rank \(rank) expects \(count) \(T.commKind)")
        }
        if count > 0 { (m.data as! [T]).withUnsafeBufferPointer { recv.update(from: $0.baseAddress!, count: count) } }
    }

    // MARK: failure and sub-communicators

    /// Prints `rank R: message` to stderr, fails the world with `InProcessError.aborted` (its `run`
    /// throws it) and parks this thread: the other ranks park as they reach their next collective.
    public func abort(_ message: String, code: Int32) -> Never {
        fputs("rank \(rank): \(message)\n", stderr)
        world.park(rank: rank, InProcessError.aborted(code: code, message: message))
    }

    /// A world of one over this rank (after a barrier of the parent, as `MPI_Comm_split` is collective).
    public func alone() throws -> Communicator {
        try barrier()
        let c = InProcessCommunicator(world: WorldState(size: 1, parent: (world, rank)), rank: 0,
                                      timeoutSeconds: timeoutSeconds)
        c.currentStep = currentStep
        return c
    }
}

/// A pending `allReduceAsync`: its contributions were copied at the start; the reduced elements are
/// written into the caller's buffer when `test()` first finds every part complete, or by `wait()`.
public final class InProcessRequest<T: CommScalar>: CommRequest {
    let communicator: InProcessCommunicator
    let buffer: UnsafeMutablePointer<T>
    let parts: [(offset: Int, slot: Slot)]
    public private(set) var isComplete = false

    init(communicator: InProcessCommunicator, buffer: UnsafeMutablePointer<T>, parts: [(offset: Int, slot: Slot)]) {
        self.communicator = communicator
        self.buffer = buffer
        self.parts = parts
        isComplete = parts.isEmpty
    }

    public func test() throws -> Bool {
        if isComplete { return true }
        let world = communicator.world
        world.cond.lock()
        defer { world.cond.unlock() }
        guard parts.allSatisfy({ $0.slot.result != nil }) else { return false }
        try finishLocked()
        return true
    }

    public func wait() throws {
        if isComplete { return }
        let world = communicator.world
        world.cond.lock()
        defer { world.cond.unlock() }
        for p in parts {
            world.waitLocked(p.slot, rank: communicator.rank, name: "wait(allReduceAsync)",
                             timeout: communicator.timeoutSeconds, step: communicator.currentStep)
        }
        try finishLocked()
    }

    /// Copies every part's result into the buffer. Caller holds the world's lock.
    func finishLocked() throws {
        isComplete = true
        var firstError: Error?
        for p in parts {
            do {
                let out = try communicator.world.departLocked(p.slot, as: T.self)
                out.withUnsafeBufferPointer { (buffer + p.offset).update(from: $0.baseAddress!, count: out.count) }
            } catch {
                firstError = firstError ?? error
            }
        }
        if let firstError { throw firstError }
    }
}
