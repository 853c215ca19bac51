import XCTest
@testable import KDTensor

final class DistanceTests: XCTestCase {
    func testValues() throws {
        let x = Tensor(shape: [3, 2], data: [0, 0, 3, 4, 0, 0])
        let d = try pairwiseDistances(x)
        XCTAssertEqual(d.shape, [3, 3])
        // Rows 0 and 2 coincide: d² is clamped to 1e-12, so d = 1e-6 (RKD); the diagonal is 0.
        assertClose(d.array, [0, 5, 1e-6, 5, 0, 5, 1e-6, 5, 0], tol: 1e-6)
    }

    func testNearPairsStayAccurate() throws {
        // Large norms, small difference: the expanded form would cancel to noise in float32.
        let x = Tensor(shape: [2, 3], data: [1000, 2000, 3000, 1000.25, 2000, 3000])
        let d = try pairwiseDistances(x)
        XCTAssertEqual(d.array[1], 0.25, accuracy: 1e-5)
    }

    func testGradients() {
        let x = randomTensor([5, 3], seed: 71)
        assertGradients([x], "random rows") { try pairwiseDistances($0[0]) }
        let near = Tensor(shape: [3, 2], data: [10, 20, 10.3, 19.9, -5, 3])
        assertGradients([near], eps: 1e-3, "near pair") { try pairwiseDistances($0[0]) }
    }

    func testGradientWithDuplicatedRow() {
        let x = randomTensor([4, 3], seed: 72)
        for k in 0..<3 { x.ptr[3 * 3 + k] = x.ptr[1 * 3 + k] }   // row 3 = row 1
        assertGradients([x], "duplicated row") { try pairwiseDistances($0[0]) }
        // The clamped pair contributes nothing: rows 1 and 3 get the same finite gradient.
        let g = (try? gradOfSum(x) { try pairwiseDistances($0) }) ?? []
        XCTAssertFalse(g.contains { !$0.isFinite })
        assertClose(Array(g[3..<6]), Array(g[9..<12]), tol: 1e-5)
    }

    func testShapeError() {
        assertThrowsMessage("pairwiseDistances: needs [N, D], got shape [4]", try pairwiseDistances(Tensor.zeros([4])))
    }
}
