import XCTest
import KDCore
import KDLosses
import KDLossTesting
import KDTensor
@testable import KDTrain

/// The "Adding a loss" walkthrough of docs/losses.md, run: the example loss (ExampleLoss/, one file)
/// plus one registry line is configurable, strictly validated, correct against its formula, and holds
/// the loss contract (finite differences, shares over 1–4 ranks) with no list to add it to.
final class AddingALossTests: XCTestCase {
    override func setUp() { LossRegistry.extra = [CosineTerm.descriptor] }      // the registry line
    override func tearDown() { LossRegistry.extra = []; Tape.reset() }

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
        let x = LossCase(b: 7, seed: 41)
        let got = try CosineTerm(weight: 1).evaluate(x.inputs()).value.item
        var want = 0.0
        for i in 0..<7 {
            var st = 0.0, ss = 0.0, tt = 0.0
            for k in 0..<x.d {
                let a = Double(x.sEmb.ptr[i * x.d + k]), b = Double(x.tEmb.ptr[i * x.d + k])
                st += a * b; ss += a * a; tt += b * b
            }
            want += 1 - st / (ss.squareRoot() * tt.squareRoot())
        }
        // Float32 products accumulated in Double, one Float32 rounding of the result: 1e-6 relative.
        XCTAssertEqual(Double(got), want / 7, accuracy: 1e-6 * want / 7)
    }

    /// The weight is the objective's: `loss/cosine` is 2 × the term's share.
    func testTheObjectiveAppliesTheWeight() throws {
        let x = LossCase(b: 7, seed: 41)
        let share = try CosineTerm(weight: 2).evaluate(x.inputs()).value.item
        let objective = try LossObjective(terms: [CosineTerm(weight: 2)]).evaluate(x.inputs())
        XCTAssertEqual(objective.value.item, 2 * share)      // one Float product, exact either way
        XCTAssertEqual(objective.terms.map(\.name), ["loss/cosine"])
    }

    /// The registry-driven contract check picks the new kind up from its registry line.
    func testHoldsTheLossContract() throws {
        let report = LossContract.check(try LossRegistry.descriptor("cosine"))
        XCTAssertEqual(report.failures, [], "\(report)")
        // One configuration (no parameters): 2 unweighted + 2 finite-difference checks and 3 layouts ×
        // 4 world sizes × 2 share checks of the loss, at least.
        XCTAssertGreaterThanOrEqual(report.checks, 4 + 24)
    }
}
