import Foundation
import XCTest
import KDCore
import KDTensor
import KDTestSupport

/// `ExactSum`: the same bits whatever the split of the partials over ranks and their order, within its
/// stated bound of the exact sum, and NaN for a non-finite partial.
final class ExactSumTests: XCTestCase {
    /// 40 blocks of 7 values spanning 2⁻³⁰…2³⁰ with both signs (heavy cancellation).
    func partials() -> [[Float]] {
        var rng = KDRandom(keys: 17, 3)
        return (0..<40).map { _ in
            (0..<7).map { i in
                let mag = Float(sign: .plus, exponent: Int(rng.next() % 61) - 30, significand: 1)
                return (rng.next() % 2 == 0 ? 1 : -1) * mag * Float(1 + i) / 7
            }
        }
    }

    /// Rank r of N sums the blocks given by `split`, in the order given.
    func reduce(_ blocks: [[Float]], split: @escaping @Sendable (Int, Int) -> [Int], sizes: [Int]) throws -> [[Float]] {
        try sizes.map { n in
            try InProcessWorld(size: n).run { comm -> [Float] in
                let mine = split(comm.rank, n).flatMap { blocks[$0] }
                var out = [Float](repeating: 0, count: 7)
                try mine.withUnsafeBufferPointer { p in
                    try out.withUnsafeMutableBufferPointer { o in
                        let partial = p.baseAddress ?? UnsafePointer(o.baseAddress!)
                        let g = ExactSum.Group(partials: partial, blocks: mine.count / 7, count: 7,
                                               result: o.baseAddress!)
                        try ExactSum.reduce([g], globalBlocks: blocks.count, comm: comm)
                    }
                }
                return out
            }[0]
        }
    }

    func testSameBitsForAnySplitAndOrder() throws {
        let blocks = partials()
        let contiguous = try reduce(blocks, split: { r, n in Array((r * 40 / n)..<((r + 1) * 40 / n)) },
                                    sizes: [1, 2, 3, 4])
        let strided = try reduce(blocks, split: { r, n in Array(stride(from: r, to: 40, by: n)).reversed() },
                                 sizes: [2, 4])
        let lopsided = try reduce(blocks, split: { r, _ in r == 0 ? [] : Array(0..<40).shuffledBy(seed: 5) },
                                  sizes: [2])
        for r in contiguous + strided + lopsided { XCTAssertEqual(r, contiguous[0]) }
        // Against the exact sum (Double is exact here: the terms span 2⁻³⁰…2³⁰, 61 binades, but each
        // column's exact sum fits in Double's 53 bits only approximately, so compare with the bound):
        // |error| ≤ n·m·2^(h−62) + one final Float rounding, n = 40 blocks, h = 6.
        for i in 0..<7 {
            let column = blocks.map { Double($0[i]) }
            let exact = column.sorted { abs($0) < abs($1) }.reduce(0, +)
            let m = column.map(abs).max()!
            let bound = 40 * m * pow(2, 6 - 62) + abs(exact) * Double(Float.ulpOfOne)
            XCTAssertLessThanOrEqual(abs(Double(contiguous[0][i]) - exact), bound, "element \(i)")
        }
        // Float summation in two orders typically differs: the property ExactSum removes.
        let forward = blocks.map { $0[0] }.reduce(0, +), backward = blocks.map { $0[0] }.reversed().reduce(0, +)
        print("ExactSumTests: float32 forward \(forward), backward \(backward), exact-sum \(contiguous[0][0])")
    }

    func testZerosNonFiniteAndHeadroom() throws {
        let out = try InProcessWorld(size: 2).run { comm -> [Float] in
            // group 0: zeros; group 1: a NaN on rank 1 only; group 2: 1e30 from 1000 blocks (no overflow).
            var zeros: [Float] = [0, 0], bad: [Float] = [1, comm.rank == 1 ? .nan : 2]
            var big = [Float](repeating: 1e30, count: 500)
            var res = [Float](repeating: -1, count: 3)
            try zeros.withUnsafeMutableBufferPointer { z in try bad.withUnsafeMutableBufferPointer { b in
                try big.withUnsafeMutableBufferPointer { g in try res.withUnsafeMutableBufferPointer { r in
                    let groups = [
                        ExactSum.Group(partials: UnsafePointer(z.baseAddress!), blocks: 2, count: 1,
                                       result: r.baseAddress!),
                        ExactSum.Group(partials: UnsafePointer(b.baseAddress!), blocks: 2, count: 1,
                                       result: r.baseAddress! + 1),
                        ExactSum.Group(partials: UnsafePointer(g.baseAddress!), blocks: 500, count: 1,
                                       result: r.baseAddress! + 2)]
                    try ExactSum.reduce(groups, globalBlocks: 1000, comm: comm)
                } }
            } }
            return res
        }
        for r in out {
            XCTAssertEqual(r[0], 0)
            XCTAssertTrue(r[1].isNaN, "a non-finite partial on one rank makes the sum NaN on every rank")
            XCTAssertEqual(Double(r[2]), 1e33, accuracy: 1e33 * 1e-6)
        }
        XCTAssertEqual(out[0].map(\.bitPattern), out[1].map(\.bitPattern))
        // s = 62 − h − (e + 1): m = 1 (e = 0) with 1000 blocks (h = 10) → 51.
        XCTAssertEqual(ExactSum.scaleExponent(maxMagnitude: 1, globalBlocks: 1000), 51)
        XCTAssertNil(ExactSum.scaleExponent(maxMagnitude: 0, globalBlocks: 4))
        XCTAssertNil(ExactSum.scaleExponent(maxMagnitude: .infinity, globalBlocks: 4))
    }

