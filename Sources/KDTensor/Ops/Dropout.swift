/// Inverted dropout: in training each element is kept with probability `1 − p` and scaled by
/// `1/(1 − p)`, so `E[y] = x`: `y = x · mᵢ / (1 − p)`, `mᵢ ~ Bernoulli(1 − p)` drawn from `rng`
/// (element `i` dropped when `rng.nextFloat() < p`, in element order; `p = 1` drops everything).
/// In evaluation, or with `p = 0`, it is the identity and returns `x` itself.
/// Backward: `dx = dy · mᵢ / (1 − p)` (the same mask).
public func dropout(_ x: Tensor, p: Float, training: Bool, rng: inout KDRandom) throws -> Tensor {
    guard p >= 0, p <= 1 else {
        throw TensorError.invalidArgument(op: "dropout", message: "probability p = \(p) must lie in [0, 1]")
    }
    if !training || p == 0 { return x }
    let keepScale: Float = p < 1 ? 1 / (1 - p) : 0
    let mask = Tensor(uninitializedShape: x.shape)
    let out = Tensor(uninitializedShape: x.shape)
    for i in 0..<x.count {
        let m: Float = rng.nextFloat() < p ? 0 : keepScale
        mask.ptr[i] = m
        out.ptr[i] = x.ptr[i] * m
    }
    Tape.record("dropout", inputs: [x], output: out) { gy in
        let (gx, fresh) = x.gradBuffer()
        if fresh { for i in 0..<x.count { gx[i] = gy.ptr[i] * mask.ptr[i] } }
        else { for i in 0..<x.count { gx[i] += gy.ptr[i] * mask.ptr[i] } }
    }
    return out
}
