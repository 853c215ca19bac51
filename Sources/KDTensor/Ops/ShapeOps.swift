/// Layout ops: reshape (a view), transpose/permute, slice, concat, gather.

/// `y = x` viewed with a new shape (same storage, no copy); one dim may be `-1` (inferred).
/// Backward: `gx = reshape(g, x.shape)`, i.e. the gradient values unchanged.
public func reshape(_ x: Tensor, _ shape: [Int]) throws -> Tensor {
    var shape = shape
    let unknown = shape.indices.filter { shape[$0] == -1 }
    let known = shape.filter { $0 != -1 }.reduce(1, *)
    let bad = {
        TensorError.invalidArgument(op: "reshape", message: "cannot view \(x.shape) (\(x.count) elements) as \(shape)")
    }
    if shape.contains(where: { $0 < -1 }) || unknown.count > 1 { throw bad() }
    if let u = unknown.first {
        guard known > 0, x.count % known == 0 else { throw bad() }
        shape[u] = x.count / known
    }
    guard shape.reduce(1, *) == x.count else { throw bad() }
    let out = Tensor(shape: shape, storage: x.storage)
    Tape.record("reshape", inputs: [x], output: out) { g in x.accumulateGrad(g.ptr) }
    return out
}

/// `y.shape[d] = x.shape[axes[d]]`, `y[i₀, …, i_{r−1}] = x[j]` with `j[axes[d]] = i_d` (NumPy
/// `transpose(x, axes)`), a copy. Backward: the gradient permuted back through the same index map.
///
/// After merging dims that stay adjacent, a permutation whose innermost output dim is strided in `x`
/// while the one before it is contiguous (2-D transpose, NHWC ↔ NCHW) is copied in 16×16 tiles, so
/// both sides stay in cache.
public func permute(_ x: Tensor, _ axes: [Int]) throws -> Tensor {
    guard axes.count == x.rank, axes.sorted() == Array(0..<x.rank) else {
        throw TensorError.invalidArgument(op: "permute", message: "axes \(axes) are not a permutation of "
                                          + "0..<\(x.rank) (shape \(x.shape))")
    }
    let outShape = axes.map { x.shape[$0] }
    let xs = contiguousStrides(x.shape)
    let loop = StridedLoop(shape: outShape, contiguousStrides(outShape), axes.map { xs[$0] })
    let out = Tensor(uninitializedShape: outShape)
    permuteCopy(loop, from: x.ptr, to: out.ptr, scatter: false, accumulate: false)
    Tape.record("permute", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        permuteCopy(loop, from: g.ptr, to: ga, scatter: true, accumulate: !fresh)
    }
    return out
}

/// Gather (`out[o0] = x[o1]`) or scatter (`x[o1] (+)= out[o0]`) over a permutation loop whose operand 0
/// is the contiguous permuted tensor and operand 1 the original.
private func permuteCopy(_ loop: StridedLoop, from src: UnsafePointer<Float>, to dst: UnsafeMutablePointer<Float>,
                         scatter: Bool, accumulate: Bool) {
    let dims = loop.dims, s1 = loop.strides[1]
    let r = dims.count
    let n = dims[r - 1], si = s1[r - 1]
    if r >= 2 && si != 1 && s1[r - 2] == 1 {
        // Tiled 2-D transpose of each [rows, n] block: permuted (rows·n + c) ↔ original (row + c·si).
        let rows = dims[r - 2], tile = 16
        loop.forEachRun(innerDims: 2) { o0, o1, _ in
            for r0 in stride(from: 0, to: rows, by: tile) {
                let r1 = Swift.min(r0 + tile, rows)
                for c0 in stride(from: 0, to: n, by: tile) {
                    let c1 = Swift.min(c0 + tile, n)
                    for row in r0..<r1 {
                        for c in c0..<c1 {
                            let p = o0 + row * n + c, q = o1 + row + c * si
                            if !scatter {
                                dst[p] = src[q]
                            } else if accumulate {
                                dst[q] += src[p]
                            } else {
                                dst[q] = src[p]
                            }
                        }
                    }
                }
            }
        }
        return
    }
    loop.forEachRun { o0, o1, _ in
        if !scatter {
            if si == 1 { (dst + o0).update(from: src + o1, count: n) }
            else { for i in 0..<n { dst[o0 + i] = src[o1 + i * si] } }
        } else if accumulate {
            for i in 0..<n { dst[o1 + i * si] += src[o0 + i] }
        } else {
            for i in 0..<n { dst[o1 + i * si] = src[o0 + i] }
        }
    }
}

/// `y = xᵀ` for a 2-D `x` (a copy). Backward: `gx = gᵀ`.
public func transpose(_ x: Tensor) throws -> Tensor {
    guard x.rank == 2 else {
        throw TensorError.invalidArgument(op: "transpose", message: "needs a 2-D tensor, got shape \(x.shape)")
    }
    return try permute(x, [1, 0])
}

