import KDComm
import KDCore
import KDTensor
import KDTestSupport
import KDTools

/// Multi-rank checks of the Comm layer. Each rank computes the expected values itself (closed forms or
/// a one-process reference of the whole global batch) and every collective is issued on every rank
/// before any comparison throws, so a failing check never leaves a peer inside a collective.
enum CommChecks {
    static let all: [MultiRankCheck] = [
        MultiRankCheck("comm.selftest", run: selftest),
        MultiRankCheck("comm.allgather_rows_vs_one_process", run: gatherVersusOneProcess),
        MultiRankCheck("comm.allgather_rows_share_without_gather", run: shareWithoutGather),
        MultiRankCheck("comm.rank_mismatch_errors", run: rankMismatchErrors),
        MultiRankCheck("comm.buckets_large", run: bucketsLarge),
        MultiRankCheck("comm.iallreduce_polled_during_compute", run: iallreduceDuringCompute),
        MultiRankCheck("comm.verify_identical", run: verifyIdentical),
        MultiRankCheck("comm.fault_injection", run: faultInjection),
        MultiRankCheck("comm.exact_sum_scatter_gather", run: exactSumScatterGather),
    ]

    /// `ExactSum.reduce` with `scatterGather` (an Int64 `MPI_Reduce_scatter` with uneven counts, each rank
    /// converting its share, an `MPI_Allgatherv`) gives the `MPI_Allreduce` path's bits on every rank:
    /// 300 001 Float sums in 41 groups (one of zeros, the last with a NaN on the last rank), 3 blocks per rank,
    /// values spanning 2⁻²⁰…2²⁰. The sums must also be the same on every rank (checksum of the bits).
    static func exactSumScatterGather(_ comm: Communicator) throws {
        let counts = [1] + [Int](repeating: 7_500, count: 40), total = counts.reduce(0, +)
        let partials = ExactSumCase<Float>(counts: counts, blocks: 3, rank: comm.rank, ranks: comm.size, seed: 29)
        func sums(scatterGather: Bool) throws -> [Float] {
            try partials.sums(comm: comm, scatterGather: scatterGather)
        }
        let allReduced = try sums(scatterGather: false), gathered = try sums(scatterGather: true)
        let checksum = gathered.reduce(UInt64(0)) { ($0 &* 31) &+ UInt64($1.bitPattern) }
        try comm.verifyIdentical(Double(checksum % (1 << 52)), what: "scatter-gather sums' checksum")
        let differing = zip(allReduced, gathered).filter { $0.bitPattern != $1.bitPattern }.count
        guard differing == 0 else {
            throw CheckFailure("\(differing) of \(total) sums differ from the all-reduce path's bits")
        }
        guard gathered[counts[0]] == 0, gathered[total - 1].isNaN else {
            throw CheckFailure("zeros group \(gathered[counts[0]]), NaN group \(gathered[total - 1])")
        }
    }

    /// Identical values pass; a value that differs on one rank makes every rank throw.
    static func verifyIdentical(_ comm: Communicator) throws {
        try comm.verifyIdentical(1.25, what: "checksum")
        guard comm.size > 1 else { return }
        do {
            try comm.verifyIdentical(comm.rank == comm.size - 1 ? 2 : 1, what: "checksum")
            throw CheckFailure("a checksum differing on rank \(comm.size - 1) was accepted")
        } catch let e as CommError {
            guard "\(e)".contains("checksum differs across ranks: min 1.0, max 2.0") else {
                throw CheckFailure("unexpected error: \(e)")
            }
        }
    }

    /// Test switch for the driver's failure agreement: with `KDGRAPH_FAIL_RANK=r` in the environment,
    /// rank r fails this check (no collective involved) and every rank must report it as failed.
    static func faultInjection(_ comm: Communicator) throws {
        if let r = SelfTest.failRankFromEnvironment(), r == comm.rank {
            throw CheckFailure("injected failure (KDGRAPH_FAIL_RANK=\(r))")
        }
    }

    /// Every collective against closed forms (SelfTest without timings).
    static func selftest(_ comm: Communicator) throws {
        let line = try SelfTest.run(comm: comm, failRank: nil, timings: false)
        if !line.hasPrefix("{\"ok\": true") { throw CheckFailure(line) }
    }

    static func rows(_ t: Tensor, _ range: Range<Int>) -> Tensor {
        let w = t.count / max(t.shape[0], 1)
        return Tensor(shape: [range.count] + t.shape.dropFirst(),
                      data: Array(t.array[(range.lowerBound * w)..<(range.upperBound * w)]))
    }

