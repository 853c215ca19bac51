import XCTest
import KDCore
import KDData
import KDLosses
import KDTensor
@testable import KDTools
import KDTrain

final class LossProjectionTests: XCTestCase {
    func inputs(samples b: Int, views v: Int) -> LossInputs {
        var rng = KDRandom(keys: 3)
        let h = Tensor.randn([b * v, 6], rng: &rng), s = Tensor.randn([b * v, 4], rng: &rng)
        let z = Tensor.randn([b * v, 5], rng: &rng), t = Tensor.randn([b * v, 4], rng: &rng)
        let zt = Tensor.randn([b * v, 5], rng: &rng), proxies = Tensor.randn([5, 4], rng: &rng)
        for x in [h, s, z] { x.requiresGrad = true }
        return LossInputs(plan: BatchPlan(globalSamples: b), views: v, studentFeatures: h, studentEmbedding: s,
                          studentLogits: z, teacherEmbedding: t, teacherLogits: zt, proxies: proxies,
                          labels: (0..<b).map { $0 % 5 }, step: 7)
    }

    /// Rows are tiled sample-major (the first copy exact, the others perturbed: scaled by 1 + 0.01·u and
    /// given noise of 20% of the row's RMS),
    /// student rows are trainable leaves, teacher rows constants, labels tiled, the shard is rank 0's.
    func testTiledLayout() throws {
        let base = inputs(samples: 6, views: 2)
        let g = LossProjection.tiled(base, perRank: 5, ranks: 3)
        XCTAssertEqual(g.batchSize, 15); XCTAssertEqual(g.views, 2)
        XCTAssertEqual(g.shard, 0..<5); XCTAssertEqual(g.step, 7)
        XCTAssertEqual(g.plan.counts, [5, 5, 5])
        XCTAssertEqual(g.studentFeatures?.shape, [30, 6]); XCTAssertEqual(g.teacherLogits?.shape, [30, 5])
        XCTAssertEqual(g.labels, (0..<15).map { ($0 % 6) % 5 })
        XCTAssertTrue(g.studentEmbedding!.requiresGrad && g.studentLogits!.requiresGrad
                      && g.studentFeatures!.requiresGrad)
        XCTAssertFalse(g.teacherEmbedding!.requiresGrad)
        XCTAssertTrue(g.proxies === base.proxies)
        let src = base.studentEmbedding!, dst = g.studentEmbedding!
        for k in 0..<(12 * 4) { XCTAssertEqual(dst.ptr[k], src.ptr[k]) }
        // Every further copy is its row scaled and given noise of 20% of the row's RMS: ‖x' − x‖/‖x‖ has mean
        // ≈ 0.19 over 78 copies of 4-element rows (0.2·√(χ²₄/4): between 0.1 and 0.35), and only the odd one
        // (χ²₄ < 0.2: 0.5% each) falls in the near-duplicate range (< 0.045: squared distance below 1e-3 of
        // the squared norms) where the distance kernels recompute differences exactly.
        let wide = LossProjection.tiled(inputs(samples: 2, views: 1), perRank: 2, ranks: 40)
        let x = try XCTUnwrap(wide.teacherEmbedding), d = 4
        var ratios: [Float] = []
        for r in 2..<80 {
            var diff: Float = 0, norm: Float = 0
            for c in 0..<d {
                let a = x.ptr[r * d + c], b = x.ptr[(r % 2) * d + c]
                diff += (a - b) * (a - b); norm += b * b
            }
            ratios.append((diff / norm).squareRoot())
        }
        XCTAssertLessThanOrEqual(ratios.filter { $0 < 0.045 }.count, 4)
        let mean = ratios.reduce(0, +) / Float(ratios.count)
        XCTAssertGreaterThan(mean, 0.1); XCTAssertLessThan(mean, 0.35)
    }

    /// The timed objective at the bench's own world size is the real objective on the real inputs:
    /// one point per world size, global batch = per-rank batch × ranks, positive times, gradients
    /// cleared afterwards.
    func testMeasureRunsTheObjective() throws {
        let base = inputs(samples: 8, views: 1)
        let objective = LossObjective(terms: try KDConfig.lossTerms(
            yaml: "[{kind: prg}, {kind: rkd}, {kind: kd, ce_weight: 0.5}]"))
        let points = try LossProjection.measure(objective: objective, inputs: base, perRank: 4, ranks: [2, 8],
                                                repeats: 2)
        XCTAssertEqual(points.map { $0.ranks }, [2, 8])
        XCTAssertEqual(points.map { $0.globalBatch }, [8, 32])
        XCTAssertTrue(points.allSatisfy { $0.seconds > 0 && $0.seconds.isFinite })
        // Memory: the gathered inputs grow with the global batch (4× the rows, 4× the bytes), and the
        // objective's working memory above them is counted and grows too (RKD's row-sharded distances
        // are |rows|·B, PRG's row similarities |rows|·B).
        let bytes = points.map { $0.inputBytes }, peaks = points.map { $0.peakBytes ?? 0 }
        XCTAssertEqual(bytes[1] ?? 0, 4 * (bytes[0] ?? 0))
        XCTAssertGreaterThan(bytes[0] ?? 0, 0)
        XCTAssertGreaterThan(peaks[0], 0)
        XCTAssertGreaterThan(peaks[1], peaks[0])
        XCTAssertThrowsError(try LossProjection.measure(objective: LossObjective(
                                                            terms: try KDConfig.lossTerms(yaml: "[{kind: vrm}]")),
                                                        inputs: base, perRank: 4, ranks: [2])) { e in
            XCTAssertTrue("\(e)".contains("vrm"), "\(e)")
        }
    }
}
