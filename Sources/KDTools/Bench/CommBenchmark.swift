import Foundation
import KDComm
import KDCore
import KDTensor

/// All-reduce timings over a range of message sizes (`kdgraph-mpi-checks --bench`).
///
/// For each size: one warm-up, then `reps` timed calls between barriers; the figure is the maximum
/// over ranks of the mean time per call. Bandwidths follow the usual conventions: algorithm bandwidth
/// `bytes / t`, bus bandwidth `2(N−1)/N · bytes / t` (what each rank's link carries in a ring).
/// Variants: one blocking `MPI_Allreduce` of the whole message (`single_call`), the same message as
/// consecutive 1 MiB calls (`chunked_1MiB`, what `MPICommunicator.allReduce` does above 4 MiB), and
/// `MPI_Iallreduce` + `MPI_Wait`. A first line gives the cost of the watchdog's `begin` + `end` pair.
public enum CommBenchmark {
    public struct Row {
        public let variant: String
        public let bytes: Int
        public let ranks: Int
        public let microseconds: Double
        public var algorithmGBps: Double { Double(bytes) / (microseconds * 1e-6) / 1e9 }
        public var busGBps: Double { ranks > 1 ? algorithmGBps * 2 * Double(ranks - 1) / Double(ranks) : algorithmGBps }
        /// One JSON object.
        public var json: String {
            "{\"op\": \"allreduce\", \"variant\": \"\(variant)\", \"bytes\": \(bytes), \"ranks\": \(ranks), "
                + String(format: "\"us\": %.1f, \"algbw_GBps\": %.3f, \"busbw_GBps\": %.3f}",
                         microseconds, algorithmGBps, busGBps)
        }
    }

    /// Measures and, on rank 0, prints one JSON line per row. Returns the rows (on every rank).
    @discardableResult
    public static func run(_ comm: Communicator,
                           sizes: [Int] = [4 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20],
                           chunkBytes: Int = 1 << 20) throws -> [Row] {
        var rows: [Row] = []
        let w = Watchdog()
        w.setTimeout(0, setting: "a benchmark")   // no thread: begin/end alone are timed
        let pairs = 1_000_000
        let t0 = monotonicSeconds()
        for _ in 0..<pairs { w.begin("MPI_Allreduce"); w.end() }
        let ns = (monotonicSeconds() - t0) / Double(pairs) * 1e9
        if comm.rank == 0 { print(String(format: "{\"op\": \"watchdog_begin_end\", \"ns\": %.1f}", ns)) }
        for bytes in sizes {
            let count = bytes / 4
            let buf = Tensor(shape: [count], repeating: 0)
            let reps = max(3, min(200, (64 << 20) / bytes))
            func time(_ body: () throws -> Void) throws -> Double {
                try body()
                try comm.barrier()
                let t0 = monotonicSeconds()
                for _ in 0..<reps { try body() }
                let us = (monotonicSeconds() - t0) / Double(reps) * 1e6
                return try comm.allReduce(us, op: .max)
            }
            let savedChunk = comm.allReduceChunkBytes
            comm.allReduceChunkBytes = 0       // one MPI call for the whole message
            let blocking = try time { try comm.allReduce(buf.ptr, count: count, op: .sum) }
            comm.allReduceChunkBytes = savedChunk
            rows.append(Row(variant: "single_call", bytes: bytes, ranks: comm.size, microseconds: blocking))
            if bytes > chunkBytes {
                let chunk = chunkBytes / 4
                let chunked = try time {
                    var off = 0
                    while off < count {
                        let n = min(chunk, count - off)
                        try comm.allReduce(buf.ptr + off, count: n, op: .sum)
                        off += n
                    }
                }
                rows.append(Row(variant: "chunked_1MiB", bytes: bytes, ranks: comm.size, microseconds: chunked))
            }
            let async = try time { try comm.allReduceAsync(buf.ptr, count: count, op: .sum).wait() }
            rows.append(Row(variant: "iallreduce_wait", bytes: bytes, ranks: comm.size, microseconds: async))
            if comm.rank == 0 {
                for r in rows.suffix(bytes > chunkBytes ? 3 : 2) { print(r.json) }
                fflush(stdout)
            }
        }
        return rows
    }

