import XCTest
@testable import KDTensor

/// Pretends to be two ranks holding identical data: every sum doubles. Counts its calls.
private final class DoublingReducer: StatisticsReducer {
    var calls: [Int] = []
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        calls.append(count)
        for i in 0..<count { values[i] *= 2 }
    }
}

/// Adds a fake second rank's sums: `n = 4` rows of mean 1 and variance 1 in forward, zeros in backward.
private final class OtherRankReducer: StatisticsReducer {
    var calls: [Int] = []
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        calls.append(count)
        if count % 2 == 1 {
            let c = count / 2
            for j in 0..<c { values[j] += 4; values[c + j] += 8 }   // Σx = 4, Σx² = 4·(1 + 1)
            values[2 * c] += 4
        }
    }
}

private struct ReducerDown: Error, CustomStringConvertible { var description: String { "rank 1 unreachable" } }
private final class FailingReducer: StatisticsReducer {
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws { throw ReducerDown() }
}

final class BatchNormTests: XCTestCase {
    func params(_ c: Int, seed: UInt64 = 1) -> (Tensor, Tensor, Tensor, Tensor) {
        var rng = KDRandom(keys: seed)
        return (Tensor.uniform([c], 0.5, 1.5, rng: &rng), Tensor.randn([c], rng: &rng),
                Tensor.zeros([c]), Tensor(shape: [c], repeating: 1))
    }

    func testTrainingValuesAndRunningStatistics() throws {
        // Channel 0: 1, 2, 3, 4 (μ 2.5, σ² 1.25, unbiased 5/3);
        // channel 1: 10, 10, 10, 14 (μ 11, σ² 3, unbiased 4).
        let x = Tensor(shape: [4, 2], data: [1, 10, 2, 10, 3, 10, 4, 14])
        let gamma = Tensor(shape: [2], data: [2, 1]), beta = Tensor(shape: [2], data: [0.5, -1])
        let rm = Tensor(shape: [2], data: [0, 1]), rv = Tensor(shape: [2], data: [1, 2])
        let y = try batchNorm(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: true,
                              momentum: 0.1, eps: 0)
        let s0 = 1.25.squareRoot(), s1 = 3.0.squareRoot()
        let expected: [Double] = [2 * (1 - 2.5) / s0 + 0.5, -1 / s1 - 1, 2 * (2 - 2.5) / s0 + 0.5, -1 / s1 - 1,
                                  2 * (3 - 2.5) / s0 + 0.5, -1 / s1 - 1, 2 * (4 - 2.5) / s0 + 0.5, 3 / s1 - 1]
        for (a, e) in zip(y.array, expected) { XCTAssertEqual(Double(a), e, accuracy: 1e-5) }
        XCTAssertEqual(rm.array[0], 0.25, accuracy: 1e-6)                  // 0.9·0 + 0.1·2.5
        XCTAssertEqual(rm.array[1], 0.9 + 1.1, accuracy: 1e-6)             // 0.9·1 + 0.1·11
        XCTAssertEqual(rv.array[0], 0.9 + 0.1 * 5 / 3, accuracy: 1e-6)     // unbiased variance
        XCTAssertEqual(rv.array[1], 1.8 + 0.4, accuracy: 1e-6)
    }

    /// A large mean beside a small spread: Double sums keep the variance, output matches a two-pass reference.
    func testLargeMeanPrecision() throws {
        var rng = KDRandom(keys: 8)
        let rows = 64, c = 3
        let x = Tensor(uninitializedShape: [rows, c])
        for i in 0..<x.count { x.ptr[i] = 1000 + rng.nextNormal() * 0.5 }
        let (_, _, rm, rv) = params(c)
        let y = try batchNorm(x, gamma: Tensor(shape: [c], repeating: 1), beta: Tensor.zeros([c]),
                              runningMean: rm, runningVar: rv, training: true)
        for j in 0..<c {
            var mu = 0.0, v = 0.0
            for r in 0..<rows { mu += Double(x.ptr[r * c + j]) }
            mu /= Double(rows)
            for r in 0..<rows { v += (Double(x.ptr[r * c + j]) - mu) * (Double(x.ptr[r * c + j]) - mu) }
            v /= Double(rows)
            for r in 0..<rows {
                XCTAssertEqual(Double(y.ptr[r * c + j]), (Double(x.ptr[r * c + j]) - mu) / (v + 1e-5).squareRoot(),
                               accuracy: 1e-3)
            }
        }
    }

