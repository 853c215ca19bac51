import XCTest
@testable import KDTensor

/// Shared helpers for the op tests: seeded inputs, closeness and gradient-check assertions.

func randomTensor(_ shape: [Int], seed: UInt64, std: Float = 1) -> Tensor {
    var rng = KDRandom(keys: seed, 99)
    return Tensor.randn(shape, std: std, rng: &rng)
}

/// Random values kept at least `margin` away from 0 (for ops with a kink at 0).
func awayFromZero(_ shape: [Int], seed: UInt64, margin: Float = 0.1) -> Tensor {
    let t = randomTensor(shape, seed: seed)
    for i in 0..<t.count { t.ptr[i] = t.ptr[i] >= 0 ? t.ptr[i] + margin : t.ptr[i] - margin }
    return t
}

func positiveTensor(_ shape: [Int], seed: UInt64, lo: Float = 0.5, hi: Float = 2) -> Tensor {
    var rng = KDRandom(keys: seed, 98)
    return Tensor.uniform(shape, lo, hi, rng: &rng)
}

func assertClose(_ a: [Float], _ b: [Float], tol: Float = 1e-5, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count \(message)", file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where !(Swift.abs(x - y) <= tol * Swift.max(1, Swift.abs(y))) {
        XCTFail("element \(i): \(x) vs \(y) \(message)", file: file, line: line)
        return
    }
}

/// Finite-difference check of every input's gradient: of `f` itself, and of `f(x) + f(x)` so that each
/// backward also runs its accumulate-into-an-existing-gradient branch (the second use of `x`).
func assertGradients(_ inputs: [Tensor], eps: Float = 1e-2, tol: Double = 1e-2, _ label: String = "",
                     file: StaticString = #filePath, line: UInt = #line,
                     _ f: ([Tensor]) throws -> Tensor) {
    do {
        let r = try gradientCheck(inputs, eps: eps, f)
        XCTAssertLessThan(r.maxRelativeError, tol, "\(label) \(r)", file: file, line: line)
        let r2 = try gradientCheck(inputs, eps: eps) { xs in try f(xs) + f(xs) }
        XCTAssertLessThan(r2.maxRelativeError, tol, "\(label) (used twice) \(r2)", file: file, line: line)
    } catch {
        XCTFail("\(label): \(error)", file: file, line: line)
    }
}

/// Asserts that `body` throws an error whose description is exactly `message`.
func assertThrowsMessage<T>(_ message: String, file: StaticString = #filePath, line: UInt = #line,
                            _ body: @autoclosure () throws -> T) {
    XCTAssertThrowsError(try body(), file: file, line: line) { e in
        XCTAssertEqual("\(e)", message, file: file, line: line)
    }
}

/// Runs backward from `y` with an all-ones seed and returns `x.grad` (zeros when none).
func gradOfSum(_ x: Tensor, _ f: (Tensor) throws -> Tensor) rethrows -> [Float] {
    x.requiresGrad = true; x.grad = nil
    Tape.reset()
    let y = try f(x)
    Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1))
    let g = x.grad?.array ?? [Float](repeating: 0, count: x.count)
    x.grad = nil
    return g
}

/// Reference 3×3 correlation in Double (`stride`, zero `padding`); also returns `S` = the largest `Σ |x·w|` of
/// one output, the scale of the float rounding error of any summation order.
func referenceConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int,
                   padding p: Int) -> (values: [Double], absSum: Double) {
    let (n, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let cout = w.shape[0]
    let ho = (h + 2 * p - 3) / stride + 1, wo = (wd + 2 * p - 3) / stride + 1
    var out = [Double](repeating: 0, count: n * ho * wo * cout)
    var absMax = 0.0
    for i in 0..<n { for oh in 0..<ho { for ow in 0..<wo { for o in 0..<cout {
        var acc = Double(b?.ptr[o] ?? 0), abs = Swift.abs(acc)
        for ki in 0..<3 { for kj in 0..<3 {
            let ih = oh * stride - p + ki, iw = ow * stride - p + kj
            if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
            for c in 0..<cin {
                let t = Double(x.ptr[((i * h + ih) * wd + iw) * cin + c])
                    * Double(w.ptr[((o * 3 + ki) * 3 + kj) * cin + c])
                acc += t; abs += Swift.abs(t)
            }
        } }
        out[((i * ho + oh) * wo + ow) * cout + o] = acc
        absMax = max(absMax, abs)
    } } } }
    return (out, absMax)
}