    /// Deterministic training's gradient sum (`ExactSum.reduce`, maxima, conversions and transport) over
    /// `elements` Float gradients in `parameters` equal tensors, one block per rank, both ways it can cross the
    /// ranks: one `Int64` all-reduce (`all_reduce`, what one host uses) and an `Int64` reduce-scatter with a
    /// Float all-gather (`reduce_scatter_all_gather`, what ranks on several hosts use; docs/communication.md,
    /// "The exact gradient sum across hosts"). The default is the bench student's (resnet8x4) 1 233 540
    /// gradients. Alternating the two, `rounds` calls each; prints (rank 0) and returns one JSON line per
    /// transport with the median and the fastest call, the maximum over ranks of each call's time.
    @discardableResult
    public static func exactTransports(_ comm: Communicator, elements: Int = 1_233_540, parameters: Int = 32,
                                       rounds: Int = 11) throws -> [String] {
        var rng = KDRandom(keys: 41, UInt64(comm.rank))
        let partials = Tensor.randn([elements], rng: &rng), sums = Tensor(shape: [elements], repeating: 0)
        let per = (elements + parameters - 1) / parameters
        let groups = stride(from: 0, to: elements, by: per).map {
            ExactSum.Group(partials: UnsafePointer(partials.ptr + $0), blocks: 1, count: min(per, elements - $0),
                           result: sums.ptr + $0)
        }
        var times: [Bool: [Double]] = [false: [], true: []]
        for _ in 0..<rounds {
            for scatterGather in [false, true] {
                try comm.barrier()
                let t0 = monotonicSeconds()
                try ExactSum.reduce(groups, globalBlocks: comm.size, comm: comm, scatterGather: scatterGather)
                times[scatterGather]!.append(try comm.allReduce(monotonicSeconds() - t0, op: .max))
            }
        }
        let lines = [false, true].map { scatterGather -> String in
            let t = times[scatterGather]!.sorted()
            let transport = scatterGather ? "reduce_scatter_all_gather" : "all_reduce"
            return "{\"op\": \"exact_sum\", \"transport\": \"\(transport)\", "
                + "\"elements\": \(elements), \"ranks\": \(comm.size), "
                + String(format: "\"median_ms\": %.2f, \"min_ms\": %.2f}", t[t.count / 2] * 1e3, t[0] * 1e3)
        }
        if comm.rank == 0 { for l in lines { print(l) }; fflush(stdout) }
        return lines
    }

    /// Blocking versus overlapped gradient buckets on a synthetic backward: a chain of `layers` linear
    /// maps `h ← h Wᵀ` (`width × width` weights, batch `batch`), `bucketBytes` per bucket. Prints (rank 0)
    /// and returns one JSON line per mode with the mean step time (forward + backward + all-reduce) and
    /// the mean time blocked waiting for the all-reduce, the maximum over ranks.
    @discardableResult
    public static func overlap(_ comm: Communicator, layers: Int = 8, width: Int = 512, batch: Int = 64,
                               bucketBytes: Int = 1 << 20, steps: Int = 8) throws -> [String] {
        var rng = KDRandom(keys: 5, 5)
        let weights = (0..<layers).map { _ in
            Tensor.randn([width, width], std: 1 / Float(width).squareRoot(), rng: &rng, requiresGrad: true)
        }
        let x = Tensor.randn([batch, width], rng: &rng)
        let buckets = try GradientBuckets(parameters: weights, comm: comm, bucketBytes: bucketBytes)
        var lines: [String] = []
        let saved = GradMode.isEnabled
        GradMode.isEnabled = true
        defer { GradMode.isEnabled = saved }
        for mode in ["blocking", "overlapped"] {
            var total = 0.0, wait = 0.0
            for step in 0...steps {
                for w in weights { w.grad = nil }
                try comm.barrier()
                let t0 = monotonicSeconds()
                var h = x
                for w in weights { h = try matmul(h, w, transposeB: true) }
                let seed = Tensor(shape: h.shape, repeating: 1)
                if mode == "blocking" {
                    Tape.backward(h, seed: seed)
                    try buckets.allReduceBlocking()
                } else {
                    Tape.backward(h, seed: seed, onGradReady: buckets.onGradReady)
                    try buckets.finish()
                }
                if step > 0 {   // step 0 warms up
                    total += monotonicSeconds() - t0
                    wait += buckets.lastStats.waitSeconds
                }
            }
            let stepMs = try comm.allReduce(total / Double(steps) * 1e3, op: .max)
            let waitMs = try comm.allReduce(wait / Double(steps) * 1e3, op: .max)
            let line = "{\"op\": \"buckets\", \"mode\": \"\(mode)\", \"ranks\": \(comm.size), "
                + "\"bytes\": \(buckets.totalBytes), \"buckets\": \(buckets.buckets.count), "
                + String(format: "\"step_ms\": %.2f, \"wait_ms\": %.2f}", stepMs, waitMs)
            lines.append(line)
            if comm.rank == 0 { print(line); fflush(stdout) }
        }
        return lines
    }
}
