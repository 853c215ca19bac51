import XCTest
import KDCore
@testable import KDData

final class SamplerTests: XCTestCase {
    func testPermutationIsDeterministicAndEpochDependent() throws {
        let s = try Sampler(count: 50, globalBatch: 8, dropLast: true, seed: 3)
        XCTAssertEqual(s.permutation(epoch: 0),
                       try Sampler(count: 50, globalBatch: 8, dropLast: true, seed: 3).permutation(epoch: 0))
        XCTAssertNotEqual(s.permutation(epoch: 0), s.permutation(epoch: 1))
        XCTAssertEqual(s.permutation(epoch: 1).sorted(), Array(0..<50))
        XCTAssertNotEqual(s.permutation(epoch: 0),
                          try Sampler(count: 50, globalBatch: 8, dropLast: true, seed: 4).permutation(epoch: 0))
    }

    func testStepsPerEpochAndDropLast() throws {
        XCTAssertEqual(try Sampler(count: 50, globalBatch: 8, dropLast: true, seed: 0).stepsPerEpoch, 6)
        let keep = try Sampler(count: 50, globalBatch: 8, dropLast: false, seed: 0)
        XCTAssertEqual(keep.stepsPerEpoch, 7)
        XCTAssertEqual(keep.globalIndices(epoch: 2, step: 6).count, 2)
        XCTAssertEqual((0..<7).flatMap { keep.globalIndices(epoch: 2, step: $0) }, keep.permutation(epoch: 2))
        XCTAssertEqual(try Sampler(count: 48, globalBatch: 8, dropLast: false, seed: 0).stepsPerEpoch, 6)
    }

    func testShareFormula() {
        XCTAssertEqual(BatchPlan(globalSamples: 10, worldSize: 3).counts, [3, 3, 4])
        XCTAssertEqual(BatchPlan(globalSamples: 10, worldSize: 4).counts, [2, 3, 2, 3])
        XCTAssertEqual(BatchPlan.share(rank: 2, worldSize: 3, batch: 10), 6..<10)
        XCTAssertEqual(BatchPlan(globalSamples: 7).counts, [7])
    }

    /// The rank shares, concatenated in rank order, are the one-process global batch (N = 1…4, uneven).
    func testUnionOverRanksIsTheGlobalBatch() throws {
        for dropLast in [true, false] {
            for B in [8, 10, 7] {
                let one = try Sampler(count: 53, globalBatch: B, dropLast: dropLast, seed: 11)
                for R in 1...4 {
                    if !dropLast && (1..<R).contains(53 % B) {
                        XCTAssertThrowsError(try Sampler(count: 53, globalBatch: B, dropLast: false, seed: 11,
                                                         rank: 0, worldSize: R))
                        continue
                    }
                    let ranks = try (0..<R).map {
                        try Sampler(count: 53, globalBatch: B, dropLast: dropLast, seed: 11, rank: $0, worldSize: R)
                    }
                    for r in ranks { XCTAssertEqual(r.stepsPerEpoch, one.stepsPerEpoch) }
                    for e in 0..<2 {
                        for s in 0..<one.stepsPerEpoch {
                            let union = ranks.flatMap { $0.localIndices($0.plan(epoch: e, step: s)) }
                            XCTAssertEqual(union, one.globalIndices(epoch: e, step: s), "R=\(R) B=\(B) e=\(e) s=\(s)")
                        }
                    }
                }
            }
        }
    }

    func testPositionAdvanceAndResume() throws {
        let p = SamplerPosition(epoch: 1, step: 5).advanced(by: 3, stepsPerEpoch: 7)
        XCTAssertEqual(p, SamplerPosition(epoch: 2, step: 1))
        let data = try JSONEncoder().encode(p)
        XCTAssertEqual(try JSONDecoder().decode(SamplerPosition.self, from: data), p)
        // A resumed sampler (fresh object) gives the same batch at the saved position.
        let a = try Sampler(count: 40, globalBatch: 6, dropLast: true, seed: 9, rank: 1, worldSize: 2)
        let b = try Sampler(count: 40, globalBatch: 6, dropLast: true, seed: 9, rank: 1, worldSize: 2)
        _ = a.localIndices(a.plan(epoch: 0, step: 0))
        XCTAssertEqual(a.localIndices(a.plan(epoch: p.epoch, step: p.step)),
                       b.localIndices(b.plan(epoch: p.epoch, step: p.step)))
    }

