import Foundation

/// Elementwise unary ops. Each forward loop sits beside its backward loop; the backward reads the
/// saved input `x` and/or output `y` and accumulates `gx += g · y'(x)`.

/// Accumulates `ga[i] (+)= value(i)` into `x.grad` with the usual fresh-buffer rule.
@inline(__always)
private func accumulate(_ x: Tensor, _ value: (Int) -> Float) {
    let (ga, fresh) = x.gradBuffer()
    let n = x.count
    if fresh { for i in 0..<n { ga[i] = value(i) } } else { for i in 0..<n { ga[i] += value(i) } }
}

/// An elementwise op off the hot path: `y[i] = f(x[i])`, backward `gx[i] (+)= df(g[i], x[i], y[i])`.
/// (`relu`, which every network calls, keeps its own loops: the escaping `df` is not inlined.)
@inline(__always)
private func unary(_ name: String, _ x: Tensor, _ f: (Float) -> Float,
                   backward df: @escaping (_ g: Float, _ x: Float, _ y: Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    for i in 0..<x.count { yp[i] = f(xp[i]) }
    Tape.record(name, inputs: [x], output: out) { g in
        let gp = g.ptr
        accumulate(x) { df(gp[$0], xp[$0], yp[$0]) }
    }
    return out
}

/// ReLU of one value as every ReLU here computes it (`relu`, `addReLU`, `batchNorm`'s `relu`): `v ≤ 0 ? 0 : v`,
/// a NaN kept; `v` itself when `on` is false.
@inline(__always) func reluValue(_ v: Float, if on: Bool = true) -> Float { on && v <= 0 ? 0 : v }

/// ReLU's backward for one value: `g`, or 0 where `v ≤ 0`, with `v` the ReLU's input or its output alike
/// (`relu(v) ≤ 0` exactly when `v ≤ 0`; a NaN passes `g`); `g` itself when `on` is false.
@inline(__always) func reluGradient(_ g: Float, at v: Float, if on: Bool = true) -> Float { on && v <= 0 ? 0 : g }

/// `y = max(x, 0)`, NaN propagated (`relu(NaN) = NaN`, as PyTorch's). Backward: `gx = g · [¬(x ≤ 0)]`
/// (PyTorch's `threshold_backward`: a NaN input passes its gradient).
public func relu(_ x: Tensor) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    for i in 0..<x.count { yp[i] = reluValue(xp[i]) }
    Tape.record("relu", inputs: [x], output: out) { g in
        let gp = g.ptr
        accumulate(x) { reluGradient(gp[$0], at: xp[$0]) }
    }
    return out
}

/// `y = relu(a + b)` for `a` and `b` of one shape (a residual block's end), in one pass: the sum rounded
/// as `add` rounds it, clamped as `relu` clamps. Backward: `ga = gb = g` where `y > 0` (or NaN), 0 where
/// `y ≤ 0` (`relu`'s mask). The bits of `relu(add(a, b))`, without the sum's tensor and the two passes over
/// it and its gradient.
public func addReLU(_ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard a.shape == b.shape else { throw TensorError.shapeMismatch(op: "addReLU", lhs: a.shape, rhs: b.shape) }
    let out = Tensor(uninitializedShape: a.shape)
    let ap = a.ptr, bp = b.ptr, yp = out.ptr
    for i in 0..<a.count { yp[i] = reluValue(ap[i] + bp[i]) }
    Tape.record("addReLU", inputs: [a, b], output: out) { g in
        let gp = g.ptr
        for x in [a, b] where x.requiresGrad { accumulate(x) { reluGradient(gp[$0], at: yp[$0]) } }
    }
    return out
}

/// `y = eˣ`. Backward: `gx = g · y`.
public func exp(_ x: Tensor) -> Tensor {
    unary("exp", x, { Foundation.exp($0) }, backward: { g, _, y in g * y })
}

/// `y = ln x` (−∞ at 0, NaN below). Backward: `gx = g / x`.
public func log(_ x: Tensor) -> Tensor {
    unary("log", x, { Foundation.log($0) }, backward: { g, x, _ in g / x })
}

/// `y = √x`. Backward: `gx = g / (2y)` (∞ at x = 0, as in PyTorch).
public func sqrt(_ x: Tensor) -> Tensor {
    unary("sqrt", x, { $0.squareRoot() }, backward: { g, _, y in g / (2 * y) })
}

/// `y = |x|`. Backward: `gx = g · sign(x)` with `sign(0) = 0`.
public func abs(_ x: Tensor) -> Tensor {
    unary("abs", x, { Swift.abs($0) }, backward: { g, x, _ in x > 0 ? g : (x < 0 ? -g : 0) })
}

/// `y = xᵖ` (C `powf` semantics: NaN for negative x and non-integer p). Backward:
/// `gx = g · p · xᵖ⁻¹` (0 for p = 0).
public func pow(_ x: Tensor, _ p: Float) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    if p == 2 { for i in 0..<x.count { yp[i] = xp[i] * xp[i] } }
    else { for i in 0..<x.count { yp[i] = Foundation.pow(xp[i], p) } }
    Tape.record("pow", inputs: [x], output: out) { g in
        let gp = g.ptr
        if p == 0 { accumulate(x) { _ in 0 } }
        else if p == 2 { accumulate(x) { 2 * gp[$0] * xp[$0] } }
        else if p == 1 { accumulate(x) { gp[$0] } }
        else { accumulate(x) { gp[$0] * p * Foundation.pow(xp[$0], p - 1) } }
    }
    return out
}

/// `y = min(max(x, lo), hi)`. Backward: `gx = g · [lo ≤ x ≤ hi]` (PyTorch `clamp`).
public func clamp(_ x: Tensor, min lo: Float = -.infinity, max hi: Float = .infinity) -> Tensor {
    unary("clamp", x, { Swift.min(Swift.max($0, lo), hi) }, backward: { g, x, _ in x >= lo && x <= hi ? g : 0 })
}

/// `y = −x`. Backward: `gx = −g`.
public func neg(_ x: Tensor) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let xp = x.ptr, yp = out.ptr
    for i in 0..<x.count { yp[i] = -xp[i] }
    Tape.record("neg", inputs: [x], output: out) { g in x.accumulateGrad(g.ptr, scale: -1) }
    return out
}
