import KDCore
import KDTensor

/// Deterministic training's gradient all-reduce (docs/training.md, "Bit-identical training at any world
/// size"): `g_p = Σ_blocks Σ_ranks blockGrad_p[block]`, summed exactly (`ExactSum`, one fixed-point scale
/// per parameter) over every sample block of every rank, so the result does not depend on how the blocks
/// are spread over ranks. Replaces `GradientBuckets` when `train.deterministic` is on; there is no
/// overlap with backward (each scale needs every block's partial first).
public final class ExactGradients {
    public let parameters: [Tensor]
    let comm: Communicator
    /// The sums cross the ranks as an `Int64` reduce-scatter and a Float all-gather instead of one `Int64`
    /// all-reduce (`ExactSum.reduce`'s `scatterGather`: the same bits, a quarter fewer bytes on the wire).
    public let scatterGather: Bool
    /// Bytes each `reduce` moves, as the payload of an all-reduce that moves as many (what the scaling cost
    /// model is fitted to): the Int64 sums and the per-parameter maxima; with `scatterGather`, the maxima and
    /// (8 + 4)/2 bytes per element (a ring reduce-scatter plus all-gather moves 8 + 4 where an all-reduce
    /// moves twice its payload).
    public let bytesPerReduce: Int

    public init(parameters: [Tensor], comm: Communicator, scatterGather: Bool = false) {
        self.parameters = parameters; self.comm = comm; self.scatterGather = scatterGather
        let elements = parameters.reduce(0) { $0 + $1.count }
        bytesPerReduce = (scatterGather ? elements * (MemoryLayout<Int64>.stride + MemoryLayout<Float>.stride) / 2
                                        : elements * MemoryLayout<Int64>.stride)
            + parameters.count * MemoryLayout<Double>.stride
    }

    /// Sums every parameter's `blockGrad` into its `grad` (and clears `blockGrad`); `globalBlocks` bounds
    /// the blocks of the global batch. A parameter with no partials (unused, or no rows on this rank)
    /// counts as zeros. Collective.
    public func reduce(globalBlocks: Int) throws {
        if let p = parameters.first(where: { $0.grad != nil }) {
            throw CommError.invalidArgument(op: "deterministic gradient", message: "parameter \(p.name) received "
                + "a gradient outside the sample blocks (an op without a per-block backward), which cannot be "
                + "summed exactly: train.deterministic: false, or give that op SampleBlocks support")
        }
        let empty = UnsafeMutablePointer<Float>.allocate(capacity: 1)
        defer { empty.deallocate() }
        let groups = parameters.map { p in
            ExactSum.Group(partials: UnsafePointer(p.blockGrad?.ptr ?? empty), blocks: p.blockGrad?.shape[0] ?? 0,
                           count: p.count, result: p.gradBuffer().ptr)
        }
        try ExactSum.reduce(groups, globalBlocks: globalBlocks, comm: comm, scatterGather: scatterGather)
        for p in parameters { p.blockGrad = nil }
    }
}
