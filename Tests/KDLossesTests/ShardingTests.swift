import XCTest
import KDCore
import KDTensor
@testable import KDLosses
import KDLossTesting

/// The objective's side of the share contract (every registered loss's own shares are
/// `LossContractTests`): the logged term values are shares, named and weighted by the objective.
final class ShardingTests: XCTestCase {
    /// Term values are shares too: they add up over the ranks.
    func testTermValuesAreShares() throws {
        let x = LossCase(b: 6, views: 2, seed: 5)
        let obj = try LossObjective(config: [["kind": "vrm"], ["kind": "rkd", "input": "embedding"], ["kind": "rkd"]])
        let full = try obj.evaluate(x.inputs())
        var sums: [String: Double] = [:]
        for r in 0..<4 {
            for t in try obj.evaluate(x.inputs(rank: r, of: 4)).terms { sums[t.name, default: 0] += t.value }
        }
        XCTAssertEqual(Set(full.terms.map { $0.name }),
                       ["loss/vrm", "loss/vrm/inter_sample", "loss/vrm/inter_class", "loss/vrm/kd",
                        "loss/rkd", "loss/rkd/distance", "loss/rkd/angle",
                        "loss/rkd#2", "loss/rkd#2/distance", "loss/rkd#2/angle"])
        // Shares regrouped by rank: the contract's bound (`LossContract.shareTolerance`, justified there).
        for t in full.terms {
            XCTAssertEqual(sums[t.name]!, t.value, accuracy: LossContract.shareTolerance * max(1, abs(t.value)), t.name)
        }
        // The weighted terms `loss/<kind>` add up to the objective: three float32 values summed in Double
        // and rounded once, a few ulps (≈ 1e-7 relative); 1e-4 is far above that and far below a missing
        // or double-counted weight.
        let total = full.terms.filter { !$0.name.dropFirst(5).contains("/") }.map { $0.value }.reduce(0, +)
        XCTAssertEqual(Double(full.value.item), total, accuracy: 1e-4 * abs(total))
        Tape.reset()
    }

    func testShardFormula() {
        XCTAssertEqual((0..<3).map { BatchPlan(globalSamples: 7, rank: $0, worldSize: 3).share }, [0..<2, 2..<4, 4..<7])
        XCTAssertEqual((0..<4).map { BatchPlan(globalSamples: 2, rank: $0, worldSize: 4).share },
                       [0..<0, 0..<1, 1..<1, 1..<2])
        XCTAssertEqual(BatchPlan(globalSamples: 10, rank: 1, worldSize: 4).counts, [2, 3, 2, 3])
    }
}