    static func maxRelativeError(_ a: [Float], _ b: [Float]) -> Double {
        var diff = 0.0, scale = 1e-6
        for i in a.indices { diff = max(diff, Double(abs(a[i] - b[i]))); scale = max(scale, Double(abs(b[i]))) }
        return diff / scale
    }

    /// The gather/loss-share contract end to end. Global batch `X [B, D]` (uneven rows per rank; once
    /// with every rank owning rows, once with rank 1 empty), parameter `M [D, D]`; loss
    /// `L = Σ S ∘ ((X M)(X)ᵀ)`. Rank r evaluates the share
    /// `L_r` = the rows of S it owns, from `Y1 = gather(X_r M)`, `Y2 = gather(X_r)`. After backward (two
    /// reduce-scatters into the same local rows) and a bucketed all-reduce of `∂L/∂M`, every rank must
    /// hold exactly the one-process gradients of its rows and of M.
    static func gatherVersusOneProcess(_ comm: Communicator) throws {
        let n = comm.size
        // Every rank owns rows; then rank 1 owns none (from N = 2 on).
        try gatherVersusOneProcess(comm, counts: (0..<n).map { $0 + 2 })
        try gatherVersusOneProcess(comm, counts: (0..<n).map { $0 == 1 ? 0 : $0 + 2 })
    }

    static func gatherVersusOneProcess(_ comm: Communicator, counts: [Int]) throws {
        let r = comm.rank, dim = 4
        let layout = RowLayout(counts: counts)
        let b = layout.total
        var rng = KDRandom(keys: 7, 1)
        let xg = Tensor.randn([b, dim], rng: &rng)
        let m0 = Tensor.randn([dim, dim], rng: &rng)
        let s = Tensor.uniform([b, b], -1, 1, rng: &rng)

        // one-process reference
        Tape.reset()
        let xRef = xg.copy(), mRef = m0.copy()
        xRef.requiresGrad = true; mRef.requiresGrad = true
        let gRef = try matmul(try matmul(xRef, mRef), xRef, transposeB: true)
        Tape.backward(gRef, seed: s)

        // distributed: share of the rows this rank owns
        Tape.reset()
        let mine = layout.rows(of: r)
        let x = rows(xg, mine), m = m0.copy()
        x.requiresGrad = true; m.requiresGrad = true
        let y1 = try allGatherRows(try matmul(x, m), comm: comm)
        let y2 = try allGatherRows(x, comm: comm, counts: counts)
        let g = try matmul(y1, y2, transposeB: true)
        let share = Tensor.zeros([b, b])
        for i in mine { for j in 0..<b { share.ptr[i * b + j] = s.ptr[i * b + j] } }
        Tape.backward(g, seed: share)
        let buckets = try GradientBuckets(parameters: [m], comm: comm)
        try buckets.allReduceBlocking()

        let errForward = maxRelativeError(g.array, gRef.array)
        let errRows = mine.isEmpty ? 0 : maxRelativeError(x.grad?.array ?? [], rows(xRef.grad!, mine).array)
        let errM = maxRelativeError(m.grad?.array ?? [], mRef.grad!.array)
        if !mine.isEmpty && x.grad == nil { throw CheckFailure("rank \(r): no gradient for the local rows") }
        if errForward > 1e-5 || errRows > 1e-5 || errM > 1e-5 {
            throw CheckFailure("counts \(counts): max relative errors: forward \(errForward), "
                               + "local rows \(errRows), M \(errM) (bound 1e-5)")
        }
    }

