import KDCore
import KDTensor

/// Where each rank's rows sit in a gathered matrix.
public struct RowLayout: Equatable, Sendable {
    /// Rows contributed by each rank.
    public let counts: [Int]
    /// First global row of each rank (`offsets[r] = Σ_{q<r} counts[q]`).
    public let offsets: [Int]
    /// `Σ_r counts[r]`.
    public let total: Int

    public init(counts: [Int]) {
        self.counts = counts
        var offs = [Int](), o = 0
        offs.reserveCapacity(counts.count)
        for c in counts { offs.append(o); o += c }
        offsets = offs
        total = o
    }

    /// The global rows owned by `rank`.
    public func rows(of rank: Int) -> Range<Int> { offsets[rank] ..< offsets[rank] + counts[rank] }
}

extension Communicator {
    /// The layout of a gather where this rank contributes `localRows` rows (one all-gather of a count).
    public func rowLayout(localRows: Int) throws -> RowLayout {
        RowLayout(counts: try allGatherCounts(localRows))
    }
}

/// Differentiable all-gather of rows: `Y = concat_r(X_r)` along axis 0, in rank order.
///
/// Forward: rank `r` holds `X_r` of shape `[n_r, ...]` (the trailing shape identical on every rank,
/// `n_r` may be 0); every rank receives `Y` of shape `[Σ_r n_r, ...]` (`MPI_Allgatherv`). The row
/// counts are exchanged with one all-gather (together with the row size and whether the gather is
/// recorded, so ranks that disagree all throw the same `CommError.rankMismatch`), unless `counts`
/// gives them (then the caller guarantees that every rank passes the same counts and the same
/// `requiresGrad`).
///
/// Backward — the loss-share contract: each rank evaluates *its share* `L_r` of the global loss
/// (`L = Σ_r L_r`) from its copy of `Y`, so it holds `G_r = ∂L_r/∂Y` for *all* rows. The gradient of
/// the local rows is `∂L/∂X_r = Σ_q G_q[rows of r]`: a reduce-scatter (SUM) of `G` with the row counts
/// as blocks. Every rank must run `backward` (the node's gradient is pre-set to zeros so it runs even
/// on a rank whose share ignores `Y`); an MPI failure inside backward aborts the job.
///
/// With `blocks` (deterministic training, docs/training.md "Bit-identical training at any world size")
/// the rank evaluates its share block by block (`LossBlocks`): `Y` keeps each loss block's gradient
/// apart, and backward sums the partials of every block of every rank exactly
/// (`ExactSum.reduceScatterRows`), so `∂L/∂X_r` does not depend on how the blocks are spread over ranks.
public func allGatherRows(_ local: Tensor, comm: Communicator, counts: [Int]? = nil,
                          blocks: LossBlockCounts? = nil) throws -> Tensor {
    try gatherRows(local, comm: comm, counts: counts, op: "allGatherRows", differentiable: true, blocks: blocks)
}

/// The loss blocks of a step (`LossBlocks`): this rank's and the global batch's.
public struct LossBlockCounts: Equatable, Sendable {
    public let local: Int, global: Int
    public init(local: Int, global: Int) { self.local = local; self.global = global }
}

/// `allGatherRows` without a tape node (teacher embeddings, logits, anything not trained).
public func allGatherRowsNoGrad(_ local: Tensor, comm: Communicator, counts: [Int]? = nil) throws -> Tensor {
    try gatherRows(local, comm: comm, counts: counts, op: "allGatherRowsNoGrad", differentiable: false)
}

