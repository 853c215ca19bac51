import Foundation
import KDTensor
import KDTrain

/// `kdgraph scaling`: runs `kdgraph bench` under `mpirun` at each world size (one BLAS thread per rank,
/// ranks bound to cores; oversubscribed and unbound past the core count), then writes the report.
/// This process never initialises MPI itself: it is the launcher.
public struct ScalingRunner {
    public var configPath: String
    public var overrides: [String]
    public var ranks: [Int]
    public var mode: ScalingMode
    public var outDir: String
    public var warmup: Int
    public var steps: Int
    public var executable: String
    public var mpirun: String
    public var perRankBatch: Int
    public var machine: String
    /// Use `bench_N.json` files already in `outDir` instead of running those world sizes again
    /// (e.g. benches run on another machine).
    public var reuse = false
    /// What a reused `bench_N.json` must have measured, from `--config` (nil: not checked): the same models,
    /// views and global batch (`perRankBatch × N` in weak mode, this in strong mode), on N ranks.
    public var expected: Expected?

    public struct Expected {
        public var student: String, teacher: String, views: Int, globalBatch: Int
        public init(student: String, teacher: String, views: Int, globalBatch: Int) {
            self.student = student; self.teacher = teacher; self.views = views; self.globalBatch = globalBatch
        }
    }
    /// Weak mode: world sizes the bench at the smallest world size also times the loss share at
    /// (`--project-ranks`; the measured world sizes are added so the report can set model beside
    /// measurement).
    public var projectRanks: [Int] = []

    public init(configPath: String, overrides: [String], ranks: [Int], mode: ScalingMode, outDir: String,
                warmup: Int, steps: Int, executable: String, mpirun: String = "mpirun", perRankBatch: Int,
                machine: String) {
        self.configPath = configPath; self.overrides = overrides; self.ranks = ranks; self.mode = mode
        self.outDir = outDir; self.warmup = warmup; self.steps = steps; self.executable = executable
        self.mpirun = mpirun; self.perRankBatch = perRankBatch; self.machine = machine
    }

    /// The exact command line for world size `n` (also printed when mpirun cannot be launched).
    public func commandLine(ranks n: Int, jsonOut: String) -> [String] {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        var cmd = [mpirun, "-np", String(n)]
        cmd += n > cores ? ["--oversubscribe", "--bind-to", "none"] : ["--bind-to", "core"]
        cmd += ["-x", "OPENBLAS_NUM_THREADS=1", executable, "bench", "--config", configPath, "--pytorch", "off"]
        for o in overrides { cmd += ["--set", o] }
        if mode == .weak { cmd += ["--set", "data.global_batch=\(perRankBatch * n)"] }
        cmd += ["--warmup", String(warmup), "--steps", String(steps), "--json-out", jsonOut]
        if mode == .weak, !projectRanks.isEmpty, n == ranks.min() {
            cmd += ["--project-ranks",
                    Array(Set(projectRanks + ranks)).sorted().map(String.init).joined(separator: ",")]
        }
        return cmd
    }

    static func shellQuote(_ a: String) -> String {
        a.allSatisfy { $0.isLetter || $0.isNumber || "-_./=,:".contains($0) }
            ? a : "'" + a.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// Runs every world size, returns the report (also written to `outDir`).
    public func run(log: (String) -> Void) throws -> ScalingReport {
        try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
        var points: [ScalingPoint] = []
        var sweeps: [(ranks: Int, bytes: Double, seconds: Double)] = []
        for n in ranks {
            let json = (outDir as NSString).appendingPathComponent("bench_\(n).json")
            if reuse, FileManager.default.fileExists(atPath: json) {
                log("scaling: reusing \(json)")
                let bench = try BenchResult.read(json)
                try refuseOtherMeasurement(bench, file: json, ranks: n)
                let (point, sweep) = ScalingRunner.measured(bench)
                points.append(point); sweeps += sweep
                continue
            }
            let cmd = commandLine(ranks: n, jsonOut: json)
            log("scaling: " + cmd.map(ScalingRunner.shellQuote).joined(separator: " "))
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = cmd
            var env = ProcessInfo.processInfo.environment
            env["OPENBLAS_NUM_THREADS"] = "1"
            env["OMPI_ALLOW_RUN_AS_ROOT"] = env["OMPI_ALLOW_RUN_AS_ROOT"] ?? "1"
            env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] ?? "1"
            p.environment = env
            do { try p.run() } catch {
                let lines = ranks.map {
                    commandLine(ranks: $0, jsonOut: (outDir as NSString).appendingPathComponent("bench_\($0).json"))
                        .map(ScalingRunner.shellQuote).joined(separator: " ")
                }
                throw TrainError.invalid("cannot launch \(mpirun) (\(error)); run these lines yourself, "
                    + "then the same `kdgraph scaling` command with --reuse:\n"
                    + lines.joined(separator: "\n"))
            }
            p.waitUntilExit()
            guard p.terminationStatus == 0 else {
                throw TrainError.invalid("the bench at \(n) ranks failed (exit \(p.terminationStatus)): "
                                         + cmd.joined(separator: " "))
            }
            let (point, sweep) = try ScalingRunner.readBench(json)
            points.append(point)
            sweeps += sweep
        }
        let df = DateFormatter()
        df.dateFormat = "yyyy-MM-dd"
        let report = ScalingReport(mode: mode, points: points, configName: (configPath as NSString).lastPathComponent,
                                   machine: machine, date: df.string(from: Date()),
                                   costModel: AllReduceCostModel.fit(sweeps))
        try write(report)
        return report
    }

