import KDComm

/// The phases of one training step (docs/training.md, "The step"), in the order they run; their raw
/// values name them in metrics, bench results and reports.
public enum Phase: String, CaseIterable, Sendable {
    case data, teacher, studentForward = "student_forward", gatherLoss = "gather_loss",
         backward, allreduce, optimizer

    /// The part of `gatherLoss` spent inside the all-gathers (reported beside the phases).
    public static let gatherWait = "gather_wait"
}

/// Wall-clock time of each phase of one step: `lap(p)` charges the time since the previous lap (or
/// since the timer was made) to `p`.
public struct PhaseTimer {
    public private(set) var current: [Phase: Double] = [:]
    private var mark = monotonicSeconds()

    public init() {}

    /// Charges the time since the last lap to `phase`.
    public mutating func lap(_ phase: Phase) {
        let now = monotonicSeconds()
        current[phase, default: 0] += now - mark
        mark = now
    }

    /// The `p`-quantile (nearest rank) of `xs`, 0 for none.
    public static func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        let idx = min(s.count - 1, max(0, Int((p * Double(s.count - 1)).rounded())))
        return s[idx]
    }
}
