import XCTest
@testable import KDTensor

final class NormalizeTests: XCTestCase {
    func testValues() throws {
        let x = Tensor(shape: [3, 2], data: [3, 4, 0, 0, 1e-14, 0])
        let y = try l2Normalize(x)
        // ‖0‖ and ‖1e-14‖ are below ε = 1e-12, so those rows are v/ε.
        assertClose(y.array, [0.6, 0.8, 0, 0, 0.01, 0])
        XCTAssertFalse(y.array.contains { $0.isNaN })
        let c = try l2Normalize(Tensor(shape: [2, 2], data: [3, 0, 4, 1]), axis: 0)
        assertClose(c.array, [0.6, 0, 0.8, 1])
    }

    func testGradients() {
        let x = randomTensor([3, 4], seed: 61)
        assertGradients([x], "rows") { try l2Normalize($0[0]) }
        assertGradients([x], "columns") { try l2Normalize($0[0], axis: 0) }
        let z = randomTensor([2, 3, 2], seed: 62)
        assertGradients([z], "middle axis") { try l2Normalize($0[0], axis: 1) }
    }

    func testGradientNearZeroVector() {
        // Row 0 has norm ≈ 2e-3 with the default ε: the projection formula at a tiny norm.
        let tiny = Tensor(shape: [2, 3], data: [1e-3, -1.5e-3, 5e-4, 0.7, -0.2, 0.4])
        assertGradients([tiny], eps: 1e-5, "tiny norm") { try l2Normalize($0[0]) }
        // Row 0 below ε = 0.1 (the linear branch v/ε), row 1 above it.
        let clamped = Tensor(shape: [2, 3], data: [0.02, -0.03, 0.01, 0.3, 0.2, -0.4])
        assertGradients([clamped], eps: 1e-3, "below eps") { try l2Normalize($0[0], eps: 0.1) }
        XCTAssertEqual(try gradOfSum(Tensor(shape: [1, 2], data: [0, 0])) { try l2Normalize($0, eps: 0.5) }, [2, 2])
    }
}
