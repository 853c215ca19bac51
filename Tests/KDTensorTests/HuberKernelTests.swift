import XCTest
@testable import KDTensor

/// The Huber kernels (`Kernels/HuberKernels.swift`): values at and around the threshold, the
/// derivative against central differences, and the Float64/SIMD forms against each other.
final class HuberKernelTests: XCTestCase {
    func testValuesInsideAtAndOutsideTheThreshold() {
        // Exact in binary: ½·0.5² = 0.125; at |x| = δ both branches give ½δ²; 2·(3 − 1) = 4.
        XCTAssertEqual(huber(0.5, 1), 0.125)
        XCTAssertEqual(huber(-2, 2), 2)
        XCTAssertEqual(huber(-3, 2), 4)
        XCTAssertEqual(huber(3, 0.5), 1.375)
        XCTAssertEqual(huberDerivative(0.5, 1), 0.5)
        XCTAssertEqual(huberDerivative(-3, 2), -2)
        XCTAssertEqual(huberDerivative(3, 2), 2)
        XCTAssertEqual(huberDerivative(0, 1), 0)
    }

    func testDerivativeMatchesFiniteDifferences() {
        // Away from the kinks at ±δ the function is a polynomial of degree ≤ 2, so the central
        // difference is exact up to Float32 rounding of the two values (2 · 2⁻²⁴ · |f| / h ≈ 1e-4
        // for |f| ≤ 5, h = 2⁻⁶): 2e-4.
        for delta: Float in [0.5, 1, 2] {
            for x: Float in [-3.1, -0.7, -0.2, 0.1, 0.45, 1.3, 2.9] where Swift.abs(Swift.abs(x) - delta) > 0.05 {
                let h: Float = 1.0 / 64
                let fd = (huber(x + h, delta) - huber(x - h, delta)) / (2 * h)
                XCTAssertEqual(huberDerivative(x, delta), fd, accuracy: 2e-4, "x \(x), δ \(delta)")
            }
        }
    }

    func testUnitFormsAgree() {
        // huberUnit is Huber_1 written m(|r| − ½m): equal to the Float32 form evaluated in Float64
        // up to one rounding of each (relative 2⁻⁵²), and its SIMD lanes equal the scalar bit for bit.
        let rs: [Double] = [-2.5, -1, -0.3, 0, 0.7, 1, 1.75, 40]
        for r in rs {
            let ref = Swift.abs(r) <= 1 ? 0.5 * r * r : Swift.abs(r) - 0.5
            XCTAssertEqual(huberUnit(r), ref, accuracy: 1e-15 * Swift.max(1, ref))
            XCTAssertEqual(huberUnitDerivative(r), Swift.max(-1, Swift.min(1, r)))
        }
        for k in stride(from: 0, to: rs.count, by: 4) {
            let v = SIMD4(rs[k], rs[k + 1], rs[k + 2], rs[k + 3])
            let h = huberUnit(v), d = huberUnitDerivative(v)
            for l in 0..<4 {
                XCTAssertEqual(h[l].bitPattern, huberUnit(rs[k + l]).bitPattern)
                XCTAssertEqual(d[l].bitPattern, huberUnitDerivative(rs[k + l]).bitPattern)
            }
        }
    }

    func testEightLaneFormAgreesWithTheScalar() {
        // The SIMD8 form m(|x| − ½m), m = min(|x|, δ): inside it is |x|·(½|x|) (one rounding each, like
        // ½x·x: equal up to 1 ulp), outside δ(|x| − ½δ) as the scalar; the derivative is the same clamp.
        let xs: [Float] = [-3.1, -2, -0.7, -0.2, 0, 0.1, 0.45, 0.5, 1, 1.3, 2, 2.9, 40, -40, 0.999, -1.001]
        for delta: Float in [0.05, 0.5, 1, 2] {
            for k in stride(from: 0, to: xs.count, by: 8) {
                let v = SIMD8(xs[k..<(k + 8)])
                let h = huber(v, delta), d = huberDerivative(v, delta)
                for l in 0..<8 {
                    let ref = huber(xs[k + l], delta)
                    XCTAssertEqual(h[l], ref, accuracy: 2 * ref.ulp, "x \(xs[k + l]), δ \(delta)")
                    XCTAssertEqual(d[l], huberDerivative(xs[k + l], delta), "x \(xs[k + l]), δ \(delta)")
                }
            }
        }
    }
}
