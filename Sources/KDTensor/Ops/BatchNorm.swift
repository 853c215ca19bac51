/// Sums per-channel statistics over all ranks (SyncBN). `values` holds `count` Doubles that every rank
/// contributes; on return each must hold the sum over ranks (an MPI all-reduce with `MPI_SUM`).
///
/// `batchNorm` calls it once in forward with `[Σx₀ … Σx_{C−1}, Σx²₀ … Σx²_{C−1}, n]` (`2C + 1`
/// values, `n` the local number of rows) and once in backward with
/// `[Σdy₀ … Σdy_{C−1}, Σ(dy·x̂)₀ … Σ(dy·x̂)_{C−1}]` (`2C` values). Every rank must call `batchNorm`
/// and its backward in the same order, as for any collective.
public protocol StatisticsReducer: AnyObject {
    func sumAcrossRanks(_ values: UnsafeMutablePointer<Double>, count: Int) throws
    /// With `SampleBlocks` on: each part's `partials` holds `blocks` rows of `count` values (one per sample
    /// block of this rank); its `result` receives the sum over every block of every rank, one collective for
    /// all the parts (a part's result is the same whether it is reduced alone or with others). The default
    /// adds each part's rows in order and reduces all the sums with one `sumAcrossRanks`; deterministic
    /// training's reducer adds them exactly (`ExactStatisticsReducer`), so the sums do not depend on how
    /// blocks are spread over ranks.
    func sumBlocksAcrossRanks(_ parts: [BlockPartials]) throws
}

/// One `[blocks, count]` matrix of per-block partials (row-major) and where its sums over every block of
/// every rank go: a part of `StatisticsReducer.sumBlocksAcrossRanks`.
public struct BlockPartials {
    public let partials: UnsafePointer<Double>
    public let blocks: Int, count: Int
    public let result: UnsafeMutablePointer<Double>
    public init(partials: UnsafePointer<Double>, blocks: Int, count: Int, result: UnsafeMutablePointer<Double>) {
        self.partials = partials; self.blocks = blocks; self.count = count; self.result = result
    }
}

extension StatisticsReducer {
    public func sumBlocksAcrossRanks(_ parts: [BlockPartials]) throws {
        let total = parts.reduce(0) { $0 + $1.count }
        let sums = UnsafeMutablePointer<Double>.allocate(capacity: max(1, total))
        defer { sums.deallocate() }
        var offset = 0
        for p in parts {
            sumBlockRows(p.partials, blocks: p.blocks, count: p.count, into: sums + offset)
            offset += p.count
        }
        try sumAcrossRanks(sums, count: total)
        offset = 0
        for p in parts { p.result.update(from: sums + offset, count: p.count); offset += p.count }
    }
}

/// Each part's sums over its blocks: over every block of every rank through `reducer` (one reduction for
/// all parts), or this rank's rows in order without one.
public func sumBlocks(_ parts: [BlockPartials], reducer: StatisticsReducer?) throws {
    if let reducer {
        try reducer.sumBlocksAcrossRanks(parts)
    } else {
        for p in parts { sumBlockRows(p.partials, blocks: p.blocks, count: p.count, into: p.result) }
    }
}

/// The sums over `blocks` rows of `width` values (`partials`, row-major): over every block of every rank
/// through `reducer`, or this rank's rows in order without one.
func sumBlocks(_ partials: [Double], blocks: Int, width: Int, reducer: StatisticsReducer?) throws -> [Double] {
    var s = [Double](repeating: 0, count: width)
    try partials.withUnsafeBufferPointer { pb in try s.withUnsafeMutableBufferPointer { sb in
        try sumBlocks([BlockPartials(partials: pb.baseAddress!, blocks: blocks, count: width, result: sb.baseAddress!)],
                      reducer: reducer)
    } }
    return s
}

/// What a block-BatchNorm training forward does with its running statistics' partials (`[blocks, 2C + 1]`:
/// per block μ_b, the unbiased σ²_b and 1).
public enum RunningStatisticsUpdate {
    /// Sum them (through the reducer) and update the running statistics now.
    case now
    /// Leave the running statistics alone: a forward that the step computes again (graph accumulation's
    /// first pass, `train.micro_batch`).
    case skip
    /// Hand them on; `updateRunningStatistics` (or `BatchNorm2d.commitRunningStatistics(of:)` for several layers
    /// in one reduction) applies everything collected at once, as one forward would.
    case collect((_ partials: [Double], _ blocks: Int) -> Void)
}

