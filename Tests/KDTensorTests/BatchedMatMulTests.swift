import XCTest
@testable import KDTensor

final class BatchedMatMulTests: XCTestCase {
    func testMatchesPerBatchMatmul() throws {
        let a = randomTensor([3, 2, 4], seed: 91), b = randomTensor([3, 4, 5], seed: 92)
        let c = try batchedMatmul(a, b)
        XCTAssertEqual(c.shape, [3, 2, 5])
        for t in 0..<3 {
            let at = try slice(a, axis: 0, range: t..<(t + 1)), bt = try slice(b, axis: 0, range: t..<(t + 1))
            let ref = try matmul(try reshape(at, [2, 4]), try reshape(bt, [4, 5]))
            assertClose(Array(c.array[(t * 10)..<(t * 10 + 10)]), ref.array, tol: 1e-5)
        }
    }

    func testValues() throws {
        let a = Tensor(shape: [2, 1, 2], data: [1, 2, 3, 4])
        let b = Tensor(shape: [2, 2, 1], data: [5, 6, 7, 8])
        XCTAssertEqual(try batchedMatmul(a, b).array, [17, 53])
        XCTAssertEqual(try batchedMatmul(a, b, transposeA: true, transposeB: true).shape, [2, 2, 2])
        XCTAssertEqual(try batchedMatmul(a, b, transposeA: true, transposeB: true).array, [5, 6, 10, 12, 21, 24, 28, 32])
    }

    func testGradientsAllTransposes() {
        for ta in [false, true] { for tb in [false, true] {
            let a = randomTensor(ta ? [2, 4, 3] : [2, 3, 4], seed: 93)
            let b = randomTensor(tb ? [2, 5, 4] : [2, 4, 5], seed: 94)
            assertGradients([a, b], "transposeA \(ta) transposeB \(tb)") {
                try batchedMatmul($0[0], $0[1], transposeA: ta, transposeB: tb)
            }
        } }
    }

    func testShapeErrors() {
        assertThrowsMessage("batchedMatmul: shape mismatch between [2, 3, 4] and [2, 5, 6]",
                            try batchedMatmul(Tensor.zeros([2, 3, 4]), Tensor.zeros([2, 5, 6])))
        assertThrowsMessage("batchedMatmul: shape mismatch between [2, 3, 4] and [3, 4, 6]",
                            try batchedMatmul(Tensor.zeros([2, 3, 4]), Tensor.zeros([3, 4, 6])))
        assertThrowsMessage("batchedMatmul (needs 3-D): shape mismatch between [3, 4] and [4, 6]",
                            try batchedMatmul(Tensor.zeros([3, 4]), Tensor.zeros([4, 6])))
    }
}
