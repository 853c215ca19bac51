import XCTest
@testable import KDTensor

/// The row kernels (`Kernels/RowKernels.swift`) against naive Float64 references, and their
/// gradients against central differences.
///
/// Tolerances. The kernels read Float32 inputs exactly (`Double(z)`) and accumulate in Float64, so
/// a Float64 output differs from the naive Float64 formula only by reassociation and the rounding of
/// `exp`/`log`: a few units of 2⁻⁵³ relative to the magnitudes involved (≤ 20 here), so 1e-12
/// absolute covers it with margin. Float32 outputs (gradients, normalised rows) carry one rounding
/// to Float32 of a Float64 value (relative 2⁻²⁴ ≈ 6e-8) plus, where noted, Float32 arithmetic.
final class RowKernelTests: XCTestCase {
    /// Naive `ln σ(z/T)` in Float64 (no max shift: the test rows are small, `|z/T| ≤ 10`).
    private func naiveLogSoftmax(_ z: [Float], invT: Double) -> [Double] {
        let x = z.map { Double($0) * invT }
        let lse = Foundation.log(x.reduce(0) { $0 + Foundation.exp($1) })
        return x.map { $0 - lse }
    }

    private func logSoftmax(_ z: [Float], invT: Double) -> [Double] {
        var out = [Double](repeating: .nan, count: z.count)
        z.withUnsafeBufferPointer { rowLogSoftmax($0.baseAddress!, count: z.count, invT: invT, into: &out) }
        return out
    }

    func testLogSoftmaxMatchesNaiveReference() {
        let z = randomTensor([11], seed: 1, std: 3).array
        for invT in [1.0, 0.25, 2.0] {
            let got = logSoftmax(z, invT: invT), want = naiveLogSoftmax(z, invT: invT)
            for j in 0..<z.count { XCTAssertEqual(got[j], want[j], accuracy: 1e-12, "invT \(invT), j \(j)") }
            // Σ σ = 1 to Float64 precision: c terms each rounded once.
            XCTAssertEqual(got.reduce(0) { $0 + Foundation.exp($1) }, 1, accuracy: 1e-14)
        }
        let (m, s) = z.withUnsafeBufferPointer { rowMaxExpSum($0.baseAddress!, count: z.count, invT: 1) }
        XCTAssertEqual(m, Double(z.max()!))
        XCTAssertEqual(1 / s, Foundation.exp(naiveLogSoftmax(z, invT: 1).max()!), accuracy: 1e-15)
    }

    func testLogSoftmaxStableAtLargeLogits() {
        // Logits 1e4 + k/8 are exact in Float32, so the row minus 1e4 is the same row shifted exactly;
        // the results may differ only by the rounding of `lse ≈ 1e4` in Float64 (ulp 1.8e-12), taken
        // twice (once in lse, once in the difference): 1e-11.
        let base: [Float] = [0, 0.125, -1, 2.5, 0.5]
        let big = base.map { $0 + 1e4 }, neg = base.map { $0 - 1e4 }
        let ref = logSoftmax(base, invT: 1)
        for row in [big, neg] {
            let got = logSoftmax(row, invT: 1)
            XCTAssertTrue(got.allSatisfy { $0.isFinite })
            for j in 0..<base.count { XCTAssertEqual(got[j], ref[j], accuracy: 1e-11) }
        }
    }

    func testKLDivergenceValueZeroProbabilityAndChaining() {
        let zp = randomTensor([7], seed: 2).array, zq = randomTensor([7], seed: 3).array
        let lp = logSoftmax(zp, invT: 0.5), lq = logSoftmax(zq, invT: 0.5)
        var naive = 0.0
        for j in 0..<7 { let p = Foundation.exp(lp[j]); naive += p * Foundation.log(p / Foundation.exp(lq[j])) }
        XCTAssertEqual(rowKLDivergence(logP: lp, logQ: lq, count: 7), naive, accuracy: 1e-12)
        XCTAssertEqual(rowKLDivergence(logP: lp, logQ: lp, count: 7), 0)
        // p_j = 0 (log p = −∞) contributes 0, not NaN: KL([1, 0] ‖ [½, ½]) = ln 2.
        let hard: [Double] = [0, -.infinity], half: [Double] = [-Foundation.log(2.0), -Foundation.log(2.0)]
        XCTAssertEqual(rowKLDivergence(logP: hard, logQ: half, count: 2), Foundation.log(2.0), accuracy: 1e-15)
        // `adding:` continues a running sum: two rows chained = the two KLs added (reassociation only).
        let two = rowKLDivergence(logP: hard, logQ: half, count: 2,
                                  adding: rowKLDivergence(logP: lp, logQ: lq, count: 7))
        XCTAssertEqual(two, naive + Foundation.log(2.0), accuracy: 1e-12)
    }

    /// `T² KL(σ(t/T) ‖ σ(s/T))` as a function of the student logits `s`, in Float64 from Float32 inputs.
    private func distillation(_ s: [Float], _ t: [Float], invT: Double) -> Double {
        let lq = logSoftmax(s, invT: invT), lp = logSoftmax(t, invT: invT)
        return rowKLDivergence(logP: lp, logQ: lq, count: s.count) / (invT * invT)
    }

