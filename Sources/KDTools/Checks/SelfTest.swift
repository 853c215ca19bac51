import Foundation
import KDComm
import KDCore
import KDFormats
import KDTensor

/// `kdgraph selftest`: checks every collective of a `Communicator` against values each rank computes
/// on its own from closed-form formulas, then times a few all-reduce and all-gather sizes.
///
/// Rank `r` of `N` contributes data such as `x_r[i] = ((r + i) mod N + 1)·(i mod 5 + 1)`, whose sum,
/// max and min over ranks are `N(N+1)/2·(i mod 5 + 1)`, `N·(i mod 5 + 1)` and `i mod 5 + 1`
/// (UInt8 sums compared modulo 256). Variable-count collectives run twice: with `n_q = 0` for
/// `q ≡ 1 (mod 3)` (a rank with no rows from `N = 2` on) and with `n_q = q + base` (every rank
/// contributes).
///
/// `failRank` (or `KDGRAPH_FAIL_RANK=r`) is a test switch: that rank throws
/// `CommError.injectedFailure` in the middle of the self-test; the caller (`runOrAbort`) then ends the
/// whole job with `rank r: injected failure ...` and a non-zero exit.
public enum SelfTest {
    /// `KDGRAPH_FAIL_RANK` as an Int, if set.
    public static func failRankFromEnvironment() -> Int? {
        ProcessInfo.processInfo.environment["KDGRAPH_FAIL_RANK"].flatMap { Int($0) }
    }

    /// Runs every check; returns one JSON line (identical on every rank; rank 0 prints it):
    /// `{"ok": true, "ranks": N, "checks": K, "failed": [...], "timings_us": {...}}`.
    /// Throws when a collective itself fails (or on the injected failure).
    public static func run(comm: Communicator, failRank: Int? = failRankFromEnvironment(),
                           timings: Bool = true) throws -> String {
        var rec = Recorder()
        try comm.barrier()
        rec.expect("barrier", true, "")
        try scalarChecks(Float.self, "float32", comm, &rec)
        try scalarChecks(Double.self, "float64", comm, &rec)
        try scalarChecks(Int32.self, "int32", comm, &rec)
        try scalarChecks(Int64.self, "int64", comm, &rec)
        try scalarChecks(Int.self, "int", comm, &rec)
        try scalarChecks(UInt8.self, "uint8", comm, &rec)
        if let failRank, failRank == comm.rank {
            throw CommError.injectedFailure(rank: comm.rank,
                message: "KDGRAPH_FAIL_RANK=\(failRank): selftest stops on purpose after the all-reduce checks")
        }
        try asyncChecks(comm, &rec)
        try splitChecks(comm, &rec)
        try gatherRowsChecks(comm, &rec)
        try bucketChecks(comm, &rec)
        let times = timings ? try measure(comm) : []

        // Agree on the failures: every rank's failed names, gathered as bytes.
        let mine = Array(rec.failed.map { "rank \(comm.rank): \($0)" }.joined(separator: "\n").utf8)
        let bytes: [UInt8] = try comm.allGatherV(mine)
        let counts = try comm.allGatherCounts(mine.count)
        var failed: [String] = []
        var off = 0
        for c in counts {
            if c > 0 {
                failed += String(decoding: bytes[off..<off + c], as: UTF8.self).split(separator: "\n").map(String.init)
            }
            off += c
        }
        let timingText = times.map { "\"\($0.0)\": \(String(format: "%.1f", $0.1))" }.joined(separator: ", ")
        let failedText = failed.map { jsonString($0) }.joined(separator: ", ")
        return "{\"ok\": \(failed.isEmpty), \"ranks\": \(comm.size), \"checks\": \(rec.checks), "
            + "\"failed\": [\(failedText)], \"timings_us\": {\(timingText)}}"
    }

    // MARK: bookkeeping

