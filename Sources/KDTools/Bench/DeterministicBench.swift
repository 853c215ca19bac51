import Foundation
import KDCore
import KDData
import KDTrain

/// `kdgraph bench --config C --deterministic`: the step with `train.deterministic: true` beside the same
/// step with it off (docs/training.md, "Bit-identical training at any world size"), both with the config's
/// `student.batch_norm` (`local`, which deterministic mode refuses, becomes `sync`): two trainers built side
/// by side, their steps taken in alternation so that both modes see the same machine load, on the same convolution
/// algorithms (the deterministic trainer's, given to the other when it is built).
public enum DeterministicBench {
    public struct Report: Codable, Equatable {
        public var blockSize: Int
        /// `student.batch_norm` of both trainers.
        public var batchNorm: String
        public var offStepMedianS: Double
        public var onStepMedianS: Double
        public var offPhases: [String: BenchResult.Spread]
        public var onPhases: [String: BenchResult.Spread]
        /// Bytes all-reduced per step (Int64 sums deterministic, Float sums otherwise).
        public var offBytesAllReduced: Int
        public var onBytesAllReduced: Int
        /// `on / off − 1` (target: ≤ 0.03, docs/scaling.md).
        public var cost: Double
    }

    public static func run(config: KDConfig, comm: Communicator, warmup: Int, steps: Int) throws -> Report {
        func trainer(_ deterministic: Bool, convAlgorithms: [ConvAlgorithmChoice]? = nil) throws -> Trainer {
            var cfg = StepBench.benchConfig(config, warmup: warmup, steps: steps)
            cfg.train.deterministic = deterministic
            if cfg.student.batchNorm == .local { cfg.student.batchNorm = .sync }
            cfg.comm.overlap = cfg.comm.overlap && !deterministic
            return try Trainer(config: cfg, comm: comm, convAlgorithms: convAlgorithms)
        }
        // The same convolutions in both (under `auto` the ordinary trainer would time its own choices):
        // the difference measured is the deterministic machinery alone.
        let on = try trainer(true)
        let trainers = [try trainer(false, convAlgorithms: on.convAlgorithms), on]
        let streams = trainers.map {
            $0.data.stream($0.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: warmup + steps, depth: 1)
        }
        defer { streams.forEach { $0.shutdown() } }
        // Step by step in alternation (which goes first alternating too), so that both modes see the same
        // load on a shared machine.
        var records: [[StepRecord]] = [[], []]
        for k in 0..<(warmup + steps) {
            for i in (k % 2 == 0 ? [0, 1] : [1, 0]) {
                guard let batch = try streams[i].next() else { continue }
                let r = try trainers[i].step(batch)
                if k >= warmup { records[i].append(r) }
            }
        }
        let median = records.map { PhaseTimer.percentile($0.map(\.seconds), 0.5) }
        return Report(blockSize: on.config.samplesPerBlock, batchNorm: on.config.student.batchNorm.rawValue,
                      offStepMedianS: median[0], onStepMedianS: median[1],
                      offPhases: StepBench.phaseSpreads(records[0]), onPhases: StepBench.phaseSpreads(records[1]),
                      offBytesAllReduced: records[0].last?.bytesAllReduced ?? 0,
                      onBytesAllReduced: records[1].last?.bytesAllReduced ?? 0, cost: median[1] / median[0] - 1)
    }

    /// The side-by-side lines (ms, medians) for stderr.
    public static func table(_ r: Report) -> [String] {
        func ms(_ p: [String: BenchResult.Spread], _ k: String) -> String {
            String(format: "%12.1f", 1000 * (p[k]?.medianS ?? 0))
        }
        let rows = [("teacher forward", "teacher"), ("student forward", "student_forward"),
                    ("gather + loss", "gather_loss"), ("backward", "backward"), ("gradient reduce", "allreduce"),
                    ("optimizer", "optimizer")]
        var lines = ["deterministic (blocks of \(r.blockSize), batch_norm \(r.batchNorm))   off          on   "
                     + "(ms, medians)"]
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
