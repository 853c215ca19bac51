import XCTest
@testable import KDTensor

final class EigenTests: XCTestCase {
    /// Checks A·v_j = λ_j v_j, orthonormality and ascending order (vectors: eigenvector j at j·n..<(j+1)·n).
    private func verify(_ a: [Double], n: Int, values: [Double], vectors: [Double], tol: Double,
                        file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(values, values.sorted(), "ascending", file: file, line: line)
        for j in 0..<n {
            for i in 0..<n {
                var av = 0.0
                for k in 0..<n { av += a[i * n + k] * vectors[j * n + k] }
                XCTAssertEqual(av, values[j] * vectors[j * n + i], accuracy: tol, "A v = λ v (\(i), \(j))",
                               file: file, line: line)
            }
            for l in 0..<n {
                var dot = 0.0
                for k in 0..<n { dot += vectors[j * n + k] * vectors[l * n + k] }
                XCTAssertEqual(dot, j == l ? 1 : 0, accuracy: tol, "orthonormal (\(j), \(l))", file: file, line: line)
            }
        }
    }

    func testKnown2x2() throws {
        let a: [Double] = [2, 1, 1, 2]
        let (w, v) = try symmetricEigen(a, n: 2)
        XCTAssertEqual(w[0], 1, accuracy: 1e-12); XCTAssertEqual(w[1], 3, accuracy: 1e-12)
        let r = 1 / 2.0.squareRoot()
        XCTAssertEqual(Swift.abs(v[0]), r, accuracy: 1e-12)   // ±[1, −1]/√2
        XCTAssertEqual(v[0], -v[1], accuracy: 1e-12)
        XCTAssertEqual(Swift.abs(v[2]), r, accuracy: 1e-12)   // ±[1, 1]/√2
        XCTAssertEqual(v[2], v[3], accuracy: 1e-12)
        verify(a, n: 2, values: w, vectors: v, tol: 1e-12)
    }

    func testKnown3x3() throws {
        // Block diag(2, [[3, 4], [4, 9]]): eigenvalues 1, 2, 11.
        let a: [Double] = [2, 0, 0, 0, 3, 4, 0, 4, 9]
        let (w, v) = try symmetricEigen(a, n: 3)
        XCTAssertEqual(w[0], 1, accuracy: 1e-12)
        XCTAssertEqual(w[1], 2, accuracy: 1e-12)
        XCTAssertEqual(w[2], 11, accuracy: 1e-12)
        XCTAssertEqual(Swift.abs(v[3]), 1, accuracy: 1e-12)   // λ = 2 ↔ e₀
        verify(a, n: 3, values: w, vectors: v, tol: 1e-12)
    }

    func testRandomSymmetricAndFloatVariant() throws {
        try checkRandom(n: 7, seed: 95)
        try checkRandom(n: 40, seed: 96)   // above LAPACK's SMLSIZ = 25: the divide-and-conquer path
    }

    private func checkRandom(n: Int, seed: UInt64) throws {
        var rng = KDRandom(keys: seed)
        var a = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for j in i..<n { let v = rng.nextDouble() * 2 - 1; a[i * n + j] = v; a[j * n + i] = v } }
        let (w, v) = try symmetricEigen(a, n: n)
        verify(a, n: n, values: w, vectors: v, tol: 1e-9)
        let (wf, vf) = try symmetricEigen(a.map { Float($0) }, n: n)
        verify(a, n: n, values: wf.map(Double.init), vectors: vf.map(Double.init), tol: 1e-3)
        for j in 0..<n { XCTAssertEqual(Double(wf[j]), w[j], accuracy: 1e-4) }
    }

    func testErrors() {
        assertThrowsMessage("symmetricEigen: needs n² = 3² values, got 4",
                            try symmetricEigen([Double](repeating: 0, count: 4), n: 3))
        assertThrowsMessage("symmetricEigen: matrix (n = 2) has non-finite entries",
                            try symmetricEigen([1, .nan, .nan, 1] as [Double], n: 2))
        XCTAssertEqual(try symmetricEigen([Double](), n: 0).values, [])
    }
}
