import XCTest
import KDComm
import KDCore
import KDTensor
import KDTestSupport
@testable import KDModels

/// SyncBN over N in-process ranks (N = 2, 3, 4) against one BatchNorm over the whole batch.
///
/// The global batch X is `[7, 3, 3, 4]` (NHWC); rank r holds rows `shares[r]` (uneven, and an empty
/// rank at N = 4). The loss is L = Σ W ⊙ BN(X) with a fixed W, rank r evaluating its rows' share, so
/// the global gradient is the sum of the shares'. Compared: the output rows, ∂L/∂X rows, ∂L/∂γ and
/// ∂L/∂β (summed over ranks like the gradient buckets do), and the running statistics.
///
/// Tolerances from the arithmetic (u = 2⁻²⁴, float32's unit roundoff). The statistics [Σx, Σx², n]
/// and [Σdy, Σdy·x̂] are summed in Float64 on each rank and then across ranks: the two orders differ
/// by ≤ 63·2⁻⁵³ relative (63 values per channel), far below u, so every per-channel Float32 factor
/// (μ, 1/σ, and backward's three coefficients) is the reference's or one ulp away (an ulp of v is at
/// most 2u·|v|). Such an ulp moves a result by ≤ 2u times the term it multiplies, and each Float32
/// operation after it may then round the other way (≤ 2u of its result, ≤ 3 operations per term):
/// 8u per term bounds both.
///   y:  8u·(|x − μ| + |μ|)·|γ/σ| + 8u·|β|          (here γ = 1, β = 0)
///   dx: 8u·(|a·dy| + |b|·(|x − μ| + |μ|) + |c|)   with dx = a·dy + b·(x − μ) + c
/// ∂γ, ∂β: each rank rounds its Float64 channel sum to Float32 (≤ u relative) and the N values are
/// added in Float32 (≤ (N − 1)·u·Σ|·|), against one rounding in the reference: ≤ (N + 1)·u·Σ_i|term_i|
/// (the Σ of absolute values bounds every partial sum), doubled for the Float64 reassociation margin.
/// Running statistics: one ulp of the Float32 result, 2u·|value|.
final class SyncBatchNormWorldTests: XCTestCase {
    let shape = [7, 3, 3, 4]
    let u = 1.0 / Double(1 << 24)

