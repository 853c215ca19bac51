/// Loss blocks: how deterministic training evaluates a row-sharded loss so that it does not depend on
/// the world size (docs/training.md, "Bit-identical training at any world size").
///
/// Each rank evaluates its share of the loss block by block — one block per `train.block_size` samples
/// it holds (`SampleBlocks`), the same blocks whichever rank holds them. The ops of block `b` are
/// recorded inside `LossBlocks.recording(b)`; their tape nodes remember `b`, and when backward runs
/// them, a tensor that keeps its loss blocks apart (`lossBlocks > 0`: the gathered student rows of a rank
/// with several blocks; with one, its `grad` is that block's partial) receives their gradient in partial
/// `b` of its `blockGrad` (`[lossBlocks, count]`) instead of `grad`.
/// The gather's backward then adds the partials of every block of every rank with an exact,
/// order-independent sum (`KDCore.ExactSum`), so each row's gradient is a function of the blocks only.
public enum LossBlocks {
    /// Runs `body`, recording its ops as loss block `block`'s, then restores the previous block.
    public static func recording<T>(_ block: Int, _ body: () throws -> T) rethrows -> T {
        precondition(block >= 0, "loss block \(block)")
        let state = AutodiffState.current
        let saved = state.pointee.recordingBlock
        state.pointee.recordingBlock = block
        defer { state.pointee.recordingBlock = saved }
        return try body()
    }

    /// The loss block of the tape node whose backward is running on this thread (nil: none).
    public static var backwardBlock: Int? {
        let b = AutodiffState.current.pointee.backwardBlock
        return b >= 0 ? b : nil
    }
}

extension Tensor {
    /// Keeps the gradients of this rank's `count` loss blocks apart; with one block there is nothing to
    /// keep apart, and `grad` is that block's partial.
    public func keepLossBlocksApart(_ count: Int) { lossBlocks = count > 1 ? count : 0 }

    /// The per-block partials of a tensor that keeps its loss blocks apart, created on first use.
    var lossBlockPartials: LossBlockPartials {
        precondition(lossBlocks > 0 && rank >= 1, "\(name): no loss blocks kept apart")
        if let p = lossBlockGrad { return p }
        let p = LossBlockPartials(blocks: lossBlocks, rows: shape[0], rowSize: count / Swift.max(1, shape[0]))
        lossBlockGrad = p
        return p
    }

    /// `grad[rows[r]] += scale · values[r]` for the rows `rows` of a 2-D-or-more tensor (`values`: one row of
    /// `count / shape[0]` values per entry of `rows`, distinct rows); every other row's gradient is unchanged.
    /// A tensor that keeps its loss blocks apart adds them to the running node's block partial, holding
    /// those rows only (`LossBlockPartials`): a loss block's gradient costs the rows it touches.
    public func accumulateGradRows(_ rows: [Int], _ values: UnsafePointer<Float>, scale: Float = 1) {
        let rowSize = count / Swift.max(1, shape[0])
        if lossBlocks > 0, let block = LossBlocks.backwardBlock {
            let partials = lossBlockPartials
            for (r, i) in rows.enumerated() {
                let g = partials.row(block, i), v = values + r * rowSize
                for k in 0..<rowSize { g[k] += scale * v[k] }
            }
            return
        }
        let (g, fresh) = gradBuffer()
        if fresh { g.update(repeating: 0, count: count) }
        for (r, i) in rows.enumerated() {
            let gi = g + i * rowSize, v = values + r * rowSize
            for k in 0..<rowSize { gi[k] += scale * v[k] }
        }
    }
}

/// The gradient partials of a tensor that keeps its loss blocks apart (`Tensor.lossBlocks`), one per loss
/// block, stored row by row: a block's partial holds only the rows its ops wrote (a row-sharded loss's
/// block touches its own rows and, for a sampled term, a few others), zeros elsewhere — so `blocks ×
/// touched rows × rowSize` values instead of `blocks × rows × rowSize`. An op that writes a block's
/// gradient densely (`Tensor.gradBuffer`) turns that block's partial into all rows (`dense`).
public final class LossBlockPartials {
    public let blocks: Int, rows: Int, rowSize: Int
    /// Per block: the row → slot map of a sparse partial, and its slots' values (`slotCapacity` rows).
    private var slotOfRow: [[Int: Int]]
    private var slotRows: [[Int]]
    private var values: [UnsafeMutablePointer<Float>?]
    private var slotCapacity: [Int]
    /// Per block: the partial as all rows (`[rows, rowSize]`), once an op wrote it densely.
    private var denseValues: [Tensor?]

