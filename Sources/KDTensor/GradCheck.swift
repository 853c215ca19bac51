/// Finite-difference gradient check.
///
/// The function's output `y` is reduced to a scalar `L = Σ yᵢ rᵢ` with a fixed random `r` (so any
/// output shape is checked), accumulated in Float64. The analytic gradient comes from `Tape.backward`
/// with seed `r`; the numerical one from central differences `(L(x+ε) − L(x−ε)) / 2ε` per element
/// (all elements, or `maxElements` of them chosen at random). The error is measured in max-norm:
/// `max|num − ana| / max(max|num|, floor)`.
public struct GradCheckResult: CustomStringConvertible {
    public var maxRelativeError: Double
    public var worstInput: Int
    public var worstIndex: Int
    public var numerical: Double
    public var analytic: Double
    public var description: String {
        "grad check: max rel err \(maxRelativeError) (input \(worstInput), element \(worstIndex): "
            + "numerical \(numerical), analytic \(analytic))"
    }
}

public func gradientCheck(_ inputs: [Tensor], eps: Float = 1e-2, maxElements: Int = 200, seed: UInt64 = 7,
                          floor: Double = 1e-3,
                          _ f: ([Tensor]) throws -> Tensor) rethrows -> GradCheckResult {
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    Tape.reset()
    let y = try f(inputs)
    var rng = KDRandom(keys: seed, 1)
    let r = Tensor.uniform(y.shape, -1, 1, rng: &rng)
    Tape.backward(y, seed: r)
    let analytic = inputs.map { $0.grad?.array ?? [Float](repeating: 0, count: $0.count) }

    func loss() throws -> Double {
        try withNoGrad {
            let out = try f(inputs)
            var s = 0.0
            for i in 0..<out.count { s += Double(out.ptr[i]) * Double(r.ptr[i]) }
            return s
        }
    }
    var result = GradCheckResult(maxRelativeError: 0, worstInput: -1, worstIndex: -1, numerical: 0, analytic: 0)
    var maxNum = 0.0
    var maxDiff = 0.0
    for (xi, x) in inputs.enumerated() {
        var indices = Array(0..<x.count)
        if indices.count > maxElements {
            var pick = KDRandom(keys: seed, 2, UInt64(xi))
            indices = Array(pick.permutation(x.count).prefix(maxElements))
        }
        for i in indices {
            let saved = x.ptr[i]
            x.ptr[i] = saved + eps; let lp = try loss()
            x.ptr[i] = saved - eps; let lm = try loss()
            x.ptr[i] = saved
            let num = (lp - lm) / (2 * Double(eps))
            let ana = Double(analytic[xi][i])
            maxNum = max(maxNum, abs(num))
            let d = abs(num - ana)
            if d > maxDiff {
                maxDiff = d
                result.worstInput = xi; result.worstIndex = i; result.numerical = num; result.analytic = ana
            }
        }
    }
    result.maxRelativeError = maxDiff / max(maxNum, floor)
    for x in inputs { x.grad = nil }
    return result
}
