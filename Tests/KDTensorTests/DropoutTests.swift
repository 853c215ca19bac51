import XCTest
@testable import KDTensor

final class DropoutTests: XCTestCase {
    func testEvalAndZeroProbabilityAreIdentity() throws {
        let x = Tensor(shape: [3], data: [1, 2, 3])
        var rng = KDRandom(keys: 1)
        XCTAssertTrue(try dropout(x, p: 0.5, training: false, rng: &rng) === x)
        XCTAssertTrue(try dropout(x, p: 0, training: true, rng: &rng) === x)
    }

    func testInvertedScalingAndKeepRate() throws {
        let x = Tensor(shape: [10_000], repeating: 2)
        var rng = KDRandom(keys: 2)
        let y = try dropout(x, p: 0.25, training: true, rng: &rng)
        let kept = y.array.filter { $0 != 0 }
        XCTAssertTrue(kept.allSatisfy { abs($0 - 2 / 0.75) < 1e-6 })
        XCTAssertEqual(Double(kept.count) / 10_000, 0.75, accuracy: 0.02)
        // Same keys, same mask.
        var again = KDRandom(keys: 2)
        XCTAssertEqual(try dropout(x, p: 0.25, training: true, rng: &again).array, y.array)
        var all = KDRandom(keys: 3)
        XCTAssertEqual(try dropout(x, p: 1, training: true, rng: &all).array, [Float](repeating: 0, count: 10_000))
    }

    func testGradientWithFixedMask() throws {
        var data = KDRandom(keys: 4)
        let x = Tensor.randn([4, 6], rng: &data)
        let r = try gradientCheck([x]) {
            var rng = KDRandom(keys: 5)   // the same mask on every evaluation
            return try dropout($0[0], p: 0.4, training: true, rng: &rng)
        }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testInvalidProbability() {
        var rng = KDRandom(keys: 6)
        XCTAssertThrowsError(try dropout(Tensor.zeros([2]), p: 1.5, training: true, rng: &rng)) {
            XCTAssertEqual("\($0)", "dropout: probability p = 1.5 must lie in [0, 1]")
        }
    }
}
