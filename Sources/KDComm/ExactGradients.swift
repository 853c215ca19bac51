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
    /// Bytes all-reduced by each `reduce` (Int64 sums and the per-parameter maxima).
    public let bytesPerReduce: Int

    public init(parameters: [Tensor], comm: Communicator) {
        self.parameters = parameters; self.comm = comm
        bytesPerReduce = parameters.reduce(0) { $0 + $1.count } * MemoryLayout<Int64>.stride
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
        try ExactSum.reduce(groups, globalBlocks: globalBlocks, comm: comm)
        for p in parameters { p.blockGrad = nil }
    }
}
