/// Errors raised by the communication layer. Every message names the collective (or helper) and the
/// offending values; MPI failures carry MPI's own error string (`MPI_Error_string`).
public enum CommError: Error, CustomStringConvertible, Equatable {
    /// An MPI call returned an error code (the world communicator uses `MPI_ERRORS_RETURN`).
    case mpi(op: String, code: Int32, message: String)
    /// A caller passed an argument the collective cannot accept (negative count, bad root, wrong
    /// number of per-rank counts, ...).
    case invalidArgument(op: String, message: String)
    /// A count or displacement does not fit MPI's `int` and the collective cannot split it.
    case countTooLarge(op: String, count: Int, limit: Int)
    /// Ranks disagree about something that must be identical everywhere (e.g. the row size of an
    /// all-gathered tensor).
    case rankMismatch(op: String, message: String)
    /// A failure injected on purpose (`KDGRAPH_FAIL_RANK`), to test that the job ends cleanly.
    case injectedFailure(rank: Int, message: String)

    public var description: String {
        switch self {
        case let .mpi(op, code, message):
            return "\(op): MPI error \(code): \(message)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        case let .countTooLarge(op, count, limit):
            return "\(op): count \(count) exceeds the MPI limit of \(limit) elements per call"
                + " (split the buffer into smaller messages)"
        case let .rankMismatch(op, message):
            return "\(op): ranks disagree: \(message)"
        case let .injectedFailure(rank, message):
            return "injected failure on rank \(rank): \(message)"
        }
    }
}
