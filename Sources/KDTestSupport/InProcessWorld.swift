import Foundation
import KDCore
import KDTensor

/// N ranks as N threads of one process, for unit tests of multi-rank code (in the spirit of
/// swift-nio's `EmbeddedChannel`: the real contract, no network, deterministic).
///
/// ```swift
/// let sums = try InProcessWorld(size: 3).run { comm in
///     var x = [Float(comm.rank + 1)]
///     try comm.allReduce(&x, op: .sum)
///     return x[0]                       // 6 on every rank
/// }
/// ```
///
/// `run` starts one thread per rank, each with its own `InProcessCommunicator` (rank, size), its own
/// autodiff tape and recording switch (`KDTensor.Tape.current` is per thread), and returns the
/// ranks' results in rank order. Reductions combine in rank order, so results are reproducible run
/// to run. When a rank throws or calls `abort`, the world fails: the other ranks park at their next
/// collective (as `mpirun` would kill them) and `run` throws `RankFailure` with the first rank's
/// error. A rank waiting for a rank that has already returned fails the world with
/// `InProcessError.rankGone`, and a collective that waits longer than `timeoutSeconds` with
/// `InProcessError.timeout`, so a broken test fails instead of hanging.
///
/// OpenBLAS runs with one thread while the world runs (restored afterwards): the ranks are the
/// parallelism, as with one BLAS thread per MPI rank.
///
/// Parked threads (only after a failure) are never resumed: each leaks its stack and what it holds.
public struct InProcessWorld {
    public let size: Int
    /// Each communicator's initial `timeoutSeconds` (the trainer sets its own from `comm.timeout_s`).
    public var timeoutSeconds: Double
    /// Stack of each rank's thread.
    public var stackBytes = 16 << 20

    public init(size: Int, timeoutSeconds: Double = 120) {
        precondition(size >= 1, "InProcessWorld needs at least one rank, got \(size)")
        self.size = size
        self.timeoutSeconds = timeoutSeconds
    }

    /// Runs `body` on every rank concurrently; returns each rank's result, rank order.
    public func run<R>(_ body: @escaping (Communicator) throws -> R) throws -> [R] {
        let world = WorldState(size: size)
        let results = ResultBox<R>(size: size)
        let savedBLAS = blasThreads()
        setBLASThreads(1)
        defer { setBLASThreads(savedBLAS) }
        for r in 0..<size {
            let comm = InProcessCommunicator(world: world, rank: r, timeoutSeconds: timeoutSeconds)
            let t = Thread {
                let outcome: Result<R, Error>
                do { outcome = .success(try body(comm)) } catch { outcome = .failure(error) }
                world.cond.lock()
                switch outcome {
                case .success(let v):
                    results.values[r] = v
                    world.states[r] = .finished
                case .failure(let e):
                    world.recordFailureLocked(rank: r, e)
                    world.states[r] = .failed
                }
                world.cond.broadcast()
                world.cond.unlock()
            }
            t.name = "in-process rank \(r)"
            t.stackSize = stackBytes
            t.start()
        }
        world.cond.lock()
        while world.states.contains(.running) { world.cond.wait() }
        let failure = world.failure
        world.cond.unlock()
        if let failure { throw RankFailure(rank: failure.rank, error: failure.error) }
        return results.values.map { $0! }
    }
}

/// The ranks' results, written by their threads under the world's lock.
final class ResultBox<R> {
    var values: [R?]
    init(size: Int) { values = [R?](repeating: nil, count: size) }
}

/// What `InProcessWorld.run` throws: the first rank that failed and its error.
public struct RankFailure: Error, CustomStringConvertible {
    public let rank: Int
    public let error: Error
    public var description: String { "rank \(rank): \(error)" }
}

/// Failures the in-process world itself detects.
public enum InProcessError: Error, CustomStringConvertible, Equatable {
    /// A rank called `abort(message, code:)`.
    case aborted(code: Int32, message: String)
    /// A collective waited longer than the communicator's `timeoutSeconds`.
    case timeout(collective: String, seconds: Double, step: Int)
    /// Ranks `waiting` are in collective #`sequence` but rank `gone` has stopped (`state`) before
    /// calling it: with MPI they would hang.
    case rankGone(collective: String, sequence: Int, gone: Int, state: String, waiting: [Int])

    public var description: String {
        switch self {
        case let .aborted(code, message):
            return "aborted with code \(code): \(message)"
        case let .timeout(collective, seconds, step):
            return "collective \(collective) did not complete within \(seconds)s of comm.timeout_s (step \(step))"
        case let .rankGone(collective, sequence, gone, state, waiting):
            return "ranks \(waiting) wait in collective #\(sequence) (\(collective)) but rank \(gone) has "
                + "\(state) without calling it"
        }
    }
}
