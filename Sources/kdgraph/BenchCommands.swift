import ArgumentParser
import Foundation
import KDCore
import KDFormats
import KDTensor
import KDTools
import KDTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks: --ops (op GFLOP/s beside cblas_sgemm, loss timings) "
            + "or --config (training-step breakdown).")

    @Flag(help: """
        Op-level GFLOP/s of conv2d/linear forward+backward beside plain cblas_sgemm, \
        and loss timings (JSON lines).
        """)
    var ops = false
    @Option(help: "The YAML configuration whose training step to measure.") var config: String?
    @Option(name: .customLong("set"), help: "Override a config key (repeatable).") var overrides: [String] = []
    @Option(name: .customLong("warmup"), help: "Warm-up steps (not measured; default 3).") var warmupOption: Int?
    @Option(name: .customLong("steps"), help: "Measured steps (default 10).") var stepsOption: Int?
    var warmup: Int { warmupOption ?? 3 }
    var steps: Int { stepsOption ?? 10 }
    @Option(help: "Also write the JSON to this file (rank 0).") var jsonOut: String?
    @Option(help: "Also time one rank's share of the loss at these world sizes (weak scaling), e.g. 4,8,16,64.")
    var projectRanks: String?
    @Option(help: ArgumentHelp("The same step in PyTorch (launch/pytorch_step_bench.py), printed beside: auto "
                               + "(when torch imports and the step has a PyTorch twin), on (an error otherwise), off."))
    var pytorch: PyTorchMode = .auto
    @Option(name: .customLong("python"),
            help: ArgumentHelp("The Python interpreter with torch for --pytorch: a name on PATH or a path, e.g. "
                               + "a venv's bin/python (default python3)."))
    var pythonOption: String?
    var python: String { pythonOption ?? "python3" }

    @Flag(help: ArgumentHelp("Also the step reading the teacher cache (filled fresh with one round under "
                             + "output.dir), beside the step running the teacher."))
    var teacherCache = false
    @Flag(help: ArgumentHelp("Also the step with train.deterministic on and off (the config's student.batch_norm; "
                             + "local becomes sync), "
                             + "and the cost of bit-identical training."))
    var deterministic = false

    enum PyTorchMode: String, ExpressibleByArgument { case auto, on, off }

    func validate() throws {
        if ops == (config != nil) { throw ValidationError("give exactly one of --ops or --config FILE") }
        if ops {
            // What measures a training step would be ignored by --ops without a word.
            let stepOnly = [("--set", !overrides.isEmpty), ("--warmup", warmupOption != nil),
                            ("--steps", stepsOption != nil), ("--json-out", jsonOut != nil),
                            ("--project-ranks", projectRanks != nil), ("--pytorch", pytorch != .auto),
                            ("--python", pythonOption != nil), ("--teacher-cache", teacherCache),
                            ("--deterministic", deterministic)].filter(\.1).map(\.0)
            if !stepOnly.isEmpty {
                throw ValidationError(stepOnly.joined(separator: ", ") + (stepOnly.count == 1 ? " applies" : " apply")
                                      + " to a training step (--config FILE), not to --ops")
            }
        }
        if let jsonOut { try validateOutputFile(jsonOut, option: "--json-out") }
        try validateStepCounts(warmup: warmup, steps: steps)
        _ = try parseRanks(projectRanks ?? "", option: "--project-ranks")
    }

    func run() throws {
        if ops {
            setBLASThreads(1)
            for line in OpBench.run() { print(line) }
            for line in LossBench.run(batches: [256, 1024], dim: 256, classes: 100) { print(line) }
            return
        }
        withWorld { comm in
            let cfg = try KDConfig.load(path: config!, overrides: overrides)
            let twin = comm.rank == 0 ? try pytorchTwin(cfg, ranks: comm.size) : nil
            var result = try StepBench.run(config: cfg, comm: comm, warmup: warmup, steps: steps,
                                           projectRanks: try parseRanks(projectRanks ?? "", option: "--project-ranks"))
            if teacherCache {
                result.teacherCache = try TeacherCacheBench.run(config: cfg, uncached: result, comm: comm,
                                                                warmup: warmup, steps: steps)
            }
            if deterministic {
                result.deterministic = try DeterministicBench.run(config: cfg, comm: comm, warmup: warmup, steps: steps)
            }
            if let twin {
                result.pytorch = try PyTorchComparison.run(arguments: twin, python: python)
                result.inferencePeers = try inferencePeers(cfg, ranks: comm.size)
            }
            if pytorch != .off && comm.size > 1 { try PyTorchComparison.quietBarrier(comm) }
            if comm.rank == 0 {
                if let r = result.teacherCache {
                    for line in TeacherCacheBench.table(uncached: result, report: r) {
                        FileHandle.standardError.write(Data((line + "\n").utf8))
                    }
                }
                if let d = result.deterministic {
                    for line in DeterministicBench.table(d) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
                }
                if let p = result.pytorch {
                    for line in PyTorchComparison.table(kdgraph: result, pytorch: p) {
                        FileHandle.standardError.write(Data((line + "\n").utf8))
                    }
                }
                if let peers = result.inferencePeers {
                    let teacher = result.phases["teacher"]?.medianS ?? 0
                    for line in InferencePeers.table(teacherS: teacher, batch: result.perRankBatch, peers: peers) {
                        FileHandle.standardError.write(Data((line + "\n").utf8))
                    }
                }
                let json = try result.json()
                print(json)
                if let jsonOut {
                    do { try json.write(toFile: jsonOut, atomically: true, encoding: .utf8) } catch {
                        throw TrainError.io(path: jsonOut, message: "--json-out: cannot write the JSON ("
                                            + ioReason(error, path: jsonOut) + "); it is on stdout above")
                    }
                }
            }
        }
    }
}

