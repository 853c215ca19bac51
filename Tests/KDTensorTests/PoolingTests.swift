import XCTest
@testable import KDTensor

final class PoolingTests: XCTestCase {
    /// Distinct values (spaced 0.1 apart, shuffled) so finite differences never cross a tie.
    func distinct(_ shape: [Int], seed: UInt64) -> Tensor {
        var rng = KDRandom(keys: seed)
        let n = shape.reduce(1, *)
        return Tensor(shape: shape, data: rng.permutation(n).map { Float($0) * 0.1 - Float(n) * 0.05 })
    }

    func testMaxPoolHandComputed() throws {
        // 4×4, one channel, values 0..15: 2×2 stride-2 maxima are the bottom-right corners.
        let x = Tensor(shape: [1, 4, 4, 1], data: (0..<16).map(Float.init), requiresGrad: true)
        let y = try maxPool2d(x, kernel: 2, stride: 2, padding: 0)
        XCTAssertEqual(y.shape, [1, 2, 2, 1])
        XCTAssertEqual(y.array, [5, 7, 13, 15])
        Tape.backward(y, seed: Tensor(shape: [1, 2, 2, 1], data: [1, 2, 3, 4]))
        var expected = [Float](repeating: 0, count: 16)
        expected[5] = 1; expected[7] = 2; expected[13] = 3; expected[15] = 4
        XCTAssertEqual(x.grad?.array, expected)
        // 3×3 stride 2 padding 1 over the same image: windows clipped at the border.
        let z = try withNoGrad { try maxPool2d(x, kernel: 3, stride: 2, padding: 1) }
        XCTAssertEqual(z.array, [5, 7, 13, 15])
    }

    func testMaxPoolMatchesNaive() throws {
        for ch in [2, 11] {
            let x = distinct([2, 5, 5, ch], seed: 1)
            x.requiresGrad = true   // the recording (argmax) path
            for y in [try maxPool2d(x, kernel: 3, stride: 2, padding: 1),
                      try withNoGrad { try maxPool2d(x, kernel: 3, stride: 2, padding: 1) }] {
                XCTAssertEqual(y.shape, [2, 3, 3, ch])
                for n in 0..<2 { for i in 0..<3 { for j in 0..<3 { for c in 0..<ch {
                    var m = -Float.infinity
                    for ki in 0..<3 { for kj in 0..<3 {
                        let ih = i * 2 - 1 + ki, iw = j * 2 - 1 + kj
                        if ih >= 0 && ih < 5 && iw >= 0 && iw < 5 {
                            m = max(m, x.ptr[((n * 5 + ih) * 5 + iw) * ch + c])
                        }
                    } }
                    XCTAssertEqual(y.ptr[((n * 3 + i) * 3 + j) * ch + c], m)
                } } } }
            }
            Tape.reset()
        }
    }

    func testMaxPoolGradients() throws {
        let x = distinct([2, 5, 4, 3], seed: 2)
        let r = try gradientCheck([x]) { try maxPool2d($0[0], kernel: 3, stride: 2, padding: 1) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
        let r2 = try gradientCheck([x]) { try maxPool2d($0[0], kernel: 2, stride: 1, padding: 0) }
        XCTAssertLessThan(r2.maxRelativeError, 1e-2, "\(r2)")
        // 19 channels: the 8-lane argmax path plus a scalar tail.
        let wide = distinct([1, 4, 3, 19], seed: 5)
        let r3 = try gradientCheck([wide], maxElements: 300) { try maxPool2d($0[0], kernel: 3, stride: 2, padding: 1) }
        XCTAssertLessThan(r3.maxRelativeError, 1e-2, "\(r3)")
    }

    func testAvgPoolValuesAndGradients() throws {
        let x = Tensor(shape: [1, 4, 4, 1], data: (0..<16).map(Float.init))
        XCTAssertEqual(try avgPool2d(x, kernel: 2, stride: 2).array, [2.5, 4.5, 10.5, 12.5])
        var rng = KDRandom(keys: 3)
        let z = Tensor.randn([2, 5, 5, 3], rng: &rng)
        let r = try gradientCheck([z]) { try avgPool2d($0[0], kernel: 3, stride: 2) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testGlobalAvgPoolValuesAndGradients() throws {
        let x = Tensor(shape: [2, 2, 1, 2], data: [1, 10, 3, 20, 5, 0, 7, 2])
        let y = try globalAvgPool(x)
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.array, [2, 15, 6, 1])
        var rng = KDRandom(keys: 4)
        let z = Tensor.randn([2, 3, 3, 4], rng: &rng)
        let r = try gradientCheck([z]) { try globalAvgPool($0[0]) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }

    func testErrors() {
        XCTAssertThrowsError(try maxPool2d(Tensor.zeros([4, 4, 1]), kernel: 2, stride: 2, padding: 0)) {
            XCTAssertEqual("\($0)", "maxPool2d: input must be NHWC [N, H, W, C], got shape [4, 4, 1]")
        }
        XCTAssertThrowsError(try maxPool2d(Tensor.zeros([1, 4, 4, 1]), kernel: 2, stride: 2, padding: 2))
        XCTAssertThrowsError(try avgPool2d(Tensor.zeros([1, 2, 2, 1]), kernel: 3, stride: 1)) {
            XCTAssertEqual("\($0)", "avgPool2d: kernel 3 with padding 0 does not fit input 2×2 (shape [1, 2, 2, 1])")
        }
        XCTAssertThrowsError(try globalAvgPool(Tensor.zeros([2, 3]))) {
            XCTAssertEqual("\($0)", "globalAvgPool: input must be NHWC [N, H, W, C], got shape [2, 3]")
        }
    }
}
