/// Binary elementwise arithmetic with NumPy broadcasting (see Broadcast.swift), and the operators.
///
/// `y = a ∘ b` with `∘ ∈ {+, −, ×, ÷}` over `broadcastShape(a, b)`. Backward: each operand receives
/// `∂y/∂operand · gy`, summed over the dims it was broadcast along (Double accumulation).
/// Tensor ⊕ Tensor operators throw on incompatible shapes (`try a + b`); Tensor ⊕ Float never throws.

enum BinaryKind: String { case add, sub, mul, div }

/// out[i] = f(a[·], b[·]) over a strided loop whose operand 0 is the contiguous output.
@inline(__always)
private func broadcastKernel(_ loop: StridedLoop, _ out: UnsafeMutablePointer<Float>,
                             _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                             _ f: (Float, Float) -> Float) {
    let n = loop.runLength
    let (_, sa, sb) = loop.innerStrides
    loop.forEachRun { oo, oa, ob in
        let o = out + oo, pa = a + oa, pb = b + ob
        if sa == 1 && sb == 1 {
            for i in 0..<n { o[i] = f(pa[i], pb[i]) }
        } else if sa == 1 && sb == 0 {
            let bv = pb[0]
            for i in 0..<n { o[i] = f(pa[i], bv) }
        } else if sa == 0 && sb == 1 {
            let av = pa[0]
            for i in 0..<n { o[i] = f(av, pb[i]) }
        } else {
            for i in 0..<n { o[i] = f(pa[i * sa], pb[i * sb]) }
        }
    }
}

@inline(__always)
private func runBinary(_ kind: BinaryKind, _ loop: StridedLoop, _ out: UnsafeMutablePointer<Float>,
                       _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) {
    switch kind {
    case .add: broadcastKernel(loop, out, a, b) { $0 + $1 }
    case .sub: broadcastKernel(loop, out, a, b) { $0 - $1 }
    case .mul: broadcastKernel(loop, out, a, b) { $0 * $1 }
    case .div: broadcastKernel(loop, out, a, b) { $0 / $1 }
    }
}

/// Forward and backward of the four broadcasting binary ops.
///
/// Backward, with `g = ∂L/∂y` on the broadcast shape:
/// - add: `ga = g`, `gb = g`; sub: `ga = g`, `gb = −g`
/// - mul: `ga = g·b`, `gb = g·a`; div: `ga = g/b`, `gb = −g·a/b²`
/// each then summed over the operand's broadcast dims.
func binaryOp(_ kind: BinaryKind, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    guard let shape = broadcastShape(a.shape, b.shape) else {
        throw TensorError.shapeMismatch(op: kind.rawValue, lhs: a.shape, rhs: b.shape)
    }
    let out = Tensor(uninitializedShape: shape)
    let ostr = contiguousStrides(shape)
    let astr = broadcastStrides(a.shape, to: shape), bstr = broadcastStrides(b.shape, to: shape)
    let loop = StridedLoop(shape: shape, ostr, astr, bstr)
    runBinary(kind, loop, out.ptr, a.ptr, b.ptr)

    Tape.record(kind.rawValue, inputs: [a, b], output: out) { g in
        switch kind {
        case .add, .sub:
            if a.requiresGrad { accumulateBroadcastGrad(a, g.ptr, fullShape: shape) }
            if b.requiresGrad {
                accumulateBroadcastGrad(b, g.ptr, fullShape: shape, scale: kind == .add ? 1 : -1)
            }
        case .mul, .div:
            // Per-element contributions on the broadcast shape (g is contiguous there), then reduced
            // to each operand.
            let tmp = Tensor(uninitializedShape: shape)
            if a.requiresGrad {
                let withB = StridedLoop(shape: shape, ostr, ostr, bstr)
                runBinary(kind, withB, tmp.ptr, g.ptr, b.ptr)                        // g·b or g/b
                accumulateBroadcastGrad(a, tmp.ptr, fullShape: shape)
            }
            if b.requiresGrad {
                if kind == .mul {
                    runBinary(.mul, StridedLoop(shape: shape, ostr, ostr, astr), tmp.ptr, g.ptr, a.ptr)   // g·a
                } else {                                                              // −g·y/b, y = a/b
                    runBinary(.mul, StridedLoop(shape: shape, ostr, ostr, ostr), tmp.ptr, g.ptr, out.ptr)
                    broadcastKernel(StridedLoop(shape: shape, ostr, ostr, bstr), tmp.ptr, tmp.ptr, b.ptr) { -$0 / $1 }
                }
                accumulateBroadcastGrad(b, tmp.ptr, fullShape: shape)
            }
        }
    }
    return out
}

