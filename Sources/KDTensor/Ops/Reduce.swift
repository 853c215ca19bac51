/// Reductions: sum, mean (all elements or over axes) and max over an axis. Sums accumulate in Double.

/// Validated axes (negatives allowed), sorted, no duplicates.
private func normalizeAxes(_ axes: [Int], rank: Int, op: String) throws -> [Int] {
    let norm = try axes.map { try normalizeAxis($0, rank: rank, op: op) }.sorted()
    for i in norm.indices.dropFirst() where norm[i] == norm[i - 1] {
        throw TensorError.invalidArgument(op: op, message: "axis \(norm[i]) repeated in \(axes)")
    }
    return norm
}

/// `y = scale · Σ_all x` as a rank-0 tensor. Backward: `gx = scale · g`.
private func reduceAll(_ name: String, _ x: Tensor, scale: Double) -> Tensor {
    let s = sumDouble(x.ptr, x.count)
    let out = Tensor(uninitializedShape: [])
    out.ptr[0] = Float(s * scale)
    Tape.record(name, inputs: [x], output: out) { g in
        let v = g.ptr[0] * Float(scale)
        let (ga, fresh) = x.gradBuffer()
        if fresh { ga.update(repeating: v, count: x.count) } else { for i in 0..<x.count { ga[i] += v } }
    }
    return out
}

/// `y = scale · Σ_{axes} x` (kept dims of size 1 when `keepDims`). Backward: `gx = scale · g`
/// broadcast back over the reduced axes.
private func reduceAxes(_ name: String, _ x: Tensor, axes: [Int], keepDims: Bool, mean: Bool) throws -> Tensor {
    let ax = try normalizeAxes(axes, rank: x.rank, op: name)
    var kept = x.shape
    for a in ax { kept[a] = 1 }
    let outShape = keepDims ? kept : x.shape.enumerated().filter { !ax.contains($0.offset) }.map(\.element)
    let reduced = ax.reduce(1) { $0 * x.shape[$1] }
    let scale = mean ? 1.0 / Double(Swift.max(reduced, 1)) : 1.0
    let out = Tensor(uninitializedShape: outShape)
    let loop = StridedLoop(shape: x.shape, contiguousStrides(x.shape), broadcastStrides(kept, to: x.shape))
    let n = loop.runLength
    let (_, si, _) = loop.innerStrides
    var acc = [Double](repeating: 0, count: out.count)
    let xp = x.ptr
    acc.withUnsafeMutableBufferPointer { accb in
        let a = accb.baseAddress!
        loop.forEachRun { o0, o1, _ in
            if si == 0 {
                a[o1] += sumDouble(xp + o0, n)
            } else {
                for i in 0..<n { a[o1 + i * si] += Double(xp[o0 + i]) }
            }
        }
    }
    for i in 0..<out.count { out.ptr[i] = Float(acc[i] * scale) }

    Tape.record(name, inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        if fresh { ga.update(repeating: 0, count: x.count) }
        let gp = g.ptr, sc = Float(scale)
        loop.forEachRun { o0, o1, _ in
            if si == 0 {
                let v = gp[o1] * sc
                for i in 0..<n { ga[o0 + i] += v }
            } else {
                for i in 0..<n { ga[o0 + i] += gp[o1 + i * si] * sc }
            }
        }
    }
    return out
}

/// `y = Σᵢ xᵢ` over all elements, a rank-0 tensor (Double accumulation). Backward: `gx = g`.
public func sum(_ x: Tensor) -> Tensor { reduceAll("sum", x, scale: 1) }

/// `y = Σ_{axes} x`; reduced dims are dropped, or kept with size 1 when `keepDims`. Negative axes count
/// from the end. Backward: `gx = g` broadcast over the reduced axes.
public func sum(_ x: Tensor, axes: [Int], keepDims: Bool = false) throws -> Tensor {
    try reduceAxes("sum", x, axes: axes, keepDims: keepDims, mean: false)
}

/// `y = (1/n) Σᵢ xᵢ` over all `n` elements, a rank-0 tensor. Backward: `gx = g / n`.
public func mean(_ x: Tensor) -> Tensor { reduceAll("mean", x, scale: 1 / Double(Swift.max(x.count, 1))) }

/// `y = (1/n) Σ_{axes} x` with `n` the number of elements reduced per output. Backward: `gx = g / n`
/// broadcast over the reduced axes.
public func mean(_ x: Tensor, axes: [Int], keepDims: Bool = false) throws -> Tensor {
    try reduceAxes("mean", x, axes: axes, keepDims: keepDims, mean: true)
}

/// `y = max_k x[…, k, …]` along `axis`. Backward: the whole gradient goes to the arg-max element,
/// ties resolved to the first (lowest index) maximum; NaNs are skipped unless all values are NaN.
public func max(_ x: Tensor, axis: Int, keepDims: Bool = false) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "max")
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    guard n > 0 else {
        throw TensorError.invalidArgument(op: "max", message: "axis \(axis) of shape \(x.shape) is empty")
    }
    var outShape = x.shape
    if x.rank > 0 { if keepDims { outShape[ax] = 1 } else { outShape.remove(at: ax) } }
    let out = Tensor(uninitializedShape: outShape)
    var arg = [Int32](repeating: 0, count: outer * inner)
    let xp = x.ptr, yp = out.ptr
    arg.withUnsafeMutableBufferPointer { argb in
        for o in 0..<outer {
            let base = xp + o * n * inner
            for j in 0..<inner {
                var best = base[j], bi = 0
                for k in 1..<n {
                    let v = base[k * inner + j]
                    if v > best || (best.isNaN && !v.isNaN) { best = v; bi = k }
                }
                yp[o * inner + j] = best
                argb[o * inner + j] = Int32(bi)
            }
        }
    }
    Tape.record("max", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        if fresh { ga.update(repeating: 0, count: x.count) }
        let gp = g.ptr
        for o in 0..<outer {
            for j in 0..<inner {
                ga[o * n * inner + Int(arg[o * inner + j]) * inner + j] += gp[o * inner + j]
            }
        }
    }
    return out
}