    struct Recorder {
        var checks = 0
        var failed: [String] = []
        mutating func expect(_ name: String, _ ok: Bool, _ detail: @autoclosure () -> String) {
            checks += 1
            if !ok { failed.append("\(name): \(detail())") }
        }
    }

    static func jsonString(_ s: String) -> String { jsonStringLiteral(s) }

    /// `v` as a `T` (UInt8: modulo 256, the wrap-around of an 8-bit sum).
    @inline(__always)
    static func value<T: CommScalar>(_ v: Int) -> T {
        if T.commKind == .uint8 { return T(exactly: v & 0xFF) ?? 0 }
        return T(exactly: v) ?? 0
    }

    /// First index where `got` differs from `want(i)`, described; nil when equal.
    static func firstMismatch<T: CommScalar>(_ got: [T], _ want: (Int) -> T) -> String? {
        for i in got.indices where got[i] != want(i) { return "element \(i): got \(got[i]), want \(want(i))" }
        return nil
    }

    /// Uneven per-rank counts with empty ranks: `0` for `q ≡ 1 (mod 3)`, else `q + base`.
    static func unevenCounts(_ n: Int, base: Int) -> [Int] { (0..<n).map { $0 % 3 == 1 ? 0 : $0 + base } }

    /// The two count patterns every variable-count check runs: with empty ranks (`unevenCounts`) and
    /// uneven but all non-empty (`q + base`), so that from N = 2 on several ranks contribute.
    static func countPatterns(_ n: Int, base: Int) -> [(String, [Int])] {
        [("with_empty", unevenCounts(n, base: base)), ("nonempty", (0..<n).map { $0 + base })]
    }

    // MARK: per-dtype collectives

    static func scalarChecks<T: CommScalar>(_: T.Type, _ label: String, _ comm: Communicator,
                                            _ rec: inout Recorder) throws {
        let n = comm.size, r = comm.rank, tri = n * (n + 1) / 2

        // broadcast from the last rank
        let root = n - 1
        var b: [T] = (0..<37).map { r == root ? value(($0 * 7 + 3) % 100) : value(1) }
        try comm.broadcast(&b, root: root)
        rec.expect("broadcast/\(label)", firstMismatch(b) { value(($0 * 7 + 3) % 100) } == nil,
                   firstMismatch(b) { value(($0 * 7 + 3) % 100) } ?? "")

        // all-reduce sum / max / min; the maximal rank differs per element
        let count = 1000
        func x(_ i: Int) -> T { value(((r + i) % n + 1) * (i % 5 + 1)) }
        for (op, name, want) in [(ReduceOp.sum, "sum", { (i: Int) -> Int in tri * (i % 5 + 1) }),
                                 (.max, "max", { n * ($0 % 5 + 1) }), (.min, "min", { $0 % 5 + 1 })] {
            var a = (0..<count).map(x)
            try comm.allReduce(&a, op: op)
            let bad = firstMismatch(a) { value(want($0)) }
            rec.expect("allreduce_\(name)/\(label)", bad == nil, bad ?? "")
        }
        var one: [T] = [value(r + 1)]
        try comm.allReduce(&one, op: .sum)
        rec.expect("allreduce_count1/\(label)", one[0] == value(tri), "got \(one[0]), want \(tri)")

        // all-gather, 5 elements per rank
        let send: [T] = (0..<5).map { value(r * 10 + $0) }
        var recv = [T](repeating: 0, count: 5 * n)
        try send.withUnsafeBufferPointer { s in
            try recv.withUnsafeMutableBufferPointer {
                try comm.allGather(s.baseAddress!, count: 5, into: $0.baseAddress!)
            }
        }
        let badG = firstMismatch(recv) { value(($0 / 5) * 10 + $0 % 5) }
        rec.expect("allgather/\(label)", badG == nil, badG ?? "")

        for (pattern, gc) in countPatterns(n, base: 2) {
            // all-gather-v, uneven counts
            let gl = RowLayout(counts: gc)
            let gv: [T] = try comm.allGatherV((0..<gc[r]).map { value(r * 11 + $0) }, counts: gc)
            var wantGV: [T] = []
            for q in 0..<n { for i in 0..<gc[q] { wantGV.append(value(q * 11 + i)) } }
            rec.expect("allgatherv_\(pattern)/\(label)", gv == wantGV && gv.count == gl.total,
                       "got \(gv.prefix(12)), want \(wantGV.prefix(12))")
        }
        for (pattern, rc) in countPatterns(n, base: 1) {
            // reduce-scatter-v (sum), uneven blocks
            let rl = RowLayout(counts: rc)
            let rs: [T] = (0..<rl.total).map { value((r + 1) * ($0 % 7 + 1)) }
            var mineRS = [T](repeating: 0, count: rc[r])
            var dummy: T = 0     // receive slot for a rank with an empty block
            try rs.withUnsafeBufferPointer { s in     // total ≥ 1: rank 0 always has a block
                if rc[r] == 0 {
                    try withUnsafeMutablePointer(to: &dummy) {
                        try comm.reduceScatterV(s.baseAddress!, counts: rc, into: $0)
                    }
                } else {
                    try mineRS.withUnsafeMutableBufferPointer {
                        try comm.reduceScatterV(s.baseAddress!, counts: rc, into: $0.baseAddress!)
                    }
                }
            }
            let badRS = firstMismatch(mineRS) { value(tri * ((rl.offsets[r] + $0) % 7 + 1)) }
            rec.expect("reducescatterv_\(pattern)/\(label)", badRS == nil, badRS ?? "")
        }
    }