/// `y = a + b` with NumPy broadcasting. Backward: `ga = Σ_bcast g`, `gb = Σ_bcast g`.
public func add(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(.add, a, b) }
/// `y = a − b` with NumPy broadcasting. Backward: `ga = Σ_bcast g`, `gb = −Σ_bcast g`.
public func sub(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(.sub, a, b) }
/// `y = a · b` (elementwise) with NumPy broadcasting. Backward: `ga = Σ_bcast g·b`, `gb = Σ_bcast g·a`.
public func mul(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(.mul, a, b) }
/// `y = a / b` with NumPy broadcasting. Backward: `ga = Σ_bcast g/b`, `gb = −Σ_bcast g·a/b²`.
public func div(_ a: Tensor, _ b: Tensor) throws -> Tensor { try binaryOp(.div, a, b) }

// MARK: - Tensor ⊕ Float

/// `y = a ∘ s` (or `s ∘ a` when `scalarFirst`) for a Float `s`. Backward:
/// `a+s, s+a, a−s: ga = g`; `s−a: ga = −g`; `a·s, s·a: ga = s·g`; `a/s: ga = g/s`; `s/a: ga = −s·g/a²`.
func scalarOp(_ kind: BinaryKind, _ a: Tensor, _ s: Float, scalarFirst: Bool) -> Tensor {
    let out = Tensor(uninitializedShape: a.shape)
    let x = a.ptr, y = out.ptr, n = a.count
    switch (kind, scalarFirst) {
    case (.add, _): for i in 0..<n { y[i] = x[i] + s }
    case (.sub, false): for i in 0..<n { y[i] = x[i] - s }
    case (.sub, true): for i in 0..<n { y[i] = s - x[i] }
    case (.mul, _): for i in 0..<n { y[i] = x[i] * s }
    case (.div, false): for i in 0..<n { y[i] = x[i] / s }
    case (.div, true): for i in 0..<n { y[i] = s / x[i] }
    }
    Tape.record(kind.rawValue + "Scalar", inputs: [a], output: out) { g in
        switch (kind, scalarFirst) {
        case (.add, _), (.sub, false): a.accumulateGrad(g.ptr)
        case (.sub, true): a.accumulateGrad(g.ptr, scale: -1)
        case (.mul, _): a.accumulateGrad(g.ptr, scale: s)
        case (.div, false):
            let (ga, fresh) = a.gradBuffer(), gp = g.ptr
            if fresh { for i in 0..<n { ga[i] = gp[i] / s } } else { for i in 0..<n { ga[i] += gp[i] / s } }
        case (.div, true):   // d(s/x)/dx = −s/x² = −y/x
            let (ga, fresh) = a.gradBuffer(), gp = g.ptr
            if fresh { for i in 0..<n { ga[i] = -gp[i] * y[i] / x[i] } }
            else { for i in 0..<n { ga[i] -= gp[i] * y[i] / x[i] } }
        }
    }
    return out
}

// MARK: - Operators

/// `a + b` with broadcasting; throws `TensorError.shapeMismatch` on incompatible shapes.
public func + (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(.add, a, b) }
/// `a − b` with broadcasting; throws on incompatible shapes.
public func - (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(.sub, a, b) }
/// `a · b` elementwise with broadcasting; throws on incompatible shapes.
public func * (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(.mul, a, b) }
/// `a / b` elementwise with broadcasting; throws on incompatible shapes.
public func / (a: Tensor, b: Tensor) throws -> Tensor { try binaryOp(.div, a, b) }

/// `y = a + s`. Backward: `ga = g`.
public func + (a: Tensor, s: Float) -> Tensor { scalarOp(.add, a, s, scalarFirst: false) }
/// `y = s + a`. Backward: `ga = g`.
public func + (s: Float, a: Tensor) -> Tensor { scalarOp(.add, a, s, scalarFirst: true) }
/// `y = a − s`. Backward: `ga = g`.
public func - (a: Tensor, s: Float) -> Tensor { scalarOp(.sub, a, s, scalarFirst: false) }
/// `y = s − a`. Backward: `ga = −g`.
public func - (s: Float, a: Tensor) -> Tensor { scalarOp(.sub, a, s, scalarFirst: true) }
/// `y = a · s`. Backward: `ga = s·g`.
public func * (a: Tensor, s: Float) -> Tensor { scalarOp(.mul, a, s, scalarFirst: false) }
/// `y = s · a`. Backward: `ga = s·g`.
public func * (s: Float, a: Tensor) -> Tensor { scalarOp(.mul, a, s, scalarFirst: true) }
/// `y = a / s`. Backward: `ga = g/s`.
public func / (a: Tensor, s: Float) -> Tensor { scalarOp(.div, a, s, scalarFirst: false) }
/// `y = s / a`. Backward: `ga = −s·g/a²`.
public func / (s: Float, a: Tensor) -> Tensor { scalarOp(.div, a, s, scalarFirst: true) }
/// `−a` (see `neg`).
public prefix func - (a: Tensor) -> Tensor { neg(a) }
