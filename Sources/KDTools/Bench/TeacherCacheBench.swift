import Foundation
import KDCore
import KDTrain

/// `kdgraph bench --config C --teacher-cache`: the step reading the teacher cache beside the step
/// running the teacher (docs/training.md, "Teacher cache"). The cache is made fresh under
/// `output.dir/bench-teacher-cache` with one round by `kdgraph teacher-cache`'s fill (its throughput is
/// the cache's write throughput), over exactly the samples the measured steps use: a synthetic
/// training split is cut to `global_batch × (warmup + steps)` samples (the step's cost does not
/// depend on the split's size); a file source's whole split is filled.
public enum TeacherCacheBench {
    public struct Report: Codable, Equatable {
        public var dtype: String
        public var bytesPerSampleRound: Int
        public var filledRecords: Int
        public var fillSeconds: Double
        public var recordsPerS: Double
        public var writeMBPerS: Double
        /// The bench of the step reading every record.
        public var cachedStepMedianS: Double
        public var cachedPhases: [String: BenchResult.Spread]
        /// Cached step / the uncached step's non-teacher phases (the target: ≤ 1.1).
        public var ratioToNonTeacherPhases: Double
    }

    public static func run(config: KDConfig, uncached: BenchResult, comm: Communicator, warmup: Int,
                           steps: Int) throws -> Report {
        guard config.mode == .distill, config.teacher.kind == .network else {
            throw TrainError.invalid("--teacher-cache needs mode: distill with a network teacher")
        }
        var cfg = StepBench.benchConfig(config, warmup: warmup, steps: steps)
        let dir = (config.outputDir as NSString).appendingPathComponent("bench-teacher-cache")
        cfg.teacher.cache = .init(rounds: 1, path: dir, dtype: config.teacher.cache.dtype)
        if cfg.data.source == .synthetic { cfg.data.trainSize = cfg.data.globalBatch * (warmup + steps) }
        try comm.onRoot {
            if FileManager.default.fileExists(atPath: dir) { try FileManager.default.removeItem(atPath: dir) }
        }
        let trainer = try Trainer(config: cfg, comm: comm)
        let fill = try trainer.fillTeacherCache { line in
            FileHandle.standardError.write(Data("teacher-cache: \(line)\n".utf8))
        }
        let cached = try StepBench.run(trainer: trainer, comm: comm, warmup: warmup, steps: steps, projectRanks: [],
                                       sweepBytes: [])
        let teacher = uncached.phases["teacher"]?.medianS ?? 0
        let nonTeacher = max(uncached.stepMedianS - teacher, 1e-9)
        return Report(dtype: cfg.teacher.cache.dtype.rawValue, bytesPerSampleRound: fill.bytesPerSampleRound,
                      filledRecords: fill.computed, fillSeconds: fill.seconds,
                      recordsPerS: Double(fill.computed) / max(fill.seconds, 1e-9),
                      writeMBPerS: Double(fill.computed * fill.bytesPerSampleRound) / 1e6 / max(fill.seconds, 1e-9),
                      cachedStepMedianS: cached.stepMedianS, cachedPhases: cached.phases,
                      ratioToNonTeacherPhases: cached.stepMedianS / nonTeacher)
    }

    /// The side-by-side lines (ms, medians) for stderr.
    public static func table(uncached: BenchResult, report r: Report) -> [String] {
        func ms(_ p: [String: BenchResult.Spread], _ k: String) -> String {
            String(format: "%10.1f", 1000 * (p[k]?.medianS ?? 0))
        }
        let rows = [("teacher forward", "teacher"), ("student fwd + loss", "student_forward"),
                    ("backward + reduce", "backward"), ("optimizer", "optimizer")]
        var lines = [String(format: "teacher cache (%@, %d bytes per sample and round): filled %d records in %.2f s "
                            + "(%.1f records/s, %.2f MB/s written)", r.dtype, r.bytesPerSampleRound, r.filledRecords,
                            r.fillSeconds, r.recordsPerS, r.writeMBPerS),
                     "step (ms, medians)       uncached    cached"]
        for (label, key) in rows {
            lines.append(label.padding(toLength: 20, withPad: " ", startingAt: 0)
                         + ms(uncached.phases, key) + ms(r.cachedPhases, key))
        }
        lines.append("step".padding(toLength: 20, withPad: " ", startingAt: 0)
                     + String(format: "%10.1f%10.1f", 1000 * uncached.stepMedianS, 1000 * r.cachedStepMedianS))
        lines.append(String(format: "cached step / uncached step without its teacher phase: %.2f; speed-up %.2f×",
                            r.ratioToNonTeacherPhases, uncached.stepMedianS / max(r.cachedStepMedianS, 1e-9)))
        return lines
    }
}
