import KDCore
import KDTensor

/// Bucketed gradient all-reduce: `g_p ← scale · Σ_r g_p^(r)` for every parameter `p`.
///
/// The parameter list (identical order on every rank) is walked in *reverse* — the order in which
/// backward finalises gradients — and cut into buckets of at most `bucketBytes` (a parameter larger
/// than that gets a bucket of its own). Each bucket owns one persistent Float buffer: gradients are
/// packed into it, all-reduced (SUM) in one call, scaled and unpacked. A parameter whose `grad` is nil
/// counts as zeros and receives the reduced gradient (it gets a `grad`).
///
/// Two modes:
/// - blocking: `allReduceBlocking()` after backward (pack, `MPI_Allreduce`, unpack, bucket by bucket);
/// - overlapped: pass `onGradReady` (or call `markReady`) to `Tape.backward(_:onGradReady:)`. When all
///   parameters of bucket `k` are ready and buckets `0..<k` have started, bucket `k` is packed and its
///   `MPI_Iallreduce` started; every `markReady` also `poll()`s the in-flight requests (`MPI_Test`),
///   because OpenMPI progresses non-blocking collectives only inside MPI calls. `finish()` starts the
///   remaining buckets in order (parameters never marked are packed as they are), waits for all and
///   unpacks. Buckets start in the same order on every rank, so the collectives always match.
///
/// `lastStats` reports the bytes all-reduced and the seconds spent waiting in the last step.
public final class GradientBuckets {
    /// One bucket: parameter indices (into `parameters`) in packing order and their offsets.
    public struct Bucket: Equatable {
        public let parameterIndices: [Int]
        public let offsets: [Int]
        public let elementCount: Int
        public var byteCount: Int { elementCount * MemoryLayout<Float>.stride }
    }

    /// Per-step figures.
    public struct Stats: Equatable {
        /// Bytes all-reduced (sum of bucket sizes).
        public var bytesReduced = 0
        /// Seconds blocked in `MPI_Allreduce` (blocking) or `MPI_Wait` (overlapped).
        public var waitSeconds = 0.0
        /// Buckets whose all-reduce started during backward (overlapped mode).
        public var startedEarly = 0
        /// Buckets in the step.
        public var buckets = 0
    }

    public let parameters: [Tensor]
    public let buckets: [Bucket]
    public let bucketBytes: Int
    /// Factor applied after the sum (1 for a sum, `1/N` for a mean).
    public var scale: Float
    public private(set) var lastStats = Stats()

    let comm: Communicator
    let buffers: [Tensor]
    let slots: [ObjectIdentifier: (bucket: Int, position: Int)]
    var ready: [[Bool]]
    var readyCount: [Int]
    var requests: [CommRequest?]
    var nextToStart = 0
    var pendingError: Error?
    var stepStats = Stats()

    /// - Parameters:
    ///   - parameters: the trained tensors, same order on every rank.
    ///   - bucketBytes: target bucket size (default 4 MiB).
    ///   - scale: applied to the sums (default 1).
    public init(parameters: [Tensor], comm: Communicator, bucketBytes: Int = 4 << 20, scale: Float = 1) throws {
        guard bucketBytes > 0 else {
            throw CommError.invalidArgument(op: "GradientBuckets",
                                            message: "bucketBytes must be positive, got \(bucketBytes)")
        }
        self.parameters = parameters
        self.comm = comm
        self.bucketBytes = bucketBytes
        self.scale = scale
        var slots: [ObjectIdentifier: (bucket: Int, position: Int)] = [:]
        var buckets: [Bucket] = []
        var indices: [Int] = [], offsets: [Int] = [], elements = 0
        func close() {
            if indices.isEmpty { return }
            buckets.append(Bucket(parameterIndices: indices, offsets: offsets, elementCount: elements))
            indices = []; offsets = []; elements = 0
        }
        for p in parameters.indices.reversed() {
            let t = parameters[p]
            if slots[ObjectIdentifier(t)] != nil {
                throw CommError.invalidArgument(op: "GradientBuckets",
                    message: "parameter \(p) (\(t.name.isEmpty ? "\(t.shape)" : t.name)) appears twice")
            }
            let bytes = t.count * MemoryLayout<Float>.stride
            if !indices.isEmpty && (elements * MemoryLayout<Float>.stride + bytes) > bucketBytes { close() }
            slots[ObjectIdentifier(t)] = (buckets.count, indices.count)
            indices.append(p); offsets.append(elements); elements += t.count
        }
        close()
        self.buckets = buckets
        self.slots = slots
        self.buffers = buckets.map { Tensor(uninitializedShape: [Swift.max($0.elementCount, 1)]) }
        self.ready = buckets.map { [Bool](repeating: false, count: $0.parameterIndices.count) }
        self.readyCount = [Int](repeating: 0, count: buckets.count)
        self.requests = [CommRequest?](repeating: nil, count: buckets.count)
    }

