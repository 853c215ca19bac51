import Foundation
import KDComm

/// The phases of one training step (SPEC §1), in the order they run.
public enum Phase: String, CaseIterable, Sendable {
    case data, teacher, studentForward = "student_forward", gatherLoss = "gather_loss",
         backward, allreduce, optimizer
}

/// Per-step wall-clock time of each phase, and the history the benchmark summarises (median, p90).
public struct PhaseTimer {
    public private(set) var current: [Phase: Double] = [:]
    public private(set) var history: [[Phase: Double]] = []
    private var mark = monotonicSeconds()

    public init() {}

    /// Starts timing the step (the next `lap` measures from here).
    public mutating func startStep() { current = [:]; mark = monotonicSeconds() }

    /// Charges the time since the last lap to `phase`.
    public mutating func lap(_ phase: Phase) {
        let now = monotonicSeconds()
        current[phase, default: 0] += now - mark
        mark = now
    }

    public mutating func endStep() { history.append(current) }

    public var stepSeconds: Double { current.values.reduce(0, +) }

    public static func percentile(_ xs: [Double], _ p: Double) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted()
        let idx = min(s.count - 1, max(0, Int((p * Double(s.count - 1)).rounded())))
        return s[idx]
    }

    /// Median and p90 of each phase and of the whole step over the recorded history.
    public func summary() -> [String: [String: Double]] {
        var out: [String: [String: Double]] = [:]
        for p in Phase.allCases {
            let xs = history.map { $0[p] ?? 0 }
            out[p.rawValue] = ["median_s": PhaseTimer.percentile(xs, 0.5), "p90_s": PhaseTimer.percentile(xs, 0.9)]
        }
        let steps = history.map { $0.values.reduce(0, +) }
        out["step"] = ["median_s": PhaseTimer.percentile(steps, 0.5), "p90_s": PhaseTimer.percentile(steps, 0.9)]
        return out
    }
}
