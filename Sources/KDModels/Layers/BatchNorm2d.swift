import KDTensor

/// Batch normalisation over the channel (last) axis of NHWC activations, PyTorch `nn.BatchNorm2d`
/// semantics:
///
///     training:  y = γ · (x − μ_B) / √(σ²_B + ε) + β,  μ_B, σ²_B (biased) over N·H·W
///                running_mean ← (1 − m)·running_mean + m·μ_B
///                running_var  ← (1 − m)·running_var  + m·σ²_B · n/(n − 1)
///     eval:      y = γ · (x − running_mean) / √(running_var + ε) + β
///
/// With a `reducer` (SyncBN, see `CommStatisticsReducer`) the batch statistics and their backward
/// sums are all-reduced, so μ_B, σ²_B and n are those of the global batch across ranks.
/// Buffers: `running_mean` (0), `running_var` (1), `num_batches_tracked` (a one-element float tensor,
/// written as int64 in checkpoints). Parameters: `weight` γ (1), `bias` β (0).
public final class BatchNorm2d: Module, UnaryLayer {
    public let weight: Tensor, bias: Tensor
    public let runningMean: Tensor, runningVar: Tensor, numBatchesTracked: Tensor
    public let channels: Int
    public let momentum: Float, eps: Float
    /// All-reduces statistics across ranks (SyncBN) when set; with `blockRows`, only the running statistics.
    public var reducer: StatisticsReducer?
    /// Block BatchNorm (`student.batch_norm: block`): training statistics per block of this many leading
    /// rows (`batchNorm`'s `blockRows`); nil: over the batch.
    public var blockRows: Int?
    /// With `blockRows`: whether a training forward updates the running statistics now (`.now`, the default),
    /// leaves them alone (`.skip`) or collects its blocks' partials for `commitRunningStatistics(of:)`
    /// (`.collect`): the one-pass step collects and commits every layer at once after the forward, graph
    /// accumulation (`train.micro_batch`) skips in its first pass and collects over its second.
    public var runningMode = RunningMode.now {
        didSet { collected = []; collectedBlocks = 0 }   // a step that failed midway leaves nothing behind
    }
    public enum RunningMode: Sendable { case now, skip, collect }
    private var collected: [Double] = []
    private var collectedBlocks = 0

    public init(_ channels: Int, momentum: Float = 0.1, eps: Float = 1e-5, reducer: StatisticsReducer? = nil) {
        self.channels = channels; self.momentum = momentum; self.eps = eps; self.reducer = reducer
        weight = Tensor(shape: [channels], repeating: 1, requiresGrad: true)
        bias = Tensor.zeros([channels], requiresGrad: true)
        runningMean = Tensor.zeros([channels])
        runningVar = Tensor(shape: [channels], repeating: 1)
        numBatchesTracked = Tensor.zeros([])
    }

    public override var ownParameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }
    public override var ownBuffers: [(String, Tensor)] {
        [("running_mean", runningMean), ("running_var", runningVar), ("num_batches_tracked", numBatchesTracked)]
    }

    public override func initializeParameter(_ name: String, _ t: Tensor, rng: inout KDRandom) {
        t.fill(name == "weight" ? 1 : 0)
    }

    /// `x: [..., C] → [..., C]`.
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try callAsFunction(x, relu: false) }

    /// `relu(bn(x))` when `relu`, in the normalisation's own pass (`batchNorm`'s `relu`: the same bits as the
    /// two ops, in training and evaluation alike).
    public func callAsFunction(_ x: Tensor, relu: Bool) throws -> Tensor {
        precondition(runningMode == .now || blockRows != nil, "\(runningMode) running statistics need block BatchNorm")
        let update: RunningStatisticsUpdate
        switch runningMode {
        case .now: update = .now
        case .skip: update = .skip
        case .collect: update = .collect { [unowned self] partials, blocks in
            collected += partials
            collectedBlocks += blocks
        }
        }
        let y = try batchNorm(x, gamma: weight, beta: bias, runningMean: runningMean, runningVar: runningVar,
                              training: training, momentum: momentum, eps: eps, reducer: reducer,
                              blockRows: blockRows, runningUpdate: update, relu: relu)
        if training && runningMode == .now { numBatchesTracked.ptr[0] += 1 }
        return y
    }

    /// Applies the partials each of `layers` collected since its last commit as one training forward over all
    /// their blocks would (`updateRunningStatistics`, the same bits), with one reduction for all the layers
    /// that share a statistics reducer instead of one per layer (collective: every rank commits the same
    /// layers in the same order). The one-pass step commits a block-BatchNorm student's layers this way once
    /// after its forward, graph accumulation after its second pass (docs/training.md, "BatchNorm").
    public static func commitRunningStatistics(of layers: [BatchNorm2d]) throws {
        defer { for l in layers { l.collected = []; l.collectedBlocks = 0 } }
        // The layers by reducer (the same object; nil: this rank's blocks alone), in order of first use.
        var groups: [(reducer: StatisticsReducer?, layers: [BatchNorm2d])] = []
        for l in layers {
            if let k = groups.firstIndex(where: { $0.reducer === l.reducer }) {
                groups[k].layers.append(l)
            } else {
                groups.append((l.reducer, [l]))
            }
        }
        for g in groups {
            let partials = g.layers.flatMap(\.collected), widths = g.layers.map { 2 * $0.channels + 1 }
            let totals = UnsafeMutablePointer<Double>.allocate(capacity: widths.reduce(0, +))
            defer { totals.deallocate() }
            try partials.withUnsafeBufferPointer { p in
                var parts: [BlockPartials] = [], read = 0, written = 0
                for (l, width) in zip(g.layers, widths) {
                    // A rank without blocks has no partials; its parts point at the (unread) start.
                    parts.append(BlockPartials(partials: (p.baseAddress ?? UnsafePointer(totals)) + read,
                                               blocks: l.collectedBlocks, count: width, result: totals + written))
                    read += l.collected.count; written += width
                }
                try sumBlocks(parts, reducer: g.reducer)
            }
            var offset = 0
            for (l, width) in zip(g.layers, widths) {
                applyRunningStatistics(totals + offset, runningMean: l.runningMean, runningVar: l.runningVar,
                                       momentum: l.momentum)
                l.numBatchesTracked.ptr[0] += 1
                offset += width
            }
        }
    }
}

extension Module {
    /// Every `BatchNorm2d` in the tree, in the tree's order.
    public var batchNormLayers: [BatchNorm2d] { namedModules().compactMap { $0.1 as? BatchNorm2d } }

    /// Sets (or clears, with nil) the statistics reducer of every `BatchNorm2d` in the tree: with a
    /// `CommStatisticsReducer` this turns the model into its SyncBN form.
    public func setStatisticsReducer(_ reducer: StatisticsReducer?) {
        for l in batchNormLayers { l.reducer = reducer }
    }

    /// Sets what every `BatchNorm2d` in the tree does with its running statistics (`BatchNorm2d.runningMode`).
    public func setBatchNormRunningMode(_ mode: BatchNorm2d.RunningMode) {
        for l in batchNormLayers { l.runningMode = mode }
    }

    /// Sets (or clears) the statistics blocks of every `BatchNorm2d` in the tree (block BatchNorm).
    public func setBatchNormBlocks(rows: Int?) {
        for l in batchNormLayers { l.blockRows = rows }
    }
}