    // MARK: non-blocking all-reduce

    static func asyncChecks(_ comm: Communicator, _ rec: inout Recorder) throws {
        let n = comm.size, r = comm.rank, tri = n * (n + 1) / 2
        let count = 4096
        let a = UnsafeMutablePointer<Float>.allocate(capacity: count)
        let d = UnsafeMutablePointer<Double>.allocate(capacity: count)
        defer { a.deallocate(); d.deallocate() }
        for i in 0..<count { a[i] = Float((r + 1) * (i % 9 + 1)); d[i] = Double((r + i) % n) }

        // test() until done
        let req = try comm.allReduceAsync(a, count: count, op: .sum)
        var spins = 0
        while try !req.test() {
            spins += 1
            if spins > 10_000_000 { try req.wait(); break }
        }
        var bad: String?
        for i in 0..<count where a[i] != Float(tri * (i % 9 + 1)) { bad = "element \(i): got \(a[i])"; break }
        rec.expect("iallreduce_test/float32", bad == nil, bad ?? "")
        rec.expect("iallreduce_test_after_done", try req.test(), "test() false after completion")

        // wait() directly, max
        let req2 = try comm.allReduceAsync(d, count: count, op: .max)
        try req2.wait()
        bad = nil
        for i in 0..<count where d[i] != Double(n - 1) { bad = "element \(i): got \(d[i]), want \(n - 1)"; break }
        rec.expect("iallreduce_wait/float64", bad == nil, bad ?? "")
        try req2.wait()   // waiting twice is allowed
        rec.expect("iallreduce_wait_twice", true, "")
    }