/// The running statistics' update of block BatchNorm from its blocks' partials (`[blocks, 2C + 1]`, see
/// `blockBatchNorm`): `running ← (1 − m)·running + m·(Σ_b partial_b / blocks)` with the sums over every block
/// of every rank through `reducer` (collective: every rank calls it, with or without blocks).
public func updateRunningStatistics(partials: [Double], blocks: Int, runningMean: Tensor, runningVar: Tensor,
                                    momentum: Float, reducer: StatisticsReducer?) throws {
    let totals = try sumBlocks(partials, blocks: blocks, width: 2 * runningMean.count + 1, reducer: reducer)
    totals.withUnsafeBufferPointer {
        applyRunningStatistics($0.baseAddress!, runningMean: runningMean, runningVar: runningVar, momentum: momentum)
    }
}

/// The running statistics' update from the sums of the partials over every block of every rank (`totals`:
/// `[Σ μ_b, Σ σ²_b, blocks]`, `2C + 1` values): `running ← (1 − m)·running + m·Σ/blocks`, nothing without
/// a block.
public func applyRunningStatistics(_ totals: UnsafePointer<Double>, runningMean: Tensor, runningVar: Tensor,
                                   momentum: Float) {
    let c = runningMean.count, m = Double(momentum), count = totals[2 * c]
    guard count > 0 else { return }
    for j in 0..<c {
        runningMean.ptr[j] = Float((1 - m) * Double(runningMean.ptr[j]) + m * totals[j] / count)
        runningVar.ptr[j] = Float((1 - m) * Double(runningVar.ptr[j]) + m * totals[c + j] / count)
    }
}

/// `result[i] = Σ_b partials[b·count + i]`, rows in order (zeros for no rows).
func sumBlockRows(_ partials: UnsafePointer<Double>, blocks: Int, count: Int,
                  into result: UnsafeMutablePointer<Double>) {
    result.update(repeating: 0, count: count)
    for b in 0..<blocks { for i in 0..<count { result[i] += partials[b * count + i] } }
}