/// `y = x[…, range, …]` along `axis` (a copy). Backward: `g` added into the sliced positions of `gx`
/// (zero elsewhere).
public func slice(_ x: Tensor, axis: Int, range: Range<Int>) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "slice")
    guard x.rank > 0, range.lowerBound >= 0, range.upperBound <= x.shape[ax] else {
        throw TensorError.invalidArgument(op: "slice",
                                          message: "range \(range) out of bounds for axis \(axis) of shape \(x.shape)")
    }
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    var outShape = x.shape
    outShape[ax] = range.count
    let out = Tensor(uninitializedShape: outShape)
    let block = range.count * inner, start = range.lowerBound * inner
    let xp = x.ptr, yp = out.ptr
    for o in 0..<outer { (yp + o * block).update(from: xp + o * n * inner + start, count: block) }
    Tape.record("slice", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        if fresh { ga.update(repeating: 0, count: x.count) }
        let gp = g.ptr
        for o in 0..<outer {
            let dst = ga + o * n * inner + start, src = gp + o * block
            for i in 0..<block { dst[i] += src[i] }
        }
    }
    return out
}

/// `y = [x₀ ‖ x₁ ‖ …]` along `axis`; all inputs share every other dim. Backward: each input receives its
/// block of `g`.
public func concat(_ xs: [Tensor], axis: Int) throws -> Tensor {
    guard let first = xs.first else {
        throw TensorError.invalidArgument(op: "concat", message: "no tensors to concatenate")
    }
    let ax = try normalizeAxis(axis, rank: first.rank, op: "concat")
    guard first.rank > 0 else {
        throw TensorError.invalidArgument(op: "concat", message: "cannot concatenate rank-0 tensors")
    }
    for x in xs.dropFirst() {
        var a = first.shape, b = x.shape
        if a.count == b.count { a[ax] = 0; b[ax] = 0 }
        if a != b { throw TensorError.shapeMismatch(op: "concat (axis \(axis))", lhs: first.shape, rhs: x.shape) }
    }
    let (outer, _, inner) = splitAround(first.shape, axis: ax)
    let sizes = xs.map { $0.shape[ax] }
    let total = sizes.reduce(0, +)
    var outShape = first.shape
    outShape[ax] = total
    let out = Tensor(uninitializedShape: outShape)
    let yp = out.ptr
    var offsets: [Int] = []
    var off = 0
    for (x, s) in zip(xs, sizes) {
        offsets.append(off)
        let block = s * inner
        for o in 0..<outer { (yp + o * total * inner + off * inner).update(from: x.ptr + o * block, count: block) }
        off += s
    }
    Tape.record("concat", inputs: xs, output: out) { g in
        let gp = g.ptr
        for (k, x) in xs.enumerated() where x.requiresGrad {
            let block = sizes[k] * inner
            let (ga, fresh) = x.gradBuffer()
            for o in 0..<outer {
                let src = gp + o * total * inner + offsets[k] * inner, dst = ga + o * block
                if fresh { dst.update(from: src, count: block) } else { for i in 0..<block { dst[i] += src[i] } }
            }
        }
    }
    return out
}

/// `y[…, k, …] = x[…, indices[k], …]` along `axis` (rows by index for `axis: 0`; repeats allowed).
/// Backward: scatter-add, `gx[…, indices[k], …] += g[…, k, …]` (repeated indices accumulate).
public func gather(_ x: Tensor, indices: [Int], axis: Int = 0) throws -> Tensor {
    let ax = try normalizeAxis(axis, rank: x.rank, op: "gather")
    guard x.rank > 0 else {
        throw TensorError.invalidArgument(op: "gather", message: "cannot gather from a rank-0 tensor")
    }
    let (outer, n, inner) = splitAround(x.shape, axis: ax)
    for (k, i) in indices.enumerated() where i < 0 || i >= n {
        throw TensorError.invalidArgument(op: "gather", message: "index \(i) at position \(k) out of range 0..<\(n) "
                                          + "for axis \(axis) of shape \(x.shape)")
    }
    var outShape = x.shape
    outShape[ax] = indices.count
    let out = Tensor(uninitializedShape: outShape)
    let m = indices.count
    let xp = x.ptr, yp = out.ptr
    for o in 0..<outer {
        for (k, i) in indices.enumerated() {
            (yp + (o * m + k) * inner).update(from: xp + (o * n + i) * inner, count: inner)
        }
    }
    Tape.record("gather", inputs: [x], output: out) { g in
        let (ga, fresh) = x.gradBuffer()
        if fresh { ga.update(repeating: 0, count: x.count) }
        let gp = g.ptr
        for o in 0..<outer {
            for (k, i) in indices.enumerated() {
                let dst = ga + (o * n + i) * inner, src = gp + (o * m + k) * inner
                for j in 0..<inner { dst[j] += src[j] }
            }
        }
    }
    return out
}