    func testConfigurationErrors() {
        func msg(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(msg { _ = try Sampler(count: 100, globalBatch: 3, dropLast: true, seed: 0,
                                             rank: 0, worldSize: 4) },
                       "4 ranks but only 3 samples in the global batch (data.global_batch): "
                       + "every rank needs at least one sample")
        XCTAssertEqual(msg { _ = try Sampler(count: 33, globalBatch: 8, dropLast: false, seed: 0,
                                             rank: 0, worldSize: 4) },
                       "4 ranks but only 1 samples in the last partial batch "
                       + "(set data.drop_last: true or change data.global_batch): "
                       + "every rank needs at least one sample")
        XCTAssertNoThrow(try Sampler(count: 33, globalBatch: 8, dropLast: true, seed: 0, rank: 0, worldSize: 4))
        XCTAssertEqual(msg { _ = try Sampler(count: 5, globalBatch: 8, dropLast: true, seed: 0) },
                       "config data.global_batch: 8 exceeds the 5 training samples "
                       + "and data.drop_last is true: no step per epoch")
        XCTAssertEqual(msg { _ = try Sampler(count: 5, globalBatch: 0, dropLast: true, seed: 0) },
                       "config data.global_batch: 0 must be ≥ 1")
        XCTAssertEqual(msg { _ = try Sampler(count: 0, globalBatch: 2, dropLast: true, seed: 0) },
                       "config data: the training split is empty")
    }

    func testEvalSharding() {
        XCTAssertEqual(EvalSharding.globalBatches(count: 10, batch: 4), [0..<4, 4..<8, 8..<10])
        for R in 1...4 {
            let all = (0..<R).map { EvalSharding.rankBatches(count: 10, batch: 4, rank: $0, worldSize: R) }
            for b in 0..<3 {
                XCTAssertEqual(all.flatMap { $0[b].indices }, Array(EvalSharding.globalBatches(count: 10, batch: 4)[b]))
            }
            XCTAssertEqual((0..<R).flatMap {
                EvalSharding.rankIndices(count: 10, batch: 4, rank: $0, worldSize: R)
            }.sorted(), Array(0..<10))
        }
        XCTAssertEqual(EvalSharding.rankBatches(count: 10, batch: 4, rank: 0, worldSize: 4)[2].indices, [])
        XCTAssertEqual(EvalSharding.rankBatches(count: 10, batch: 4, rank: 3, worldSize: 4)[2].plan.counts,
                       [0, 1, 0, 1])
    }
}

/// `BatchPlan` with blocks (deterministic training): every rank holds whole blocks, the shares tile the
/// batch in rank order, and blocks of 1 are the sample shares.
final class BatchPlanBlockTests: XCTestCase {
    func testSharesAreWholeBlocks() {
        for (b, s) in [(64, 16), (10, 2), (30, 4), (7, 1)] {
            for n in 1...min(4, (b + s - 1) / s) {
                let shares = (0..<n).map { BatchPlan(globalSamples: b, rank: $0, worldSize: n, blockSize: s).share }
                XCTAssertEqual(shares.first?.lowerBound, 0)
                XCTAssertEqual(shares.last?.upperBound, b)
                for (a, c) in zip(shares, shares.dropFirst()) { XCTAssertEqual(a.upperBound, c.lowerBound) }
                for r in shares where r.upperBound < b { XCTAssertEqual(r.count % s, 0, "b \(b) s \(s) N \(n) \(r)") }
                XCTAssertTrue(shares.allSatisfy { !$0.isEmpty })
            }
        }
        // 64 in blocks of 16 on 3 ranks: blocks 0 | 1 | 2–3.
        XCTAssertEqual((0..<3).map { BatchPlan(globalSamples: 64, rank: $0, worldSize: 3, blockSize: 16).share },
                       [0..<16, 16..<32, 32..<64])
        XCTAssertEqual(BatchPlan(globalSamples: 30, blockSize: 4).blocks, 8)
        for r in 0..<3 {   // blocks of 1 are the old sample shares ⌊r·b/R⌋
            XCTAssertEqual(BatchPlan(globalSamples: 10, rank: r, worldSize: 3).share, (r * 10 / 3)..<((r + 1) * 10 / 3))
        }
    }

    func testSamplerRefusesBlocksThatDoNotFit() {
        XCTAssertThrowsError(try Sampler(count: 100, globalBatch: 10, dropLast: true, seed: 1, blockSize: 4)) {
            XCTAssertEqual(($0 as? DataError)?.configKey, "train.block_size")
        }
        XCTAssertThrowsError(try Sampler(count: 100, globalBatch: 16, dropLast: true, seed: 1, rank: 0, worldSize: 3,
                                         blockSize: 8)) {
            XCTAssertTrue("\($0)".contains("3 ranks need at least 3 blocks"), "\($0)")
        }
        // Issue 24 item 11: a last partial batch of 20 samples = 2 blocks of 16 for 3 ranks: the rule named is
        // one block per rank, not one sample.
        XCTAssertThrowsError(try Sampler(count: 116, globalBatch: 48, dropLast: false, seed: 1, rank: 0,
                                         worldSize: 3, blockSize: 16)) {
            XCTAssertEqual("\($0)", "3 ranks but the last partial batch of 20 samples has 2 block(s) of "
                           + "train.block_size 16: every rank needs at least one block (train.deterministic shares "
                           + "whole blocks); set data.drop_last: true or change data.global_batch")
            XCTAssertEqual(($0 as? DataError)?.configKey, "data.drop_last")
        }
    }
}