    init(blocks: Int, rows: Int, rowSize: Int) {
        self.blocks = blocks; self.rows = rows; self.rowSize = rowSize
        slotOfRow = Array(repeating: [:], count: blocks); slotRows = Array(repeating: [], count: blocks)
        values = Array(repeating: nil, count: blocks); slotCapacity = Array(repeating: 0, count: blocks)
        denseValues = Array(repeating: nil, count: blocks)
    }

    deinit { for v in values { v?.deallocate() } }

    /// Row `row` of block `block`'s partial, zeroed on first use (valid until the next `row` or `dense`).
    func row(_ block: Int, _ row: Int) -> UnsafeMutablePointer<Float> {
        precondition(block >= 0 && block < blocks && row >= 0 && row < rows, "loss block \(block), row \(row)")
        if let d = denseValues[block] { return d.ptr + row * rowSize }
        if let slot = slotOfRow[block][row] { return values[block]! + slot * rowSize }
        let slot = slotRows[block].count
        if slot == slotCapacity[block] {
            let capacity = Swift.max(16, 2 * slot)
            let grown = UnsafeMutablePointer<Float>.allocate(capacity: capacity * rowSize)
            if let old = values[block] { grown.moveInitialize(from: old, count: slot * rowSize); old.deallocate() }
            values[block] = grown; slotCapacity[block] = capacity
        }
        slotOfRow[block][row] = slot; slotRows[block].append(row)
        let p = values[block]! + slot * rowSize
        p.initialize(repeating: 0, count: rowSize)
        return p
    }

    /// Block `block`'s partial as all rows (`[rows, rowSize]`), the rows written so far moved in.
    func dense(_ block: Int) -> UnsafeMutablePointer<Float> {
        precondition(block >= 0 && block < blocks, "loss block \(block) of \(blocks)")
        if let d = denseValues[block] { return d.ptr }
        let d = Tensor.zeros([rows, rowSize])
        for (slot, r) in slotRows[block].enumerated() {
            (d.ptr + r * rowSize).update(from: values[block]! + slot * rowSize, count: rowSize)
        }
        values[block]?.deallocate(); values[block] = nil
        slotOfRow[block] = [:]; slotRows[block] = []; slotCapacity[block] = 0
        denseValues[block] = d
        return d.ptr
    }

    /// Every stored row of every block, `(row, its rowSize values)`; a row absent from a block is zero there.
    public var entries: [(row: Int, values: UnsafePointer<Float>)] {
        var out: [(row: Int, values: UnsafePointer<Float>)] = []
        for b in 0..<blocks {
            if let d = denseValues[b] {
                for r in 0..<rows { out.append((r, UnsafePointer(d.ptr + r * rowSize))) }
            } else {
                let v = values[b]
                for (slot, r) in slotRows[b].enumerated() { out.append((r, UnsafePointer(v! + slot * rowSize))) }
            }
        }
        return out
    }

    /// Every block's partial as all rows, `[blocks, rows · rowSize]` (a copy, for tests and small batches).
    public func allRows() -> Tensor {
        let out = Tensor.zeros([blocks, rows * rowSize])
        for b in 0..<blocks {
            if let d = denseValues[b] {
                (out.ptr + b * rows * rowSize).update(from: d.ptr, count: rows * rowSize)
                continue
            }
            for (slot, r) in slotRows[b].enumerated() {
                (out.ptr + (b * rows + r) * rowSize).update(from: values[b]! + slot * rowSize, count: rowSize)
            }
        }
        return out
    }

    /// Values stored (all blocks), for memory reports and tests.
    public var storedValues: Int {
        (0..<blocks).reduce(0) { $0 + (denseValues[$1] != nil ? rows : slotRows[$1].count) * rowSize }
    }
}