    func testEvalUsesRunningStatistics() throws {
        let x = Tensor(shape: [2, 2], data: [1, 2, 3, 4])
        let gamma = Tensor(shape: [2], data: [2, 1]), beta = Tensor(shape: [2], data: [0, 1])
        let rm = Tensor(shape: [2], data: [1, 0]), rv = Tensor(shape: [2], data: [4, 1])
        let y = try batchNorm(x, gamma: gamma, beta: beta, runningMean: rm, runningVar: rv, training: false, eps: 0)
        XCTAssertEqual(y.array, [0, 3, 2, 5])
        XCTAssertEqual(rm.array, [1, 0]); XCTAssertEqual(rv.array, [4, 1])   // untouched
    }

    func testTrainingGradientsNHWC() throws {
        var rng = KDRandom(keys: 2)
        let x = Tensor.randn([2, 3, 3, 4], rng: &rng)
        let (g, b, rm, rv) = params(4)
        let r = try gradientCheck([x, g, b]) {
            try batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm, runningVar: rv, training: true)
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testEvalGradients() throws {
        var rng = KDRandom(keys: 3)
        let x = Tensor.randn([5, 3], rng: &rng)
        let (g, b, _, _) = params(3)
        let rm = Tensor(shape: [3], data: [0.1, -0.2, 0.3]), rv = Tensor(shape: [3], data: [0.5, 2, 1.5])
        let r = try gradientCheck([x, g, b]) {
            try batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm, runningVar: rv, training: false)
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    /// Two identical "ranks" give the plain-BN output and gradients: shows the reducer's sums are used
    /// in forward (statistics, count) and backward (global means), and dγ/dβ stay local.
    func testReducerHookMatchesPlainBatchNorm() throws {
        var rng = KDRandom(keys: 4)
        let xv = Tensor.randn([3, 2, 2, 3], rng: &rng).array
        let seed = Tensor.randn([3, 2, 2, 3], rng: &rng)
        func run(_ reducer: StatisticsReducer?) throws -> [[Float]] {
            let x = Tensor(shape: [3, 2, 2, 3], data: xv, requiresGrad: true)
            let (g, b, rm, rv) = params(3)
            g.requiresGrad = true; b.requiresGrad = true
            let y = try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: true,
                                  reducer: reducer)
            Tape.backward(y, seed: seed)
            return [y.array, x.grad!.array, g.grad!.array, b.grad!.array, rm.array, rv.array]
        }
        let plain = try run(nil)
        let fake = DoublingReducer()
        let synced = try run(fake)
        XCTAssertEqual(fake.calls, [7, 6])    // forward [Σx, Σx², n], backward [Σdy, Σdy·x̂]
        for k in 0..<5 {
            for (a, b) in zip(plain[k], synced[k]) { XCTAssertEqual(a, b, accuracy: 1e-5, "part \(k)") }
        }
        // Running variance is unbiased with the GLOBAL count: n = 12 alone, 24 with two ranks.
        for (a, b) in zip(plain[5], synced[5]) {
            let biased = (Double(a) - 0.9) / 0.1 * 11 / 12
            XCTAssertEqual(Double(b), 0.9 + 0.1 * biased * 24 / 23, accuracy: 1e-5)
        }
    }

    /// A rank with an empty shard still takes part in both reductions and gets zero parameter gradients.
    func testEmptyLocalBatchStillReduces() throws {
        let (g, b, rm, rv) = params(3)
        g.requiresGrad = true; b.requiresGrad = true
        let x = Tensor(shape: [0, 2, 2, 3], data: [], requiresGrad: true)
        let reducer = OtherRankReducer()
        let y = try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: true, reducer: reducer)
        XCTAssertEqual(y.shape, [0, 2, 2, 3])
        Tape.backward(y, seed: Tensor(shape: [0, 2, 2, 3], data: []))
        XCTAssertEqual(reducer.calls, [7, 6])
        XCTAssertEqual(g.grad?.array, [0, 0, 0]); XCTAssertEqual(b.grad?.array, [0, 0, 0])
        XCTAssertEqual(rm.array[0], 0.1, accuracy: 1e-6)                       // global mean 1
        XCTAssertEqual(rv.array[0], 0.9 + 0.1 * 4 / 3, accuracy: 1e-6)         // unbiased: 1·4/3
    }

