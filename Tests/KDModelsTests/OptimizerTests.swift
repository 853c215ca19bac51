import XCTest
import KDTensor
@testable import KDModels

/// Optimizer updates against values computed by hand (float64 reference of the PyTorch formulas).
final class OptimizerTests: XCTestCase {
    let grads: [[Float]] = [[0.5, -1.0], [0.3, 0.25], [-0.1, 0.4]]

    /// weight [1, 2] (decayed), bias [1] (not decayed by default).
    func params() -> [(String, Tensor)] {
        [("fc.weight", Tensor(shape: [1, 2], data: [1, -2], requiresGrad: true)),
         ("fc.bias", Tensor(shape: [1], data: [0.5], requiresGrad: true))]
    }

    func run(_ opt: Optimizer, _ ps: [(String, Tensor)], steps: Int) throws {
        for s in 0..<steps {
            ps[0].1.grad = Tensor(shape: [1, 2], data: grads[s])
            ps[1].1.grad = Tensor(shape: [1], data: [0.2])
            try opt.step()
        }
    }

    func assertClose(_ a: [Float], _ b: [Double], tol: Double = 1e-6, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(Double(x), y, accuracy: tol * max(1, abs(y)), line: line) }
    }

    func testSGDPlain() throws {
        let ps = params()
        try run(try SGD(parameters: ps, learningRate: 0.1), ps, steps: 3)
        assertClose(ps[0].1.array, [0.93, -1.965])
        assertClose(ps[1].1.array, [0.44])
    }

    func testSGDMomentumCoupledDecay() throws {
        let ps = params()
        let opt = try SGD(parameters: ps, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01)
        try run(opt, ps, steps: 2)
        assertClose(ps[0].1.array, [0.872151, -1.829302])
        // bias: no decay; b1 = 0.2, p = 0.48; b2 = 0.38, p = 0.442
        assertClose(ps[1].1.array, [0.442])
        XCTAssertEqual(opt.stepCount, 2)
    }

    func testSGDNesterov() throws {
        let ps = params()
        try run(try SGD(parameters: ps, learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01),
                ps, steps: 3)
        assertClose(ps[0].1.array, [0.758337758191, -1.784718666382])
    }

    func testSGDDecoupledDecay() throws {
        let ps = params()
        try run(try SGD(parameters: ps, learningRate: 0.1, momentum: 0.9, weightDecay: 0.01,
                        decoupledWeightDecay: true), ps, steps: 3)
        assertClose(ps[0].1.array, [0.814677949, -1.810770898])
    }

    func testDecayAllIncludesBias() throws {
        let ps = params()
        try run(try SGD(parameters: ps, learningRate: 0.1, weightDecay: 0.5, decayRule: .all), ps, steps: 1)
        // bias: 0.5 − 0.1·(0.2 + 0.5·0.5) = 0.455
        assertClose(ps[1].1.array, [0.455])
    }

    func testSGDSkipsParametersWithoutGradient() throws {
        let ps = params()
        let opt = try SGD(parameters: ps, learningRate: 0.1, momentum: 0.9)
        ps[0].1.grad = Tensor(shape: [1, 2], data: [1, 1])
        try opt.step()
        assertClose(ps[1].1.array, [0.5])
        XCTAssertEqual(opt.stateTensors().map(\.0), ["fc.weight.momentum_buffer"])
    }

    func testAdamW() throws {
        let ps = params()
        let opt = try AdamW(parameters: ps, learningRate: 0.01, weightDecay: 0.1)
        try run(opt, ps, steps: 3)
        assertClose(ps[0].1.array, [0.9712436208540983, -1.9782662372665178])
        assertClose(ps[1].1.array, [0.4700000015])
        let state = Dictionary(uniqueKeysWithValues: opt.stateTensors())
        assertClose(state["fc.weight.exp_avg"]!.array, [0.0575, -0.0185])
        assertClose(state["fc.weight.exp_avg_sq"]!.array, [0.00034941025, 0.0012204385], tol: 1e-5)
        XCTAssertEqual(state["fc.weight.step"]!.item, 3)
    }

    /// Saving state after 2 steps and restoring it into a fresh optimizer gives the same 3rd step.
    func testStateRoundTrip() throws {
        for make in [{ try SGD(parameters: $0, learningRate: 0.1, momentum: 0.9, nesterov: true) as Optimizer },
                     { try AdamW(parameters: $0, learningRate: 0.01) as Optimizer }] {
            let a = params(), b = params()
            let optA = try make(a)
            try run(optA, a, steps: 2)
            for k in 0..<2 { b[k].1.assign(from: a[k].1) }
            let optB = try make(b)
            let saved = Dictionary(uniqueKeysWithValues: optA.stateTensors().map { ($0.0, $0.1.copy()) })
            try optB.loadState(saved, stepCount: optA.stepCount)
            a[0].1.grad = Tensor(shape: [1, 2], data: grads[2]); a[1].1.grad = Tensor(shape: [1], data: [0.2])
            b[0].1.grad = Tensor(shape: [1, 2], data: grads[2]); b[1].1.grad = Tensor(shape: [1], data: [0.2])
            try optA.step(); try optB.step()
            XCTAssertEqual(a[0].1.array, b[0].1.array)
            XCTAssertEqual(a[1].1.array, b[1].1.array)
            XCTAssertEqual(optB.stepCount, 3)
        }
    }

    func testLoadStateErrors() throws {
        let ps = params()
        let opt = try SGD(parameters: ps, learningRate: 0.1, momentum: 0.9)
        XCTAssertThrowsError(try opt.loadState([:], stepCount: 4)) {
            XCTAssertEqual("\($0)", "optimizer state: missing 'fc.weight.momentum_buffer' for step 4")
        }
        XCTAssertThrowsError(try opt.loadState(["fc.weight.momentum_buffer": Tensor.zeros([2])], stepCount: 1)) {
            XCTAssertEqual("\($0)", "optimizer state 'fc.weight.momentum_buffer': shape [2] vs parameter [1, 2]")
        }
        XCTAssertThrowsError(try SGD(parameters: ps, learningRate: 0.1, nesterov: true)) {
            XCTAssertTrue("\($0)".contains("Nesterov"))
        }
    }

    func testZeroGrad() throws {
        let ps = params()
        let opt = try AdamW(parameters: ps)
        ps[0].1.grad = Tensor.zeros([1, 2])
        opt.zeroGrad()
        XCTAssertNil(ps[0].1.grad)
    }
}