    func testSyncBNOverRanksEqualsFullBatchBatchNorm() throws {
        let n = shape[0], per = shape.dropFirst().reduce(1, *), c = shape[3]
        var rng = KDRandom(keys: 41)
        let x = Tensor.randn(shape, rng: &rng).array.map { $0 * 2 + 0.5 }
        let w = Tensor.randn(shape, rng: &rng).array

        func run(_ comm: Communicator, rows: Range<Int>) throws -> [String: [Float]] {
            let bn = BatchNorm2d(c, reducer: comm.size > 1 ? CommStatisticsReducer(comm: comm) : nil)
            bn.train(true)
            let xr = Tensor(shape: [rows.count] + shape.dropFirst(),
                            data: Array(x[rows.lowerBound * per ..< rows.upperBound * per]), requiresGrad: true)
            let wr = Tensor(shape: xr.shape, data: Array(w[rows.lowerBound * per ..< rows.upperBound * per]))
            let y = try bn(xr)
            Tape.backward(sum(try wr * y))
            var gamma = bn.weight.grad?.array ?? [Float](repeating: 0, count: c)
            var beta = bn.bias.grad?.array ?? [Float](repeating: 0, count: c)
            try comm.allReduce(&gamma, op: .sum)
            try comm.allReduce(&beta, op: .sum)
            return ["y": y.array, "dx": xr.grad?.array ?? [], "dgamma": gamma, "dbeta": beta,
                    "mean": bn.runningMean.array, "var": bn.runningVar.array]
        }
        let ref = try InProcessWorld(size: 1).run { try run($0, rows: 0..<n) }[0]

        // Per-channel figures of the reference in Float64, for the bounds above.
        var mu = [Double](repeating: 0, count: c), sq = [Double](repeating: 0, count: c)
        let m = Double(x.count / c)
        for (i, v) in x.enumerated() { mu[i % c] += Double(v) / m; sq[i % c] += Double(v) * Double(v) / m }
        let inv = (0..<c).map { 1 / (sq[$0] - mu[$0] * mu[$0] + 1e-5).squareRoot() }
        var m1 = [Double](repeating: 0, count: c), m2 = [Double](repeating: 0, count: c)
        var absDy = [Double](repeating: 0, count: c), absDyXhat = [Double](repeating: 0, count: c)
        for (i, v) in x.enumerated() {
            let j = i % c, xhat = (Double(v) - mu[j]) * inv[j], dy = Double(w[i])
            m1[j] += dy / m; m2[j] += dy * xhat / m
            absDy[j] += abs(dy); absDyXhat[j] += abs(dy * xhat)
        }
        func yTol(_ i: Int) -> Double {
            let j = i % c
            return 8 * u * (abs(Double(x[i]) - mu[j]) + abs(mu[j])) * inv[j]
        }
        func dxTol(_ i: Int) -> Double {
            let j = i % c, a = inv[j], b = a * inv[j] * abs(m2[j]), cc = a * abs(m1[j])
            return 8 * u * (a * abs(Double(w[i])) + b * (abs(Double(x[i]) - mu[j]) + abs(mu[j])) + cc)
        }

        for size in [2, 3, 4] {
            let counts = size == 4 ? [2, 0, 3, 2] : (0..<size).map { n / size + ($0 < n % size ? 1 : 0) }
            let layout = RowLayout(counts: counts)
            let out = try InProcessWorld(size: size).run { comm in try run(comm, rows: layout.rows(of: comm.rank)) }
            var worst = (y: 0.0, dx: 0.0)      // largest |Δ| / tolerance, printed for the record
            for r in 0..<size {
                let rows = layout.rows(of: r), base = rows.lowerBound * per
                let o = out[r]
                XCTAssertEqual(o["y"]!.count, rows.count * per)
                for k in 0..<rows.count * per {
                    let i = base + k
                    worst.y = max(worst.y, abs(Double(o["y"]![k]) - Double(ref["y"]![i])) / yTol(i))
                    worst.dx = max(worst.dx, abs(Double(o["dx"]![k]) - Double(ref["dx"]![i])) / dxTol(i))
                    XCTAssertEqual(Double(o["y"]![k]), Double(ref["y"]![i]), accuracy: yTol(i),
                                   "N \(size) rank \(r) y[\(i)]")
                    XCTAssertEqual(Double(o["dx"]![k]), Double(ref["dx"]![i]), accuracy: dxTol(i),
                                   "N \(size) rank \(r) dx[\(i)]")
                }
                for j in 0..<c {
                    let tol = 2 * Double(size + 1) * u
                    XCTAssertEqual(Double(o["dgamma"]![j]), Double(ref["dgamma"]![j]), accuracy: tol * absDyXhat[j])
                    XCTAssertEqual(Double(o["dbeta"]![j]), Double(ref["dbeta"]![j]), accuracy: tol * absDy[j])
                    for key in ["mean", "var"] {
                        XCTAssertEqual(o[key]![j], ref[key]![j], accuracy: Float(2 * u) * abs(ref[key]![j]),
                                       "N \(size) rank \(r) running \(key)[\(j)]")
                    }
                }
            }
            print("SyncBatchNormWorldTests N = \(size): largest |Δ|/tolerance y \(worst.y), dx \(worst.dx)")
        }
    }

