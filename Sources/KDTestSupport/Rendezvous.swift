import Foundation
import KDCore

/// One rank's side of a collective: what it asked for and a copy of what it contributes.
struct CollectiveCall {
    /// The collective's name (`allReduce`, `barrier`, …), compared across ranks.
    let name: String
    let kind: CommScalarKind?
    let op: ReduceOp?
    let root: Int?
    /// `[count]` for the fixed-count collectives, the per-rank counts for the variable-count ones.
    let counts: [Int]
    /// `[T]`: the elements this rank contributes (copied at the call, so the caller's buffer may be
    /// reused as the output of an in-place collective).
    let data: Any

    /// The fields every rank must agree on, for the mismatch message.
    var signature: String {
        var s = name
        if let kind { s += " \(kind)" }
        if let op { s += " \(op)" }
        if let root { s += " root \(root)" }
        return s + " counts \(counts)"
    }
}

/// The meeting point of the `sequence`-th collective of every rank.
final class Slot {
    let sequence: Int
    var calls: [CollectiveCall?]
    var arrived = 0
    /// Ranks that have copied their output out; the slot is dropped when all have.
    var departed = 0
    /// Set by the last rank to arrive: the combined elements (`[T]`, the same for every rank; each
    /// takes its part), or the error every rank throws when the calls do not match.
    var result: Result<Any, CommError>?

    init(sequence: Int, size: Int) {
        self.sequence = sequence
        calls = [CollectiveCall?](repeating: nil, count: size)
    }
}

/// One point-to-point message (`sendReceive`) waiting in a mailbox: a copy of the sent elements.
struct Message {
    let kind: CommScalarKind
    let count: Int
    /// `[T]`, copied at the send.
    let data: Any
}

/// What ended a rank's thread.
enum RankState: Equatable { case running, finished, failed, parked }

/// The shared state of one in-process world: the slots of the collectives in flight, each rank's
/// state, and the first failure. One `NSCondition` guards all of it (worlds have a handful of
/// ranks; the collectives are rendezvous, not a hot path).
///
/// Matching follows MPI: the k-th collective call of every rank meets the k-th of every other rank.
/// The last rank to arrive checks that the calls agree (name, element type, reduction, root, counts)
/// and computes the combined elements in rank order — `((x₀ ∘ x₁) ∘ x₂) ∘ …` — so results never
/// depend on which thread arrives first. A rank that waits sees the world fail (another rank threw or
/// aborted), a rank that can no longer arrive (it has returned or failed), or its timeout; then it
/// records the failure and parks (`park()`), as `mpirun` would kill it.
final class WorldState {
    let size: Int
    let cond = NSCondition()
    var slots: [Int: Slot] = [:]
    var nextSequence: [Int]
    var states: [RankState]
    /// The first failure (rank, error): the root cause; later ones are its consequences.
    var failure: (rank: Int, error: Error)?
    /// The world of which this one is an `alone()` sub-communicator (failures are recorded there).
    let parent: (world: WorldState, rank: Int)?
    /// Point-to-point messages sent and not yet received, oldest first, by `source * size + dest`.
    var mailboxes: [Int: [Message]] = [:]
    /// Messages each rank has received, by `source * size + dest` (named when a sender is gone).
    var received: [Int: Int] = [:]

    init(size: Int, parent: (world: WorldState, rank: Int)? = nil) {
        self.size = size
        self.parent = parent
        nextSequence = [Int](repeating: 0, count: size)
        states = [RankState](repeating: .running, count: size)
    }

    /// The world whose ranks are threads (the top of the `alone()` chain) and this rank's index in it.
    func job(_ rank: Int) -> (world: WorldState, rank: Int) {
        var w = self, r = rank
        while let p = w.parent { w = p.world; r = p.rank }
        return (w, r)
    }

    // MARK: failure

    /// Records `error` as the job's failure unless one is already recorded. Caller holds `cond`.
    func recordFailureLocked(rank: Int, _ error: Error) {
        if failure == nil { failure = (rank, error) }
        cond.broadcast()
    }

