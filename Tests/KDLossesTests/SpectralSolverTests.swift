import XCTest
import KDCore
import KDTestSupport
import KDTensor
@testable import KDLosses
import KDLossTesting

/// The spectral term's iterative teacher eigensolver and its row-sharded path: the subspace and the loss
/// against `dsyevd_` on a graph with cluster structure, the shares over in-process worlds, the dense
/// fallback on a gapless graph, and finite differences through the sharded iterative path.
final class SpectralSolverTests: XCTestCase {
    /// `n` rows around `centres` random centres (`N(0, 1)` in `dim` dimensions, nearly orthogonal after
    /// the loss's row normalisation) plus `N(0, noise²)` noise; row `i` belongs to centre `i % centres`,
    /// so every shard holds every cluster.
    func clustered(n: Int, dim: Int, centres: Int, noise: Float, seed: UInt64) -> Tensor {
        var rng = KDRandom(keys: seed, 0xC1)
        let c = Tensor.randn([centres, dim], rng: &rng)
        let x = Tensor(uninitializedShape: [n, dim])
        for i in 0..<n {
            for j in 0..<dim { x.ptr[i * dim + j] = c.ptr[(i % centres) * dim + j] + noise * rng.nextNormal() }
        }
        return x
    }

    /// The teacher graph and its `k` eigenvectors (rows of `[k, n]`) by `solver`, one process.
    func teacherVectors(_ t: Tensor, k: Int, solver: SpectralSolver, maxCycles: Int? = nil)
        throws -> [Double] {
        let g = try SpectralRows.whole(t)
        return try spectralTeacherEigen(g, teacher: t, k: k, counts: [t.shape[0]], comm: nil, solver: solver,
                                        maxCycles: maxCycles).ut
    }

    /// `sin` of the largest principal angle between the row spaces of two orthonormal `[k, n]` arrays:
    /// `‖(I − AᵀA) Bᵀ‖₂`, the square root of the largest eigenvalue of `R Rᵀ`, `R = B − (B Aᵀ) A`.
    func largestAngleSine(_ a: [Double], _ b: [Double], k: Int, n: Int) throws -> Double {
        var c = [Double](repeating: 0, count: k * k), r = b
        dgemm(transB: true, m: k, n: k, k: n, a: b, lda: n, b: a, ldb: n, c: &c, ldc: k)
        dgemm(m: k, n: n, k: k, alpha: -1, a: c, lda: k, b: a, ldb: n, beta: 1, c: &r, ldc: n)
        var rr = [Double](repeating: 0, count: k * k)
        dgemm(transB: true, m: k, n: k, k: n, a: r, lda: n, b: r, ldb: n, c: &rr, ldc: k)
        return max(try symmetricEigen(rr, n: k).values.last!, 0).squareRoot()
    }

    /// (share, gradient of the student) of one process evaluating rows `rows` without a communicator.
    func single(_ s: Tensor, _ t: Tensor, k: Int, solver: SpectralSolver, maxCycles: Int? = nil)
        throws -> (Double, [Float]) {
        Tape.reset()
        let x = s.copy(); x.requiresGrad = true
        let r = try spectralShare(student: x, teacher: t, k: k, rows: nil, comm: nil, solver: solver,
                                  maxCycles: maxCycles)
        r.value.backward()
        return (r.terms[0].value, x.grad!.array)
    }

    /// The sum over the ranks of an in-process world of their shares (Float64 term values) and gradients.
    func world(_ ranks: Int, _ s: Tensor, _ t: Tensor, k: Int, solver: SpectralSolver,
               maxCycles: Int? = nil) throws -> (Double, [Float]) {
        let n = s.shape[0]
        let results = try InProcessWorld(size: ranks).run { comm -> (Double, [Float]) in
            Tape.reset()
            let x = s.copy(); x.requiresGrad = true
            let plan = BatchPlan(globalSamples: n, rank: comm.rank, worldSize: comm.size)
            let r = try spectralShare(student: x, teacher: t, k: k, rows: plan.share, comm: comm, solver: solver,
                                      maxCycles: maxCycles)
            r.value.backward()
            return (r.terms[0].value, x.grad?.array ?? [Float](repeating: 0, count: x.count))
        }
        var g = [Float](repeating: 0, count: s.count)
        for r in results { for i in g.indices { g[i] += r.1[i] } }
        return (results.reduce(0) { $0 + $1.0 }, g)
    }

