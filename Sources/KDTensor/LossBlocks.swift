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

    /// Partial `block` of a tensor that keeps its loss blocks apart, zeroed on first use.
    func lossBlockPartial(_ block: Int) -> UnsafeMutablePointer<Float> {
        precondition(block < lossBlocks, "\(name): loss block \(block) of \(lossBlocks)")
        if blockGrad == nil { blockGrad = Tensor.zeros([lossBlocks, count]) }
        return blockGrad!.ptr + block * count
    }
}
