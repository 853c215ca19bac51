import XCTest
@testable import KDTensor

/// Pretends to be a second rank with the same data: every sum doubles (SyncBN's reductions).
private final class TwinRankReducer: StatisticsReducer {
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws {
        for i in 0..<count { values[i] *= 2 }
    }
}

/// `batchNorm(…, relu: true)`: ReLU in BatchNorm's own passes (docs/ops.md, "BatchNorm").
final class BatchNormReLUTests: XCTestCase {
    enum Mode: CaseIterable { case batch, synced, blocks, eval }

    /// Output, dx, dγ, dβ and the running statistics after one forward and backward, fused or as two ops.
    func run(_ mode: Mode, fused: Bool, x xv: [Float], shape: [Int], seed: Tensor) throws -> [[Float]] {
        let c = shape.last!
        var rng = KDRandom(keys: 41)
        let g = Tensor.uniform([c], 0.5, 1.5, rng: &rng), b = Tensor.randn([c], std: 0.5, rng: &rng)
        let rm = Tensor.randn([c], std: 0.3, rng: &rng), rv = Tensor.uniform([c], 0.5, 2, rng: &rng)
        let x = Tensor(shape: shape, data: xv, requiresGrad: true)
        g.requiresGrad = true; b.requiresGrad = true
        func bn(_ relu: Bool) throws -> Tensor {
            try batchNorm(x, gamma: g, beta: b, runningMean: rm, runningVar: rv, training: mode != .eval,
                          reducer: mode == .synced ? TwinRankReducer() : nil,
                          blockRows: mode == .blocks ? 2 : nil, relu: relu)
        }
        let y = fused ? try bn(true) : relu(try bn(false))
        Tape.backward(y, seed: seed)
        return [y.array, x.grad!.array, g.grad!.array, b.grad!.array, rm.array, rv.array]
    }

    /// Fused and unfused agree bit for bit in every mode (batch statistics, all-reduced, per block,
    /// running statistics): the forward computes the same `y` and clamps it as `relu` does, the backward
    /// masks `dy` where `relu` would (its output ≤ 0 exactly where its input is) before the same sums.
    /// About half the outputs are clamped (β ~ N(0, 0.25), x̂ ~ N(0, 1)), so both sides of the mask count.
    func testFusedReLUGivesTheBitsOfBatchNormThenReLU() throws {
        var rng = KDRandom(keys: 40)
        let shape = [6, 3, 3, 5]
        let xv = Tensor.randn(shape, rng: &rng).array
        let seed = Tensor.randn(shape, rng: &rng)
        for mode in Mode.allCases {
            let fused = try run(mode, fused: true, x: xv, shape: shape, seed: seed)
            let twoOps = try run(mode, fused: false, x: xv, shape: shape, seed: seed)
            let clamped = fused[0].filter { $0 == 0 }.count
            XCTAssertGreaterThan(clamped, fused[0].count / 5, "\(mode): the mask must matter")
            XCTAssertLessThan(clamped, fused[0].count * 4 / 5, "\(mode): the mask must matter")
            for (k, part) in ["y", "dx", "dγ", "dβ", "running mean", "running var"].enumerated() {
                XCTAssertEqual(fused[k].map(\.bitPattern), twoOps[k].map(\.bitPattern), "\(mode) \(part)")
            }
        }
    }

    /// A NaN stays NaN through the fused ReLU, as through `relu` (`NaN ≤ 0` is false), and fused and unfused
    /// agree bit for bit on every output and gradient around it (eval: a NaN touches its own element only).
    func testNaNPassesTheFusedReLULikeTheOp() throws {
        let shape = [4, 2]
        let xv: [Float] = [.nan, 1, -2, 3, 0.5, -0.5, 2, -1]
        let seed = Tensor(shape: shape, data: [1, 2, 3, 4, 5, 6, 7, 8])
        let fused = try run(.eval, fused: true, x: xv, shape: shape, seed: seed)
        let twoOps = try run(.eval, fused: false, x: xv, shape: shape, seed: seed)
        XCTAssertTrue(fused[0][0].isNaN)
        XCTAssertEqual(fused[0][1...].filter(\.isNaN).count, 0)
        for k in 0..<4 { XCTAssertEqual(fused[k].map(\.bitPattern), twoOps[k].map(\.bitPattern), "part \(k)") }
    }

    /// Finite differences of the fused op (central, float32, the harness's step 1e-2) in each mode, at
    /// inputs whose pre-ReLU outputs all lie at least 0.08 from the kink (a step moves an output by at most
    /// ≈ 0.03 here: γ ≤ 1.5, |x̂| ≲ 2; a difference across the kink is no derivative). 1e-2 max-norm
    /// relative, as for `batchNorm` alone (BatchNormTests): a missing mask is an O(1) error on the clamped
    /// outputs.
    func testFusedReLUGradients() throws {
        let shape = [4, 1, 2, 3]
        for mode in Mode.allCases {
            var rng = KDRandom(keys: 42)
            let g = Tensor.uniform([3], 0.5, 1.5, rng: &rng), rm = Tensor.zeros([3])
            let rv = Tensor(shape: [3], repeating: 1)
            var x = Tensor.randn(shape, rng: &rng), b = Tensor.randn([3], std: 0.5, rng: &rng)
            func f(_ t: [Tensor]) throws -> Tensor {
                try batchNorm(t[0], gamma: t[1], beta: t[2], runningMean: rm, runningVar: rv,
                              training: mode != .eval, reducer: mode == .synced ? TwinRankReducer() : nil,
                              blockRows: mode == .blocks ? 2 : nil, relu: true)
            }
            // Nudge β until no pre-ReLU output is near 0 (the same draw on every machine: KDRandom).
            var tries = 0
            while try withNoGrad({ try batchNorm(x, gamma: g, beta: b, runningMean: rm.copy(),
                                                 runningVar: rv.copy(), training: mode != .eval,
                                                 blockRows: mode == .blocks ? 2 : nil) })
                .array.contains(where: { Swift.abs($0) < 0.08 }) {
                tries += 1
                XCTAssertLessThan(tries, 200, "\(mode): no input clear of the kink")
                if tries >= 200 { return }
                (x, b) = (Tensor.randn(shape, rng: &rng), Tensor.randn([3], std: 0.5, rng: &rng))
            }
            let r = try gradientCheck([x, g, b], f)
            XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(mode): \(r)")
        }
    }
}
