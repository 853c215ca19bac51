import XCTest
@testable import KDTensor

final class LinearTests: XCTestCase {
    func testValues() throws {
        let x = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])
        let w = Tensor(shape: [2, 3], data: [1, 0, -1, 0.5, 0.5, 0.5])
        let b = Tensor(shape: [2], data: [10, 20])
        XCTAssertEqual(try linear(x, weight: w, bias: b).array, [8, 23, 8, 27.5])
        XCTAssertEqual(try linear(x, weight: w, bias: nil).array, [-2, 3, -2, 7.5])
    }

    func testGradients() throws {
        var rng = KDRandom(keys: 11)
        let x = Tensor.randn([4, 5], rng: &rng), w = Tensor.randn([3, 5], rng: &rng), b = Tensor.randn([3], rng: &rng)
        let r = try gradientCheck([x, w, b]) { try linear($0[0], weight: $0[1], bias: $0[2]) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
        let r2 = try gradientCheck([x, w]) { try linear($0[0], weight: $0[1], bias: nil) }
        XCTAssertLessThan(r2.maxRelativeError, 1e-2, "\(r2)")
    }

    func testGradientsAccumulateOverTwoUses() throws {
        let x = Tensor(shape: [1, 2], data: [1, 2], requiresGrad: true)
        let w = Tensor(shape: [1, 2], data: [3, 4], requiresGrad: true)
        for _ in 0..<2 {   // the second backward adds onto the existing (non-fresh) gradients
            let y = try linear(x, weight: w, bias: nil)
            Tape.backward(y, seed: Tensor(shape: [1, 1], data: [1]))
        }
        XCTAssertEqual(x.grad?.array, [6, 8])
        XCTAssertEqual(w.grad?.array, [2, 4])
    }

    func testEmptyBatchGivesZeroParameterGradients() throws {
        let x = Tensor(shape: [0, 3], data: [], requiresGrad: true)
        let w = Tensor(shape: [2, 3], repeating: 1, requiresGrad: true)
        let b = Tensor(shape: [2], repeating: 1, requiresGrad: true)
        let y = try linear(x, weight: w, bias: b)
        XCTAssertEqual(y.shape, [0, 2])
        Tape.backward(y, seed: Tensor(shape: [0, 2], data: []))
        XCTAssertEqual(w.grad?.array, [0, 0, 0, 0, 0, 0]); XCTAssertEqual(b.grad?.array, [0, 0])
    }

    func testShapeErrors() {
        XCTAssertThrowsError(try linear(Tensor.zeros([2, 3]), weight: Tensor.zeros([4, 5]), bias: nil)) {
            XCTAssertEqual("\($0)", "linear: shape mismatch between [2, 3] and [4, 5]")
        }
        XCTAssertThrowsError(try linear(Tensor.zeros([2, 3]), weight: Tensor.zeros([4, 3]), bias: Tensor.zeros([3]))) {
            XCTAssertEqual("\($0)", "linear (bias vs weight): shape mismatch between [3] and [4, 3]")
        }
    }
}
