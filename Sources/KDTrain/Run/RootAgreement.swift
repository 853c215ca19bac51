import KDCore

extension Communicator {
    /// Runs `body` on `root` alone (file-system work: checkpoints, the output folder, metrics) and
    /// agrees on the outcome: when it threw, every rank throws the same text (rank `root` its own
    /// error, the others `TrainError.invalid` with its description), so whichever rank's
    /// `rank R: message` reaches the terminal first is the clear one. One all-reduce of one value,
    /// plus a broadcast of the message on failure. Every rank must call it at the same point.
    public func onRoot(_ root: Int = 0, _ body: () throws -> Void) throws {
        var failed = [0.0]
        var failure: Error?
        if rank == root {
            do { try body() } catch { failure = error; failed[0] = 1 }
        }
        try allReduce(&failed, op: .max)
        guard failed[0] > 0 else { return }
        let text = try broadcast(failure.map { "\($0)" } ?? "", root: root)
        if let failure { throw failure }
        throw TrainError.invalid(text)
    }
}
