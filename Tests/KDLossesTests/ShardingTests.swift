import XCTest
import KDCore
import KDTestSupport
import KDTensor
@testable import KDLosses

/// The single-process proof of the multi-rank contract: for N = 2, 3, 4 (uneven shards), the shares
/// of ranks r = 0..<N add up to the unsharded loss, and so do their gradients.
final class ShardingTests: XCTestCase {
    static let configs: [(String, [String: Any])] = [
        ("kd", ["kind": "kd", "ce_weight": 0.3]),
        ("ce", ["kind": "ce"]),
        ("rkd", ["kind": "rkd"]),
        ("rkd capped", ["kind": "rkd", "angle_anchors": 3, "seed": 5]),
        ("prg", ["kind": "prg"]),
        ("vrm", ["kind": "vrm", "q": 0.3]),
        ("spectral", ["kind": "spectral", "k": 3]),
        ("spectral iterative", ["kind": "spectral", "k": 3, "solver": "iterative"]),
    ]

    /// (loss, gradients of the student inputs) for one shard.
    func evaluate(_ term: any LossTerm, _ x: LossCase, rank: Int = 0, of ranks: Int = 1) throws -> (Double, [[Float]]) {
        Tape.reset()
        for s in x.students { s.requiresGrad = true; s.grad = nil }
        let r = try term.evaluate(x.inputs(rank: rank, of: ranks))
        let v = Double(r.value.item)
        if r.value.requiresGrad { r.value.backward() }
        let g = x.students.map { $0.grad?.array ?? [Float](repeating: 0, count: $0.count) }
        for s in x.students { s.grad = nil }
        return (v, g)
    }

    func testSharesSumToTheWholeLoss() throws {
        for (name, config) in Self.configs {
            let views = name == "vrm" ? 2 : 1
            let x = LossCase(b: 7, views: views, seed: 3)
            let term = try makeLossTerm(config)
            let (full, fullGrad) = try evaluate(term, x)
            XCTAssertTrue(full.isFinite && full != 0, "\(name): \(full)")
            for ranks in [2, 3, 4] {
                var sum = 0.0
                var grads = fullGrad.map { [Float](repeating: 0, count: $0.count) }
                for r in 0..<ranks {
                    let (v, g) = try evaluate(term, x, rank: r, of: ranks)
                    sum += v
                    for k in 0..<g.count { for i in 0..<g[k].count { grads[k][i] += g[k][i] } }
                }
                XCTAssertEqual(sum, full, accuracy: 1e-5 * max(1, abs(full)), "\(name) N=\(ranks)")
                for k in 0..<grads.count where fullGrad[k].contains(where: { $0 != 0 }) {
                    XCTAssertLessThan(relErr(grads[k], fullGrad[k]), 1e-5, "\(name) N=\(ranks) input \(k)")
                }
            }
        }
    }

    /// Row-sharded terms (`LossInputs.comm` set: RKD distance builds only its rows and all-reduces μ and
    /// Σh·d inside the term; RKD angle with sampled partners; VRM's inter-class graph all-reduces its edge
    /// lengths and ⟨e, G⟩, `delta: 0.05` putting most residuals on Huber's linear side; spectral builds its
    /// rows of W, all-reduces σ² and its σ² gradient term and gathers the degrees, dense and iterative) over
    /// in-process worlds of 1–4 ranks, uneven shards and, for a batch of 3 on 4 ranks, an empty one: the
    /// shares and their gradients add up to the whole loss computed without a communicator. 1e-5 relative:
    /// the same float32 sums regrouped by rank (n ≤ 64 terms, n·u ≈ 4e-6); the spectral iterative solves
    /// are exact here (n ≤ 10: the first block spans the whole space, Rayleigh–Ritz is dense).
    func testRowShardedSharesOverACommunicatorSumToTheWholeLoss() throws {
        let configs: [[String: Any]] = [["kind": "rkd"], ["kind": "rkd", "input": "embedding", "angle_weight": 0],
                                        ["kind": "rkd", "distance_weight": 25, "angle_weight": 50],
                                        ["kind": "rkd", "angle_partners": 3, "angle_anchors": 4, "seed": 5],
                                        ["kind": "vrm", "q": 0.25], ["kind": "vrm", "q": 0, "delta": 0.05],
                                        ["kind": "spectral", "k": 3, "solver": "dense"],
                                        ["kind": "spectral", "k": 2, "solver": "iterative"],
                                        ["kind": "spectral", "input": "features"]]
        for config in configs {
            let cases = config["kind"] as? String == "vrm" ? [(7, 2), (3, 2), (5, 3)] : [(7, 1), (3, 1), (5, 2)]
            for (b, views) in cases {
                let term = try makeLossTerm(config)
                let (full, fullGrad) = try evaluate(term, LossCase(b: b, views: views, seed: 11))
                for ranks in [1, 2, 3, 4] {
                    let results = try InProcessWorld(size: ranks).run { comm -> (Double, [[Float]]) in
                        let x = LossCase(b: b, views: views, seed: 11)
                        Tape.reset()
                        for s in x.students { s.requiresGrad = true; s.grad = nil }
                        var inputs = x.inputs(rank: comm.rank, of: comm.size)
                        inputs.comm = comm
                        let r = try term.evaluate(inputs)
                        if r.value.requiresGrad { r.value.backward() }
                        return (Double(r.value.item),
                                x.students.map { $0.grad?.array ?? [Float](repeating: 0, count: $0.count) })
                    }
                    let sum = results.reduce(0) { $0 + $1.0 }
                    let label = "\(config) b \(b) views \(views) N=\(ranks)"
                    XCTAssertEqual(sum, full, accuracy: 1e-5 * max(1, abs(full)), label)
                    for k in 0..<fullGrad.count where fullGrad[k].contains(where: { $0 != 0 }) {
                        var g = [Float](repeating: 0, count: fullGrad[k].count)
                        for r in results { for i in 0..<g.count { g[i] += r.1[k][i] } }
                        XCTAssertLessThan(relErr(g, fullGrad[k]), 1e-5, "\(label) input \(k)")
                    }
                }
            }
        }
    }

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
        for t in full.terms { XCTAssertEqual(sums[t.name]!, t.value, accuracy: 1e-5 * max(1, abs(t.value)), t.name) }
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
