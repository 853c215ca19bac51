import XCTest
import KDCore
import KDLosses
import KDTensor
@testable import KDTrain

/// The "Adding a loss" walkthrough of docs/losses.md, run: the example loss (ExampleLoss/, one file)
/// plus one registry line is configurable, strictly validated, correct, differentiable and shardable.
final class AddingALossTests: XCTestCase {
    override func setUp() { LossRegistry.extra = [CosineTerm.descriptor] }      // the registry line
    override func tearDown() { LossRegistry.extra = [] }

    func inputs(rank: Int = 0, of ranks: Int = 1) -> (LossInputs, Tensor, Tensor) {
        var rng = KDRandom(keys: 41)
        let s = Tensor.randn([7, 5], rng: &rng), t = Tensor.randn([7, 5], rng: &rng)
        s.requiresGrad = true
        let x = LossInputs(plan: BatchPlan(globalSamples: 7, rank: rank, worldSize: ranks),
                           studentEmbedding: s, teacherEmbedding: t)
        return (x, s, t)
    }

    func testConfiguredThroughTheStrictReader() throws {
        let head = "mode: distill\nteacher: {kind: network, checkpoint: t.safetensors}\n"
        let c = try KDConfig.parse(yaml: head + "loss: [{kind: cosine, weight: 2}, {kind: kd}]", file: "c.yaml")
        let term = try XCTUnwrap(c.loss[0].term as? CosineTerm)
        XCTAssertEqual(term.weight, 2)
        XCTAssertEqual(LossObjective(terms: c.loss.map(\.term)).needs,
                       [.studentEmbedding, .teacherEmbedding, .studentLogits, .teacherLogits])
        XCTAssertThrowsError(try KDConfig.parse(yaml: head + "loss: [{kind: cosine, margin: 1}]",
                                                file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: loss.0.margin: unknown key (line 3)")
        }
    }

    func testValueAgainstTheFormula() throws {
        let (x, s, t) = inputs()
        let got = try CosineTerm(weight: 1).evaluate(x).value.item
        var want = 0.0
        for i in 0..<7 {
            var st = 0.0, ss = 0.0, tt = 0.0
            for k in 0..<5 {
                let a = Double(s.ptr[i * 5 + k]), b = Double(t.ptr[i * 5 + k])
                st += a * b; ss += a * a; tt += b * b
            }
            want += 1 - st / (ss.squareRoot() * tt.squareRoot())
        }
        // Float32 inputs, Double accumulation, one Float32 rounding of the result: 1e-6 relative.
        XCTAssertEqual(Double(got), want / 7, accuracy: 1e-6 * want / 7)
        Tape.reset()
    }

    func testFiniteDifferenceGradient() throws {
        let (_, s, t) = inputs()
        // Central differences with ε = 1e-2 on a smooth function of O(1) inputs: truncation O(ε²) ≈ 1e-4
        // relative, Float32 evaluation noise ≈ 6e-8/ε ≈ 6e-6; 1e-2 leaves a wide margin for both.
        let r = try gradientCheck([s], eps: 1e-2) { v in
            try cosineEmbeddingLoss(student: v[0], teacher: t, rows: 0..<7).value
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testSharesAddUpToTheWholeLoss() throws {
        let whole = try CosineTerm(weight: 1).evaluate(inputs().0).value.item
        var sum = 0.0
        for r in 0..<3 { sum += Double(try CosineTerm(weight: 1).evaluate(inputs(rank: r, of: 3).0).value.item) }
        // Three Float32 partial sums instead of one: a few ulps of the total.
        XCTAssertEqual(sum, Double(whole), accuracy: 1e-6 * Double(whole))
        Tape.reset()
    }
}
