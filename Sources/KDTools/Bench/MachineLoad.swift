import Foundation
import KDComm
import KDCore

/// Whether the machine stayed quiet while `kdgraph bench` measured (docs/scaling.md, "Measuring"): a
/// timing taken while other work shares the cores is not the step's cost, and the report must say so
/// rather than print it as a result. It only warns — nothing it measures decides a number of the run.
///
/// Two signals, each compared with a fixed threshold:
/// - **Speed drift**: every rank times a fixed calibration loop (a dependent chain of multiply-adds,
///   the best of three) before the warm-up and after the last measurement; when the two differ by more
///   than `driftThreshold` on some rank, the machine's speed changed during the measurement (another job
///   started or stopped, frequency scaling, a noisy neighbour).
/// - **Steal**: the share of CPU time the hypervisor gave to other guests over the measurement
///   (`/proc/stat`, Linux only), above `stealThreshold`.
public struct MachineLoad: Codable, Equatable {
    /// Seconds of the calibration loop before and after, per rank.
    public var calibrationBeforeS: [Double]
    public var calibrationAfterS: [Double]
    /// Steal time over all CPU time of the host during the measurement (nil where `/proc/stat` is absent).
    public var stealShare: Double?
    /// What makes the measurement untrustworthy, one sentence each (empty: nothing seen).
    public var warnings: [String]

    /// A change of the calibration loop's time beyond ±15%: larger than this VM's step-to-step noise of
    /// ±10–15% between runs (docs/scaling.md), so a quiet machine does not warn.
    public static let driftThreshold = 0.15
    /// More than 5% of the CPU time stolen by the hypervisor.
    public static let stealThreshold = 0.05

    /// The warnings for these readings (the judgement alone, testable without a machine).
    public static func warnings(before: [Double], after: [Double], stealShare: Double?) -> [String] {
        var out: [String] = []
        for (rank, (b, a)) in zip(before, after).enumerated() where b > 0 {
            let change = a / b - 1
            if abs(change) > driftThreshold {
                out.append(String(format: "rank %d: the calibration loop took %.1f ms before the steps and %.1f ms "
                    + "after (%+.0f%%): the machine's speed changed during the measurement (other work on the "
                    + "cores?); rerun on a quiet machine", rank, b * 1000, a * 1000, change * 100))
            }
        }
        if let s = stealShare, s > stealThreshold {
            out.append(String(format: "the hypervisor took %.1f%% of the CPU time (steal) during the measurement: "
                + "the cores were shared with other guests", s * 100))
        }
        return out
    }

    /// Seconds of the calibration loop on this core: the best of three runs of a fixed chain of
    /// multiply-adds (about 10 ms).
    public static func calibrate() -> Double {
        var best = Double.infinity
        for _ in 0..<3 {
            let t0 = monotonicSeconds()
            var x = 1.0, y = 0.5
            for _ in 0..<4_000_000 { x = x * 0.999_999 + y; y = y * 0.999_999 + 1e-9 }
            let t = monotonicSeconds() - t0
            if x.isNaN { return t }   // keeps the chain from being optimised away
            best = min(best, t)
        }
        return best
    }

    /// The host's CPU time so far from `/proc/stat` (jiffies): total and steal; nil where absent.
    public static func cpuTimes() -> (total: Double, steal: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return nil }
        let fields = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard fields.count >= 8 else { return nil }
        return (fields.prefix(8).reduce(0, +), fields[7])
    }

    /// The calibration on every rank at once (collective): each rank's seconds, in rank order.
    static func calibrateAll(_ comm: Communicator) throws -> [Double] {
        try comm.barrier()
        return try comm.allGather(calibrate())
    }
}
