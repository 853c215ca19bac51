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
            return "interrupted by \(TrainError.signalName(signal)) at step \(step): checkpoint \(checkpoint) written; "
                + "resume with --resume \(checkpoint)"
        }
    }

    /// `SIGTERM`, `SIGINT`, else `signal N`.
    static func signalName(_ signal: Int32) -> String {
        switch signal {
        case 15: return "SIGTERM"
        case 2: return "SIGINT"
        default: return "signal \(signal)"
        }
    }

    /// The exit status of a run stopped by `signal` at a step boundary: 128 + the signal, as a shell
    /// reports a process the signal ended (130 for Ctrl-C, 143 for SIGTERM).
    public static func exitStatus(interruptedBy signal: Int32) -> Int32 { 128 + signal }
}
