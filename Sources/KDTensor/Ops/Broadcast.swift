/// NumPy broadcasting and the strided loop every elementwise op, reduction and layout op runs on.
///
/// Rules (NumPy): shapes are aligned at the right; missing leading dims count as 1; two dims are
/// compatible when equal or when one of them is 1, and the result takes the larger. A broadcast
/// operand is read with stride 0 along the dims it is stretched over.

/// The broadcast shape of `a` and `b`, or nil when they are incompatible.
public func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
    let r = Swift.max(a.count, b.count)
    var out = [Int](repeating: 1, count: r)
    for i in 0..<r {
        let da = i < r - a.count ? 1 : a[i - (r - a.count)]
        let db = i < r - b.count ? 1 : b[i - (r - b.count)]
        if da == db || db == 1 { out[i] = da } else if da == 1 { out[i] = db } else { return nil }
    }
    return out
}

/// Row-major strides of `shape` as seen from `outShape` (right-aligned): 0 along broadcast dims.
/// `shape` must broadcast to `outShape`.
func broadcastStrides(_ shape: [Int], to outShape: [Int]) -> [Int] {
    let r = outShape.count
    var strides = [Int](repeating: 0, count: r)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) {
        let o = i + (r - shape.count)
        strides[o] = shape[i] == 1 && outShape[o] != 1 ? 0 : s
        s *= shape[i]
    }
    return strides
}

/// Contiguous row-major strides of `shape`.
func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 0, count: shape.count)
    var s = 1
    for i in stride(from: shape.count - 1, through: 0, by: -1) { strides[i] = s; s *= shape[i] }
    return strides
}

/// Normalises a possibly negative axis; throws when it is outside `-rank..<rank`.
func normalizeAxis(_ axis: Int, rank: Int, op: String) throws -> Int {
    let a = axis < 0 ? axis + rank : axis
    guard a >= 0, a < rank else {
        throw TensorError.invalidArgument(op: op, message: "axis \(axis) out of range for rank \(rank)")
    }
    return a
}

/// `[outer, n, inner]` split of `shape` around `axis` (rank-0 tensors count as `[1]`).
func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
    if shape.isEmpty { return (1, 1, 1) }
    let outer = shape[..<axis].reduce(1, *)
    let inner = shape[(axis + 1)...].reduce(1, *)
    return (outer, shape[axis], inner)
}

/// A loop over a shape with up to three operands, each with its own strides (0 = broadcast).
///
/// Size-1 dims are dropped and neighbouring dims merged wherever every operand is contiguous across
/// them, so same-shape operands become one run, a scalar operand one run with stride 0, and a bias
/// over the last axis `outer` runs of the row length: those are the fast paths, found by the plan.
struct StridedLoop {
    private(set) var dims: [Int] = []
    private(set) var strides: [[Int]] = [[], [], []]
    let isEmpty: Bool

    init(shape: [Int], _ s0: [Int], _ s1: [Int] = [], _ s2: [Int] = []) {
        isEmpty = shape.contains(0)
        let ops = [s0, s1, s2].map { $0.isEmpty ? [Int](repeating: 0, count: shape.count) : $0 }
        for d in 0..<shape.count where shape[d] != 1 {
            if let last = dims.indices.last,
               (0..<3).allSatisfy({ strides[$0][last] == ops[$0][d] * shape[d] }) {
                dims[last] *= shape[d]
                for k in 0..<3 { strides[k][last] = ops[k][d] }
            } else {
                dims.append(shape[d])
                for k in 0..<3 { strides[k].append(ops[k][d]) }
            }
        }
        if dims.isEmpty { dims = [1]; strides = [[0], [0], [0]] }
    }

    /// Length of each innermost run.
    var runLength: Int { dims[dims.count - 1] }
    /// Innermost strides of the three operands.
    var innerStrides: (Int, Int, Int) { (strides[0].last!, strides[1].last!, strides[2].last!) }