    func testReducerErrorInForwardIsThrown() {
        let (g, b, rm, rv) = params(2)
        XCTAssertThrowsError(try batchNorm(Tensor.zeros([3, 2]), gamma: g, beta: b, runningMean: rm, runningVar: rv,
                                           training: true, reducer: FailingReducer())) {
            XCTAssertEqual("\($0)", "rank 1 unreachable")
        }
    }

    func testErrors() {
        let (g, b, rm, rv) = params(4)
        XCTAssertThrowsError(try batchNorm(Tensor.zeros([2, 3]), gamma: g, beta: b, runningMean: rm, runningVar: rv,
                                           training: true)) {
            XCTAssertEqual("\($0)", "batchNorm (input vs gamma): shape mismatch between [2, 3] and [4]")
        }
        XCTAssertThrowsError(try batchNorm(Tensor.zeros([1, 4]), gamma: g, beta: b, runningMean: rm, runningVar: rv,
                                           training: true)) {
            XCTAssertEqual("\($0)", "batchNorm: training needs more than 1 value per channel, got 1 (input [1, 4])")
        }
        XCTAssertNoThrow(try batchNorm(Tensor.zeros([1, 4]), gamma: g, beta: b, runningMean: rm, runningVar: rv,
                                       training: false))
    }

    // MARK: block BatchNorm (`blockRows`)

    func testBlockBatchNormGradients() throws {
        var rng = KDRandom(keys: 12)
        let x = Tensor.randn([6, 2, 2, 3], rng: &rng)
        let (g, b, rm, rv) = params(3)
        // Central differences in float32 with the harness's default step: 1e-2 max-norm relative, as for
        // the batch-wide op above (a missing per-block mean term is an O(1) error).
        let r = try gradientCheck([x, g, b]) {
            try batchNorm($0[0], gamma: $0[1], beta: $0[2], runningMean: rm, runningVar: rv, training: true,
                          blockRows: 2)
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    /// Each block is normalised with its own statistics: the output of blocks of 2 is plain BatchNorm on
    /// each block alone, bit for bit, and running statistics move by the mean of the blocks' statistics.
    func testBlocksAreNormalisedAlone() throws {
        var rng = KDRandom(keys: 13)
        let x = Tensor.randn([4, 3, 3, 2], rng: &rng)
        let (g, b, rm, rv) = params(2)
        let y = try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: true, blockRows: 2)
        var means: [[Float]] = [], vars: [[Float]] = []
        for k in 0..<2 {
            let part = Tensor(shape: [2, 3, 3, 2], data: Array(x.array[(k * 36)..<((k + 1) * 36)]))
            let (_, _, m1, v1) = params(2)
            let alone = try batchNorm(part, gamma: g, beta: b, runningMean: m1, runningVar: v1, training: true)
            XCTAssertEqual(Array(y.array[(k * 36)..<((k + 1) * 36)]), alone.array, "block \(k)")
            means.append(m1.array); vars.append(v1.array)
        }
        for j in 0..<2 {
            // Each alone-run moved its running mean from 0 by m·μ_b (m = 0.1): the mean of the two.
            XCTAssertEqual(rm.array[j], (means[0][j] + means[1][j]) / 2, accuracy: 1e-6)
            XCTAssertEqual(rv.array[j], (vars[0][j] + vars[1][j]) / 2, accuracy: 1e-6)
        }
    }

    /// The backward too: each block's input gradient is plain BatchNorm's on that block alone, bit for bit
    /// (the same sums and the same `dx = a·dy + b·(x − μ) + c`), with and without the fused ReLU.
    func testBlockInputGradientsAreEachBlockAlone() throws {
        var rng = KDRandom(keys: 15)
        let x = Tensor.randn([4, 3, 3, 2], rng: &rng), gy = Tensor.randn([4, 3, 3, 2], rng: &rng)
        let (g, b, rm, rv) = params(2)
        for relu in [false, true] {
            x.requiresGrad = true; x.grad = nil
            Tape.reset()
            let y = try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: true,
                                  blockRows: 2, relu: relu)
            Tape.backward(y, seed: gy)
            let blocked = x.grad!.array
            for k in 0..<2 {
                let rows = (k * 36)..<((k + 1) * 36)
                let part = Tensor(shape: [2, 3, 3, 2], data: Array(x.array[rows]))
                let seed = Tensor(shape: [2, 3, 3, 2], data: Array(gy.array[rows]))
                part.requiresGrad = true
                Tape.reset()
                let alone = try batchNorm(part, gamma: g, beta: b, runningMean: Tensor.zeros([2]),
                                          runningVar: Tensor(shape: [2], repeating: 1), training: true, relu: relu)
                Tape.backward(alone, seed: seed)
                XCTAssertEqual(Array(blocked[rows]), part.grad!.array, "block \(k), relu \(relu)")
            }
        }
    }

