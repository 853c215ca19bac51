import Foundation
import KDCore
import KDTensor

/// Settings of the VRM loss (`docs/losses.md` "VRM"). Keys, defaults and ranges: `VRMParameters.keys`,
/// written once.
public struct VRMParameters: Equatable {
    /// Fraction of samples whose virtual vertex is pruned (count `⌊q·B⌋`).
    public var pruneFraction: Double
    /// KD temperature of the real-view KD term.
    public var temperature: Float
    /// Huber threshold `δ` of both graphs.
    public var delta: Float
    public var interSampleWeight: Float
    public var interClassWeight: Float
    public var kdWeight: Float

    /// The `vrm` keys.
    public static let keys: [LossParameter] = [
        .number("q", 0.1, min: 0, max: 1),
        .number("temperature", 4, min: 0, exclusiveMin: true),
        .number("delta", 1, min: 0, exclusiveMin: true),
        .number("inter_sample_weight", 1, min: 0),
        .number("inter_class_weight", 1, min: 0),
        .number("kd_weight", 1, min: 0),
    ]
    /// Every key at its default.
    public static let defaults = VRMParameters(LossParameterValues(defaults: keys))

    public init(_ v: LossParameterValues) {
        pruneFraction = v.number("q"); temperature = v.float("temperature"); delta = v.float("delta")
        interSampleWeight = v.float("inter_sample_weight"); interClassWeight = v.float("inter_class_weight")
        kdWeight = v.float("kd_weight")
    }
}

/// The samples whose virtual vertex VRM prunes: `r_i = JS(σ(z^T_i,real) ‖ σ(z^T_i,virtual))` (natural
/// logarithms, probabilities floored at 1e-30 inside the logs), the `⌊q·B⌋` largest, ties to the lower
/// sample index. `teacher` is `[B·V, C]` sample-major (`row = i·V + view`). Teacher-only, so every
/// rank decides the same.
public func vrmPrunedSamples(teacher zt: Tensor, views: Int, fraction q: Double) -> [Bool] {
    let c = zt.shape[1], b = zt.shape[0] / views
    var r = [Double](repeating: 0, count: b)
    var lp = [Double](repeating: 0, count: c), lq = [Double](repeating: 0, count: c)
    for i in 0..<b {
        rowLogSoftmax(zt.ptr + (i * views) * c, count: c, invT: 1, into: &lp)
        rowLogSoftmax(zt.ptr + (i * views + 1) * c, count: c, invT: 1, into: &lq)
        var klp = 0.0, klq = 0.0
        for j in 0..<c {
            let p = exp(lp[j]), qq = exp(lq[j]), m = 0.5 * (p + qq)
            let lm = log(max(m, 1e-30))
            klp += p * (log(max(p, 1e-30)) - lm)
            klq += qq * (log(max(qq, 1e-30)) - lm)
        }
        r[i] = 0.5 * klp + 0.5 * klq
    }
    let drop = max(0, min(b, Int(q * Double(b))))
    let order = (0..<b).sorted { r[$0] != r[$1] ? r[$0] > r[$1] : $0 < $1 }
    var pruned = [Bool](repeating: false, count: b)
    for i in order.prefix(drop) { pruned[i] = true }
    return pruned
}