    /// `scatterGather` (an Int64 reduce-scatter, each rank converting its share, and an all-gather of the
    /// results) gives the all-reduce's bits on every rank: groups of 1 to 300 values with their own scales,
    /// a zero group (no scale), a group with a NaN on the last rank, 1 to 5 ranks (with 5 ranks and the 3
    /// values of the small case two ranks own no sum), Float and Double.
    func testScatterGatherGivesTheAllReducesBits() throws {
        func run<T: BinaryFloatingPoint & CommScalar>(_: T.Type, counts: [Int], ranks: Int,
                                                      scatterGather: Bool) throws -> [[T]] {
            try InProcessWorld(size: ranks).run { comm -> [T] in
                try ExactSumCase<T>(counts: counts, blocks: 3, rank: comm.rank, ranks: comm.size, seed: 23)
                    .sums(comm: comm, scatterGather: scatterGather)
            }
        }
        for counts in [[1, 1, 1], [300, 7, 1, 52, 1]] {
            for ranks in 1...5 {
                let float = try run(Float.self, counts: counts, ranks: ranks, scatterGather: false)
                let floatSG = try run(Float.self, counts: counts, ranks: ranks, scatterGather: true)
                let double = try run(Double.self, counts: counts, ranks: ranks, scatterGather: false)
                let doubleSG = try run(Double.self, counts: counts, ranks: ranks, scatterGather: true)
                for r in 0..<ranks {
                    let label = "\(counts), rank \(r) of \(ranks)"
                    XCTAssertEqual(floatSG[r].map(\.bitPattern), float[0].map(\.bitPattern), label)
                    XCTAssertEqual(doubleSG[r].map(\.bitPattern), double[0].map(\.bitPattern), label)
                }
                XCTAssertEqual(float[0][counts[0]], 0, "a group of zeros sums to zero")
                XCTAssertTrue(float[0].last!.isNaN, "a NaN partial makes its group NaN")
            }
        }
    }

    func testScalarSum() throws {
        let terms = (0..<30).map { 0.1 * Double($0 + 1) }
        let sums = try InProcessWorld(size: 3).run { comm in
            try ExactSum.sum(Array(terms[(comm.rank * 10)..<((comm.rank + 1) * 10)]), globalBlocks: 30, comm: comm)
        }
        let alone = try InProcessWorld(size: 1).run { try ExactSum.sum(terms.reversed(), globalBlocks: 30, comm: $0) }
        XCTAssertEqual(sums, [alone[0], alone[0], alone[0]])
        XCTAssertEqual(alone[0], 46.5, accuracy: 1e-12)
    }

    /// The exact reduce-scatter of a gathered matrix's block partials (deterministic training's gather
    /// backward): 6 blocks of a [7, 11] matrix (11 columns: the 8-lane maximum and its tail) spread over
    /// 1–3 ranks in every contiguous way the plan allows give each rank its rows with the same bits, equal
    /// to `reduce` with one group per row; a row with a NaN partial is NaN, an all-zero row 0.
    func testReduceScatterRowsIsTheSameAtAnyWorldSize() throws {
        let rows = 7, width = 11, blocks = 6
        var rng = KDRandom(keys: 31)
        var partials: [Float] = (0..<(blocks * rows * width)).map { _ in Float(rng.nextNormal()) * 3 }
        for b in 0..<blocks { for j in 0..<width { partials[(b * rows + 5) * width + j] = 0 } }   // row 5: zeros
        partials[(2 * rows + 6) * width + 9] = .nan                                              // row 6: NaN
        var expected = [Float](repeating: 0, count: rows * width)
        try partials.withUnsafeBufferPointer { p in
            try expected.withUnsafeMutableBufferPointer { e in
                let groups = (0..<rows).map { i in
                    ExactSum.Group(partials: p.baseAddress! + i * width, blocks: blocks, count: width,
                                   blockStride: rows * width, result: e.baseAddress! + i * width)
                }
                try ExactSum.reduce(groups, globalBlocks: blocks, comm: nil)
            }
        }
        XCTAssertTrue(expected[(5 * width)..<(6 * width)].allSatisfy { $0 == 0 })
        XCTAssertTrue(expected[(6 * width)..<(7 * width)].allSatisfy { $0.isNaN })
        let everyPartial = partials
        for ranks in 1...3 {
            let counts = (0..<ranks).map { BatchPlan.share(rank: $0, worldSize: ranks, batch: rows).count }
            let got = try InProcessWorld(size: ranks).run { comm -> [Float] in
                let mine = BatchPlan.share(rank: comm.rank, worldSize: ranks, batch: blocks)
                var out = [Float](repeating: 0, count: counts[comm.rank] * width)
                let first = mine.lowerBound * rows * width
                try everyPartial.withUnsafeBufferPointer { p in
                    try out.withUnsafeMutableBufferPointer { o in
                        try ExactSum.reduceScatterRows(p.baseAddress! + first,
                                                       blocks: mine.count, rowSize: width, rowCounts: counts,
                                                       globalBlocks: blocks, comm: comm, into: o.baseAddress!)
                    }
                }
                return out
            }.flatMap { $0 }
            XCTAssertEqual(got.map { $0.bitPattern }, expected.map { $0.bitPattern }, "\(ranks) ranks")
        }
    }