    /// Splitting of counts above the per-call limit, exercised with a tiny limit.
    static func splitChecks(_ comm: Communicator, _ rec: inout Recorder) throws {
        let n = comm.size, r = comm.rank, tri = n * (n + 1) / 2
        let saved = comm.maxElementsPerCall
        defer { comm.maxElementsPerCall = saved }
        comm.maxElementsPerCall = 7
        var a: [Int64] = (0..<100).map { Int64((r + 1) * $0) }
        try comm.allReduce(&a, op: .sum)
        rec.expect("allreduce_split", a == (0..<100).map { Int64(tri * $0) }, "got \(a.prefix(10))")
        var f: [Float] = (0..<53).map { Float((r + 1) * $0) }
        let req = try f.withUnsafeMutableBufferPointer {
            try comm.allReduceAsync($0.baseAddress!, count: 53, op: .sum)
        }
        try req.wait()
        rec.expect("iallreduce_split", f == (0..<53).map { Float(tri * $0) }, "got \(f.prefix(10))")
        comm.maxElementsPerCall = saved
        let savedChunk = comm.allReduceChunkBytes
        comm.allReduceChunkBytes = 16            // 4 floats per call above 64 bytes
        var c: [Float] = (0..<101).map { Float((r + 1) * $0) }
        try comm.allReduce(&c, op: .sum)
        comm.allReduceChunkBytes = savedChunk
        rec.expect("allreduce_chunked", c == (0..<101).map { Float(tri * $0) }, "got \(c.prefix(10))")
        comm.maxElementsPerCall = 7
        var b: [Int32] = (0..<30).map { r == 0 ? Int32($0 * 3) : -1 }
        try comm.broadcast(&b, root: 0)
        rec.expect("broadcast_split", b == (0..<30).map { Int32($0 * 3) }, "got \(b.prefix(10))")
    }

    // MARK: differentiable all-gather

    static func gatherRowsChecks(_ comm: Communicator, _ rec: inout Recorder) throws {
        for (pattern, counts) in countPatterns(comm.size, base: 1) {
            try gatherRowsChecks(comm, counts: counts, pattern: pattern, &rec)
        }
    }

    static func gatherRowsChecks(_ comm: Communicator, counts: [Int], pattern: String, _ rec: inout Recorder) throws {
        let n = comm.size, r = comm.rank, tri = n * (n + 1) / 2
        let layout = RowLayout(counts: counts)
        let dim = 3
        let x = Tensor(shape: [counts[r], dim],
                       data: (0..<counts[r] * dim).map { Float(r * 100 + ($0 / dim) * 10 + $0 % dim) })
        func wantRow(_ g: Int, _ d: Int) -> Float {
            let q = (0..<n).last { layout.offsets[$0] <= g && counts[$0] > 0 }!
            return Float(q * 100 + (g - layout.offsets[q]) * 10 + d)
        }
        // forward (counts exchanged) and backward: share L_r = Σ W_r ∘ Y with W_r[g,d] = (r+1) + g/2 + d
        let savedGrad = GradMode.isEnabled
        GradMode.isEnabled = true
        defer { GradMode.isEnabled = savedGrad }
        Tape.reset()
        x.requiresGrad = true
        let y = try allGatherRows(x, comm: comm)
        var bad: String?
        if y.shape != [layout.total, dim] { bad = "shape \(y.shape), want [\(layout.total), \(dim)]" }
        for g in 0..<layout.total where bad == nil { for d in 0..<dim where y.ptr[g * dim + d] != wantRow(g, d) {
            bad = "row \(g) col \(d): got \(y.ptr[g * dim + d]), want \(wantRow(g, d))"; break
        } }
        rec.expect("allgather_rows_forward_\(pattern)", bad == nil, bad ?? "")
        let seed = Tensor(shape: y.shape,
                          data: (0..<y.count).map { Float(r + 1) + Float($0 / dim) * 0.5 + Float($0 % dim) })
        Tape.backward(y, seed: seed)
        bad = nil
        if counts[r] > 0 {
            if let gx = x.grad {
                for k in 0..<counts[r] { for d in 0..<dim {
                    let want = Float(tri) + Float(n) * (Float(layout.offsets[r] + k) * 0.5 + Float(d))
                    if gx.ptr[k * dim + d] != want && bad == nil {
                        bad = "row \(k) col \(d): got \(gx.ptr[k * dim + d]), want \(want)"
                    }
                } }
            } else { bad = "no gradient reached the local rows" }
        }
        rec.expect("allgather_rows_backward_\(pattern)", bad == nil, bad ?? "")
        x.requiresGrad = false
        x.grad = nil

        // no-grad variant with given counts; integer labels
        let z = try allGatherRowsNoGrad(x, comm: comm, counts: counts)
        bad = z.requiresGrad ? "output requires grad" : nil
        for g in 0..<layout.total where bad == nil { for d in 0..<dim where z.ptr[g * dim + d] != wantRow(g, d) {
            bad = "row \(g) col \(d): got \(z.ptr[g * dim + d])"; break
        } }
        rec.expect("allgather_rows_nograd_\(pattern)", bad == nil, bad ?? "")
        let labels = try comm.allGatherInts((0..<counts[r]).map { r * 1000 + $0 })
        var wantLabels: [Int] = []
        for q in 0..<n { for i in 0..<counts[q] { wantLabels.append(q * 1000 + i) } }
        rec.expect("allgather_ints_\(pattern)", labels == wantLabels,
                   "got \(labels.prefix(12)), want \(wantLabels.prefix(12))")
    }

