import Foundation

/// Produces items `0, 1, 2, …` on a background thread, at most `depth` ahead of the consumer
/// (double buffering with `depth = 2`: the next batch is loaded and augmented while the current step
/// computes).
///
/// `produce(k)` returns item `k`, or `nil` after the last one. An error it throws is handed to the
/// consumer by the next `next()` call (after the items produced before it), and production stops.
/// `next()` measures how long the consumer waited (`lastWaitSeconds`, `totalWaitSeconds`).
/// `shutdown()` (also on deinit) stops the thread and waits for it to exit.
public final class Prefetcher<Item>: @unchecked Sendable {
    private final class State: @unchecked Sendable {
        let cond = NSCondition()
        var queue: [Result<Item?, Error>] = []
        var stopped = false
        var finished = false      // worker exited
        let depth: Int
        init(depth: Int) { self.depth = depth }
    }

    private let state: State
    private var thread: Thread?
    private var consumerDone = false
    /// Seconds the last `next()` blocked.
    public private(set) var lastWaitSeconds: Double = 0
    /// Seconds all `next()` calls blocked.
    public private(set) var totalWaitSeconds: Double = 0
    /// Items handed out.
    public private(set) var delivered = 0

    public init(depth: Int = 2, produce: @escaping (Int) throws -> Item?) {
        precondition(depth >= 1, "prefetch depth must be ≥ 1")
        let s = State(depth: depth)
        state = s
        let t = Thread {
            var k = 0
            while true {
                s.cond.lock()
                while s.queue.count >= s.depth && !s.stopped { s.cond.wait() }
                let stop = s.stopped
                s.cond.unlock()
                if stop { break }
                let r: Result<Item?, Error>
                do { r = .success(try produce(k)) } catch { r = .failure(error) }
                s.cond.lock()
                s.queue.append(r)
                s.cond.broadcast()
                s.cond.unlock()
                k += 1
                if case .success(let item) = r, item != nil { continue }
                break
            }
            s.cond.lock(); s.finished = true; s.cond.broadcast(); s.cond.unlock()
        }
        t.name = "kdgraph-prefetch"
        thread = t
        t.start()
    }

    deinit { shutdown() }

    /// The next item (blocking until it is ready), `nil` after the last, or the producer's error.
    public func next() throws -> Item? {
        if consumerDone { return nil }
        let t0 = DispatchTime.now().uptimeNanoseconds
        state.cond.lock()
        while state.queue.isEmpty && !state.finished && !state.stopped { state.cond.wait() }
        guard !state.queue.isEmpty else {
            let stopped = state.stopped
            state.cond.unlock()
            if stopped { throw DataError.prefetcherStopped }
            consumerDone = true
            return nil
        }
        let r = state.queue.removeFirst()
        state.cond.broadcast()
        state.cond.unlock()
        lastWaitSeconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        totalWaitSeconds += lastWaitSeconds
        switch r {
        case .success(let item):
            if item == nil { consumerDone = true } else { delivered += 1 }
            return item
        case .failure(let e):
            consumerDone = true
            throw e
        }
    }

    /// Stops production and waits for the worker to finish its current item and exit.
    public func shutdown() {
        state.cond.lock()
        state.stopped = true
        state.cond.broadcast()
        while !state.finished { state.cond.wait() }
        state.queue.removeAll()
        state.cond.unlock()
    }
}

/// A prefetched stream of this rank's training batches from `start` for `steps` steps (crossing
/// epochs), each produced by `load` (loading, augmenting) on the background thread.
public func trainBatchStream(sampler: Sampler, start: SamplerPosition, steps: Int, depth: Int = 2,
                             load: @escaping (SamplerPosition) -> Batch) -> Prefetcher<Batch> {
    Prefetcher(depth: depth) { k in
        guard k < steps else { return nil }
        return load(start.advanced(by: k, stepsPerEpoch: sampler.stepsPerEpoch))
    }
}

/// The stream of an image `BatchLoader` (see `trainBatchStream(sampler:start:steps:depth:load:)`).
public func trainBatchStream(loader: BatchLoader, sampler: Sampler, start: SamplerPosition, steps: Int,
                             depth: Int = 2) -> Prefetcher<Batch> {
    trainBatchStream(sampler: sampler, start: start, steps: steps, depth: depth) { loader.trainBatch(sampler, at: $0) }
}