/// Virtual Relation Matching (Zhang et al., ICCV 2025, arXiv 2502.20760; `docs/losses.md` "VRM"), one rank's share.
///
/// Vertices are the logits of the real (view 0) and virtual (view 1) view of each of the `B` samples
/// (`[B·V, C]`, sample-major, further views are not vertices), standardised `ẑ = n(z − mean_c z)`;
/// the virtual vertices of `vrmPrunedSamples` drop out. Over the `M` kept vertices and `C` classes:
///
///     E^IS_mn = n(ẑ_m − ẑ_n)  (m < n),     E^IC_cd = n(w_c − w_d)  (c < d, w_c = (ẑ_{m,c})_m)
///     L_IS = (1/(M(M−1)/2)) Σ_{m<n} Σ Huber_δ(E^IS,S_mn − E^IS,T_mn)
///     L_IC = (1/(C(C−1)/2)) Σ_{c<d} Σ Huber_δ(E^IC,S_cd − E^IC,T_cd)
///     L_VRM = λ_IS L_IS + λ_IC L_IC + w_KD · T² (1/B) Σ_i KL(σ(z^T_i,real/T) ‖ σ(z^S_i,real/T))
///
/// Sharding (`shard` in samples): inter-sample pairs `{m, n}` owned by vertex `min(m, n)` when `m + n` is
/// even and `max(m, n)` when odd (sample-major order), those owned by a shard sample's vertices; the
/// real-view KD over the shard's samples. The inter-class graph, whose edges are normalised over all
/// vertices: with `comm` it is row-sharded (`vrmInterClassRows`: each rank sums the Huber terms of its own
/// vertices' components, the edges' squared lengths and the normalisation's `⟨e, g⟩` combined by two
/// all-reduces of `C(C−1)/2` pairs each, `O(C²·M/N)` per rank); without, the same sweep runs over every
/// vertex on every rank (`O(C²M)`) and is taken with weight `|shard|/B`. Edges are built
/// pair by pair (never `(2B)²·C` floats at once); memory `O(M·C)`. Backward fused: Huber', then through
/// each `n(·)`, then through the standardisation `dz = dy − mean(dy)`. Terms: `inter_sample`,
/// `inter_class`, `kd` (shares, unweighted).
public func vrmLoss(student zs: Tensor, teacher zt: Tensor, views: Int = 2,
                    parameters p: VRMParameters = .defaults, shard: Range<Int>? = nil,
                    comm: Communicator? = nil) throws -> LossShare {
    let sums = comm.map { comm in
        { (partials: [[Double]], count: Int) in try blockSums(partials, count: count, comm: comm, exactBlocks: nil) }
    }
    return try vrmBlockShares(student: zs, teacher: zt, views: views, parameters: p, blocks: shard.map { [$0] },
                              sums: sums)[0]
}