    // MARK: gradient buckets

    /// Shapes of the bucket test's parameters; parameter 5 never has a gradient, parameter 1 has none
    /// on rank 0.
    static let bucketShapes: [[Int]] = [[3], [50], [7, 11], [0], [200], [5]]

    static func bucketChecks(_ comm: Communicator, _ rec: inout Recorder) throws {
        let n = comm.size
        for overlapped in [false, true] {
            let mode = overlapped ? "overlapped" : "blocking"
            let scale: Float = overlapped ? 0.5 : 1
            let params = bucketShapes.map { Tensor.zeros($0) }
            fillBucketGradients(params, rank: comm.rank)
            let buckets = try GradientBuckets(parameters: params, comm: comm, bucketBytes: 256, scale: scale)
            if overlapped {
                // Backward order, parameter 2 never marked, polling in between.
                for p in [5, 4, 3, 1, 0] { buckets.markReady(params[p]); try buckets.poll() }
                try buckets.finish()
            } else {
                try buckets.allReduceBlocking()
            }
            var bad: String?
            for (p, t) in params.enumerated() where bad == nil {
                guard let g = t.grad else { bad = "parameter \(p) has no gradient after the all-reduce"; break }
                for i in 0..<t.count {
                    let want = scale * expectedBucketSum(p, i, size: n)
                    if g.ptr[i] != want { bad = "parameter \(p) element \(i): got \(g.ptr[i]), want \(want)"; break }
                }
            }
            rec.expect("buckets_\(mode)", bad == nil, bad ?? "")
            let s = buckets.lastStats
            rec.expect("buckets_\(mode)_stats",
                       s.bytesReduced == buckets.totalBytes && s.buckets == buckets.buckets.count,
                       "bytes \(s.bytesReduced) (want \(buckets.totalBytes)), buckets \(s.buckets)")
        }
        // Overlap driven by the tape: the gradient equals the sum of every rank's gradient computed here.
        let result = try tapeBucketCheck(comm)
        rec.expect("buckets_tape_overlap", result == nil, result ?? "")
    }

    /// Rank r's gradient of parameter p, element i: `(r+1)(p+1) + i mod 3` (none for p = 5, none for
    /// p = 1 on rank 0).
    static func fillBucketGradients(_ params: [Tensor], rank r: Int) {
        for (p, t) in params.enumerated() {
            if p == 5 || (p == 1 && r == 0) { t.grad = nil; continue }
            t.grad = Tensor(shape: t.shape, data: (0..<t.count).map { Float((r + 1) * (p + 1) + $0 % 3) })
        }
    }

    static func expectedBucketSum(_ p: Int, _ i: Int, size n: Int) -> Float {
        if p == 5 { return 0 }
        var s = 0
        for r in 0..<n where !(p == 1 && r == 0) { s += (r + 1) * (p + 1) + i % 3 }
        return Float(s)
    }

