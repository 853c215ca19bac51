/// Fixed sample blocks: how deterministic training (`train.deterministic`, docs/training.md,
/// "Bit-identical training at any world size") keeps every sum over samples independent of the world size.
///
/// The global batch is cut into blocks of `train.block_size` samples and every rank holds whole blocks.
/// While `rowsPerBlock` is set on a thread (`block_size × views` leading rows: a batch is sample-major),
/// every op whose backward sums over a batch's rows into a parameter's gradient — convolution and
/// linear weights and biases, BatchNorm's γ and β — computes one partial per block, the same way
/// whichever rank holds the block, and writes it to the parameter's `blockGrad` (`[blocks, count]`)
/// instead of `grad`. The trainer adds the partials of all blocks of all ranks with an exact,
/// order-independent sum (`KDComm.ExactSum`). Only the globally last block may be shorter.
///
/// With blocks on, forward GEMMs over a batch are row-invariant too (`linear` switches from sgemm to
/// `RowInvariantGEMM`; convolutions always are), so a sample's activations do not depend on its batch mates.
public enum SampleBlocks {
    /// Leading rows per block on this thread; nil when off (the default).
    public static var rowsPerBlock: Int? {
        get { let r = AutodiffState.current.pointee.rowsPerBlock; return r > 0 ? r : nil }
        set { AutodiffState.current.pointee.rowsPerBlock = max(0, newValue ?? 0) }
    }

    /// Runs `body` with blocks of `rowsPerBlock` leading rows (nil: off), then restores the setting.
    public static func with<T>(rowsPerBlock: Int?, _ body: () throws -> T) rethrows -> T {
        let saved = self.rowsPerBlock
        self.rowsPerBlock = rowsPerBlock
        defer { self.rowsPerBlock = saved }
        return try body()
    }

    /// Runs `body` with the blocks of its batches written as blocks `first, first + 1, …` of parameter
    /// partials of `total` blocks (allocated zeroed on first use, then added to): graph accumulation's
    /// chunks (`train.micro_batch`) each put their blocks in place in the rank's partials, so no chunk's
    /// partials are kept apart and joined. Adding to a zero gives what writing gives (`0 + x = x`).
    public static func placing<T>(first: Int, of total: Int, _ body: () throws -> T) rethrows -> T {
        precondition(first >= 0 && total > first, "blocks from \(first) of \(total)")
        let state = AutodiffState.current
        let saved = (state.pointee.firstBlock, state.pointee.placedBlocks)
        state.pointee.firstBlock = first
        state.pointee.placedBlocks = total
        defer { (state.pointee.firstBlock, state.pointee.placedBlocks) = saved }
        return try body()
    }

    /// The blocks of a batch of `rows` leading rows: nil when blocks are off.
    static func ranges(rows: Int) -> [Range<Int>]? {
        guard let b = rowsPerBlock else { return nil }
        return Swift.stride(from: 0, to: rows, by: b).map { $0..<Swift.min(rows, $0 + b) }
    }
}

extension Tensor {
    /// Accumulates a gradient that is a sum over the `rows` leading rows of a batch.
    ///
    /// `body(rows, destination, overwrite)` must write (`overwrite`) or add the sum over `rows` into
    /// `destination` (`count` values). Blocks off: called once over all rows with `grad`'s buffer.
    /// Blocks on (`SampleBlocks`): called once per block with that block's partial in `blockGrad`;
    /// a rank without rows still gets a `[0, count]` `blockGrad`, so every rank reports the parameter.
    /// Inside `SampleBlocks.placing` the partials are those of all the placed blocks, and the batch's
    /// blocks are added at their place.
    public func accumulateRowSum(rows: Int, _ body: (Range<Int>, UnsafeMutablePointer<Float>, Bool) -> Void) {
        guard let blocks = SampleBlocks.ranges(rows: rows) else {
            let (g, fresh) = gradBuffer()
            if rows == 0 { if fresh { g.update(repeating: 0, count: count) }; return }
            body(0..<rows, g, fresh)
            return
        }
        let state = AutodiffState.current.pointee
        let placed = state.placedBlocks > 0, first = placed ? state.firstBlock : 0
        let total = placed ? state.placedBlocks : blocks.count
        let fresh = blockGrad == nil && !placed
        if blockGrad == nil {
            blockGrad = placed ? Tensor.zeros([total, count]) : Tensor(uninitializedShape: [total, count])
        }
        let partials = blockGrad!
        precondition(partials.shape == [total, count] && first + blocks.count <= total,
                     "\(name): sample blocks \(first)..<\(first + blocks.count), partials \(partials.shape[0]) "
                        + "(shape \(shape))")
        for (i, r) in blocks.enumerated() { body(r, partials.ptr + (first + i) * count, fresh) }
    }
}