/// `vrmLoss` over the loss blocks `blocks` (sample ranges; nil: the whole batch, one block), one share
/// per block, each recorded as its block's (`LossBlocks`). With `sums` (`LossInputs.blockSums`: per-block
/// vectors added over every block of every rank) the inter-class graph is row-sharded and its edge
/// lengths and `⟨e, G⟩` are formed per block; without, the whole inter-class graph is swept here and
/// weighted by the block's fraction of the batch.
func vrmBlockShares(student zs: Tensor, teacher zt: Tensor, views: Int, parameters p: VRMParameters,
                    blocks given: [Range<Int>]?, sums: (([[Double]], Int) throws -> [Double])?) throws -> [LossShare] {
    let name = "vrm"
    try check2D(name, "student logits", zs)
    try check2D(name, "teacher logits", zt, rows: zs.shape[0], cols: zs.shape[1])
    guard views >= 2 else {
        throw LossError.invalidArgument(loss: name, message: "needs views >= 2 (real and virtual), got \(views)")
    }
    guard zs.shape[0] % views == 0 else {
        throw LossError.invalidArgument(loss: name,
                                        message: "\(zs.shape[0]) logit rows are not \(views) views per sample")
    }
    guard p.delta > 0, p.temperature > 0, p.pruneFraction >= 0, p.pruneFraction <= 1 else {
        throw LossError.invalidArgument(loss: name, message: "delta \(p.delta), temperature \(p.temperature) "
                                        + "must be > 0 and q \(p.pruneFraction) in [0, 1]")
    }
    let c = zs.shape[1], b = zs.shape[0] / views
    guard b > 0 else { throw LossError.invalidArgument(loss: name, message: "empty batch") }
    let blocks = given ?? [0..<b]
    for shard in blocks { try checkRows(name, shard, b) }
    let pruned = withNoGrad { vrmPrunedSamples(teacher: zt, views: views, fraction: p.pruneFraction) }

    // Kept vertices in sample-major order: their logit rows and owning samples.
    var vrows: [Int] = [], vsample: [Int] = []
    for i in 0..<b {
        vrows.append(i * views); vsample.append(i)
        if !pruned[i] { vrows.append(i * views + 1); vsample.append(i) }
    }
    let mCount = vrows.count
    let wantGrad = needsGrad(zs)

    // Standardised vertices ẑ (student and teacher), norms of the centred rows.
    let hs = Tensor(uninitializedShape: [mCount, c]), ht = Tensor(uninitializedShape: [mCount, c])
    let ns = Tensor(uninitializedShape: [mCount]), nt = Tensor(uninitializedShape: [mCount])
    func standardise(_ z: Tensor, into h: Tensor, norms: Tensor) {
        for m in 0..<mCount {
            let src = z.ptr + vrows[m] * c, dst = h.ptr + m * c
            var mean = 0.0
            for j in 0..<c { mean += Double(src[j]) }
            let mu = Float(mean / Double(c))
            for j in 0..<c { dst[j] = src[j] - mu }
            normalizeRows(dst, rows: 1, cols: c, into: dst, norms: norms.ptr + m)
        }
    }
    standardise(zs, into: hs, norms: ns)
    standardise(zt, into: ht, norms: nt)
    let ghs: [Tensor]? = wantGrad ? blocks.map { _ in Tensor.zeros([mCount, c]) } : nil
    let delta = p.delta

    /// One edge `n(a − b)` of length `len` for student and teacher; adds `Σ Huber_δ` to the return value
    /// and, with `scale`, the gradient into `ga` (+) and `gb` (−). Eight lanes at a time, a scalar tail.
    let vs = Tensor(uninitializedShape: [c]), vt = Tensor(uninitializedShape: [c])
    typealias F8 = SIMD8<Float>
    @inline(__always) func ld(_ p: UnsafePointer<Float>, _ q: Int) -> F8 {
        UnsafeRawPointer(p + q).loadUnaligned(as: F8.self)
    }
    @inline(__always) func st(_ p: UnsafeMutablePointer<Float>, _ q: Int, _ v: F8) {
        UnsafeMutableRawPointer(p + q).storeBytes(of: v, as: F8.self)
    }
    @inline(__always)
    func edge(_ aS: UnsafePointer<Float>, _ bS: UnsafePointer<Float>, _ aT: UnsafePointer<Float>,
              _ bT: UnsafePointer<Float>, len: Int, scale: Float,
              ga: UnsafeMutablePointer<Float>?, gb: UnsafeMutablePointer<Float>?) -> Double {
        let u = vs.ptr, v = vt.ptr, wide = len & ~7
        var s2v = F8(), t2v = F8()
        for q in stride(from: 0, to: wide, by: 8) {
            let x = ld(aS, q) - ld(bS, q), y = ld(aT, q) - ld(bT, q)
            st(u, q, x); st(v, q, y)
            s2v += x * x; t2v += y * y
        }
        var s2 = Double(s2v.sum()), t2 = Double(t2v.sum())
        for q in wide..<len {
            let x = aS[q] - bS[q], y = aT[q] - bT[q]
            u[q] = x; v[q] = y
            s2 += Double(x) * Double(x); t2 += Double(y) * Double(y)
        }
        let rs = Float(s2.squareRoot()), rt = Float(t2.squareRoot())
        let invS = 1 / max(rs, rowNormEpsilon), invT = 1 / max(rt, rowNormEpsilon)
        var sumV = F8(), sum: Float = 0
        guard let ga, let gb else {
            for q in stride(from: 0, to: wide, by: 8) { sumV += huber(ld(u, q) * invS - ld(v, q) * invT, delta) }
            for q in wide..<len { sum += huber(u[q] * invS - v[q] * invT, delta) }
            return Double(sumV.sum() + sum)
        }
        var dotV = F8(), dot: Float = 0
        for q in stride(from: 0, to: wide, by: 8) {
            let e = ld(u, q) * invS, r = e - ld(v, q) * invT
            sumV += huber(r, delta)
            let g = huberDerivative(r, delta) * scale
            st(u, q, e); st(v, q, g)
            dotV += e * g
        }
        for q in wide..<len {
            let e = u[q] * invS, r = e - v[q] * invT
            sum += huber(r, delta)
            let g = huberDerivative(r, delta) * scale
            u[q] = e; v[q] = g
            dot += e * g
        }
        dot += dotV.sum()
        let long = rs > rowNormEpsilon
        for q in stride(from: 0, to: wide, by: 8) {
            let g = (long ? ld(v, q) - ld(u, q) * dot : ld(v, q)) * invS
            st(ga, q, ld(ga, q) + g); st(gb, q, ld(gb, q) - g)
        }
        for q in wide..<len {
            let g = (long ? v[q] - u[q] * dot : v[q]) * invS
            ga[q] += g; gb[q] -= g
        }
        return Double(sumV.sum() + sum)
    }

    // Inter-sample edges {m, n}: the one of vertex min(m, n) when m + n is even, of max(m, n) when odd —
    // each pair once over the ranks, and every vertex owns about half of its M − 1 pairs, so the shards
    // carry equal work (owning the pairs with n > m would give the first rank twice the average).
    let pairs = Double(mCount) * Double(mCount - 1) / 2
    var isShares = [Double](repeating: 0, count: blocks.count)
    if pairs > 0 {
        let scale = Float(Double(p.interSampleWeight) / pairs)
        for (k, shard) in blocks.enumerated() {
            let gh = ghs?[k]
            var isSum = 0.0
            for m in 0..<mCount where shard.contains(vsample[m]) {
                for nn in 0..<mCount where nn != m && ((m + nn) % 2 == 0) == (nn > m) {
                    isSum += edge(hs.ptr + m * c, hs.ptr + nn * c, ht.ptr + m * c, ht.ptr + nn * c, len: c,
                                  scale: scale, ga: gh.map { $0.ptr + m * c }, gb: gh.map { $0.ptr + nn * c })
                }
            }
            isShares[k] = isSum / pairs
        }
    }

    // Inter-class edges (`vrmInterClassRows`): row-sharded (each block's vertices) with `sums`; without,
    // over all kept vertices, weight |block|/B.
    let classPairs = Double(c) * Double(c - 1) / 2
    var icShares = [Double](repeating: 0, count: blocks.count)
    if classPairs > 0 {
        if sums != nil {
            let own = blocks.map { shard in
                let first = vsample.firstIndex { $0 >= shard.lowerBound } ?? mCount
                return first..<(vsample[first...].firstIndex { $0 >= shard.upperBound } ?? mCount)
            }
            let icSums = try vrmInterClassRows(student: hs, teacher: ht, grads: ghs, vertexBlocks: own, delta: delta,
                                               scale: Float(Double(p.interClassWeight) / classPairs), sums: sums)
            icShares = icSums.map { $0 / classPairs }
        } else {
            for (k, shard) in blocks.enumerated() where !shard.isEmpty {
                let frac = Double(shard.count) / Double(b)
                let icSum = try vrmInterClassRows(
                    student: hs, teacher: ht, grads: ghs.map { [$0[k]] }, vertexBlocks: [0..<mCount], delta: delta,
                    scale: Float(Double(p.interClassWeight) * frac / classPairs), sums: nil)[0]
                icShares[k] = icSum / classPairs * frac
            }
        }
    }

    let T = Double(p.temperature)
    var ls = [Double](repeating: 0, count: c), lt = [Double](repeating: 0, count: c)
    return blocks.enumerated().map { k, shard in
        var grad: Tensor? = nil
        if let gh = ghs?[k] {
            let g = Tensor.zeros(zs.shape)
            for m in 0..<mCount {
                let gm = gh.ptr + m * c
                normalizeBackward(gm, u: hs.ptr + m * c, norm: ns.ptr[m], count: c)
                var mean = 0.0
                for j in 0..<c { mean += Double(gm[j]) }
                let mu = Float(mean / Double(c))
                let dst = g.ptr + vrows[m] * c
                for j in 0..<c { dst[j] += gm[j] - mu }
            }
            grad = g
        }
        // KD on the real view over the block's samples.
        var kl = 0.0
        for i in shard {
            let row = i * views
            rowLogSoftmax(zs.ptr + row * c, count: c, invT: 1 / T, into: &ls)
            rowLogSoftmax(zt.ptr + row * c, count: c, invT: 1 / T, into: &lt)
            kl = rowKLDivergence(logP: lt, logQ: ls, count: c, adding: kl)
            if let g = grad {
                rowKLGradient(logP: lt, logQ: ls, count: c, scale: Double(p.kdWeight) * T / Double(b),
                              into: g.ptr + row * c, accumulate: true)
            }
        }
        let kdShare = T * T * kl / Double(b)
        let share = Double(p.interSampleWeight) * isShares[k] + Double(p.interClassWeight) * icShares[k]
            + Double(p.kdWeight) * kdShare
        let out = scalarTensor(share)
        LossBlocks.recording(k) { recordFused(name, output: out, inputs: [zs], grads: [grad]) }
        return LossShare(value: out, terms: [("inter_sample", isShares[k]), ("inter_class", icShares[k]),
                                             ("kd", kdShare)])
    }
}