/// Batch normalisation over every axis but the last (channels last: `[N, C]` or NHWC `[N, H, W, C]`).
///
/// Training (`training: true`), with statistics over the global batch of `n` rows (all ranks through
/// `reducer`, this rank alone when it is nil):
/// `μ = Σx / n`, `σ² = Σx² / n − μ²` (biased), `x̂ = (x − μ) / √(σ² + ε)`, `y = γ · x̂ + β`;
/// running statistics (PyTorch semantics): `running_mean ← (1 − m)·running_mean + m·μ`,
/// `running_var ← (1 − m)·running_var + m·σ²·n/(n − 1)` (unbiased). Sums are accumulated in Double.
///
/// Backward (training), with `mean(·)` over the GLOBAL batch (sums reduced by `reducer`):
/// `dx = γ/√(σ² + ε) · (dy − mean(dy) − x̂ · mean(dy · x̂))`;
/// `dγ = Σ dy · x̂`, `dβ = Σ dy` over this rank's rows only (parameter gradients are summed across
/// ranks by the gradient all-reduce, as in PyTorch's SyncBatchNorm).
///
/// Evaluation: `y = γ · (x − running_mean)/√(running_var + ε) + β`; backward
/// `dx = γ/√(running_var + ε) · dy`.
///
/// With a reducer, forward and backward each reduce exactly once whatever the local data (a rank with
/// an empty shard, `[0, …, C]`, takes part and gets zero dγ, dβ). A reducer error in forward is
/// thrown; in backward (which cannot throw) it stops the process with the reducer's message, since
/// the ranks could no longer agree on a gradient.
///
/// With `blockRows` (block BatchNorm, `student.batch_norm: block`) training normalises each block of
/// `blockRows` leading rows with its own statistics (`blockBatchNorm`); the reducer then only averages
/// the running statistics, which `runningUpdate` may skip or defer (`RunningStatisticsUpdate`).
///
/// With `relu` the output is `relu(y)` (`y ≤ 0 ? 0 : y`, NaN kept) in the same pass over the rows, and
/// backward reads `dy` through ReLU's mask (`out ≤ 0 ? 0 : dy`, which is `relu`'s own mask on `y`) in its
/// passes: the bits of `relu(batchNorm(x))` in every mode, without the ReLU's pass over the activation
/// and its gradient, nor the pre-ReLU tensor.
public func batchNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                      reducer: StatisticsReducer? = nil, blockRows: Int? = nil,
                      runningUpdate: RunningStatisticsUpdate = .now, relu: Bool = false) throws -> Tensor {
    guard x.rank >= 1, let c = x.shape.last, c > 0 else {
        throw TensorError.invalidArgument(op: "batchNorm", message: "input needs a channel axis, got shape \(x.shape)")
    }
    for (label, t) in [("gamma", gamma), ("beta", beta), ("runningMean", runningMean), ("runningVar", runningVar)]
    where t.shape != [c] {
        throw TensorError.shapeMismatch(op: "batchNorm (input vs \(label))", lhs: x.shape, rhs: t.shape)
    }
    if training, let blockRows {
        return try blockBatchNorm(x, gamma: gamma, beta: beta, runningMean: runningMean, runningVar: runningVar,
                                  momentum: momentum, eps: eps, reducer: reducer, blockRows: blockRows,
                                  runningUpdate: runningUpdate, relu: relu)
    }
    let rows = x.count / c
    let out = Tensor(uninitializedShape: x.shape)
    // Per channel: y = (x − μ)·scale + β.
    var mean = [Float](repeating: 0, count: c), invStd = [Float](repeating: 0, count: c)
    var scale = [Float](repeating: 0, count: c)
    var globalRows = Double(rows)

    // Rows of the leading axis (samples × views) and channel rows per leading row; the sums are taken
    // per sample block (`SampleBlocks`; one block of all rows when off).
    let leading = x.rank >= 2 ? x.shape[0] : 1
    let perLeading = x.rank >= 2 ? rows / max(1, leading) : rows
    let blocks = SampleBlocks.ranges(rows: leading) ?? [0..<leading]
    /// `[blocks, width]` per-block sums: `body(row, sums)` adds one channel row's terms to its block's `sums`.
    func blockSums(width: Int, _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Double>) -> Void) -> [Double] {
        var s = [Double](repeating: 0, count: blocks.count * width)
        s.withUnsafeMutableBufferPointer { sb in
            for (b, r) in blocks.enumerated() {
                for row in (r.lowerBound * perLeading)..<(r.upperBound * perLeading) {
                    body(x.ptr + row * c, sb.baseAddress! + b * width)
                }
            }
        }
        return s
    }
    /// The sums over all rows (all ranks through the reducer).
    func total(_ partials: [Double], width: Int) throws -> [Double] {
        try sumBlocks(partials, blocks: blocks.count, width: width, reducer: reducer)
    }

    if training {
        let partials = blockSums(width: 2 * c + 1) { p, s in
            BatchNormKernels.addMoments(p, c, into: s)
            s[2 * c] += 1
        }
        let s = try total(partials, width: 2 * c + 1)
        globalRows = s[2 * c]
        guard globalRows > 1 else {
            throw TensorError.invalidArgument(op: "batchNorm", message:
                "training needs more than 1 value per channel, got \(Int(globalRows)) (input \(x.shape))")
        }
        let m = Double(momentum)
        for j in 0..<c {
            let mu = s[j] / globalRows
            let v = max(s[c + j] / globalRows - mu * mu, 0)
            mean[j] = Float(mu)
            invStd[j] = Float(1 / (v + Double(eps)).squareRoot())
            runningMean.ptr[j] = Float((1 - m) * Double(runningMean.ptr[j]) + m * mu)
            runningVar.ptr[j] = Float((1 - m) * Double(runningVar.ptr[j]) + m * v * globalRows / (globalRows - 1))
        }
    } else {
        for j in 0..<c {
            mean[j] = runningMean.ptr[j]
            invStd[j] = 1 / (runningVar.ptr[j] + eps).squareRoot()
        }
    }
    for j in 0..<c { scale[j] = gamma.ptr[j] * invStd[j] }
    let shift = Array(UnsafeBufferPointer(start: beta.ptr, count: c))   // β as normalised (ReLU's mask in backward)
    scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { bb in mean.withUnsafeBufferPointer { mb in
        let a = sc.baseAddress!, mu = mb.baseAddress!, b = bb.baseAddress!
        var p = x.ptr, q = out.ptr
        for _ in 0..<rows {
            BatchNormKernels.normalize(p, c, mean: mu, scale: a, beta: b, relu: relu, into: q)
            p += c; q += c
        }
    } } }

    Tape.record(relu ? "batchNormReLU" : "batchNorm", inputs: [x, gamma, beta], output: out) { gy in
        // Per-block per-channel Σdy and Σdy·x̂, x̂ (and ReLU's mask) recomputed from x.
        let partials = mean.withUnsafeBufferPointer { mb in invStd.withUnsafeBufferPointer { ib in
            scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { bb in
                let mu = mb.baseAddress!, inv = ib.baseAddress!, offset = gy.ptr - x.ptr
                let mask = relu ? BatchNormKernels.ReLUMask(scale: sc.baseAddress!, beta: bb.baseAddress!) : nil
                return blockSums(width: 2 * c) { p, s in
                    BatchNormKernels.addGradientSums(p, p + offset, c, mean: mu, invStd: inv, relu: mask, into: s)
                }
            } }
        } }
        // dγ = Σ dy·x̂, dβ = Σ dy: this rank's rows (per block with `SampleBlocks`).
        for (param, column) in [(gamma, c), (beta, 0)] where param.requiresGrad {
            var b = 0
            param.accumulateRowSum(rows: leading) { _, g, overwrite in
                for j in 0..<c { g[j] = (overwrite ? 0 : g[j]) + Float(partials[b * 2 * c + column + j]) }
                b += 1
            }
        }
        // The backward reduction runs whenever forward reduced, whatever this rank needs, so that every
        // rank makes the same collective calls (a rank with an empty shard included).
        var s = [Double](repeating: 0, count: 2 * c)
        if training {
            do { s = try total(partials, width: 2 * c) }
            catch { preconditionFailure("batchNorm backward: statistics reducer failed: \(error)") }
        }
        guard x.requiresGrad else { return }
        let coefficients = training
            ? BatchNormGradient(gamma: gamma.ptr, invStd: invStd, sums: s, rows: globalRows)
            : BatchNormGradient(evaluationScale: scale)
        let (gx, fresh) = x.gradBuffer()
        coefficients.apply(x: x.ptr, gy: gy.ptr, rows: 0..<rows, mean: mean, relu: relu ? (scale, shift) : nil,
                           fresh: fresh, into: gx)
    }
    return out
}

