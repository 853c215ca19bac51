import XCTest
@testable import KDTensor

/// `weightGradientGEMM`: `C = Aᵀ·B (+ C)` against a Double reference, with the AVX-512 blocks where the CPU has
/// them and with `cblas_sgemm` alone, on shapes whose rows (not a multiple of 12, as the weight gradients of 64,
/// 128 and 256 channels) and columns (not of 32) are left over, K across the `kc` chunk, strided operands.
final class WeightGradientGEMMTests: XCTestCase {
    func random(_ n: Int, seed: UInt64) -> [Float] {
        var rng = KDRandom(keys: seed, 91)
        return (0..<n).map { _ in rng.nextNormal() }
    }

    func testMatchesADoubleReference() {
        let saved = RowInvariantGEMM.wideKernel
        defer { RowInvariantGEMM.wideKernel = saved }
        let shapes = [(m: 13, n: 33, k: 300), (m: 24, n: 64, k: 600), (m: 5, n: 40, k: 10), (m: 12, n: 32, k: 257),
                      (m: 36, n: 96, k: 1), (m: 64, n: 64, k: 300), (m: 8, n: 32, k: 5), (m: 130, n: 64, k: 270)]
        for wide in CPUFeatures.hasAVX512 ? [false, true] : [false] {
            RowInvariantGEMM.wideKernel = wide
            for (s, (m, n, k)) in shapes.enumerated() {
                let lda = m + 3, ldb = n + 5, ldc = n + 2
                let a = random(k * lda, seed: UInt64(s)), b = random(k * ldb, seed: UInt64(s) + 50)
                let c0 = random(m * ldc, seed: UInt64(s) + 100)
                for beta: Float in [0, 1] {
                    var c = c0
                    c.withUnsafeMutableBufferPointer {
                        weightGradientGEMM(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta,
                                           c: $0.baseAddress!, ldc: ldc)
                    }
                    for i in 0..<m { for j in 0..<n {
                        var ref = Double(beta) * Double(c0[i * ldc + j]), mag = abs(ref)
                        for kk in 0..<k {
                            let t = Double(a[kk * lda + i]) * Double(b[kk * ldb + j])
                            ref += t; mag += abs(t)
                        }
                        // Any order of k + 1 float32 additions: |error| ≤ (k + 1)·u·Σ|terms|, u = 2⁻²⁴.
                        let bound = Double(k + 1) * 0x1p-24 * mag + 1e-30
                        XCTAssertLessThanOrEqual(abs(Double(c[i * ldc + j]) - ref), bound,
                                                 "wide \(wide) m\(m) n\(n) k\(k) [\(i), \(j)] β \(beta)")
                    } }
                    // Outside the m × n block C is untouched.
                    for i in 0..<m { for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], c0[i * ldc + j]) } }
                }
            }
        }
    }
}