    /// A reused `bench_N.json` (`b`, read from `json`) that measured something else than this report's world
    /// size `n` and `expected`: an error naming the file and the field, since the report would set it beside the
    /// others.
    func refuseOtherMeasurement(_ b: BenchResult, file json: String, ranks n: Int) throws {
        var found: [(String, String, String)] = [("ranks", "\(b.ranks)", "\(n)")]
        if let e = expected {
            let batch = mode == .weak ? perRankBatch * n : e.globalBatch
            found += [("student", b.student, e.student), ("teacher", b.teacher, e.teacher),
                      ("views", "\(b.views)", "\(e.views)"), ("global_batch", "\(b.globalBatch)", "\(batch)")]
        }
        guard let (field, was, wanted) = found.first(where: { $0.1 != $0.2 }) else { return }
        throw TrainError.invalid("\(json): \(field) is \(was), but this report's \(n)-rank bench has \(wanted) "
                                 + "(--config and --mode \(mode.rawValue)): it measured another run; remove it, or "
                                 + "give another --out")
    }

    public func write(_ report: ScalingReport) throws {
        let dir = outDir as NSString
        try report.markdown.write(toFile: dir.appendingPathComponent("report.md"), atomically: true, encoding: .utf8)
        try report.csv.write(toFile: dir.appendingPathComponent("report.csv"), atomically: true, encoding: .utf8)
        try report.svg.write(toFile: dir.appendingPathComponent("scaling.svg"), atomically: true, encoding: .utf8)
        let projection = (outDir as NSString).appendingPathComponent("projection.csv")
        if !report.projection.isEmpty {
            try report.projectionCSV.write(toFile: projection, atomically: true, encoding: .utf8)
        } else if FileManager.default.fileExists(atPath: projection) {
            try FileManager.default.removeItem(atPath: projection)   // stale: from an earlier report
        }
    }

    /// Reads one `kdgraph bench` JSON file into a measured point and its all-reduce sweep.
    public static func readBench(_ path: String) throws
        -> (ScalingPoint, [(ranks: Int, bytes: Double, seconds: Double)]) {
        measured(try BenchResult.read(path))
    }

    /// The measured point and the all-reduce sweep of the bench result `b`.
    static func measured(_ b: BenchResult) -> (ScalingPoint, [(ranks: Int, bytes: Double, seconds: Double)]) {
        let collectives = b.lossProjection.isEmpty ? nil : StepCollectives(
            perRankBatch: b.perRankBatch, statisticsAllReduces: b.statisticsAllreducesPerStep,
            statisticsBytes: Double(b.statisticsBytesPerStep), gathers: b.gathersPerStep,
            gatheredBytesPerSample: Double(b.gatheredBytesPerSample), reduceScatters: b.reduceScattersPerStep,
            reduceScatteredBytesPerSample: Double(b.reduceScatteredBytesPerSample))
        var point = ScalingPoint(ranks: b.ranks, globalBatch: b.globalBatch, samplesPerSecond: b.samplesPerS,
                                 stepSeconds: b.stepMedianS, phases: b.phases.mapValues(\.medianS),
                                 bytesAllReduced: Double(b.bytesAllreducedPerStep),
                                 bytesGathered: Double(b.bytesGatheredPerStep), peakRSSBytes: Double(b.peakRssBytes),
                                 collectives: collectives, lossProjection: b.lossProjection)
        point.lossShareSeconds = b.lossShareS
        point.loadWarnings = b.load?.warnings ?? []
        point.microBatch = b.microBatch
        point.linkProbe = b.linkProbe
        return (point, b.allreduceSweep.map { (b.ranks, Double($0.bytes), $0.seconds) })
    }
}
