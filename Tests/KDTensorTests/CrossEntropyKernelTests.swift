import XCTest
@testable import KDTensor

/// `rowCrossEntropy`, `rowLabelRank` and `rowArgmax` (`Kernels/CrossEntropyKernels.swift`) against
/// naive references.
final class CrossEntropyKernelTests: XCTestCase {
    private func crossEntropy(_ z: [Float], _ y: Int, scale: Double = 0, grad: inout [Float]) -> Double {
        var scratch = [Double](repeating: 0, count: z.count)
        return z.withUnsafeBufferPointer { zp in
            grad.withUnsafeMutableBufferPointer { gp in
                rowCrossEntropy(zp.baseAddress!, count: z.count, label: y, scale: scale,
                                grad: gp.isEmpty ? nil : gp.baseAddress!, scratch: &scratch)
            }
        }
    }

    func testValuesAgainstNaiveFloat64() {
        // ℓ = ln Σ e^{z} − z_y in Float64 from the Float32 inputs: the kernel differs by reassociation
        // and exp/log rounding, a few ulps of the magnitudes (≤ 10): 1e-12.
        let z = randomTensor([9], seed: 11, std: 2).array
        var none: [Float] = []
        for y in [0, 4, 8] {
            let naive = Foundation.log(z.reduce(0) { $0 + Foundation.exp(Double($1)) }) - Double(z[y])
            XCTAssertEqual(crossEntropy(z, y, grad: &none), naive, accuracy: 1e-12)
        }
        // Uniform row: ln C exactly up to log's rounding.
        XCTAssertEqual(crossEntropy([Float](repeating: 3, count: 4), 2, grad: &none), Foundation.log(4.0),
                       accuracy: 1e-15)
        // Logits ±1e4 (exact in Float32) stay finite: margin 1e4 on the wrong class costs 1e4.
        XCTAssertEqual(crossEntropy([1e4, 0], 1, grad: &none), 1e4, accuracy: 1e-9)
        XCTAssertEqual(crossEntropy([-1e4, -1e4], 0, grad: &none), Foundation.log(2.0), accuracy: 1e-12)
    }

    func testGradientMatchesFiniteDifferencesAndAccumulates() {
        let z = randomTensor([7], seed: 12, std: 2).array
        let y = 3, scale = 0.5
        var g = [Float](repeating: 0.25, count: 7)
        _ = crossEntropy(z, y, scale: scale, grad: &g)
        var none: [Float] = []
        for j in 0..<7 {
            // Central difference over the Float32-representable step (half-step 2⁻⁸): truncation
            // h²/6 · |ℓ'''| ≤ 1e-6 (|ℓ'''| ≤ 1 for log-sum-exp), Float64 rounding of ℓ ~1e-16/h;
            // the kernel's Float32 output adds 6e-8 relative: 1e-5. The 0.25 already in `g` shows it adds.
            var zp = z, zm = z
            zp[j] += 1.0 / 256; zm[j] -= 1.0 / 256
            let h = Double(zp[j]) - Double(zm[j])
            let fd = (crossEntropy(zp, y, grad: &none) - crossEntropy(zm, y, grad: &none)) / h
            XCTAssertEqual(Double(g[j]) - 0.25, scale * fd, accuracy: 1e-5, "j \(j)")
        }
    }

    func testLabelRankAndTopK() {
        // Ties go to the lower index. In [1, 5, 5, 0, 5]: label 0 has classes 1, 2, 4 ahead (rank 3),
        // label 1 none, label 2 class 1 (equal, lower index), label 3 all four, label 4 classes 1 and 2.
        let z: [Float] = [1, 5, 5, 0, 5]
        let rank = { (y: Int) in z.withUnsafeBufferPointer { rowLabelRank($0.baseAddress!, count: 5, label: y) } }
        XCTAssertEqual([0, 1, 2, 3, 4].map(rank), [3, 0, 1, 4, 2])
        // Against a stable sort by (−z, index) on random rows.
        let r = randomTensor([20], seed: 13).array
        let order = (0..<20).sorted { r[$0] != r[$1] ? r[$0] > r[$1] : $0 < $1 }
        for y in 0..<20 {
            let got = r.withUnsafeBufferPointer { rowLabelRank($0.baseAddress!, count: 20, label: y) }
            XCTAssertEqual(got, order.firstIndex(of: y)!)
        }
        XCTAssertEqual(z.withUnsafeBufferPointer { rowArgmax($0.baseAddress!, count: 5) }, 1)
        XCTAssertEqual(r.withUnsafeBufferPointer { rowArgmax($0.baseAddress!, count: 20) }, order[0])
    }
}
