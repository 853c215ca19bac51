import XCTest
@testable import KDTensor

final class SoftmaxTests: XCTestCase {
    func testValues() throws {
        let x = Tensor(shape: [1, 3], data: [0, Float(Foundation.log(2.0)), Float(Foundation.log(3.0))])
        assertClose(try softmax(x).array, [1.0 / 6, 2.0 / 6, 3.0 / 6])
        assertClose(try logSoftmax(x).array, [Foundation.log(1.0 / 6), Foundation.log(2.0 / 6), Foundation.log(0.5)].map(Float.init))
    }

    func testLargeLogitsAreFinite() throws {
        let x = Tensor(shape: [3, 2], data: [1e4, 1e4, -1e4, -1e4, 1e4, -1e4])
        let ln2 = Float(Foundation.log(2.0))
        XCTAssertEqual(try softmax(x).array, [0.5, 0.5, 0.5, 0.5, 1, 0])
        assertClose(try logSoftmax(x).array, [-ln2, -ln2, -ln2, -ln2, 0, -2e4])
        let y = Tensor(shape: [1, 3], data: [1e4, 1e4 + 1, 1e4 - 1])
        // Same as for logits [0, 1, −1]: the row max is subtracted before rounding.
        let ref = try logSoftmax(Tensor(shape: [1, 3], data: [0, 1, -1])).array
        assertClose(try logSoftmax(y).array, ref, tol: 1e-6)
    }

    func testAxisZero() throws {
        let x = Tensor(shape: [2, 2], data: [0, 1, 0, 1])
        XCTAssertEqual(try softmax(x, axis: 0).array, [0.5, 0.5, 0.5, 0.5])
    }

    func testGradients() {
        let x = randomTensor([3, 5], seed: 41, std: 2)
        assertGradients([x], "softmax") { try softmax($0[0]) }
        assertGradients([x], "logSoftmax") { try logSoftmax($0[0]) }
        let z = randomTensor([2, 3, 4], seed: 42)
        for axis in [0, 1, 2] {
            assertGradients([z], "softmax axis \(axis)") { try softmax($0[0], axis: axis) }
            assertGradients([z], "logSoftmax axis \(axis)") { try logSoftmax($0[0], axis: axis) }
        }
    }

    func testGradientsLargeLogits() {
        // Offsets on a grid of 1/2 around ±1e4: there the float spacing is 2⁻¹⁰, so the step 1/64 is exact.
        let x = Tensor(shape: [2, 4], data: [1e4, 1e4 + 0.5, 1e4 - 1, 1e4 + 1.5, -1e4, -1e4 - 0.5, -1e4 + 1, -1e4 + 2])
        assertGradients([x], eps: 1.0 / 64, "softmax ±1e4") { try softmax($0[0]) }
        assertGradients([x], eps: 1.0 / 64, "logSoftmax ±1e4") { try logSoftmax($0[0]) }
    }

    func testAxisError() {
        assertThrowsMessage("softmax: axis 2 out of range for rank 2", try softmax(Tensor.zeros([2, 2]), axis: 2))
    }
}