/// BatchNorm's input gradient per channel, `dx = a·dy + b·(x − μ) + k` (`dy` through ReLU's mask with
/// `relu`): in training `a = γ/√(σ² + ε)`, `b = −a·mean(dy·x̂)/√(σ² + ε)`, `k = −a·mean(dy)` — the
/// expansion of `γ/√(σ² + ε)·(dy − mean(dy) − x̂·mean(dy·x̂))` — computed in Double from the
/// statistics and rounded to Float once; in evaluation `a = γ/√(running_var + ε)`, `b = k = 0`.
/// `batchNorm` and `blockBatchNorm` (per block) both compute it here, so a block's gradient is plain
/// BatchNorm's on that block alone.
struct BatchNormGradient {
    let a, b, k: [Float]

    /// Training: `invStd` `[C]`, `sums` = `[Σdy₀ … Σdy_{C−1}, Σ(dy·x̂)₀ …]` over `rows` rows.
    init(gamma: UnsafePointer<Float>, invStd: [Float], sums: [Double], rows n: Double) {
        let c = invStd.count
        var a = [Float](repeating: 0, count: c), b = a, k = a
        for j in 0..<c {
            let scale = Double(gamma[j]) * Double(invStd[j])
            let m1 = sums[j] / n, m2 = sums[c + j] / n
            a[j] = Float(scale)
            b[j] = Float(-scale * Double(invStd[j]) * m2)
            k[j] = Float(-scale * m1)
        }
        self.a = a; self.b = b; self.k = k
    }

    /// Evaluation: `dx = scale·dy`.
    init(evaluationScale scale: [Float]) {
        a = scale; b = [Float](repeating: 0, count: scale.count); k = b
    }

