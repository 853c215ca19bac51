/// The Huber function and its derivative, in the arithmetic forms the losses use
/// (`docs/losses.md` "The losses"): `Huber_δ(x) = ½x²` if `|x| ≤ δ`, else `δ(|x| − ½δ)`;
/// `Huber_δ'(x) = x` if `|x| ≤ δ`, else `δ · sign(x)`. `docs/ops.md` ("Kernels").

/// `Huber_δ(x) = ½x²` if `|x| ≤ δ`, else `δ(|x| − ½δ)` (Float32; RKD distance, PRG, VRM).
@inlinable @inline(__always)
public func huber(_ x: Float, _ delta: Float) -> Float {
    let a = abs(x)
    return a <= delta ? 0.5 * x * x : delta * (a - 0.5 * delta)
}

/// `Huber_δ'(x) = x` if `|x| ≤ δ`, else `δ · sign(x)` (Float32).
@inlinable @inline(__always)
public func huberDerivative(_ x: Float, _ delta: Float) -> Float {
    abs(x) <= delta ? x : (x > 0 ? delta : -delta)
}

/// `Huber_1(r)` in Float64 written branch-free as `m(|r| − ½m)`, `m = min(|r|, 1)` (equal to `½r²`
/// inside and `|r| − ½` outside; RKD angle's form, so its SIMD and scalar lanes agree bit for bit).
@inlinable @inline(__always)
public func huberUnit(_ r: Double) -> Double {
    let ar = abs(r), m = min(ar, 1)
    return m * (ar - 0.5 * m)
}

/// `huberUnit` on four lanes: `m(|r| − ½m)`, `m = min(|r|, 1)`, lane by lane.
@inlinable @inline(__always)
public func huberUnit(_ r: SIMD4<Double>) -> SIMD4<Double> {
    let one = SIMD4<Double>(repeating: 1), half = SIMD4<Double>(repeating: 0.5)
    let ar = r.replacing(with: -r, where: r .< 0), m = ar.replacing(with: one, where: ar .> one)
    return m * (ar - half * m)
}

/// `Huber_1'(r) = clamp(r, −1, 1)` (Float64).
@inlinable @inline(__always)
public func huberUnitDerivative(_ r: Double) -> Double { max(min(r, 1), -1) }

/// `Huber_1'(r) = clamp(r, −1, 1)` on four lanes.
@inlinable @inline(__always)
public func huberUnitDerivative(_ r: SIMD4<Double>) -> SIMD4<Double> {
    let one = SIMD4<Double>(repeating: 1)
    return r.replacing(with: one, where: r .> one).replacing(with: -one, where: r .< -one)
}

/// `Huber_δ` on eight Float32 lanes, branch-free: `m(|x| − ½m)`, `m = min(|x|, δ)` (VRM's edge sweeps).
@inlinable @inline(__always)
public func huber(_ x: SIMD8<Float>, _ delta: Float) -> SIMD8<Float> {
    let ax = x.replacing(with: -x, where: x .< 0)
    let m = ax.replacing(with: SIMD8(repeating: delta), where: ax .> delta)
    return m * (ax - 0.5 * m)
}

/// `Huber_δ'(x) = clamp(x, −δ, δ)` on eight Float32 lanes.
@inlinable @inline(__always)
public func huberDerivative(_ x: SIMD8<Float>, _ delta: Float) -> SIMD8<Float> {
    x.replacing(with: SIMD8(repeating: delta), where: x .> delta)
        .replacing(with: SIMD8(repeating: -delta), where: x .< -delta)
}