/// `vrm`: Virtual Relation Matching over views 0 (real) and 1 (virtual) of the student/teacher logits.
public struct VRMTerm: LossTerm {
    public let kind = "vrm"
    public var weight: Float, parameters: VRMParameters
    public var needs: LossNeeds { [.studentLogits, .teacherLogits, .twoViews] }
    public var viewsRead: Int? { 2 }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        return try vrmLoss(student: zs, teacher: zt, views: x.views, parameters: parameters, shard: x.shard,
                           comm: x.comm)
    }

    /// Every loss block at once: the inter-class graph's edge lengths and `⟨e, G⟩` are sums over every block.
    public func evaluateBlocks(_ x: LossInputs) throws -> [LossShare] {
        guard x.exact else { return [try evaluate(x)] }
        try x.validate(kind)
        let zs = try x.require(x.studentLogits, kind, "student logits")
        let zt = try x.require(x.teacherLogits, kind, "teacher logits")
        return try vrmBlockShares(student: zs, teacher: zt, views: x.views, parameters: parameters,
                                  blocks: x.lossBlocks, sums: x.blockSums)
    }

    public static let descriptor = LossDescriptor(kind: "vrm", parameters: VRMParameters.keys,
                                                  parts: ["inter_sample_weight", "inter_class_weight",
                                                          "kd_weight"],
                                                  fixtures: [("vrm", runFixture)]) { weight, v in
        VRMTerm(weight: weight, parameters: VRMParameters(v))
    }

    /// Fixture `vrm`: inputs `student_logits_real`/`_virtual`, `teacher_logits_real`/`_virtual` (`[B, C]`
    /// each, interleaved sample-major into `[2B, C]`).
    static func runFixture(_ f: any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let zs = interleave(try f.input("student_logits_real"), try f.input("student_logits_virtual"))
        let zt = interleave(try f.input("teacher_logits_real"), try f.input("teacher_logits_virtual"))
        zs.requiresGrad = true
        let p = VRMParameters(LossParameterValues(VRMParameters.keys, fixture: f))
        let r = try vrmLoss(student: zs, teacher: zt, views: 2, parameters: p,
                            shard: f.share(samples: zs.shape[0] / 2), comm: f.comm)
        r.value.backward()
        let g = zs.grad ?? Tensor.zeros(zs.shape)
        return (Double(r.value.item),
                [("grad_student_logits_real", view(g, 0)), ("grad_student_logits_virtual", view(g, 1))])
    }

    /// `[B, C]` real and virtual → `[2B, C]` sample-major.
    static func interleave(_ a: Tensor, _ b: Tensor) -> Tensor {
        let n = a.shape[0], c = a.shape[1]
        let z = Tensor(uninitializedShape: [2 * n, c])
        for i in 0..<n {
            (z.ptr + 2 * i * c).update(from: a.ptr + i * c, count: c)
            (z.ptr + (2 * i + 1) * c).update(from: b.ptr + i * c, count: c)
        }
        return z
    }

    /// View `v` of a `[2B, C]` sample-major matrix.
    static func view(_ z: Tensor, _ v: Int) -> Tensor {
        let n = z.shape[0] / 2, c = z.shape[1]
        let out = Tensor(uninitializedShape: [n, c])
        for i in 0..<n { (out.ptr + i * c).update(from: z.ptr + (2 * i + v) * c, count: c) }
        return out
    }
}