    /// Forced `iterative` on 12 well-separated clusters (n = 320, k = 12: a spectral gap after the 12th
    /// eigenvalue) against `dsyevd_`: the subspaces, the baseline, the loss and its gradient.
    func testIterativeMatchesDenseOnAClusteredGraph() throws {
        let n = 320, k = 12
        let t = clustered(n: n, dim: 16, centres: k, noise: 0.1, seed: 1)
        var rng = KDRandom(keys: 2)
        let s = Tensor.randn([n, 8], rng: &rng)
        let before = SpectralSolverStatistics.current
        let dense = try teacherVectors(t, k: k, solver: .dense)
        let iterative = try teacherVectors(t, k: k, solver: .iterative)
        let after = SpectralSolverStatistics.current
        XCTAssertEqual(after.iterative - before.iterative, 1)
        XCTAssertEqual(after.fallbacks, before.fallbacks, "the clustered graph must converge without the fallback")

        // Davis–Kahan: sin θ ≤ ‖R‖_F / gap, with every wanted residual ≤ spectralTolerance (1e-8), so
        // sin θ ≤ √k · 1e-8 / gap; ×10 for the Float32 affinities both solvers read identically.
        let values = try symmetricEigen(spectralLaplacian(SpectralRows.whole(t)), n: n).values
        let gap = values[k] - values[k - 1]
        XCTAssertGreaterThan(gap, 0.02, "the clustered teacher graph should have a spectral gap")
        let sine = try largestAngleSine(dense, iterative, k: k, n: n)
        XCTAssertLessThan(sine, 10 * Double(k).squareRoot() * spectralTolerance / gap, "gap \(gap)")

        // The loss reads U through Π = UUᵀ rounded to Float32 (relative 6e-8 per entry, summed over
        // k = 12 terms): 1e-6 relative on the value and 1e-5 max-norm on the gradient are ~10× that,
        // far below what a wrong subspace gives (order 1).
        let (vd, gd) = try single(s, t, k: k, solver: .dense)
        let (vi, gi) = try single(s, t, k: k, solver: .iterative)
        XCTAssertEqual(vi, vd, accuracy: 1e-6 * abs(vd))
        XCTAssertLessThan(relativeError(gi, gd), 1e-5)
    }

    /// `auto` follows the measured crossover (docs/losses.md "Spectral"): dense below `max(256, 6·block)`
    /// rows, iterative from there on, as the statistics show.
    func testAutoPicksTheSolverByRowsAndK() throws {
        XCTAssertFalse(spectralAutoIterative(n: 128, k: 10))
        XCTAssertTrue(spectralAutoIterative(n: 256, k: 10))
        XCTAssertFalse(spectralAutoIterative(n: 512, k: 100))
        XCTAssertTrue(spectralAutoIterative(n: 768, k: 100))
        let t = clustered(n: 256, dim: 8, centres: 4, noise: 0.1, seed: 8)
        var rng = KDRandom(keys: 9)
        let s = Tensor.randn([256, 4], rng: &rng)
        for (k, iterative) in [(4, 1), (60, 0)] {
            let before = SpectralSolverStatistics.current
            _ = try single(s, t, k: k, solver: .auto)
            let after = SpectralSolverStatistics.current
            XCTAssertEqual(after.iterative - before.iterative, iterative, "k = \(k)")
            XCTAssertEqual(after.dense - before.dense, 1 - iterative, "k = \(k)")
        }
    }

    /// The iterative solver's subspace is wrong for a random start block if it stops early: one cycle on
    /// the clustered graph must not meet the test (so the angle test above can fail).
    func testOneCycleIsNotEnoughOnTheClusteredGraph() throws {
        let n = 320, k = 12
        let t = clustered(n: n, dim: 16, centres: k, noise: 0.1, seed: 1)
        let before = SpectralSolverStatistics.current
        _ = try teacherVectors(t, k: k, solver: .iterative, maxCycles: 1)
        XCTAssertEqual(SpectralSolverStatistics.current.fallbacks - before.fallbacks, 1)
    }

