import XCTest
@testable import KDTensor

final class MatMulTests: XCTestCase {
    func testMatMulValues() throws {
        let a = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        let b = Tensor(shape: [3, 2], data: [7, 8, 9, 10, 11, 12])
        XCTAssertEqual(try matmul(a, b).array, [58, 64, 139, 154])
        XCTAssertEqual(try matmul(a, a, transposeB: true).array, [14, 32, 32, 77])
    }

    func testMatMulGradientsAllTransposes() throws {
        for ta in [false, true] { for tb in [false, true] {
            var rng = KDRandom(keys: 1, ta ? 1 : 0, tb ? 1 : 0)
            let a = Tensor.randn(ta ? [4, 3] : [3, 4], rng: &rng)
            let b = Tensor.randn(tb ? [5, 4] : [4, 5], rng: &rng)
            let r = try gradientCheck([a, b]) { try matmul($0[0], $0[1], transposeA: ta, transposeB: tb) }
            XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(ta) \(tb) \(r)")
        } }
    }

    func testShapeErrorNamesBothShapes() {
        let a = Tensor.zeros([2, 3]), b = Tensor.zeros([4, 2])
        XCTAssertThrowsError(try matmul(a, b)) { e in
            XCTAssertEqual("\(e)", "matmul: shape mismatch between [2, 3] and [4, 2]")
        }
    }

    func testPoolReusesBuffers() {
        let before = BufferPool.shared.allocations
        for _ in 0..<10 { _ = Tensor.zeros([123, 457]) }
        XCTAssertLessThanOrEqual(BufferPool.shared.allocations - before, 1)
    }
}