extension Bench {
    /// Rank 0, before anything is measured: the PyTorch script's arguments for the config's step, or nil
    /// (`off`, or under `auto` a step without a twin or no torch, the reason on stderr). Under `on` those
    /// are errors, so nothing is measured that cannot be compared.
    func pytorchTwin(_ cfg: KDConfig, ranks: Int) throws -> [String]? {
        guard pytorch != .off else { return nil }
        func skip(_ why: String) throws -> [String]? {
            if pytorch == .on { throw TrainError.invalid(why) }
            FileHandle.standardError.write(Data("bench: \(why)\n".utf8))
            return nil
        }
        let args: [String]
        do {
            args = try PyTorchComparison.arguments(config: cfg, ranks: ranks, warmup: warmup, steps: steps)
        } catch let r as PyTorchComparison.Refusal { return try skip("\(r)") }
        guard PyTorchComparison.torchAvailable(python: python) else {
            return try skip("no PyTorch comparison: \(python) cannot import torch (pip install torch, or name a "
                            + "venv's interpreter with --python)")
        }
        return args
    }
}

extension Bench {
    /// Rank 0, after the PyTorch step: the teacher forward in ONNX Runtime and OpenVINO
    /// (`InferencePeers`), or nil where the interpreter imports neither (said on stderr; optional even
    /// under `--pytorch on`) or the step has no network teacher.
    func inferencePeers(_ cfg: KDConfig, ranks: Int) throws -> [InferencePeers.Peer]? {
        guard let args = InferencePeers.arguments(config: cfg, ranks: ranks, warmup: warmup, steps: steps) else {
            return nil
        }
        guard InferencePeers.available(python: python) else {
            FileHandle.standardError.write(Data(("bench: no ONNX Runtime / OpenVINO comparison: \(python) imports "
                + "neither (pip install onnxruntime openvino)\n").utf8))
            return nil
        }
        return try InferencePeers.run(arguments: args, python: python)
    }
}

