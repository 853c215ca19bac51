import XCTest
import KDCore
@testable import KDData

final class BatchTests: XCTestCase {
    func floats(_ b: Batch) -> [Float] { b.images.array }

    /// Every rank's batch equals its rows of the one-process batch, pixels included, for N = 1…4.
    func testRankBatchesEqualSlicesOfTheOneProcessBatch() throws {
        let ds = try SyntheticDataset(count: 37, classes: 5, height: 12, width: 12, seed: 2)
        let loader = try BatchLoader(dataset: ds, views: 2, policy: .named("strong"), normalization: .cifar10, seed: 5)
        let one = try Sampler(count: 37, globalBatch: 10, dropLast: false, seed: 8)
        let per = 12 * 12 * 3 * 2
        for R in 1...4 {
            for s in [0, one.stepsPerEpoch - 1] {
                let g = loader.trainBatch(one, at: SamplerPosition(epoch: 1, step: s))
                var gathered: [Float] = [], labels: [Int] = [], idx: [Int] = []
                for r in 0..<R {
                    let sr = try Sampler(count: 37, globalBatch: 10, dropLast: false, seed: 8, rank: r, worldSize: R)
                    let b = loader.trainBatch(sr, at: SamplerPosition(epoch: 1, step: s))
                    let share = BatchPlan.share(rank: r, worldSize: R, batch: g.count)
                    XCTAssertEqual(b.images.shape, [share.count * 2, 12, 12, 3])
                    XCTAssertEqual(floats(b), Array(floats(g)[(share.lowerBound * per)..<(share.upperBound * per)]))
                    gathered += floats(b); labels += b.labels; idx += b.indices
                }
                XCTAssertEqual(gathered, floats(g), "R=\(R) step \(s)")
                XCTAssertEqual(labels, g.labels); XCTAssertEqual(idx, g.indices)
            }
        }
    }

    func testViewOrderIsSampleMajorAndViewsDiffer() throws {
        let ds = PatternDataset(count: 6)
        let loader = try BatchLoader(dataset: ds, views: 3, policy: AugmentPolicy(),
                                     normalization: .symmetric(channels: 3), seed: 1)
        let b = loader.load([4, 1], plan: BatchPlan(epoch: 0, step: 0, globalSamples: 2))
        XCTAssertEqual(b.images.shape, [6, 6, 5, 3])
        XCTAssertEqual(b.labels, [0, 1]); XCTAssertEqual(b.rowLabels, [0, 0, 0, 1, 1, 1])
        XCTAssertEqual(b.indices, [4, 1])
        let per = 6 * 5 * 3
        let x = floats(b)
        // Row k·V + v is view v of sample k: it equals that sample's view rendered alone.
        for (k, i) in [4, 1].enumerated() {
            for v in 0..<3 {
                let alone = floats(loader.load([i], plan: BatchPlan(globalSamples: 1)))
                XCTAssertEqual(Array(x[((k * 3 + v) * per)..<((k * 3 + v + 1) * per)]),
                               Array(alone[(v * per)..<((v + 1) * per)]))
            }
        }
        // Different epochs give different augmentations, the same epoch the same.
        XCTAssertEqual(floats(loader.load([3], plan: BatchPlan(epoch: 2, step: 0, globalSamples: 1))),
                       floats(loader.load([3], plan: BatchPlan(epoch: 2, step: 9, globalSamples: 1))))
        let e = (0..<8).map { floats(loader.load([3], plan: BatchPlan(epoch: $0, step: 0, globalSamples: 1))) }
        XCTAssertGreaterThan(Set(e.map { $0.description }).count, 1)
    }

    func testEvaluationIsNormalisationOnly() throws {
        let ds = PatternDataset(count: 3, height: 2, width: 2, channels: 3)
        let norm = try Normalization(mean: [0.5, 0.25, 0], std: [0.5, 0.25, 2])
        let loader = try BatchLoader(dataset: ds, views: 2, policy: AugmentPolicy(), normalization: norm, seed: 1)
        let b = loader.load([2], plan: BatchPlan(epoch: 0, step: 0, globalSamples: 1), augment: false)
        XCTAssertEqual(b.views, 1)
        let img = ds.image(2)
        let want: [Float] = (0..<12).map { k in (Float(img[k]) / 255 - norm.mean[k % 3]) / norm.std[k % 3] }
        XCTAssertEqual(floats(b), want)
    }

    func testConfigErrors() throws {
        let ds = PatternDataset(count: 3)
        XCTAssertThrowsError(try BatchLoader(dataset: ds, views: 0, policy: AugmentPolicy(),
                                             normalization: .cifar10, seed: 0)) {
            XCTAssertEqual("\($0)", "config data.views: 0 must be ≥ 1")
        }
        XCTAssertThrowsError(try BatchLoader(dataset: ds, views: 1, policy: AugmentPolicy(),
                                             normalization: .symmetric(channels: 2), seed: 0)) {
            XCTAssertEqual("\($0)", "config data.normalize: 2 channel statistics for 3-channel images")
        }
        XCTAssertThrowsError(try AugmentPolicy.named("heavy")) {
            XCTAssertEqual("\($0)", "config data.augment: unknown value 'heavy' (none, standard, strong)")
        }
        XCTAssertThrowsError(try Normalization(mean: [0.5], std: [0])) {
            XCTAssertEqual("\($0)", "config data.normalize: std [0.0] must be positive")
        }
    }
}
