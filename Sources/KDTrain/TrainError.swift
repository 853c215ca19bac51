/// Errors of the training layer; each names the file or the step involved.
public enum TrainError: Error, CustomStringConvertible {
    case io(path: String, message: String)
    case invalid(String)
    case nonFinite(step: Int, term: String, value: Double)
    case desync(step: Int, detail: String)
    case interrupted(step: Int, signal: Int32, checkpoint: String)

    public var description: String {
        switch self {
        case let .io(path, message): return "\(path): \(message)"
        case let .invalid(m): return m
        case let .nonFinite(step, term, value):
            return "non-finite \(term) (\(value)) at step \(step); stopped before the optimizer applied it (set train.skip_nonfinite: true to skip such steps)"
        case let .desync(step, detail): return "parameters out of sync across ranks at step \(step): \(detail)"
        case let .interrupted(step, signal, checkpoint):
            return "stopped by signal \(signal) after step \(step); checkpoint written to \(checkpoint)"
        }
    }
}