struct Scaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Scaling report: runs the bench under mpirun at each world size, "
            + "writes report.md, report.csv, scaling.svg.")

    @Option(help: "The YAML configuration.") var config: String
    @Option(name: .customLong("set"), help: "Override a config key (repeatable).") var overrides: [String] = []
    @Option(help: "World sizes, e.g. 1,2,4,8.") var ranks = "1,2"
    @Option(name: .customLong("project"), help: """
        Weak mode: world sizes to project from the smallest measured one \
        (loss share timed here, communication from the cost model); empty for none (default: 4,8,16,64,256).
        """)
    var projectOption: String?
    var project: String { projectOption ?? "4,8,16,64,256" }
    @Option(help: "weak (per-rank batch fixed) or strong (global batch fixed).") var mode = ScalingMode.weak
    @Option(help: "Output folder.") var out: String
    @Option(help: "Warm-up steps per world size.") var warmup = 3
    @Option(help: "Measured steps per world size.") var steps = 10
    @Option(help: "Per-rank batch for weak scaling (default: the config's global batch).") var perRankBatch: Int?
    @Option(help: "The machine's name for the report.") var machine: String?
    @Flag(help: "Only print the mpirun lines.") var dryRun = false
    @Flag(help: "Reuse bench_N.json files already in --out (e.g. measured on another machine).") var reuse = false

    func validate() throws {
        try validateStepCounts(warmup: warmup, steps: steps)
        if let perRankBatch, perRankBatch < 1 {
            throw ValidationError("--per-rank-batch must be ≥ 1, got \(perRankBatch)")
        }
        if try parseRanks(ranks, option: "--ranks").isEmpty {
            throw ValidationError("--ranks: give at least one world size")
        }
        _ = try parseRanks(project, option: "--project")
        if mode == .strong {
            // Both shape weak scaling only; under strong scaling they would be ignored without a word.
            if perRankBatch != nil { throw ValidationError("--per-rank-batch applies to --mode weak") }
            if projectOption != nil { throw ValidationError("--project applies to --mode weak") }
        }
    }

    func run() throws {
        let world = try parseRanks(ranks, option: "--ranks")
        let projected = mode == .weak ? try parseRanks(project, option: "--project") : []
        let cfg = try KDConfig.load(path: config, overrides: overrides)
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        var runner = ScalingRunner(configPath: config, overrides: overrides, ranks: world, mode: mode, outDir: out,
                                   warmup: warmup, steps: steps, executable: exe,
                                   perRankBatch: perRankBatch ?? cfg.data.globalBatch,
                                   machine: machine ?? "\(String(cString: host)), "
                                       + "\(ProcessInfo.processInfo.activeProcessorCount) cores")
        runner.reuse = reuse
        runner.expected = .init(student: cfg.student.model, teacher: BenchResult.teacherName(cfg),
                                views: cfg.data.views, globalBatch: cfg.data.globalBatch)
        runner.projectRanks = projected
        if dryRun {
            for n in world {
                print(runner.commandLine(ranks: n, jsonOut: (out as NSString).appendingPathComponent("bench_\(n).json"))
                          .joined(separator: " "))
            }
            return
        }
        let report = try runner.run { fputs($0 + "\n", stderr) }
        print(report.markdown)
    }
}

extension ScalingMode: ExpressibleByArgument {}

/// A file a command writes when it is done: checked before the work, so that a typo in its folder does not
/// cost the measurement (`--json-out runs/x.json` without `runs/`).
func validateOutputFile(_ path: String, option: String) throws {
    var isFolder: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
        throw ValidationError("\(option) \(path) is a folder; name a file")
    }
    let folder = (path as NSString).deletingLastPathComponent
    let folderExists = FileManager.default.fileExists(atPath: folder, isDirectory: &isFolder) && isFolder.boolValue
    if !folder.isEmpty && !folderExists {
        throw ValidationError("\(option) \(path): the folder \(folder) does not exist")
    }
}

/// A benchmark measures at least one step after zero or more warm-up steps.
func validateStepCounts(warmup: Int, steps: Int) throws {
    if warmup < 0 { throw ValidationError("--warmup must be ≥ 0, got \(warmup)") }
    if steps < 1 { throw ValidationError("--steps must be ≥ 1 (the measured steps), got \(steps)") }
}

/// `"1,2,4"` → `[1, 2, 4]`; empty → `[]`; anything else than positive integers is a usage error.
func parseRanks(_ text: String, option: String) throws -> [Int] {
    try text.split(separator: ",").map { s -> Int in
        guard let n = Int(s.trimmingCharacters(in: .whitespaces)), n >= 1 else {
            throw ValidationError("\(option): bad entry '\(s)' (expected positive integers separated by commas)")
        }
        return n
    }
}