func gatherRows(_ local: Tensor, comm: Communicator, counts given: [Int]?, op: String,
                differentiable: Bool, blocks: LossBlockCounts? = nil) throws -> Tensor {
    guard local.rank >= 1 else {
        throw CommError.invalidArgument(op: op, message: "needs a tensor with a row axis, got shape \(local.shape)")
    }
    let rowShape = Array(local.shape.dropFirst())
    let rowSize = rowShape.reduce(1, *)
    let rows = local.shape[0]
    let record = differentiable && GradMode.isEnabled && local.requiresGrad
    let counts: [Int]
    if let given {
        guard given.count == comm.size, given[comm.rank] == rows else {
            throw CommError.invalidArgument(op: op,
                message: "counts \(given) do not give rank \(comm.rank) its \(rows) rows (world of \(comm.size))")
        }
        counts = given
    } else {
        // One exchange of (rows, row size, recorded) per rank.
        let mine = [rows, rowSize, record ? 1 : 0]
        var all = [Int](repeating: 0, count: 3 * comm.size)
        try mine.withUnsafeBufferPointer { m in
            try all.withUnsafeMutableBufferPointer {
                try comm.allGather(m.baseAddress!, count: 3, into: $0.baseAddress!)
            }
        }
        counts = stride(from: 0, to: all.count, by: 3).map { all[$0] }
        let sizes = stride(from: 1, to: all.count, by: 3).map { all[$0] }
        let flags = stride(from: 2, to: all.count, by: 3).map { all[$0] }
        if Set(sizes).count > 1 {
            throw CommError.rankMismatch(op: op, message: "row sizes per rank \(sizes) "
                                         + "(local shape \(local.shape) on rank \(comm.rank))")
        }
        if Set(flags).count > 1 {
            throw CommError.rankMismatch(op: op,
                message: "only some ranks record the gather for backward (requiresGrad per rank \(flags)); "
                    + "all or none must")
        }
    }
    let layout = RowLayout(counts: counts)
    let out = Tensor(uninitializedShape: [layout.total] + rowShape)
    let elementCounts = counts.map { $0 * rowSize }
    try comm.allGatherV(UnsafePointer(local.ptr), counts: elementCounts, into: out.ptr)
    guard record else { return out }
    if let blocks {
        out.keepLossBlocksApart(blocks.local)
        Tape.record(op, inputs: [local], output: out) { g in
            do {
                try exactGatherBackward(local: local, out: out, g: g, counts: counts, blocks: blocks, comm: comm)
            } catch {
                comm.abort("\(op) backward: \(error)", code: MPICommunicator.errorExitCode)
            }
        }
        out.grad = Tensor.zeros(out.shape)
        return out
    }

    Tape.record(op, inputs: [local], output: out) { g in
        // ∂L/∂X_r = Σ_q G_q[rows of r]  (reduce-scatter SUM over ranks)
        let (gx, fresh) = local.gradBuffer()
        do {
            if fresh {
                try comm.reduceScatterV(UnsafePointer(g.ptr), counts: elementCounts, into: gx)
            } else {
                let tmp = Tensor(uninitializedShape: local.shape)
                try comm.reduceScatterV(UnsafePointer(g.ptr), counts: elementCounts, into: tmp.ptr)
                for i in 0..<local.count { gx[i] += tmp.ptr[i] }
            }
        } catch {
            comm.abort("\(op) backward: \(error)", code: MPICommunicator.errorExitCode)
        }
    }
    // Guarantees the node runs on every rank (its collective must be matched everywhere).
    out.grad = Tensor.zeros(out.shape)
    return out
}

/// The exact backward of a gather whose loss was evaluated in loss blocks: the partials of every block
/// of every rank summed into each rank's own rows. With several local blocks a gradient that reached `Y`
/// outside them (`g`, pre-set to zeros) cannot be summed exactly and stops the job with the op's name;
/// with one block, `g` is that block's partial.
func exactGatherBackward(local: Tensor, out: Tensor, g: Tensor, counts: [Int], blocks: LossBlockCounts,
                         comm: Communicator) throws {
    if blocks.local > 1, let i = (0..<g.count).first(where: { g.ptr[$0] != 0 }) {
        throw CommError.invalidArgument(op: "deterministic gather", message: "element \(i) of the gathered "
            + "rows received a gradient outside the loss blocks (an op recorded outside LossBlocks.recording), "
            + "which cannot be summed exactly")
    }
    let own = try exactBlockGradientRows(out, single: blocks.local == 1 ? g : nil, rowCounts: counts,
                                         globalBlocks: blocks.global, comm: comm)
    local.accumulateGrad(own.ptr)
}

/// This rank's rows of the exact sum, over every loss block of every rank, of the gradient partials of
/// the gathered matrix `gathered` (`[Σ rowCounts, …]`, `ExactSum.reduceScatterRows`): its
/// `lossBlockGrad` (the rows each block wrote, cleared here), or with one local block its plain gradient
/// `single`, or zeros on a rank without blocks. The integers go through pooled storage (two Floats
/// each): fresh pages would cost more than the sums. Collective.
public func exactBlockGradientRows(_ gathered: Tensor, single: Tensor?, rowCounts: [Int], globalBlocks: Int,
                                   comm: Communicator) throws -> Tensor {
    let rows = gathered.shape[0], rowSize = gathered.count / max(1, rows)
    let partials = gathered.lossBlockGrad
    gathered.lossBlockGrad = nil
    let entries = partials?.entries
        ?? single.map { g in (0..<rows).map { (row: $0, values: UnsafePointer(g.ptr + $0 * rowSize)) } } ?? []
    let own = Tensor(uninitializedShape: [rowCounts[comm.rank] * rowSize])
    let n = ExactSum.scratchCount(rowCounts: rowCounts, rowSize: rowSize, rank: comm.rank)
    let scratch = Tensor(uninitializedShape: [2 * n])
    try withExtendedLifetime(partials) {
        try scratch.ptr.withMemoryRebound(to: Int64.self, capacity: n) { s in
            try ExactSum.reduceScatterRows(entries: entries, rowSize: rowSize, rowCounts: rowCounts,
                                           globalBlocks: globalBlocks, comm: comm, into: own.ptr, scratch: s)
        }
    }
    return own
}