    /// Records the failure in the job, marks `rank` parked and blocks the thread forever: the model of
    /// a rank that `mpirun` kills because another one failed. The thread and what its stack holds leak
    /// (tests only; `InProcessWorld.run` returns as soon as every rank has finished or parked).
    func park(rank: Int, _ error: Error?) -> Never {
        let (job, jobRank) = self.job(rank)
        job.cond.lock()
        if let error { job.recordFailureLocked(rank: jobRank, error) }
        job.states[jobRank] = .parked
        job.cond.broadcast()
        job.cond.unlock()
        let never = NSCondition()
        never.lock()
        while true { never.wait() }
    }

    // MARK: collectives

    /// Deposits `call` as `rank`'s next collective and returns its slot. Completes the slot when this
    /// rank is the last to arrive. Caller holds `cond`.
    func depositLocked<T: CommScalar>(_ call: CollectiveCall, rank: Int, as _: T.Type) -> Slot {
        let seq = nextSequence[rank]
        nextSequence[rank] += 1
        let slot: Slot
        if let s = slots[seq] { slot = s } else { slot = Slot(sequence: seq, size: size); slots[seq] = slot }
        slot.calls[rank] = call
        slot.arrived += 1
        if slot.arrived == size {
            slot.result = WorldState.complete(slot.calls.map { $0! }, sequence: seq, as: T.self)
            cond.broadcast()
        }
        return slot
    }

    /// Blocks until `slot` is complete. Parks the thread when the job fails, when a rank that has not
    /// arrived can no longer arrive, or after `timeout` seconds (> 0). Caller holds `cond`; `cond` is
    /// held on return.
    func waitLocked(_ slot: Slot, rank: Int, name: String, timeout: Double, step: Int) {
        let deadline = timeout > 0 ? Date(timeIntervalSinceNow: timeout) : Date.distantFuture
        let (job, _) = self.job(rank)
        while slot.result == nil {
            if job.failure != nil { cond.unlock(); park(rank: rank, nil) }
            if let gone = (0..<size).first(where: { slot.calls[$0] == nil && states[$0] != .running }) {
                let waiting = (0..<size).filter { slot.calls[$0] != nil }
                let error = InProcessError.rankGone(collective: name, sequence: slot.sequence, gone: gone,
                                                    state: "\(states[gone])", waiting: waiting)
                cond.unlock()
                park(rank: rank, error)
            }
            if !cond.wait(until: deadline), slot.result == nil {
                let error = InProcessError.timeout(collective: name, seconds: timeout, step: step)
                cond.unlock()
                park(rank: rank, error)
            }
        }
    }

    // MARK: point to point

    /// Queues `message` from `source` to `dest` (a send never waits, like MPI's buffered eager sends).
    /// Caller holds `cond`.
    func postLocked(_ message: Message, from source: Int, to dest: Int) {
        mailboxes[source * size + dest, default: []].append(message)
        cond.broadcast()
    }

    /// Takes the oldest message from `source` to `rank`, waiting for it. Parks the thread when the job
    /// fails, when `source` has stopped without sending it, or after `timeout` seconds (> 0), as
    /// `waitLocked` does. Caller holds `cond`; `cond` is held on return.
    func receiveLocked(from source: Int, rank: Int, timeout: Double, step: Int) -> Message {
        let key = source * size + rank
        let deadline = timeout > 0 ? Date(timeIntervalSinceNow: timeout) : Date.distantFuture
        let (job, _) = self.job(rank)
        while mailboxes[key, default: []].isEmpty {
            if job.failure != nil { cond.unlock(); park(rank: rank, nil) }
            if states[source] != .running {
                let error = InProcessError.rankGone(collective: "sendReceive from rank \(source)",
                                                    sequence: received[key, default: 0], gone: source,
                                                    state: "\(states[source])", waiting: [rank])
                cond.unlock()
                park(rank: rank, error)
            }
            if !cond.wait(until: deadline), mailboxes[key, default: []].isEmpty {
                let error = InProcessError.timeout(collective: "sendReceive", seconds: timeout, step: step)
                cond.unlock()
                park(rank: rank, error)
            }
        }
        received[key, default: 0] += 1
        return mailboxes[key]!.removeFirst()
    }

