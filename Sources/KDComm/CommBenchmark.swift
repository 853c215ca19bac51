import Foundation
import KDTensor

/// All-reduce timings over a range of message sizes (`kdgraph-mpi-checks --bench`).
///
/// For each size: one warm-up, then `reps` timed calls between barriers; the figure is the maximum
/// over ranks of the mean time per call. Bandwidths follow the usual conventions: algorithm bandwidth
/// `bytes / t`, bus bandwidth `2(N−1)/N · bytes / t` (what each rank's link carries in a ring).
/// Variants: blocking `MPI_Allreduce` of the whole message, the same message as 1 MiB chunks, and
/// `MPI_Iallreduce` + `MPI_Wait`.
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
            let blocking = try time { try comm.allReduce(buf.ptr, count: count, op: .sum) }
            rows.append(Row(variant: "blocking", bytes: bytes, ranks: comm.size, microseconds: blocking))
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
}
