import XCTest
import KDCore
import KDTensor
@testable import KDLosses
import KDLossTesting
import KDTestSupport

/// The row-sharded pairwise terms build their `[rows, n]` matrices in tiles (`pairwiseTiles`), and their
/// gradient is on the shard's own rows only (the pairs are symmetric). Tiles of 2–3 rows must give the
/// one-tile values and gradients; a loss block's partial of the gathered rows must hold its own rows only.
final class PairwiseTilesTests: XCTestCase {
    override func tearDown() { Tape.reset() }

    func testTileSizeIsAFunctionOfTheColumnsOnly() {
        XCTAssertEqual(pairwiseTileRows(columns: 16384), 256)     // 2²² values per tile matrix
        XCTAssertEqual(pairwiseTileRows(columns: 64), 65536)
        XCTAssertEqual(pairwiseTileRows(columns: 1 << 23), 1)     // never 0 rows
        XCTAssertEqual(pairwiseTiles(3..<10, columns: 8, tileRows: 3), [3..<6, 6..<9, 9..<10])
        XCTAssertEqual(pairwiseTiles(4..<4, columns: 8, tileRows: 3), [])
    }

    /// `(value, gradient of the student rows)` of one evaluation on a fresh tape.
    private func run(_ x: Tensor, _ body: () throws -> LossShare) throws -> (Double, [Float]) {
        Tape.reset()
        x.zeroGrad()
        let share = try body()
        share.value.backward()
        return (Double(share.value.item), x.grad?.array ?? [])
    }

    /// PRG over rows 3..<17 of 20: tiles of 3 rows against one tile. The value sums the same terms in the
    /// same order (equal); each gradient row comes from its own tile's sgemm over the same `n` columns,
    /// which may group the float32 products differently — bounded by `n · 2⁻²⁴` relative to the
    /// gradient's scale, so 1e-5 (with n = 20) is above any regrouping and far below a missed tile.
    func testPRGTilesGiveTheOneTileShare() throws {
        let x = LossCase(b: 20, d: 6, c: 5, seed: 41)
        x.sEmb.requiresGrad = true
        func share(_ tile: Int?) throws -> (Double, [Float]) {
            try run(x.sEmb) {
                try prgLoss(studentEmbedding: x.sEmb, studentLogits: x.zs, teacherEmbedding: x.tEmb,
                            teacherLogits: x.zt, proxies: x.proxies, rows: 3..<17, tileRows: tile)
            }
        }
        let (whole, gWhole) = try share(nil), (tiled, gTiled) = try share(3)
        XCTAssertEqual(tiled, whole, accuracy: 1e-12 * abs(whole))
        XCTAssertEqual(gTiled.count, gWhole.count)
        XCTAssertLessThan(relativeError(gTiled, gWhole), 1e-5)
        // The shard's gradient is on its own rows only.
        for i in Array(0..<3) + Array(17..<20) {
            XCTAssertTrue(gWhole[(i * 6)..<((i + 1) * 6)].allSatisfy { $0 == 0 }, "row \(i)")
        }
    }

    /// RKD distance row-sharded over 2 in-process ranks: tiles of 2 rows against one tile; the ranks'
    /// gradients (each on its own rows) add up to the single-process gradient within the share
    /// contract's bound. The value differs only in how the tiles' Σd are grouped (1e-6 relative).
    func testRKDDistanceTilesGiveTheOneTileShare() throws {
        let x = LossCase(b: 10, d: 4, seed: 43)
        let reference = try run(x.sEmb) {
            x.sEmb.requiresGrad = true
            return try rkdDistanceLoss(student: x.sEmb, teacher: x.tEmb)
        }
        for tile in [nil, 2] {
            let parts = try InProcessWorld(size: 2).run { comm -> (Double, [Float]) in
                let s = x.sEmb.copy(), rows = BatchPlan(globalSamples: 10, rank: comm.rank, worldSize: 2).share
                s.requiresGrad = true
                let r = try self.run(s) {
                    try rkdDistanceLoss(student: s, teacher: x.tEmb, rows: rows, comm: comm, tileRows: tile)
                }
                for i in 0..<10 where !rows.contains(i) {
                    XCTAssertTrue(r.1[(i * 4)..<((i + 1) * 4)].allSatisfy { $0 == 0 }, "rank \(comm.rank) row \(i)")
                }
                return r
            }
            let value = parts.reduce(0) { $0 + $1.0 }
            let grad = (0..<parts[0].1.count).map { k in parts.reduce(Float(0)) { $0 + $1.1[k] } }
            XCTAssertEqual(value, reference.0, accuracy: LossContract.shareTolerance * max(1, abs(reference.0)))
            XCTAssertLessThan(relativeError(grad, reference.1), LossContract.shareTolerance,
                              "tile \(String(describing: tile))")
        }
    }

    /// Deterministic training's evaluation of KD + PRG + RKD (distance and angle over 4 sampled partners):
    /// each loss block's partial of a gathered student matrix holds the block's own rows, and the angle's
    /// partners — not every row of the batch.
    func testBlockPartialsHoldTheBlocksRows() throws {
        let x = LossCase(b: 24, d: 5, c: 4, seed: 47)
        let objective = try LossObjective(config: [["kind": "kd"], ["kind": "prg"],
                                                   ["kind": "rkd", "input": "embedding", "angle_partners": 4]])
        let inputs = x.inputs(blockSize: 4, exact: true)
        let blocks = inputs.lossBlocks.count
        XCTAssertEqual(blocks, 6)
        for s in x.students { s.requiresGrad = true; s.keepLossBlocksApart(blocks) }
        defer { for s in x.students { s.requiresGrad = false; s.keepLossBlocksApart(0); s.zeroGrad() } }
        Tape.reset()
        try objective.evaluate(inputs).value.backward()
        let logits = try XCTUnwrap(x.zs.lossBlockGrad), embedding = try XCTUnwrap(x.sEmb.lossBlockGrad)
        XCTAssertEqual(logits.storedValues, blocks * 4 * x.c)                       // KD and PRG: own rows
        XCTAssertLessThanOrEqual(embedding.storedValues, blocks * (4 + 4) * x.d)   // own rows and partners
        XCTAssertGreaterThanOrEqual(embedding.storedValues, blocks * 4 * x.d)
        // Every stored row of block b is b's own or a partner; the values equal the all-rows partials.
        let dense = embedding.allRows()
        var total = [Float](repeating: 0, count: x.sEmb.count)
        for b in 0..<blocks { for k in 0..<x.sEmb.count { total[k] += dense.ptr[b * x.sEmb.count + k] } }
        let fromEntries = embedding.entries.reduce(into: [Float](repeating: 0, count: x.sEmb.count)) { t, e in
            for k in 0..<x.d { t[e.row * x.d + k] += e.values[k] }
        }
        XCTAssertEqual(fromEntries, total)
    }
}