final class ScheduleTests: XCTestCase {
    func testConstant() {
        let s = ConstantSchedule(base: 0.1, warmupSteps: 4)
        XCTAssertEqual(s.learningRate(at: 0), 0.025, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 3), 0.1, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 1000), 0.1)
    }

    func testCosineWithWarmup() {
        let s = CosineSchedule(base: 1, totalSteps: 12, warmupSteps: 2, minimum: 0.1)
        XCTAssertEqual(s.learningRate(at: 0), 0.5, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 1), 1.0, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 2), 1.0, accuracy: 1e-12)                 // cos(0)
        XCTAssertEqual(s.learningRate(at: 7), 0.1 + 0.45 * (1 + cos(Double.pi / 2)), accuracy: 1e-12)  // halfway: 0.55
        XCTAssertEqual(s.learningRate(at: 7), 0.55, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 12), 0.1)
        XCTAssertEqual(s.learningRate(at: 50), 0.1)
    }

    func testStep() {
        let s = StepSchedule(base: 0.1, milestones: [150, 180, 210], gamma: 0.1)
        XCTAssertEqual(s.learningRate(at: 149), 0.1, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(at: 150), 0.01, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(at: 200), 0.001, accuracy: 1e-15)
        XCTAssertEqual(s.learningRate(at: 210), 0.0001, accuracy: 1e-15)
    }
}