    /// Only rank 0's share reads the gathered rows (seed 1 everywhere); the other ranks back-propagate
    /// a loss that ignores them. The gather's backward must still run on every rank (its
    /// reduce-scatter is collective), and every local row must receive exactly rank 0's gradient, 1.
    static func shareWithoutGather(_ comm: Communicator) throws {
        let x = Tensor(shape: [2, 3], data: (0..<6).map { Float(comm.rank * 10 + $0) }, requiresGrad: true)
        Tape.reset()
        let y = try allGatherRows(x, comm: comm)
        if comm.rank == 0 {
            Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1))
        } else {
            let a = Tensor(shape: [1, 1], data: [3], requiresGrad: true)
            Tape.backward(try matmul(a, a))
        }
        let g = x.grad?.array ?? []
        if g != [Float](repeating: 1, count: 6) {
            throw CheckFailure("rank \(comm.rank): local gradient \(g), want six 1s")
        }
    }

    /// Ranks that disagree about the row size or about recording all throw the same error.
    static func rankMismatchErrors(_ comm: Communicator) throws {
        guard comm.size > 1 else { return }
        let bad = Tensor.zeros([2, comm.rank == 0 ? 3 : 4])
        do {
            _ = try allGatherRowsNoGrad(bad, comm: comm)
            throw CheckFailure("row sizes 3 vs 4 were accepted")
        } catch let e as CommError {
            guard "\(e)".contains("ranks disagree: row sizes per rank") else {
                throw CheckFailure("unexpected error: \(e)")
            }
        }
        let x = Tensor.zeros([2, 3], requiresGrad: comm.rank == 0)
        Tape.reset()
        do {
            _ = try allGatherRows(x, comm: comm)
            throw CheckFailure("a gather recorded on rank 0 only was accepted")
        } catch let e as CommError {
            guard "\(e)".contains("only some ranks record the gather") else {
                throw CheckFailure("unexpected error: \(e)")
            }
        }
    }

    /// Default 4 MiB buckets over a 12 MB parameter, a 2 MB one and 20 small ones (≈ 14 MB): blocking and
    /// overlapped (reverse-order readiness, polling) both give `Σ_r (r+1)(i mod 11 + p)`.
    static func bucketsLarge(_ comm: Communicator) throws {
        let shapes: [[Int]] = [[3_000_000]] + Array(repeating: [1000], count: 10)
            + [[500_000]] + Array(repeating: [77], count: 10)
        let tri = Float(comm.size * (comm.size + 1) / 2)
        var failures: [String] = []
        for overlapped in [false, true] {
            let params = shapes.map { Tensor.zeros($0) }
            for (p, t) in params.enumerated() {
                let g = Tensor(uninitializedShape: t.shape)
                for i in 0..<t.count { g.ptr[i] = Float(comm.rank + 1) * Float(i % 11 + p) }
                t.grad = g
            }
            let buckets = try GradientBuckets(parameters: params, comm: comm)
            if overlapped {
                for t in params.reversed() { buckets.markReady(t) }
                try buckets.finish()
            } else {
                try buckets.allReduceBlocking()
            }
            for (p, t) in params.enumerated() {
                for i in 0..<t.count where t.grad!.ptr[i] != tri * Float(i % 11 + p) {
                    failures.append("\(overlapped ? "overlapped" : "blocking") parameter \(p) element \(i): "
                                    + "got \(t.grad!.ptr[i]), want \(tri * Float(i % 11 + p))")
                    break
                }
            }
            if buckets.lastStats.bytesReduced != buckets.totalBytes {
                failures.append("bytes reduced \(buckets.lastStats.bytesReduced), want \(buckets.totalBytes)")
            }
            // Reverse order: the 10 small, the 2 MB and the 10 medium ones share 4 MiB; the 12 MB one is alone.
            let layout = buckets.buckets.map { $0.parameterIndices.count }
            if layout != [21, 1] { failures.append("bucket sizes (parameters per bucket) \(layout), want [21, 1]") }
        }
        if !failures.isEmpty { throw CheckFailure(failures.joined(separator: "; ")) }
    }

    /// An `MPI_Iallreduce` of 8 MB polled with `test()` between GEMMs completes with the right sum.
    static func iallreduceDuringCompute(_ comm: Communicator) throws {
        let count = 2 << 20
        let buf = Tensor(uninitializedShape: [count])
        for i in 0..<count { buf.ptr[i] = Float((comm.rank + 1) * (i % 13)) }
        var rng = KDRandom(keys: 3, 3)
        let a = Tensor.randn([128, 128], rng: &rng), c = Tensor(uninitializedShape: [128, 128])
        let req = try comm.allReduceAsync(buf.ptr, count: count, op: .sum)
        var polls = 0
        for _ in 0..<20 {
            sgemm(m: 128, n: 128, k: 128, a: a.ptr, lda: 128, b: a.ptr, ldb: 128, c: c.ptr, ldc: 128)
            polls += 1
            if try req.test() { break }
        }
        try req.wait()
        let tri = Float(comm.size * (comm.size + 1) / 2)
        for i in 0..<count where buf.ptr[i] != tri * Float(i % 13) {
            throw CheckFailure("element \(i): got \(buf.ptr[i]), want \(tri * Float(i % 13)) after \(polls) polls")
        }
    }
}
