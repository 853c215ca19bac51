/// Elementwise selection. `where` is a Swift keyword: call it as `` `where`(mask, a, b) ``.

/// `y = mask ? a : b` elementwise, with a Bool mask of `a.count` values (row-major) and `a`, `b` of
/// the same shape. Backward: `ga = g · mask`, `gb = g · ¬mask`; the mask is constant.
public func `where`(_ mask: [Bool], _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try checkSameShape("where", a, b)
    guard mask.count == a.count else {
        throw TensorError.invalidArgument(
            op: "where", message: "mask has \(mask.count) values, tensors of shape \(a.shape) have \(a.count)")
    }
    let out = Tensor(uninitializedShape: a.shape)
    let ap = a.ptr, bp = b.ptr, yp = out.ptr
    mask.withUnsafeBufferPointer { m in for i in 0..<a.count { yp[i] = m[i] ? ap[i] : bp[i] } }
    Tape.record("where", inputs: [a, b], output: out) { g in
        let gp = g.ptr
        mask.withUnsafeBufferPointer { m in
            if a.requiresGrad {
                let (ga, fresh) = a.gradBuffer()
                if fresh { for i in 0..<a.count { ga[i] = m[i] ? gp[i] : 0 } }
                else { for i in 0..<a.count where m[i] { ga[i] += gp[i] } }
            }
            if b.requiresGrad {
                let (gb, fresh) = b.gradBuffer()
                if fresh { for i in 0..<b.count { gb[i] = m[i] ? 0 : gp[i] } }
                else { for i in 0..<b.count where !m[i] { gb[i] += gp[i] } }
            }
        }
    }
    return out
}

/// `y = mask ≠ 0 ? a : b` with a Tensor mask of the same shape as `a` and `b` (a nonzero element
/// selects `a`). Backward as for the Bool mask; the mask gets no gradient.
public func `where`(_ mask: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    try checkSameShape("where", a, b)
    try checkSameShape("where (mask)", mask, a)
    let mp = mask.ptr
    return try `where`((0..<mask.count).map { mp[$0] != 0 }, a, b)
}