    /// `gx[row] = dx` (or `+= dx` unless `fresh`) for the channel rows `rows` of `x` and `gy`, `mean` `[C]` the
    /// statistics' μ; with `relu` (the forward's scale `γ/√(σ² + ε)` and β) `dy` through ReLU's mask,
    /// recomputed from `x` (`BatchNormKernels.ReLUMask`).
    @inline(__always)
    func apply(x: UnsafePointer<Float>, gy: UnsafePointer<Float>, rows: Range<Int>, mean: [Float],
               relu: (scale: [Float], beta: [Float])?, fresh: Bool, into gx: UnsafeMutablePointer<Float>) {
        let c = a.count, scale = relu?.scale ?? [], beta = relu?.beta ?? []
        a.withUnsafeBufferPointer { ab in b.withUnsafeBufferPointer { bb in k.withUnsafeBufferPointer { kb in
            mean.withUnsafeBufferPointer { mb in scale.withUnsafeBufferPointer { sc in
                beta.withUnsafeBufferPointer { ob in
                let a = ab.baseAddress!, b = bb.baseAddress!, k = kb.baseAddress!, mu = mb.baseAddress!
                let mask = relu == nil ? nil
                    : BatchNormKernels.ReLUMask(scale: sc.baseAddress!, beta: ob.baseAddress!)
                for row in rows {
                    let o = row * c
                    BatchNormKernels.applyGradient(x + o, gy + o, c, a: a, b: b, k: k, mean: mu, relu: mask,
                                                   fresh: fresh, into: gx + o)
                }
            } } }
        } } }
    }
}