    /// Row-sharded iterative solves over worlds of 1–4 ranks (n = 203: uneven shards) add up to the
    /// one-process iterative loss and gradient. Both solves stop at residual 1e-8 from different
    /// roundings of the same products, so their U agree to ~√k·1e-8/gap (< 1e-6 here) and the Float32
    /// Π to 6e-8: 1e-5 relative on the value and 1e-4 on the gradient.
    func testRowShardedIterativeSharesSumToTheOneProcessLoss() throws {
        let n = 203, k = 8
        let t = clustered(n: n, dim: 12, centres: k, noise: 0.1, seed: 3)
        var rng = KDRandom(keys: 4)
        let s = Tensor.randn([n, 6], rng: &rng)
        let (full, fullGrad) = try single(s, t, k: k, solver: .iterative)
        let (dense, _) = try single(s, t, k: k, solver: .dense)
        XCTAssertEqual(full, dense, accuracy: 1e-6 * abs(dense))
        for ranks in 1...4 {
            let before = SpectralSolverStatistics.current
            let (sum, grad) = try world(ranks, s, t, k: k, solver: .iterative)
            // Converged on every rank (the fallback would hide wrong gathered products).
            XCTAssertEqual(SpectralSolverStatistics.current.iterative - before.iterative, ranks)
            XCTAssertEqual(SpectralSolverStatistics.current.fallbacks, before.fallbacks)
            XCTAssertEqual(sum, full, accuracy: 1e-5 * abs(full), "N=\(ranks)")
            XCTAssertLessThan(relativeError(grad, fullGrad), 1e-4, "N=\(ranks)")
        }
    }

    /// A random teacher (no cluster structure, no gap at k = 40) with the cycle cap at 1: the solver does
    /// not converge, every rank falls back to `dsyevd_` (counted), and the loss is the dense one —
    /// exactly in one process (the same dense code on the same graph), to 1e-5 when sharded.
    func testFallbackOnAGaplessGraph() throws {
        let n = 200, k = 40
        var rng = KDRandom(keys: 5)
        let t = Tensor.randn([n, 16], rng: &rng), s = Tensor.randn([n, 6], rng: &rng)
        let (vd, gd) = try single(s, t, k: k, solver: .dense)
        let before = SpectralSolverStatistics.current
        let (vf, gf) = try single(s, t, k: k, solver: .iterative, maxCycles: 1)
        XCTAssertEqual(SpectralSolverStatistics.current.fallbacks - before.fallbacks, 1)
        XCTAssertEqual(vf, vd)
        XCTAssertEqual(gf, gd)
        let before3 = SpectralSolverStatistics.current
        let (v3, g3) = try world(3, s, t, k: k, solver: .iterative, maxCycles: 1)
        XCTAssertEqual(SpectralSolverStatistics.current.fallbacks - before3.fallbacks, 3)
        XCTAssertEqual(v3, vd, accuracy: 1e-5 * abs(vd))
        XCTAssertLessThan(relativeError(g3, gd), 1e-5)
    }

    /// Central differences of the world's summed share (3 ranks, uneven, iterative with Krylov cycles:
    /// n = 48 > 3 blocks of 11) against the sum of the ranks' gradients, every element. Bound 1e-2
    /// max-norm relative at ε = 1e-2 as in the loss contract (`LossContract.finiteDifferenceTolerance`:
    /// Float32 inputs, O(ε²) truncation).
    func testFiniteDifferencesThroughTheShardedIterativePath() throws {
        let n = 48, k = 4, dim = 4
        let t = clustered(n: n, dim: 6, centres: k, noise: 0.2, seed: 6)
        var rng = KDRandom(keys: 7)
        let s = Tensor.randn([n, dim], rng: &rng)
        let before = SpectralSolverStatistics.current
        let (_, analytic) = try world(3, s, t, k: k, solver: .iterative)
        XCTAssertEqual(SpectralSolverStatistics.current.iterative - before.iterative, 3)
        XCTAssertEqual(SpectralSolverStatistics.current.fallbacks, before.fallbacks)
        let eps = LossContract.finiteDifferenceEpsilon
        var maxDiff = 0.0, maxNum = 0.0
        for i in 0..<s.count {
            let p = s.copy(), m = s.copy()
            p.ptr[i] += eps; m.ptr[i] -= eps
            let num = (try world(3, p, t, k: k, solver: .iterative).0 - world(3, m, t, k: k, solver: .iterative).0)
                / (2 * Double(eps))
            maxNum = max(maxNum, abs(num))
            maxDiff = max(maxDiff, abs(num - Double(analytic[i])))
        }
        XCTAssertGreaterThan(maxNum, 1e-4)
        XCTAssertLessThan(maxDiff / maxNum, LossContract.finiteDifferenceTolerance)
    }
}