    /// Calls `body(offset0, offset1, offset2)` at the start of every innermost run (with
    /// `innerDims: 2`, of every innermost 2-D block `dims[count−2] × dims[count−1]`).
    @inline(__always)
    func forEachRun(innerDims: Int = 1, _ body: (Int, Int, Int) -> Void) {
        if isEmpty { return }
        let outer = dims.count - innerDims
        if outer <= 0 { body(0, 0, 0); return }
        var idx = [Int](repeating: 0, count: outer)
        var o0 = 0, o1 = 0, o2 = 0
        let s0 = strides[0], s1 = strides[1], s2 = strides[2]
        while true {
            body(o0, o1, o2)
            var d = outer - 1
            while d >= 0 {
                idx[d] += 1; o0 += s0[d]; o1 += s1[d]; o2 += s2[d]
                if idx[d] < dims[d] { break }
                o0 -= s0[d] * dims[d]; o1 -= s1[d] * dims[d]; o2 -= s2[d] * dims[d]
                idx[d] = 0
                d -= 1
            }
            if d < 0 { return }
        }
    }
}

/// `Σ p[0..<n]` in Double with four independent accumulators (pipelines and vectorises).
@inline(__always)
func sumDouble(_ p: UnsafePointer<Float>, _ n: Int) -> Double {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= n {
        s0 += Double(p[i]); s1 += Double(p[i + 1]); s2 += Double(p[i + 2]); s3 += Double(p[i + 3])
        i += 4
    }
    while i < n { s0 += Double(p[i]); i += 1 }
    return (s0 + s1) + (s2 + s3)
}

/// `⟨a, b⟩` over `n` contiguous values, in Double with four accumulators.
@inline(__always)
func dotDouble(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Double {
    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    var i = 0
    while i + 4 <= n {
        s0 += Double(a[i]) * Double(b[i]); s1 += Double(a[i + 1]) * Double(b[i + 1])
        s2 += Double(a[i + 2]) * Double(b[i + 2]); s3 += Double(a[i + 3]) * Double(b[i + 3])
        i += 4
    }
    while i < n { s0 += Double(a[i]) * Double(b[i]); i += 1 }
    return (s0 + s1) + (s2 + s3)
}

/// Sums `src` (contiguous, shape `fullShape`) down to `shape` (which broadcasts to `fullShape`),
/// accumulating in Double: the backward of broadcasting.
func reduceToShape(_ src: UnsafePointer<Float>, fullShape: [Int], shape: [Int]) -> [Double] {
    let count = shape.reduce(1, *)
    var acc = [Double](repeating: 0, count: count)
    let loop = StridedLoop(shape: fullShape, contiguousStrides(fullShape), broadcastStrides(shape, to: fullShape))
    let n = loop.runLength
    let (_, si, _) = loop.innerStrides
    acc.withUnsafeMutableBufferPointer { a in
        let a = a.baseAddress!
        loop.forEachRun { o0, o1, _ in
            let s = src + o0
            if si == 0 {
                a[o1] += sumDouble(s, n)
            } else {
                for i in 0..<n { a[o1 + i * si] += Double(s[i]) }
            }
        }
    }
    return acc
}

/// `x.grad += reduce(src)`: adds a gradient of the broadcast shape `fullShape` into `x`, summing over
/// the dims `x` was broadcast along (Double accumulation).
func accumulateBroadcastGrad(_ x: Tensor, _ src: UnsafePointer<Float>, fullShape: [Int], scale: Float = 1) {
    if x.count == fullShape.reduce(1, *) {
        if scale == 1 { x.accumulateGrad(src) } else { x.accumulateGrad(src, scale: scale) }
        return
    }
    let acc = reduceToShape(src, fullShape: fullShape, shape: x.shape)
    let (g, fresh) = x.gradBuffer()
    let s = Double(scale)
    if fresh { for i in 0..<x.count { g[i] = Float(acc[i] * s) } }
    else { for i in 0..<x.count { g[i] += Float(acc[i] * s) } }
}