    /// Takes `rank`'s output from a complete slot (the combined `[T]`, or the mismatch error) and
    /// drops the slot once every rank has. Caller holds `cond`.
    func departLocked<T: CommScalar>(_ slot: Slot, as _: T.Type) throws -> [T] {
        slot.departed += 1
        if slot.departed == size { slots[slot.sequence] = nil }
        switch slot.result! {
        case .success(let v): return v as! [T]
        case .failure(let e): throw e
        }
    }

    /// Checks that every rank made the same call and combines the contributions in rank order.
    static func complete<T: CommScalar>(_ calls: [CollectiveCall], sequence: Int, as _: T.Type)
        -> Result<Any, CommError> {
        let first = calls[0]
        if calls.contains(where: { $0.signature != first.signature }) {
            let each = calls.enumerated().map { "rank \($0.offset): \($0.element.signature)" }
            return .failure(.rankMismatch(op: first.name,
                message: "collective #\(sequence) called differently: \(each.joined(separator: "; "))"))
        }
        let data = calls.map { $0.data as! [T] }
        switch first.name {
        case "barrier":
            return .success([T]())
        case "broadcast":
            return .success(data[first.root!])
        case "allGather", "allGatherV":
            return .success(Array(data.joined()))
        default:   // allReduce, reduceScatterV: element-wise reduction over ranks, rank order
            var acc = data[0]
            acc.withUnsafeMutableBufferPointer { a in
                for q in 1..<data.count {
                    data[q].withUnsafeBufferPointer { combine(a.baseAddress!, $0.baseAddress!, a.count, first.op!) }
                }
            }
            return .success(acc)
        }
    }
}

/// `acc[i] ← acc[i] ∘ x[i]`: sum (wrapping for integers, like MPI's `MPI_SUM` on fixed-width types),
/// max or min.
func combine<T: CommScalar>(_ acc: UnsafeMutablePointer<T>, _ x: UnsafePointer<T>, _ n: Int, _ op: ReduceOp) {
    if n == 0 { return }
    let a = UnsafeMutableRawPointer(acc), b = UnsafeRawPointer(x)
    func bound<U>(_: U.Type) -> (UnsafeMutablePointer<U>, UnsafePointer<U>) {
        (a.assumingMemoryBound(to: U.self), b.assumingMemoryBound(to: U.self))
    }
    switch T.commKind {   // `Int` travels as int64, as with MPI (same size on 64-bit platforms)
    case .float32: let (p, q) = bound(Float.self); combineFloating(p, q, n, op)
    case .float64: let (p, q) = bound(Double.self); combineFloating(p, q, n, op)
    case .int32: let (p, q) = bound(Int32.self); combineInteger(p, q, n, op)
    case .int64: let (p, q) = bound(Int64.self); combineInteger(p, q, n, op)
    case .uint8: let (p, q) = bound(UInt8.self); combineInteger(p, q, n, op)
    }
}

private func combineFloating<F: BinaryFloatingPoint>(_ a: UnsafeMutablePointer<F>, _ b: UnsafePointer<F>, _ n: Int,
                                                     _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0..<n { a[i] += b[i] }
    case .max: for i in 0..<n where b[i] > a[i] || b[i].isNaN { a[i] = b[i] }
    case .min: for i in 0..<n where b[i] < a[i] || b[i].isNaN { a[i] = b[i] }
    }
}

private func combineInteger<I: FixedWidthInteger>(_ a: UnsafeMutablePointer<I>, _ b: UnsafePointer<I>, _ n: Int,
                                                  _ op: ReduceOp) {
    switch op {
    case .sum: for i in 0..<n { a[i] = a[i] &+ b[i] }
    case .max: for i in 0..<n where b[i] > a[i] { a[i] = b[i] }
    case .min: for i in 0..<n where b[i] < a[i] { a[i] = b[i] }
    }
}