    /// Total bytes of one step's all-reduce.
    public var totalBytes: Int { buckets.reduce(0) { $0 + $1.byteCount } }

    // MARK: pack / unpack

    func pack(_ k: Int) {
        let b = buckets[k], buf = buffers[k].ptr
        for (j, p) in b.parameterIndices.enumerated() {
            let t = parameters[p], dst = buf + b.offsets[j]
            if let g = t.grad {
                dst.update(from: g.ptr, count: t.count)
            } else {
                dst.update(repeating: 0, count: t.count)
            }
        }
    }

    func unpack(_ k: Int) {
        let b = buckets[k], buf = buffers[k].ptr
        for (j, p) in b.parameterIndices.enumerated() {
            let t = parameters[p], src = buf + b.offsets[j]
            let (g, _) = t.gradBuffer()
            if scale == 1 {
                g.update(from: src, count: t.count)
            } else {
                for i in 0..<t.count { g[i] = scale * src[i] }
            }
        }
    }

    // MARK: blocking mode

    /// Packs, all-reduces (`MPI_Allreduce`, SUM) and unpacks every bucket in order.
    /// Throws if an overlapped step has started buckets that `finish()` has not collected yet.
    public func allReduceBlocking() throws {
        guard nextToStart == 0 else {
            throw CommError.invalidArgument(op: "GradientBuckets.allReduceBlocking",
                message: "an overlapped step is in progress (\(nextToStart) buckets started); call finish()")
        }
        defer { resetStep() }
        var stats = Stats()
        for k in buckets.indices {
            pack(k)
            let t0 = monotonicSeconds()
            try comm.allReduce(buffers[k].ptr, count: buckets[k].elementCount, op: .sum)
            stats.waitSeconds += monotonicSeconds() - t0
            unpack(k)
            stats.bytesReduced += buckets[k].byteCount
        }
        stats.buckets = buckets.count
        lastStats = stats
    }

    // MARK: overlapped mode

    /// The closure to pass as `Tape.backward(_:onGradReady:)`.
    public var onGradReady: (Tensor) -> Void { { [unowned self] t in self.markReady(t) } }

    /// Declares `parameter`'s gradient final. Tensors that are not parameters, and repeated calls, are
    /// ignored. Starts every bucket that became complete (in bucket order) and polls the in-flight
    /// ones. Errors are kept and thrown by `finish()`.
    public func markReady(_ parameter: Tensor) {
        guard pendingError == nil, let (b, pos) = slots[ObjectIdentifier(parameter)], !ready[b][pos] else { return }
        ready[b][pos] = true
        readyCount[b] += 1
        do {
            while nextToStart < buckets.count
                    && readyCount[nextToStart] == buckets[nextToStart].parameterIndices.count {
                try start(nextToStart)
                stepStats.startedEarly += 1
            }
            try poll()
        } catch {
            pendingError = error
        }
    }

    func start(_ k: Int) throws {
        precondition(k == nextToStart, "GradientBuckets: bucket \(k) started before bucket \(nextToStart)")
        pack(k)
        requests[k] = try comm.allReduceAsync(buffers[k].ptr, count: buckets[k].elementCount, op: .sum)
        nextToStart += 1
    }

    /// Tests the in-flight all-reduces (drives MPI progress); true when all started ones are complete.
    @discardableResult
    public func poll() throws -> Bool {
        var all = true
        for k in 0..<nextToStart { if let r = requests[k], try !r.test() { all = false } }
        return all
    }

    /// Starts the buckets not yet started (in order), waits for every all-reduce and unpacks.
    public func finish() throws {
        defer { resetStep() }
        if let e = pendingError { throw e }
        var stats = stepStats
        while nextToStart < buckets.count { try start(nextToStart) }
        for k in buckets.indices {
            let t0 = monotonicSeconds()
            try requests[k]?.wait()
            stats.waitSeconds += monotonicSeconds() - t0
            unpack(k)
            stats.bytesReduced += buckets[k].byteCount
        }
        stats.buckets = buckets.count
        lastStats = stats
    }

    func resetStep() {
        for k in buckets.indices {
            for j in ready[k].indices { ready[k][j] = false }
            readyCount[k] = 0
            requests[k] = nil
        }
        nextToStart = 0
        pendingError = nil
        stepStats = Stats()
    }
}
