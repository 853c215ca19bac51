import Foundation
import XCTest
@testable import KDComm
import KDCore
import KDTensor
import KDTestSupport

/// The in-process world (N ranks as threads) at N = 2, 3, 4: every collective, its failure modes, and
/// the differentiable all-gather and gradient buckets against their one-rank results.
final class InProcessWorldTests: XCTestCase {
    let sizes = [2, 3, 4]

    /// Closed forms, checked directly: rank r contributes r + 1 (sum N(N+1)/2, max N, min 1), the
    /// broadcast from the last rank, gathers of uneven counts with an empty rank, reduce-scatter.
    func testCollectivesGiveTheClosedForms() throws {
        for n in sizes {
            let counts = (0..<n).map { $0 == 1 ? 0 : $0 + 1 }          // rank 1 contributes nothing
            let total = counts.reduce(0, +)
            let out = try InProcessWorld(size: n).run { comm -> [[Double]] in
                let r = comm.rank
                try comm.barrier()
                var s = [Double(r + 1), Double(r + 1), Double(r + 1)]
                var mx = s, mn = s
                try comm.allReduce(&s, op: .sum)
                try comm.allReduce(&mx, op: .max)
                try comm.allReduce(&mn, op: .min)
                var b = [Double(r), Double(10 * r)]
                try comm.broadcast(&b, root: n - 1)
                let g = try comm.allGather(Double(r))
                let gv: [Double] = try comm.allGatherV((0..<counts[r]).map { Double(100 * r + $0) }, counts: counts)
                let full = (0..<total).map { Double($0 + r) }
                var rs = [Double](repeating: -1, count: max(counts[r], 1))    // a valid pointer when empty
                try full.withUnsafeBufferPointer { f in
                    try rs.withUnsafeMutableBufferPointer {
                        try comm.reduceScatterV(f.baseAddress!, counts: counts, into: $0.baseAddress!)
                    }
                }
                return [s, mx, mn, b, g, gv, Array(rs.prefix(counts[r]))]
            }
            let tri = Double(n * (n + 1) / 2)
            let offsets = (0..<n).map { counts[..<$0].reduce(0, +) }
            for (r, o) in out.enumerated() {
                XCTAssertEqual(o[0], [tri, tri, tri], "N = \(n) rank \(r): sum")
                XCTAssertEqual(o[1], [Double(n), Double(n), Double(n)], "max")
                XCTAssertEqual(o[2], [1, 1, 1], "min")
                XCTAssertEqual(o[3], [Double(n - 1), Double(10 * (n - 1))], "broadcast from the last rank")
                XCTAssertEqual(o[4], (0..<n).map(Double.init), "allGather")
                let gathered = (0..<n).flatMap { q in (0..<counts[q]).map { Double(100 * q + $0) } }
                XCTAssertEqual(o[5], gathered, "allGatherV")
                // Σ_q (i + q) over q < N for the global index i = offsets[r] + k.
                let sumQ = Double(n * (n - 1) / 2)
                let scattered = (0..<counts[r]).map { Double(n) * Double(offsets[r] + $0) + sumQ }
                XCTAssertEqual(o[6], scattered, "reduceScatterV")
            }
        }
    }

    /// Float32 sums are taken in rank order ((x₀ + x₁) + x₂) + x₃, whatever the arrival order:
    /// with x = [1e8, 1, −1e8, 1], rank order gives (1e8 + 1 rounds to 1e8) → 0 → 1, while e.g.
    /// ((x₀ + x₂) + x₁) + x₃ would give 2. Repeated runs give the same bits.
    func testSumIsTakenInRankOrder() throws {
        let x: [Float] = [1e8, 1, -1e8, 1]
        for _ in 0..<5 {
            let out = try InProcessWorld(size: 4).run { comm -> Float in
                usleep(UInt32((3 - comm.rank) * 2000))         // the last rank arrives first
                return try comm.allReduce(x[comm.rank], op: .sum)
            }
            XCTAssertEqual(out, [1, 1, 1, 1])
        }
    }

    /// A non-blocking all-reduce leaves the buffer untouched until it completes; `test()` is false
    /// while a rank has not started it.
    func testAsyncAllReduceCompletesOnTestOrWait() throws {
        for n in sizes {
            let go = DispatchSemaphore(value: 0)
            let out = try InProcessWorld(size: n).run { comm -> [Float] in
                var buf: [Float] = [Float(comm.rank), 1, 2]
                if comm.rank == n - 1 { go.wait() }
                let req = try buf.withUnsafeMutableBufferPointer {
                    try comm.allReduceAsync($0.baseAddress!, count: 3, op: .sum)
                }
                var early: Float = -1
                if comm.rank == 0 {
                    early = try req.test() ? 1 : 0
                    early += buf[0] == 0 ? 0 : 10         // untouched before completion
                    go.signal()
                }
                try req.wait()
                try req.wait()                               // waiting twice is allowed
                if try !req.test() { early = 100 }
                return buf + [early]
            }
            let tri = Float(n * (n - 1) / 2)
            XCTAssertEqual(out[0], [tri, Float(n), Float(2 * n), 0], "N = \(n): rank 0 saw it incomplete")
            for r in 1..<n { XCTAssertEqual(out[r], [tri, Float(n), Float(2 * n), -1]) }
        }
    }

