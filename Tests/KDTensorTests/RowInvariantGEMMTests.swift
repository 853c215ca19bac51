import XCTest
@testable import KDTensor

/// `RowInvariantGEMM`: the product (against a Double reference) and its promise — a row's bits do not
/// depend on the call's row count, the row's position or its neighbours (exact equality, no tolerance).
final class RowInvariantGEMMTests: XCTestCase {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var rng = KDRandom(keys: seed, 77)
        return (0..<n).map { _ in rng.nextNormal() }
    }

    /// Shapes crossing every edge: rows not a multiple of 6, columns not of 16, K across the kc chunk.
    let shapes = [(m: 13, k: 27, n: 16), (m: 64, k: 300, n: 33), (m: 7, k: 5, n: 3), (m: 100, k: 576, n: 64),
                  (m: 6, k: 1, n: 17)]

    func testMatchesADoubleReference() throws {
        for (s, (m, k, n)) in shapes.enumerated() {
            let a = random(m * k, seed: UInt64(s)), b = random(k * n, seed: UInt64(s) + 100)
            let c0 = random(m * n, seed: UInt64(s) + 200)
            for accumulate in [false, true] {
                var c = c0
                a.withUnsafeBufferPointer { ap in
                    let packed = RowInvariantGEMM.Packed(b, k: k, n: n, ldb: n)
                    c.withUnsafeMutableBufferPointer {
                        RowInvariantGEMM.multiply(m: m, a: ap.baseAddress!, lda: k, b: packed, c: $0.baseAddress!,
                                                  ldc: n, accumulate: accumulate)
                    }
                }
                for i in 0..<m {
                    for j in 0..<n {
                        var ref = accumulate ? Double(c0[i * n + j]) : 0, mag = abs(ref)
                        for kk in 0..<k {
                            ref += Double(a[i * k + kk]) * Double(b[kk * n + j])
                            mag += abs(Double(a[i * k + kk]) * Double(b[kk * n + j]))
                        }
                        // A chain of k + 1 float32 roundings: |error| ≤ (k + 1)·u·Σ|terms|, u = 2⁻²⁴.
                        let bound = Double(k + 1) * 0x1p-24 * mag + 1e-30
                        XCTAssertLessThanOrEqual(abs(Double(c[i * n + j]) - ref), bound,
                                                 "m\(m) k\(k) n\(n) [\(i), \(j)] accumulate \(accumulate)")
                    }
                }
            }
        }
    }

    func testARowsBitsDoNotDependOnItsCall() throws {
        for (s, (m, k, n)) in shapes.enumerated() {
            let a = random(m * k, seed: UInt64(s) + 300), b = random(k * n, seed: UInt64(s) + 400)
            let packed = RowInvariantGEMM.Packed(b, k: k, n: n, ldb: n)
            func product(_ rows: [Int]) -> [[Float]] {
                var sub = [Float](); for r in rows { sub += a[(r * k)..<((r + 1) * k)] }
                var c = [Float](repeating: 0, count: rows.count * n)
                sub.withUnsafeBufferPointer { ap in
                    c.withUnsafeMutableBufferPointer {
                        RowInvariantGEMM.multiply(m: rows.count, a: ap.baseAddress!, lda: k, b: packed,
                                                  c: $0.baseAddress!, ldc: n, accumulate: false)
                    }
                }
                return rows.indices.map { Array(c[($0 * n)..<(($0 + 1) * n)]) }
            }
            let all = product(Array(0..<m))
            var rng = KDRandom(keys: UInt64(s), 5)
            let perm = rng.permutation(m)
            for (j, row) in product(perm).enumerated() { XCTAssertEqual(row, all[perm[j]], "permuted, shape \(s)") }
            for r in [0, m / 2, m - 1] {
                XCTAssertEqual(product([r])[0], all[r], "row \(r) alone, shape \(s)")
                XCTAssertEqual(product([r, r, r, r, r, r, r])[6], all[r], "row \(r) seventh, shape \(s)")
            }
        }
    }

    func testTheAVX512BlockGivesTheSameBits() {
        // The 12 × 32 AVX-512 block runs each element's chain as the 6 × 16 block does, 16 lanes wide: the
        // same bits, on shapes with rows and columns left over (m not a multiple of 12, n of 32, an odd
        // panel), K across the kc chunk, accumulating or not. Where the CPU lacks AVX-512 (or the build has
        // no AVX-512 kernels) the block is never chosen.
        guard CPUFeatures.hasAVX512 else {
            XCTAssertFalse(RowInvariantGEMM.wideKernel)
            return
        }
        let saved = RowInvariantGEMM.wideKernel
        defer { RowInvariantGEMM.wideKernel = saved }
        for (s, (m, k, n)) in (shapes + [(m: 100, k: 600, n: 80), (m: 24, k: 64, n: 64), (m: 12, k: 3, n: 32)])
            .enumerated() {
            let a = random(m * k, seed: UInt64(s) + 300), b = random(k * n, seed: UInt64(s) + 400)
            let c0 = random(m * n, seed: UInt64(s) + 500)
            let packed = RowInvariantGEMM.Packed(b, k: k, n: n, ldb: n)
            for accumulate in [false, true] {
                var results: [[Float]] = []
                for wide in [false, true] {
                    RowInvariantGEMM.wideKernel = wide
                    var c = c0
                    c.withUnsafeMutableBufferPointer {
                        RowInvariantGEMM.multiply(m: m, a: a, lda: k, b: packed, c: $0.baseAddress!, ldc: n,
                                                  accumulate: accumulate)
                    }
                    results.append(c)
                }
                XCTAssertEqual(results[1], results[0], "m\(m) k\(k) n\(n) accumulate \(accumulate)")
            }
        }
    }

    func testTransposedPackingIsTheSameB() {
        let (k, n) = (37, 21)
        let b = random(k * n, seed: 9)
        var bt = [Float](repeating: 0, count: n * k)
        for kk in 0..<k { for j in 0..<n { bt[j * k + kk] = b[kk * n + j] } }
        let p1 = RowInvariantGEMM.Packed(b, k: k, n: n, ldb: n)
        let p2 = RowInvariantGEMM.Packed(bt, k: k, n: n, ldb: k, transposed: true)
        XCTAssertEqual(p1.panels.array, p2.panels.array)
    }
}