/// Block BatchNorm in training (ghost batch normalisation, Hoffer et al., NeurIPS 2017; docs/training.md
/// "BatchNorm"): the leading rows are cut into blocks of `blockRows` (the last may be shorter) and each
/// block `b` is normalised with its own statistics over its `n_b` rows × spatial positions:
///
///     μ_b = Σ_b x / n_b,  σ²_b = Σ_b x² / n_b − μ_b²
///     x̂ = (x − μ_b)/√(σ²_b + ε),  y = γ·x̂ + β
///     running_mean ← (1 − m)·running_mean + m·mean_b μ_b
///     running_var  ← (1 − m)·running_var  + m·mean_b σ²_b·n_b/(n_b − 1)
///
/// the means over every block of every rank (`reducer`, one reduction in forward; this rank's blocks
/// without one). A block's output depends on its own rows only, so it is the same whichever rank holds
/// the block and however many ranks there are — what a PyTorch DDP user gets from plain BatchNorm with a
/// per-process batch of `blockRows`.
///
/// Backward, per block, with no communication:
/// `dx = γ/√(σ²_b + ε) · (dy − mean_b(dy) − x̂ · mean_b(dy·x̂))`, computed as `batchNorm` computes it
/// (`BatchNormGradient`: per channel `a·dy + b·(x − μ_b) + k`, so a block's gradient is plain BatchNorm's
/// on that block alone, bit for bit); `dγ = Σ dy·x̂`, `dβ = Σ dy` over this rank's rows (per
/// `SampleBlocks` block when on, which must hold whole statistics blocks).
func blockBatchNorm(_ x: Tensor, gamma: Tensor, beta: Tensor, runningMean: Tensor, runningVar: Tensor,
                    momentum: Float, eps: Float, reducer: StatisticsReducer?, blockRows: Int,
                    runningUpdate: RunningStatisticsUpdate = .now, relu: Bool = false) throws -> Tensor {
    let c = x.shape.last!, rows = x.count / c
    let leading = x.rank >= 2 ? x.shape[0] : 1
    let perLeading = x.rank >= 2 ? rows / max(1, leading) : rows
    let blocks = Swift.stride(from: 0, to: leading, by: max(1, blockRows)).map { $0..<min(leading, $0 + blockRows) }
    /// The channel rows of block `b`.
    func channelRows(_ b: Int) -> Range<Int> {
        (blocks[b].lowerBound * perLeading)..<(blocks[b].upperBound * perLeading)
    }
    // Per block: μ_b, 1/√(σ²_b + ε), and the running statistics' partials [μ_b, unbiased σ²_b, 1].
    var mean = [Float](repeating: 0, count: blocks.count * c), invStd = mean
    var running = [Double](repeating: 0, count: blocks.count * (2 * c + 1))
    for b in blocks.indices {
        let r = channelRows(b), n = Double(r.count)
        guard r.count > 1 else {
            throw TensorError.invalidArgument(op: "batchNorm", message: "block \(b) of \(blockRows) rows has "
                + "\(r.count) value per channel; block BatchNorm needs more than 1 (input \(x.shape))")
        }
        var moments = [Double](repeating: 0, count: 2 * c)   // Σx per channel, then Σx²
        moments.withUnsafeMutableBufferPointer { m in
            for row in r { BatchNormKernels.addMoments(x.ptr + row * c, c, into: m.baseAddress!) }
        }
        for j in 0..<c {
            let mu = moments[j] / n, v = max(moments[c + j] / n - mu * mu, 0)
            mean[b * c + j] = Float(mu)
            invStd[b * c + j] = Float(1 / (v + Double(eps)).squareRoot())
            running[b * (2 * c + 1) + j] = mu
            running[b * (2 * c + 1) + c + j] = v * n / (n - 1)
        }
        running[b * (2 * c + 1) + 2 * c] = 1
    }
    switch runningUpdate {
    case .now:
        try updateRunningStatistics(partials: running, blocks: blocks.count, runningMean: runningMean,
                                    runningVar: runningVar, momentum: momentum, reducer: reducer)
    case .skip: break
    case .collect(let take): take(running, blocks.count)
    }
    let out = Tensor(uninitializedShape: x.shape)
    // Per block and channel γ·(1/√(σ²_b + ε)), and β: as normalised (ReLU's mask in backward).
    var scale = [Float](repeating: 0, count: blocks.count * c)
    for i in scale.indices { scale[i] = gamma.ptr[i % c] * invStd[i] }
    let shift = Array(UnsafeBufferPointer(start: beta.ptr, count: c))
    scale.withUnsafeBufferPointer { sc in shift.withUnsafeBufferPointer { bb in mean.withUnsafeBufferPointer { mb in
        for b in blocks.indices {
            let a = sc.baseAddress! + b * c, mu = mb.baseAddress! + b * c
            for row in channelRows(b) {
                BatchNormKernels.normalize(x.ptr + row * c, c, mean: mu, scale: a, beta: bb.baseAddress!, relu: relu,
                                           into: out.ptr + row * c)
            }
        }
    } } }

    Tape.record(relu ? "batchNormReLU" : "batchNorm", inputs: [x, gamma, beta], output: out) { gy in
        // Per block and channel: Σdy and Σdy·x̂.
        var sums = [Double](repeating: 0, count: blocks.count * 2 * c)
        sums.withUnsafeMutableBufferPointer { sb in mean.withUnsafeBufferPointer { mb in
            invStd.withUnsafeBufferPointer { ib in scale.withUnsafeBufferPointer { sc in
                shift.withUnsafeBufferPointer { bb in
                for b in blocks.indices {
                    let mask = relu ? BatchNormKernels.ReLUMask(scale: sc.baseAddress! + b * c, beta: bb.baseAddress!)
                        : nil
                    for row in channelRows(b) {
                        let o = row * c
                        BatchNormKernels.addGradientSums(x.ptr + o, gy.ptr + o, c, mean: mb.baseAddress! + b * c,
                                                         invStd: ib.baseAddress! + b * c, relu: mask,
                                                         into: sb.baseAddress! + b * 2 * c)
                    }
                }
            } } }
        } }
        // dγ, dβ: the blocks' sums, added per sample block (`SampleBlocks`) or over all rows.
        for (param, column) in [(gamma, c), (beta, 0)] where param.requiresGrad {
            param.accumulateRowSum(rows: leading) { r, g, overwrite in
                for j in 0..<c {
                    var v = 0.0
                    for b in blocks.indices where r.contains(blocks[b].lowerBound) { v += sums[b * 2 * c + column + j] }
                    g[j] = (overwrite ? 0 : g[j]) + Float(v)
                }
            }
        }
        guard x.requiresGrad else { return }
        let (gx, fresh) = x.gradBuffer()
        // Per block, as `batchNorm`'s with the block's statistics.
        for b in blocks.indices {
            let r = channelRows(b)
            BatchNormGradient(gamma: gamma.ptr, invStd: Array(invStd[(b * c)..<((b + 1) * c)]),
                              sums: Array(sums[(b * 2 * c)..<((b + 1) * 2 * c)]), rows: Double(r.count))
                .apply(x: x.ptr, gy: gy.ptr, rows: r, mean: Array(mean[(b * c)..<((b + 1) * c)]),
                       relu: relu ? (Array(scale[(b * c)..<((b + 1) * c)]), shift) : nil, fresh: fresh, into: gx)
        }
    }
    return out
}