    /// Graph accumulation's running statistics (`RunningStatisticsUpdate`): `.skip` leaves them alone and
    /// gives the same output; `.collect` over two chunks of two blocks each, then `updateRunningStatistics`,
    /// gives the running statistics of one forward over all four blocks, bit for bit.
    func testCollectedRunningStatisticsEqualOneForward() throws {
        var rng = KDRandom(keys: 14)
        let x = Tensor.randn([8, 2, 2, 3], rng: &rng)
        let (g, b, rm, rv) = params(3)
        let y = try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: true, blockRows: 2)
        let (_, _, skipMean, skipVar) = params(3)
        let skipped = try batchNorm(x, gamma: g, beta: b, runningMean: skipMean, runningVar: skipVar, training: true,
                                    blockRows: 2, runningUpdate: .skip)
        XCTAssertEqual(skipped.array, y.array)
        XCTAssertEqual(skipMean.array, [0, 0, 0])
        XCTAssertEqual(skipVar.array, [1, 1, 1])
        let (_, _, cm, cv) = params(3)
        var partials: [Double] = [], blocks = 0
        for k in 0..<2 {
            let part = Tensor(shape: [4, 2, 2, 3], data: Array(x.array[(k * 48)..<((k + 1) * 48)]))
            let out = try batchNorm(part, gamma: g, beta: b, runningMean: cm, runningVar: cv, training: true,
                                    blockRows: 2, runningUpdate: .collect { partials += $0; blocks += $1 })
            XCTAssertEqual(out.array, Array(y.array[(k * 48)..<((k + 1) * 48)]), "chunk \(k)")
        }
        XCTAssertEqual(blocks, 4)
        XCTAssertEqual(cm.array, [0, 0, 0], "collecting does not update")
        try updateRunningStatistics(partials: partials, blocks: blocks, runningMean: cm, runningVar: cv,
                                    momentum: 0.1, reducer: nil)
        XCTAssertEqual(cm.array, rm.array)
        XCTAssertEqual(cv.array, rv.array)
        XCTAssertNotEqual(cm.array, [0, 0, 0])
    }

    /// `BatchNormKernels` runs eight channels at a time: every output must have the bits of the one-at-a-time
    /// loops it replaced (written out below), for channel counts with and without a tail of fewer than eight,
    /// with NaN, −0 and values whose pre-ReLU output is exactly ±0 among the inputs, and ReLU's mask recomputed
    /// from the input must be the mask the forward's output gives. A lane that fused a multiply-add, reordered a
    /// sum, or masked `< 0` instead of `≤ 0` changes the bits.
    func testRowKernelsGiveTheScalarBits() {
        for c in [1, 7, 8, 13, 24, 64] {
            var rng = KDRandom(keys: 0xB4_0E, UInt64(c))
            func row(_ std: Float = 1) -> [Float] { Tensor.randn([c], std: std, rng: &rng).array }
            var x = row(), g = row(), mu = row(0.5), a = row(), inv = row(), beta = row(), gx = row()
            let ka = row(), kb = row(), kk = row()
            x[0] = .nan                                            // NaN through every pass
            if c > 2 { x[2] = -0.0; mu[2] = 0; a[2] = 1; beta[2] = -0.0 }   // pre-ReLU −0: masked
            if c > 3 { x[3] = mu[3]; beta[3] = 0 }                 // pre-ReLU +0: masked
            if c > 4 { a[4] = -a[4] }                              // a negative scale
            func bits(_ v: [Float]) -> [UInt32] { v.map(\.bitPattern) }
            func bits(_ v: [Double]) -> [UInt64] { v.map(\.bitPattern) }
            let pre = (0..<c).map { (x[$0] - mu[$0]) * a[$0] + beta[$0] }
            for relu in [false, true] {
                // The forward's output.
                let out = pre.map { reluValue($0, if: relu) }
                var y = [Float](repeating: 7, count: c)
                BatchNormKernels.normalize(x, c, mean: mu, scale: a, beta: beta, relu: relu, into: &y)
                XCTAssertEqual(bits(y), bits(out), "normalize, \(c) channels, relu \(relu)")
                // The moments (onto running sums, as a block's rows add up).
                var s = (0..<(2 * c)).map { Double($0) / 3 }, ref = s
                for j in 0..<c { let v = Double(x[j]); ref[j] += v; ref[c + j] += v * v }
                BatchNormKernels.addMoments(x, c, into: &s)
                XCTAssertEqual(bits(s), bits(ref), "moments, \(c) channels")
                // The gradient's sums, ReLU's mask from the output in the reference, from x in the kernel.
                a.withUnsafeBufferPointer { ap in beta.withUnsafeBufferPointer { bp in
                    let mask = relu ? BatchNormKernels.ReLUMask(scale: ap.baseAddress!, beta: bp.baseAddress!) : nil
                    var s = (0..<(2 * c)).map { Double($0) / 7 }, ref = s
                    for j in 0..<c {
                        let dy = Double(reluGradient(g[j], at: out[j], if: relu))
                        ref[j] += dy
                        ref[c + j] += dy * Double((x[j] - mu[j]) * inv[j])
                    }
                    BatchNormKernels.addGradientSums(x, g, c, mean: mu, invStd: inv, relu: mask, into: &s)
                    XCTAssertEqual(bits(s), bits(ref), "gradient sums, \(c) channels, relu \(relu)")
                    for fresh in [false, true] {
                        var v = gx, want = gx
                        for j in 0..<c {
                            let d = ka[j] * reluGradient(g[j], at: out[j], if: relu) + kb[j] * (x[j] - mu[j]) + kk[j]
                            want[j] = fresh ? d : want[j] + d
                        }
                        BatchNormKernels.applyGradient(x, g, c, a: ka, b: kb, k: kk, mean: mu, relu: mask,
                                                       fresh: fresh, into: &v)
                        XCTAssertEqual(bits(v), bits(want), "input gradient, \(c) channels, relu \(relu)")
                    }
                } }
            }
            if c > 3 {   // the special lanes did what they are there for
                XCTAssertEqual(pre[2].bitPattern, (-0.0 as Float).bitPattern)
                XCTAssertEqual(pre[3], 0)
                XCTAssertTrue(pre[0].isNaN)
            }
        }
    }
}