    /// A two-layer linear map `y = (x W1ᵀ) W2ᵀ` with rank-dependent input; the overlapped buckets must
    /// give the sum over ranks of the local gradients, each computed here without communication.
    static func tapeBucketCheck(_ comm: Communicator) throws -> String? {
        var rng = KDRandom(keys: 2026, 11)
        let w1 = Tensor.randn([4, 3], rng: &rng), w2 = Tensor.randn([2, 4], rng: &rng)
        w1.requiresGrad = true; w2.requiresGrad = true
        func input(_ q: Int) -> Tensor {
            Tensor(shape: [3, 3], data: (0..<9).map { Float(q + 1) * 0.25 + Float($0) * 0.1 })
        }
        let savedGrad = GradMode.isEnabled
        GradMode.isEnabled = true
        defer { GradMode.isEnabled = savedGrad }
        var ref1 = [Double](repeating: 0, count: 12), ref2 = [Double](repeating: 0, count: 8)
        for q in 0..<comm.size {
            Tape.reset(); w1.grad = nil; w2.grad = nil
            let y = try matmul(try matmul(input(q), w1, transposeB: true), w2, transposeB: true)
            Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1))
            for i in 0..<12 { ref1[i] += Double(w1.grad!.ptr[i]) }
            for i in 0..<8 { ref2[i] += Double(w2.grad!.ptr[i]) }
        }
        Tape.reset(); w1.grad = nil; w2.grad = nil
        let buckets = try GradientBuckets(parameters: [w1, w2], comm: comm, bucketBytes: 16)
        let y = try matmul(try matmul(input(comm.rank), w1, transposeB: true), w2, transposeB: true)
        Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1), onGradReady: buckets.onGradReady)
        try buckets.finish()
        let started = buckets.lastStats.startedEarly
        for (t, ref) in [(w1, ref1), (w2, ref2)] {
            guard let g = t.grad else { return "no gradient" }
            for i in 0..<t.count where abs(Double(g.ptr[i]) - ref[i]) > 1e-4 * max(1, abs(ref[i])) {
                return "element \(i) of \(t.shape): got \(g.ptr[i]), want \(ref[i])"
            }
        }
        return started == 2 ? nil : "\(started) of 2 buckets started during backward"
    }

    // MARK: timings

    /// Mean µs per call (maximum over ranks) of all-reduce SUM of 1 KB, 1 MB, 16 MB of Float and of an
    /// all-gather of 256 KB per rank.
    static func measure(_ comm: Communicator) throws -> [(String, Double)] {
        var out: [(String, Double)] = []
        for (name, bytes, reps) in [("allreduce_1KB", 1 << 10, 200), ("allreduce_1MB", 1 << 20, 20),
                                    ("allreduce_16MB", 16 << 20, 4)] {
            let count = bytes / 4
            let buf = Tensor(shape: [count], repeating: 0)
            try comm.allReduce(buf.ptr, count: count, op: .sum)   // warm-up
            try comm.barrier()
            let t0 = monotonicSeconds()
            for _ in 0..<reps { try comm.allReduce(buf.ptr, count: count, op: .sum) }
            let us = (monotonicSeconds() - t0) / Double(reps) * 1e6
            out.append((name, try comm.allReduce(us, op: .max)))
        }
        let per = (256 << 10) / 4
        let send = Tensor(shape: [per], repeating: 1), recv = Tensor(uninitializedShape: [per * comm.size])
        try comm.allGather(UnsafePointer(send.ptr), count: per, into: recv.ptr)
        try comm.barrier()
        let t0 = monotonicSeconds()
        for _ in 0..<20 { try comm.allGather(UnsafePointer(send.ptr), count: per, into: recv.ptr) }
        let us = (monotonicSeconds() - t0) / 20 * 1e6
        out.append(("allgather_256KB_per_rank", try comm.allReduce(us, op: .max)))
        return out
    }
}