/// VRM's inter-class share over the vertex blocks `vertexBlocks` (ranges of the rows of the standardised
/// `[M, C]` student and teacher vertices), one sum per block: `Σ_{c<d} Σ_{m∈block} Huber_δ(E^S_cd,m −
/// E^T_cd,m)` with the edges `E_cd = n(w_c − w_d)` normalised over ALL `M` vertices. Three sweeps over each
/// block's `[C, |block|]` columns: the partial squared lengths `Σ_m (w_cm − w_dm)²` (student, teacher),
/// added over every block of every rank by `sums`; the Huber terms and, with `grads` (one per block),
/// `G = scale·Huber'` and the partial `⟨e, G⟩` of each edge, added by `sums`; then
/// `∂w_c,m = (G_m − e_m⟨e, G⟩) / ‖w_c − w_d‖` (`G_m / ‖·‖` for a zero-length edge) added for c and
/// subtracted for d into the block's rows of its gradient. The blocks' shares add up to the whole graph
/// and their gradients to its gradient. Every rank calls `sums` alike (with no block if it owns
/// nothing); without `sums` the one block must be all `M` vertices (the whole graph).
func vrmInterClassRows(student hs: Tensor, teacher ht: Tensor, grads: [Tensor]?, vertexBlocks: [Range<Int>],
                       delta: Float, scale: Float, sums: (([[Double]], Int) throws -> [Double])?) throws -> [Double] {
    let c = hs.shape[1], pairs = c * (c - 1) / 2
    func transposed(_ x: Tensor, _ vertices: Range<Int>) -> Tensor {
        let mo = vertices.count, t = Tensor(uninitializedShape: [c, max(mo, 1)])
        for (q, m) in vertices.enumerated() { for j in 0..<c { t.ptr[j * mo + q] = x.ptr[m * c + j] } }
        return t
    }
    let hsT = vertexBlocks.map { transposed(hs, $0) }, htT = vertexBlocks.map { transposed(ht, $0) }
    let partialLengths = vertexBlocks.indices.map { b -> [Double] in
        let mo = vertexBlocks[b].count
        var lengths = [Double](repeating: 0, count: 2 * pairs)
        var k = 0
        for cc in 0..<c {
            for dd in (cc + 1)..<c {
                let aS = hsT[b].ptr + cc * mo, bS = hsT[b].ptr + dd * mo
                let aT = htT[b].ptr + cc * mo, bT = htT[b].ptr + dd * mo
                var s2 = 0.0, t2 = 0.0
                for q in 0..<mo {
                    let x = aS[q] - bS[q], y = aT[q] - bT[q]
                    s2 += Double(x) * Double(x); t2 += Double(y) * Double(y)
                }
                lengths[2 * k] = s2; lengths[2 * k + 1] = t2
                k += 1
            }
        }
        return lengths
    }
    let lengths = try sums?(partialLengths, 2 * pairs) ?? partialLengths[0]
    /// The edge's student and teacher inverse lengths, and whether the student edge is longer than ε.
    func inverse(_ k: Int) -> (s: Float, t: Float, long: Bool) {
        let rs = Float(lengths[2 * k].squareRoot()), rt = Float(lengths[2 * k + 1].squareRoot())
        return (1 / max(rs, rowNormEpsilon), 1 / max(rt, rowNormEpsilon), rs > rowNormEpsilon)
    }
    var huberSums = [Double](repeating: 0, count: vertexBlocks.count)
    var partialDots = [[Double]](repeating: [Double](repeating: 0, count: grads == nil ? 0 : pairs),
                                 count: vertexBlocks.count)
    for b in vertexBlocks.indices {
        let mo = vertexBlocks[b].count
        var k = 0
        for cc in 0..<c {
            for dd in (cc + 1)..<c {
                let aS = hsT[b].ptr + cc * mo, bS = hsT[b].ptr + dd * mo
                let aT = htT[b].ptr + cc * mo, bT = htT[b].ptr + dd * mo
                let inv = inverse(k)
                var edgeSum: Float = 0, dot: Float = 0
                for q in 0..<mo {
                    let e = (aS[q] - bS[q]) * inv.s, r = e - (aT[q] - bT[q]) * inv.t
                    edgeSum += huber(r, delta)
                    if grads != nil { dot += e * huberDerivative(r, delta) * scale }
                }
                huberSums[b] += Double(edgeSum)
                if grads != nil { partialDots[b][k] = Double(dot) }
                k += 1
            }
        }
    }
    guard let grads else { return huberSums }
    let dots = try sums?(partialDots, pairs) ?? partialDots[0]
    for b in vertexBlocks.indices {
        let mo = vertexBlocks[b].count, ghT = Tensor.zeros([c, max(mo, 1)])
        var k = 0
        for cc in 0..<c {
            for dd in (cc + 1)..<c {
                let aS = hsT[b].ptr + cc * mo, bS = hsT[b].ptr + dd * mo
                let aT = htT[b].ptr + cc * mo, bT = htT[b].ptr + dd * mo
                let ga = ghT.ptr + cc * mo, gb = ghT.ptr + dd * mo
                let inv = inverse(k), dot = Float(dots[k])
                for q in 0..<mo {
                    let e = (aS[q] - bS[q]) * inv.s, r = e - (aT[q] - bT[q]) * inv.t
                    let g = huberDerivative(r, delta) * scale
                    let dw = (inv.long ? g - e * dot : g) * inv.s
                    ga[q] += dw; gb[q] -= dw
                }
                k += 1
            }
        }
        let gh = grads[b]
        for (q, m) in vertexBlocks[b].enumerated() { for j in 0..<c { gh.ptr[m * c + j] += ghT.ptr[j * mo + q] } }
    }
    return huberSums
}
