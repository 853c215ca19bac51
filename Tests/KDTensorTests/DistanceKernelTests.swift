import XCTest
@testable import KDTensor

/// The distance kernels (`Kernels/DistanceKernels.swift`) against a naive Float64 reference
/// `Σ_c (x_ic − x_jc)²`, and the backward against the analytic gradient and central differences.
///
/// Tolerance of an entry. The expanded form `‖x_i‖² + ‖x_j‖² − 2⟨x_i, x_j⟩` takes the Gram from a
/// BLAS product whose `d`-term dot products carry at most `d · u · Σ_c |x_ic x_jc| ≤ d · u · (s_i + s_j)/2`
/// absolute error (`u` the unit roundoff of that precision, `s_i = ‖x_i‖²`, in any summation order);
/// doubled by the factor 2, plus the final rounding of `q` itself: `|Δq| ≤ d·u·(s_i + s_j) + u·q`.
/// Entries that cancel below `10⁻³(s_i + s_j)` are recomputed directly and are then accurate to
/// `d · u · q`. The tests assert this bound with `u = 2⁻²⁴` (Float32 Gram) or `2⁻⁵³` (Float64).
final class DistanceKernelTests: XCTestCase {
    private let n = 9, d = 6

    /// Rows with row 4 = row 1 (a duplicate: the distance must be exactly 0) and row 7 = row 2 + 1e-3
    /// (a near pair, where the expanded form cancels).
    private func rows() -> [Float] {
        var x = randomTensor([n, d], seed: 21, std: 2).array
        for c in 0..<d { x[4 * d + c] = x[1 * d + c]; x[7 * d + c] = x[2 * d + c] + 1e-3 }
        return x
    }

    private func naive(_ x: [Float]) -> [Double] {
        var q = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in 0..<n {
            var s = 0.0
            for c in 0..<d { let t = Double(x[i * d + c]) - Double(x[j * d + c]); s += t * t }
            q[i * n + j] = s
        } }
        return q
    }

    private func check(_ got: [Double], _ x: [Float], unit u: Double, _ label: String) {
        let want = naive(x)
        let sq = (0..<n).map { i in (0..<d).reduce(0.0) { $0 + Double(x[i * d + $1]) * Double(x[i * d + $1]) } }
        for i in 0..<n {
            XCTAssertEqual(got[i * n + i], 0, "\(label) diagonal \(i)")
            for j in 0..<n where i != j {
                let bound = Double(d) * u * (sq[i] + sq[j]) + u * want[i * n + j]
                XCTAssertEqual(got[i * n + j], want[i * n + j], accuracy: bound, "\(label) (\(i), \(j))")
                XCTAssertEqual(got[i * n + j], got[j * n + i], "\(label) symmetry (\(i), \(j))")
            }
        }
        XCTAssertEqual(got[1 * n + 4], 0, "\(label): duplicated rows give exactly 0")
        // The near pair went through the direct formula: relative accuracy, not the Gram bound.
        XCTAssertEqual(got[2 * n + 7], want[2 * n + 7], accuracy: Double(d) * u * want[2 * n + 7] * 4, label)
    }

    func testFloat32SquaredDistances() {
        let x = rows()
        var q = [Float](repeating: .nan, count: n * n)
        x.withUnsafeBufferPointer { squaredDistances($0.baseAddress!, n: n, d: d, into: &q) }
        // The Float32 output adds one rounding (2⁻²⁴ relative), inside the `u·q` term.
        check(q.map(Double.init), x, unit: 0x1p-24, "float32")
    }

    func testFloat64SquaredDistancesAndGram() {
        let x = rows()
        let q = x.withUnsafeBufferPointer { squaredDistancesDouble($0.baseAddress!, n: n, d: d) }
        XCTAssertEqual(q.count, n * n)
        check(Array(UnsafeBufferPointer(start: q.ptr, count: n * n)), x, unit: 0x1p-53, "float64")
        // The Gram itself: G_ij = ⟨x_i, x_j⟩ to d·2⁻⁵³·‖x_i‖‖x_j‖, symmetric exactly (mirrored).
        let xd = x.map(Double.init)
        var g = [Double](repeating: .nan, count: n * n)
        symmetricGramDouble(xd, n: n, d: d, into: &g)
        for i in 0..<n { for j in 0..<n {
            var dot = 0.0, ni = 0.0, nj = 0.0
            for c in 0..<d {
                dot += xd[i * d + c] * xd[j * d + c]
                ni += xd[i * d + c] * xd[i * d + c]
                nj += xd[j * d + c] * xd[j * d + c]
            }
            XCTAssertEqual(g[i * n + j], dot, accuracy: 2 * Double(d) * 0x1p-53 * (ni * nj).squareRoot())
            XCTAssertEqual(g[i * n + j], g[j * n + i])
        } }
        // Empty and zero-width inputs give zeros, not garbage.
        let z = [Float](repeating: 1, count: 3).withUnsafeBufferPointer {
            squaredDistancesDouble($0.baseAddress!, n: 3, d: 0)
        }
        XCTAssertEqual(Array(UnsafeBufferPointer(start: z.ptr, count: 9)), [Double](repeating: 0, count: 9))
    }

    func testBackwardMatchesAnalyticGradientAndFiniteDifferences() {
        let x = rows()
        let gMat = randomTensor([n, n], seed: 22).array
        // f(x) = Σ_ij G_ij ‖x_i − x_j‖²; ∂f/∂x_i = 2 Σ_j (G_ij + G_ji)(x_i − x_j).
        func f(_ x: [Double]) -> Double {
            var s = 0.0
            for i in 0..<n { for j in 0..<n {
                var q = 0.0
                for c in 0..<d { let t = x[i * d + c] - x[j * d + c]; q += t * t }
                s += Double(gMat[i * n + j]) * q
            } }
            return s
        }
        var gq = gMat, gx = [Float](repeating: 0.5, count: n * d)
        x.withUnsafeBufferPointer { squaredDistancesBackward(&gq, x: $0.baseAddress!, n: n, d: d, into: &gx) }
        // gq now holds S = G + Gᵀ.
        for i in 0..<n { for j in 0..<n { XCTAssertEqual(gq[i * n + j], gMat[i * n + j] + gMat[j * n + i]) } }
        let xd = x.map(Double.init)
        for i in 0..<n { for c in 0..<d {
            var ref = 0.0, mag = 0.0
            for j in 0..<n {
                let s = 2 * Double(gMat[i * n + j] + gMat[j * n + i])
                ref += s * (xd[i * d + c] - xd[j * d + c])
                mag += Swift.abs(s) * (Swift.abs(xd[i * d + c]) + Swift.abs(xd[j * d + c]))
            }
            // The kernel forms rowsum(S)·x_i − (S·x)_i in Float32 (the sgemm and the products): each of
            // the two is a sum of ≤ n + 1 rounded terms bounded by `mag`, so the error is at most
            // (n + 2)·2⁻²⁴·mag (the γ bound), plus the rounding of the 0.5 already in `gx`.
            let tol = Double(n + 2) * 0x1p-24 * mag + 0x1p-24
            XCTAssertEqual(Double(gx[i * d + c]) - 0.5, ref, accuracy: tol, "analytic (\(i), \(c))")
            // f is quadratic in x, so the Float64 central difference has no truncation error, only
            // rounding (|f| ≲ 1e4 · 2⁻⁵³ / h ≈ 1e-8 with h = 1e-4).
            var p = xd, m = xd
            p[i * d + c] += 1e-4; m[i * d + c] -= 1e-4
            XCTAssertEqual(Double(gx[i * d + c]) - 0.5, (f(p) - f(m)) / 2e-4, accuracy: tol + 1e-7, "fd (\(i), \(c))")
        } }
    }
}