    /// The row-entry form (`reduceScatterRows(entries:…)`, what a gathered tensor's `LossBlockPartials`
    /// give): a block that leaves rows out, as zero, gives the dense form's bits, on 1 and 2 ranks.
    func testReduceScatterRowsOfEntriesLeavesZeroRowsOut() throws {
        let rows = 6, width = 5, blocks = 4
        var rng = KDRandom(keys: 37)
        var partials: [Float] = (0..<(blocks * rows * width)).map { _ in Float(rng.nextNormal()) }
        // Block b wrote rows b and b + 1 only (a loss block's own rows), zeros elsewhere.
        for b in 0..<blocks { for i in 0..<rows where i != b && i != b + 1 {
            for j in 0..<width { partials[(b * rows + i) * width + j] = 0 }
        } }
        let everyPartial = partials
        for ranks in 1...2 {
            let counts = (0..<ranks).map { BatchPlan.share(rank: $0, worldSize: ranks, batch: rows).count }
            let got = try InProcessWorld(size: ranks).run { comm -> [[UInt32]] in
                let mine = BatchPlan.share(rank: comm.rank, worldSize: ranks, batch: blocks)
                var dense = [Float](repeating: 0, count: counts[comm.rank] * width), sparse = dense
                try everyPartial.withUnsafeBufferPointer { p in
                    let first = p.baseAddress! + mine.lowerBound * rows * width
                    try dense.withUnsafeMutableBufferPointer { o in
                        try ExactSum.reduceScatterRows(first, blocks: mine.count, rowSize: width, rowCounts: counts,
                                                       globalBlocks: blocks, comm: comm, into: o.baseAddress!)
                    }
                    let entries = mine.flatMap { b in
                        [b, b + 1].map { i in (row: i, values: p.baseAddress! + (b * rows + i) * width) }
                    }
                    try sparse.withUnsafeMutableBufferPointer { o in
                        try ExactSum.reduceScatterRows(entries: entries, rowSize: width, rowCounts: counts,
                                                       globalBlocks: blocks, comm: comm, into: o.baseAddress!)
                    }
                }
                return [dense.map(\.bitPattern), sparse.map(\.bitPattern)]
            }
            for (r, pair) in got.enumerated() { XCTAssertEqual(pair[1], pair[0], "rank \(r) of \(ranks)") }
            XCTAssertTrue(got.flatMap { $0[0] }.contains { $0 != 0 })
        }
    }

    /// The conversion's rounding equals the library's `.toNearestOrEven` for ties, signs, the 2^51 and 2^52
    /// boundaries and random magnitudes up to 2^62 (a wrong constant or threshold fails here).
    func testRoundedToEvenIsTheLibrarys() {
        var values: [Double] = [0, -0.0, 0.5, 1.5, 2.5, -2.5, -3.5, 0x1p51 - 0.5, -(0x1p51 - 0.5), 0x1p51 + 0.5,
                                -(0x1p51 + 1.5), 0x1p52 - 0.5, 0x1p52, 0x1p62, -0x1p62, 0.49999999999999994]
        var rng = KDRandom(keys: 77)
        for _ in 0..<100_000 {
            let e = Int(rng.next() % 63)
            values.append(Double(rng.nextNormal()) * Double(sign: .plus, exponent: e, significand: 1))
        }
        for v in values {
            XCTAssertEqual(ExactSum.roundedToEven(v).bitPattern, v.rounded(.toNearestOrEven).bitPattern, "\(v)")
        }
    }
}

private extension Array {
    func shuffledBy(seed: UInt64) -> [Element] {
        var rng = KDRandom(keys: seed)
        var a = self
        for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
        return a
    }
}
