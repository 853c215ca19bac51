import XCTest
@testable import KDTensor

final class ReduceTests: XCTestCase {
    let m = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])

    func testSumAndMeanValues() throws {
        XCTAssertEqual(sum(m).shape, [])
        XCTAssertEqual(sum(m).item, 21)
        XCTAssertEqual(mean(m).item, 3.5)
        XCTAssertEqual(try sum(m, axes: [0]).array, [5, 7, 9])
        XCTAssertEqual(try sum(m, axes: [0]).shape, [3])
        let k = try sum(m, axes: [1], keepDims: true)
        XCTAssertEqual(k.shape, [2, 1]); XCTAssertEqual(k.array, [6, 15])
        XCTAssertEqual(try sum(m, axes: [-1]).array, [6, 15])
        XCTAssertEqual(try sum(m, axes: [0, 1]).shape, [])
        XCTAssertEqual(try sum(m, axes: [0, 1]).item, 21)
        XCTAssertEqual(try mean(m, axes: [0]).array, [2.5, 3.5, 4.5])
        XCTAssertEqual(try mean(m, axes: [1], keepDims: true).array, [2, 5])
        XCTAssertEqual(try sum(m, axes: []).array, m.array)
    }

    func testSumAccumulatesInDouble() throws {
        // Float32 running sums lose every +1 next to 1e8 (ulp 8); Double keeps them.
        let x = Tensor(shape: [1002], data: [1e8] + [Float](repeating: 1, count: 1000) + [-1e8])
        XCTAssertEqual(sum(x).item, 1000)
        XCTAssertEqual(try sum(try reshape(x, [1, 1002]), axes: [1]).item, 1000)
    }

    func testReductionGradients() {
        let x = randomTensor([2, 3, 4], seed: 31)
        assertGradients([x], "sum all") { sum($0[0]) }
        assertGradients([x], "mean all") { mean($0[0]) }
        for axes in [[0], [1], [2], [0, 2], [-1, 0], [0, 1, 2]] {
            for keep in [false, true] {
                assertGradients([x], "sum \(axes) \(keep)") { try sum($0[0], axes: axes, keepDims: keep) }
                assertGradients([x], "mean \(axes) \(keep)") { try mean($0[0], axes: axes, keepDims: keep) }
            }
        }
    }

    func testMaxValuesTiesAndGradient() throws {
        let x = Tensor(shape: [2, 3], data: [1, 3, 3, 2, 0, 2])
        XCTAssertEqual(try max(x, axis: 1).array, [3, 2])
        XCTAssertEqual(try max(x, axis: 1, keepDims: true).shape, [2, 1])
        XCTAssertEqual(try max(x, axis: 0).array, [2, 3, 3])
        // Ties: the whole gradient goes to the first maximum.
        XCTAssertEqual(try gradOfSum(x) { try max($0, axis: 1) }, [0, 1, 0, 1, 0, 0])
        XCTAssertEqual(try gradOfSum(x) { try max($0, axis: 0) }, [0, 1, 1, 1, 0, 0])
        let allTied = Tensor(shape: [1, 4], repeating: 5)
        XCTAssertEqual(try gradOfSum(allTied) { try max($0, axis: -1) }, [1, 0, 0, 0])
    }

    func testMaxGradients() {
        let x = randomTensor([3, 4, 2], seed: 32)
        for axis in [0, 1, 2, -1] {
            assertGradients([x], "max axis \(axis)") { try max($0[0], axis: axis) }
        }
    }

    func testAxisErrors() {
        assertThrowsMessage("sum: axis 2 out of range for rank 2", try sum(m, axes: [2]))
        assertThrowsMessage("mean: axis 0 repeated in [0, -2]", try mean(m, axes: [0, -2]))
        assertThrowsMessage("max: axis -3 out of range for rank 2", try max(m, axis: -3))
        assertThrowsMessage("max: axis 0 of shape [0, 2] is empty", try max(Tensor.zeros([0, 2]), axis: 0))
        assertThrowsMessage("sum: axis 0 out of range for rank 0", try sum(Tensor.scalar(1), axes: [0]))
    }
}
