/// Errors of the training layer; each names the file or the step involved.
public enum TrainError: Error, CustomStringConvertible {
    case io(path: String, message: String)
    case invalid(String)
    /// `advice` says what can help: set by the trainer from where the value came from
    /// (`NonFiniteCause`).
    case nonFinite(step: Int, term: String, value: Double, advice: String)
    /// The optimizer's update made values non-finite (the step's inputs and gradients were finite).
    case nonFiniteUpdate(step: Int, what: String, advice: String)
    case desync(step: Int, detail: String)
    case interrupted(step: Int, signal: Int32, checkpoint: String)

    public var description: String {
        switch self {
        case let .io(path, message): return "\(path): \(message)"
        case let .invalid(m): return m
        case let .nonFinite(step, term, value, advice):
            return "non-finite \(term) (\(value)) at step \(step); stopped before the optimizer applied it: \(advice)"
        case let .nonFiniteUpdate(step, what, advice):
            return "at step \(step) \(what); stopped there (no checkpoint holds it): \(advice)"
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

/// Where a non-finite loss or gradient came from, and so what the user can do about it: skipping steps
/// (`train.skip_nonfinite`) helps only against a rare overflow in the student's own step.
public enum NonFiniteCause: Equatable {
    /// The batch's input images or features hold NaN/Inf.
    case data(String)
    /// The teacher's embeddings or logits for the batch hold NaN/Inf.
    case teacher(String)
    /// The student's step itself (an overflow in its forward, loss or backward).
    case training

    /// The advice the error and the skip warning give.
    public func advice(skipping: Bool, consecutive: Int) -> String {
        switch self {
        case .data(let source):
            return "the input batch holds NaN/Inf values: fix the data (\(source)); skipping steps would only drop "
                + "these samples every epoch"
        case .teacher(let source):
            return "the teacher's outputs are NaN/Inf for this batch: check the teacher (\(source)); skipping steps "
                + "cannot help a teacher that gives NaN"
        case .training:
            if consecutive > 1 {
                return "\(consecutive) steps in a row were non-finite, so skipping them does not help: lower optim.lr "
                    + "(or the loss weights), or check the loss parameters"
            }
            return skipping ? "the step was skipped (train.skip_nonfinite)"
                : "lower optim.lr (or the loss weights) or, for a rare overflow, set train.skip_nonfinite: true "
                + "to skip such steps"
        }
    }
}
