import Foundation
import KDComm
import KDTrain

/// `kdgraph bench --config C --deterministic`: the step with `train.deterministic: true` beside the same
/// step with it off (docs/training.md, "Bit-identical training at any world size"), both with
/// `student.sync_bn: true` (deterministic mode needs it), measured one after the other in the same run.
public enum DeterministicBench {
    public struct Report: Codable, Equatable {
        public var blockSize: Int
        public var offStepMedianS: Double
        public var onStepMedianS: Double
        public var offPhases: [String: BenchResult.Spread]
        public var onPhases: [String: BenchResult.Spread]
        /// Bytes all-reduced per step (Int64 sums deterministic, Float sums otherwise).
        public var offBytesAllReduced: Int
        public var onBytesAllReduced: Int
        /// `on / off − 1` (the target: ≤ 0.10).
        public var cost: Double
    }

    public static func run(config: KDConfig, comm: Communicator, warmup: Int, steps: Int) throws -> Report {
        func measure(_ deterministic: Bool) throws -> BenchResult {
            var cfg = config
            cfg.train.deterministic = deterministic
            cfg.student.syncBN = true
            cfg.comm.overlap = cfg.comm.overlap && !deterministic
            return try StepBench.run(config: cfg, comm: comm, warmup: warmup, steps: steps, sweepBytes: [])
        }
        let off = try measure(false), on = try measure(true)
        return Report(blockSize: config.train.blockSize, offStepMedianS: off.stepMedianS, onStepMedianS: on.stepMedianS,
                      offPhases: off.phases, onPhases: on.phases, offBytesAllReduced: off.bytesAllreducedPerStep,
                      onBytesAllReduced: on.bytesAllreducedPerStep, cost: on.stepMedianS / off.stepMedianS - 1)
    }

    /// The side-by-side lines (ms, medians) for stderr.
    public static func table(_ r: Report) -> [String] {
        func ms(_ p: [String: BenchResult.Spread], _ k: String) -> String {
            String(format: "%12.1f", 1000 * (p[k]?.medianS ?? 0))
        }
        let rows = [("teacher forward", "teacher"), ("student forward", "student_forward"),
                    ("gather + loss", "gather_loss"), ("backward", "backward"), ("gradient reduce", "allreduce"),
                    ("optimizer", "optimizer")]
        var lines = ["deterministic (blocks of \(r.blockSize), sync_bn on)   off          on   (ms, medians)"]
        for (label, key) in rows {
            lines.append(label.padding(toLength: 34, withPad: " ", startingAt: 0) + ms(r.offPhases, key)
                         + ms(r.onPhases, key))
        }
        lines.append("step".padding(toLength: 34, withPad: " ", startingAt: 0)
                     + String(format: "%12.1f%12.1f", 1000 * r.offStepMedianS, 1000 * r.onStepMedianS))
        lines.append(String(format: "deterministic cost: %+.1f%% of the step; %d → %d bytes all-reduced per step",
                            100 * r.cost, r.offBytesAllReduced, r.onBytesAllReduced))
        return lines
    }
}