extension DistanceKernelTests {
    /// The symmetric rows' backward: for `G = Gᵀ`, the rows `rows` of the gradient of `Σ_ij G_ij q_ij` come
    /// from those rows of `G` alone. Two row ranges together give `squaredDistancesBackward`'s gradient,
    /// each range only its own rows; both are Float32 sums of ≤ n + 1 terms, so they agree within
    /// the (n + 2)·2⁻²⁴·magnitude bound of the test above, twice.
    func testSymmetricRowsBackwardIsTheWholeGradientOfItsRows() {
        let x = rows()
        let a = randomTensor([n, n], seed: 23).array
        let g = (0..<(n * n)).map { k in a[k] + a[(k % n) * n + k / n] }   // symmetric
        var gq = g, whole = [Float](repeating: 0, count: n * d)
        x.withUnsafeBufferPointer { squaredDistancesBackward(&gq, x: $0.baseAddress!, n: n, d: d, into: &whole) }
        let split = n / 2
        for rows in [0..<split, split..<n] {
            var part = [Float](repeating: 0, count: rows.count * d)
            let block = Array(g[(rows.lowerBound * n)..<(rows.upperBound * n)])
            x.withUnsafeBufferPointer {
                symmetricSquaredDistanceRowsBackward(block, x: $0.baseAddress!, n: n, d: d, rows: rows, into: &part)
            }
            for (r, i) in rows.enumerated() { for c in 0..<d {
                var mag = 0.0
                for j in 0..<n {
                    let xs = Double(Swift.abs(x[i * d + c]) + Swift.abs(x[j * d + c]))
                    mag += 4 * Double(Swift.abs(g[i * n + j])) * xs
                }
                let tol = Float(2 * Double(n + 2) * 0x1p-24 * mag) + 1e-6
                XCTAssertEqual(part[r * d + c], whole[i * d + c], accuracy: tol, "row \(i), column \(c)")
            } }
        }
    }

    /// Distances to the first `p` rows only (`columns: p`): the same entries as the whole matrix's first
    /// `p` columns, to the kernel's Float64 bound (the first `p` rows' block symmetric exactly).
    func testFloat64SquaredDistancesToSomeColumns() {
        let x = rows(), p = 3
        let whole = x.withUnsafeBufferPointer { squaredDistancesDouble($0.baseAddress!, n: n, d: d) }
        let some = x.withUnsafeBufferPointer { squaredDistancesDouble($0.baseAddress!, n: n, d: d, columns: p) }
        XCTAssertEqual(some.count, n * p)
        for i in 0..<n { for j in 0..<p {
            XCTAssertEqual(some.ptr[i * p + j], whole.ptr[i * n + j], accuracy: 1e-9 * max(1, whole.ptr[i * n + j]))
            if i < p { XCTAssertEqual(some.ptr[i * p + j], some.ptr[j * p + i]) }
        } }
        XCTAssertEqual((0..<p).map { some.ptr[$0 * p + $0] }, [Double](repeating: 0, count: p))
    }
}