    func testRanksThatDisagreeOnCountsThrowOnEveryRank() throws {
        let seen = NSLock()
        var errors: [String] = []
        XCTAssertThrowsError(try InProcessWorld(size: 3).run { comm in
            var v = [Float](repeating: 1, count: 3 + comm.rank)
            do { try comm.allReduce(&v, op: .sum) } catch {
                seen.lock(); errors.append("\(error)"); seen.unlock()
                throw error
            }
        }) { e in
            guard let f = e as? RankFailure,
                  case CommError.rankMismatch(let op, let message)? = f.error as? CommError else {
                return XCTFail("\(e)")
            }
            XCTAssertEqual(op, "allReduce")
            XCTAssertTrue(message.contains("rank 0: allReduce float32 sum counts [3]"), message)
            XCTAssertTrue(message.contains("rank 2: allReduce float32 sum counts [5]"), message)
        }
        XCTAssertEqual(errors.count, 3, "every rank throws")
    }

    func testDifferentCollectivesAreAMismatch() throws {
        XCTAssertThrowsError(try InProcessWorld(size: 2).run { comm in
            if comm.rank == 0 { try comm.barrier() } else { _ = try comm.allGather(Int(1)) }
        }) { e in
            XCTAssertTrue("\(e)".contains("collective #0 called differently"), "\(e)")
        }
    }

    func testArgumentErrorsAreThrownAtTheCall() throws {
        let out = try InProcessWorld(size: 2).run { comm -> [String] in
            var b: [Float] = [1]
            var msgs: [String] = []
            do { try comm.broadcast(&b, root: 2) } catch { msgs.append("\(error)") }
            do { _ = try comm.allGatherV([Float(1)], counts: [1]) } catch { msgs.append("\(error)") }
            return msgs
        }
        XCTAssertEqual(out[0], ["broadcast: root 2 outside 0..<2",
                                "allGatherV: counts [1] do not give rank 0 its 1 elements"])
    }

    /// A rank that throws fails the world; the rank waiting in a barrier does not hang.
    func testAThrowingRankFailsTheWorld() throws {
        struct Boom: Error {}
        XCTAssertThrowsError(try InProcessWorld(size: 3).run { comm in
            if comm.rank == 1 { throw Boom() }
            try comm.barrier()
        }) { e in
            XCTAssertEqual((e as? RankFailure)?.rank, 1)
            XCTAssertTrue((e as? RankFailure)?.error is Boom)
        }
    }

    func testARankThatReturnsEarlyIsReported() throws {
        XCTAssertThrowsError(try InProcessWorld(size: 2).run { comm in
            if comm.rank == 0 { try comm.barrier() }
        }) { e in
            XCTAssertEqual((e as? RankFailure)?.error as? InProcessError,
                           .rankGone(collective: "barrier", sequence: 0, gone: 1, state: "finished", waiting: [0]))
        }
    }

    func testAbortFailsTheWorld() throws {
        XCTAssertThrowsError(try InProcessWorld(size: 2).run { comm in
            if comm.rank == 1 { comm.abort("stop here", code: 7) }
            try comm.barrier()
        }) { e in
            XCTAssertEqual((e as? RankFailure)?.rank, 1)
            XCTAssertEqual((e as? RankFailure)?.error as? InProcessError, .aborted(code: 7, message: "stop here"))
        }
    }

    func testTimeoutNamesTheCollectiveAndStep() throws {
        XCTAssertThrowsError(try InProcessWorld(size: 2).run { comm in
            comm.timeoutSeconds = 0.2
            comm.currentStep = 4
            if comm.rank == 1 { usleep(1_000_000) }
            try comm.barrier()
        }) { e in
            XCTAssertEqual("\(e)", "rank 0: collective barrier did not complete within 0.2s of comm.timeout_s (step 4)")
        }
    }

    func testAloneIsAWorldOfOne() throws {
        let out = try InProcessWorld(size: 3).run { comm -> [Int] in
            let one = try comm.alone()
            var v = [comm.rank + 1]
            try one.allReduce(&v, op: .sum)
            return [one.rank, one.size, v[0]]
        }
        XCTAssertEqual(out, [[0, 1, 1], [0, 1, 2], [0, 1, 3]])
    }