    func testKLGradientMatchesFiniteDifferences() {
        let s = randomTensor([6], seed: 4, std: 2).array, t = randomTensor([6], seed: 5, std: 2).array
        let invT = 0.25
        let lq = logSoftmax(s, invT: invT), lp = logSoftmax(t, invT: invT)
        // ∂(T² KL)/∂s = T (q − p): scale T.
        var g = [Float](repeating: 0, count: 6)
        rowKLGradient(logP: lp, logQ: lq, count: 6, scale: 1 / invT, into: &g, accumulate: false)
        for j in 0..<6 {
            // Central difference over the steps actually representable in Float32 (h ≈ 2⁻⁸): the
            // truncation error is h²/6 · |f'''| ≤ 1e-6 for these smooth functions (|f'''| ≲ 1 at
            // T = 4), the Float64 rounding of f is ~1e-16/h; the kernel's Float32 output adds 6e-8
            // relative. 1e-5 absolute bounds all three.
            var sp = s, sm = s
            sp[j] += 1.0 / 256; sm[j] -= 1.0 / 256
            let h = Double(sp[j]) - Double(sm[j])
            let fd = (distillation(sp, t, invT: invT) - distillation(sm, t, invT: invT)) / h
            XCTAssertEqual(Double(g[j]), fd, accuracy: 1e-5, "j \(j)")
        }
        // accumulate: true adds onto what is there.
        var acc = [Float](repeating: 1, count: 6)
        rowKLGradient(logP: lp, logQ: lq, count: 6, scale: 1 / invT, into: &acc, accumulate: true)
        for j in 0..<6 { XCTAssertEqual(acc[j], 1 + g[j]) }
    }

    func testNormalizeRowsAndZeroRow() {
        let x = randomTensor([3, 5], seed: 6, std: 4).array + [Float](repeating: 0, count: 5)
        var u = [Float](repeating: .nan, count: 20), norms = [Float](repeating: .nan, count: 4)
        x.withUnsafeBufferPointer { normalizeRows($0.baseAddress!, rows: 4, cols: 5, into: &u, norms: &norms) }
        for i in 0..<3 {
            let row = x[(i * 5)..<(i * 5 + 5)].map(Double.init)
            let norm = row.reduce(0) { $0 + $1 * $1 }.squareRoot()
            // One Float32 rounding of the norm (2⁻²⁴ relative) and one of each product `x · (1/r)`
            // with `1/r` rounded too: ≤ 3 · 2⁻²⁴ relative, 3e-7.
            XCTAssertEqual(Double(norms[i]), norm, accuracy: 3e-7 * norm)
            for c in 0..<5 { XCTAssertEqual(Double(u[i * 5 + c]), row[c] / norm, accuracy: 3e-7) }
        }
        // The zero row: norm 0, output 0 (the clamp ε keeps it finite).
        XCTAssertEqual(norms[3], 0)
        XCTAssertEqual(Array(u[15..<20]), [0, 0, 0, 0, 0])
        // In place (u = x) gives the same values.
        var inPlace = x, n2 = [Float](repeating: 0, count: 4)
        inPlace.withUnsafeMutableBufferPointer {
            normalizeRows($0.baseAddress!, rows: 4, cols: 5, into: $0.baseAddress!, norms: &n2)
        }
        XCTAssertEqual(inPlace, u)
        XCTAssertEqual(n2, norms)
    }

    func testNormalizeBackwardMatchesFiniteDifferences() {
        // f(v) = ⟨w, v / ‖v‖⟩ in Float64; the kernel maps ∂f/∂u = w to ∂f/∂v.
        let v = randomTensor([6], seed: 7, std: 2).array.map(Double.init)
        let w = randomTensor([6], seed: 8).array
        func f(_ v: [Double]) -> Double {
            let r = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            return zip(w, v).reduce(0) { $0 + Double($1.0) * $1.1 / r }
        }
        let vf = v.map { Float($0) }
        var u = [Float](repeating: 0, count: 6), norm = [Float](repeating: 0, count: 1)
        vf.withUnsafeBufferPointer { normalizeRows($0.baseAddress!, rows: 1, cols: 6, into: &u, norms: &norm) }
        var g = w
        normalizeBackward(&g, u: u, norm: norm[0], count: 6)
        let vd = vf.map(Double.init)
        for j in 0..<6 {
            // Pure Float64 central difference (h = 1e-5: truncation h²|f'''| ≈ 1e-10, rounding
            // 1e-16/h ≈ 1e-11); the kernel works in Float32 on u, g (≈ 1e-7 relative of |w|/‖v‖ ≤ 1): 1e-6.
            var p = vd, m = vd
            p[j] += 1e-5; m[j] -= 1e-5
            XCTAssertEqual(Double(g[j]), (f(p) - f(m)) / 2e-5, accuracy: 1e-6, "j \(j)")
        }
        // Below the floor the map is v/ε, linear: the gradient is g/ε.
        var gz: [Float] = [1, -2]
        normalizeBackward(&gz, u: [0, 0], norm: 0, count: 2)
        XCTAssertEqual(gz, [1 / rowNormEpsilon, -2 / rowNormEpsilon])
    }
}