    /// Block BatchNorm's running statistics committed for several layers at once
    /// (`BatchNorm2d.commitRunningStatistics(of:)`, what the one-pass step does after the student's forward)
    /// equal each layer updating them in its own forward (`.now`), bit for bit, with one reduction instead
    /// of one per layer; the collecting forward itself reduces nothing. Three layers of 4, 8 and 3 channels
    /// over 6 samples in blocks of 2, on 1 to 4 in-process ranks (4: one rank holds no block), through
    /// the exact reducer (the same bits at every world size) and the plain one (the in-process all-reduce
    /// adds the ranks in order for any count, so batching changes no bit there either); a layer without a
    /// reducer (this rank's blocks alone) beside them is committed as its own forward would.
    func testOneCommitForAllLayersEqualsEachLayersOwnUpdate() throws {
        // The last layer has no reducer.
        let channels = [4, 8, 3, 5], n = 6, shares = [[0..<6], [0..<4, 4..<6], [0..<2, 2..<4, 4..<6],
                                                      [0..<2, 2..<4, 4..<6, 6..<6]]
        var rng = KDRandom(keys: 57)
        let inputs = channels.map { c in Tensor.randn([n, 2, 2, c], rng: &rng).array.map { $0 * 3 + 1 } }

        /// Running mean, variance and batches tracked of every layer, and the reducer's reductions in the
        /// forward and in all.
        func run(_ comm: Communicator, rows: Range<Int>, exact: Bool, once: Bool)
            throws -> (stats: [[Float]], forwardCalls: Int, calls: Int, values: Int) {
            let reducer: CountedStatisticsReducer = exact ? ExactStatisticsReducer(comm: comm, globalBlocks: 3)
                : CommStatisticsReducer(comm: comm)
            let layers = channels.enumerated().map { BatchNorm2d($1, reducer: $0 < 3 ? reducer : nil) }
            for l in layers { l.train(true); l.blockRows = 2; l.runningMode = once ? .collect : .now }
            for (l, values) in zip(layers, inputs) {
                let per = 4 * l.channels
                _ = try l(Tensor(shape: [rows.count, 2, 2, l.channels],
                                 data: Array(values[rows.lowerBound * per ..< rows.upperBound * per])))
            }
            let forwardCalls = reducer.calls
            if once {
                XCTAssertEqual(layers.flatMap(\.runningMean.array), [Float](repeating: 0, count: 20),
                               "collecting leaves the running statistics alone")
                try BatchNorm2d.commitRunningStatistics(of: layers)
            }
            return (layers.map { $0.runningMean.array + $0.runningVar.array + $0.numBatchesTracked.array },
                    forwardCalls, reducer.calls, reducer.valuesReduced)
        }
        func bits(_ stats: [[Float]]) -> [[UInt32]] { stats.map { $0.map(\.bitPattern) } }
        for exact in [true, false] {
            var reference: [[Float]]?
            for ranks in shares {
                let world = InProcessWorld(size: ranks.count)
                let perLayer = try world.run { try run($0, rows: ranks[$0.rank], exact: exact, once: false) }
                let once = try world.run { try run($0, rows: ranks[$0.rank], exact: exact, once: true) }
                for r in ranks.indices {
                    let label = "\(exact ? "exact" : "plain"), \(ranks.count) rank(s), rank \(r)"
                    XCTAssertEqual(bits(once[r].stats), bits(perLayer[r].stats), label)
                    XCTAssertEqual(perLayer[r].forwardCalls, 3, label)
                    XCTAssertEqual(once[r].forwardCalls, 0, label)
                    XCTAssertEqual(once[r].calls, 1, label)
                    XCTAssertEqual(once[r].values, perLayer[r].values, label)
                    XCTAssertEqual(once[r].stats.map(\.last), [1, 1, 1, 1], "batches tracked, \(label)")
                }
                // With the exact reducer the three reduced layers' statistics are the same bits at every
                // world size (the last layer sees this rank's blocks only).
                if exact {
                    let mine = Array(once[0].stats.prefix(3))
                    if let reference {
                        XCTAssertEqual(bits(mine), bits(reference), "\(ranks.count) rank(s) vs 1")
                    } else {
                        reference = mine
                    }
                }
            }
        }
    }
}