    // MARK: allGatherRows

    /// Forward: the gathered rows are the global matrix X. Backward: rank r's share is
    /// L_r = Σ W_r ⊙ Y, so ∂L/∂X_r = Σ_q W_q[rows of r]; the one-rank reference evaluates
    /// L = Σ_q Σ W_q ⊙ X on the whole X. All values are small integers, so every sum is exact in
    /// float32 and the results must be equal, not merely close.
    func testAllGatherRowsForwardAndBackwardMatchOneRank() throws {
        let d = 3
        for n in sizes {
            let counts = (0..<n).map { [2, 0, 3, 1][$0] }
            let total = counts.reduce(0, +)
            let x = (0..<total * d).map { Float($0 % 7) - 3 }
            func w(_ q: Int) -> Tensor {
                Tensor(shape: [total, d], data: (0..<total * d).map { Float(($0 + 3 * q) % 5) })
            }
            let reference = try InProcessWorld(size: 1).run { comm -> [Float] in
                let xt = Tensor(shape: [total, d], data: x, requiresGrad: true)
                let y = try allGatherRows(xt, comm: comm)
                var loss = sum(try w(0) * y)
                for q in 1..<n { loss = try loss + sum(try w(q) * y) }
                Tape.backward(loss)
                return y.array + xt.grad!.array
            }[0]
            let layout = RowLayout(counts: counts)
            let out = try InProcessWorld(size: n).run { comm -> [Float] in
                let rows = layout.rows(of: comm.rank)
                let xr = Tensor(shape: [rows.count, d], data: Array(x[rows.lowerBound * d ..< rows.upperBound * d]),
                                requiresGrad: true)
                let y = try allGatherRows(xr, comm: comm)
                Tape.backward(sum(try w(comm.rank) * y))
                return y.array + (xr.grad?.array ?? [])
            }
            let refGrad = Array(reference.dropFirst(total * d))
            for r in 0..<n {
                let rows = layout.rows(of: r)
                let lo: Int = rows.lowerBound * d, hi: Int = rows.upperBound * d
                let want: [Float] = Array(refGrad[lo..<hi])
                XCTAssertEqual(Array(out[r].prefix(total * d)), x, "N = \(n) rank \(r): forward")
                XCTAssertEqual(Array(out[r].dropFirst(total * d)), want, "N = \(n) rank \(r): backward")
            }
        }
    }

    // MARK: gradient buckets

    /// Parameter p_i (sizes 3, 50, 7, 20, 1; 64-byte buckets, so several) and loss share
    /// L_r = Σ_i Σ c_{r,i} ⊙ p_i give gradients c_{r,i}; buckets must leave Σ_r c_{r,i} (small integers:
    /// exact) on every rank, through the blocking path and the overlapped one (started from
    /// `onGradReady` during backward), with identical bits.
    func testGradientBucketsSumBlockingAndOverlapped() throws {
        let sizesP = [3, 50, 7, 20, 1]
        func c(_ r: Int, _ i: Int) -> [Float] { (0..<sizesP[i]).map { Float(($0 + r * 3 + i) % 4) } }
        for n in sizes {
            for overlap in [false, true] {
                let out = try InProcessWorld(size: n).run { comm -> ([[Float]], Int) in
                    let ps = sizesP.map { Tensor.zeros([$0], requiresGrad: true) }
                    let buckets = try GradientBuckets(parameters: ps, comm: comm, bucketBytes: 64)
                    var loss = sum(try Tensor(shape: [sizesP[0]], data: c(comm.rank, 0)) * ps[0])
                    for i in 1..<ps.count {
                        loss = try loss + sum(try Tensor(shape: [sizesP[i]], data: c(comm.rank, i)) * ps[i])
                    }
                    if overlap {
                        Tape.backward(loss, onGradReady: buckets.onGradReady)
                        try buckets.finish()
                    } else {
                        Tape.backward(loss)
                        try buckets.allReduceBlocking()
                    }
                    return (ps.map { $0.grad!.array }, buckets.lastStats.startedEarly)
                }
                for r in 0..<n {
                    for i in sizesP.indices {
                        let want = (0..<sizesP[i]).map { k in (0..<n).reduce(Float(0)) { $0 + c($1, i)[k] } }
                        XCTAssertEqual(out[r].0[i], want, "N = \(n) overlap \(overlap) rank \(r) parameter \(i)")
                    }
                    if overlap { XCTAssertGreaterThan(out[r].1, 0, "buckets started during backward") }
                }
            }
        }
    }
}
