import Foundation
import KDCore
import KDLosses
import KDTrain

/// `kdgraph bench --config C.yaml --pytorch on|auto`: the same distillation step in PyTorch, set up as
/// a PyTorch expert would on a CPU (`launch/pytorch_step_bench.py`: `channels_last`, teacher under
/// `torch.inference_mode()`, one thread per rank, DDP over gloo with an autograd all-gather of the
/// embedding rows), run by rank 0 after KDGraph's own measurement, on as many processes as the bench
/// has ranks, and printed beside it.
///
/// The step is the config's: teacher and student from the model zoo, per-rank batch, image size,
/// classes, SGD, and the losses KD (`kd`, `ce`) and RKD (`rkd`, distance and angle over the gathered
/// batch), BatchNorm per process (`student.batch_norm: local`) or per block (`block`: the script's
/// `BlockBatchNorm2d`, blocks of `train.block_size`). Anything the script cannot reproduce (other
/// losses, SyncBN — PyTorch's `SyncBatchNorm` has no CPU kernel —, an embeddings teacher, views > 1, an
/// angle-anchor cap) is a `Refusal` that names the key, so a comparison is never made between two
/// different steps.
public enum PyTorchComparison {
    /// What PyTorch measured (one JSON line of the script, snake_case keys).
    public struct Result: Codable, Equatable {
        public var framework: String
        public var ranks: Int
        public var memoryFormat: String
        public var teacherMode: String
        public var perRankBatch: Int
        public var globalBatch: Int
        public var steps: Int
        public var phasesMedianS: [String: Double]
        public var stepMedianS: Double
        public var samplesPerS: Double
        public var samplesPerSPerRank: Double
    }

    /// Why the config's step has no PyTorch twin in the script: the key, and the reason.
    public struct Refusal: Error, CustomStringConvertible {
        public var key: String
        public var reason: String
        public var description: String { "no PyTorch comparison: \(key): \(reason)" }
    }

    public static let script = "launch/pytorch_step_bench.py"

    /// The script's arguments for `config`'s step on `ranks` processes.
    public static func arguments(config c: KDConfig, ranks: Int, warmup: Int, steps: Int) throws -> [String] {
        guard c.mode == .distill else {
            throw Refusal(key: "mode", reason: "the script times a distillation step (a network teacher, the "
                          + "config's KD/RKD terms); a supervised step has no twin there: compare "
                          + "configs/bench-kd-rkd-resnet32x4-resnet8x4.yaml")
        }
        guard c.teacher.kind == .network else {
            throw Refusal(key: "teacher.kind", reason: "the script distils from a network teacher")
        }
        guard c.data.views == 1 else { throw Refusal(key: "data.views", reason: "the script has one view") }
        guard c.student.batchNorm != .sync else {
            throw Refusal(key: "student.batch_norm", reason: "PyTorch's SyncBatchNorm has no CPU implementation; "
                          + "compare with --set student.batch_norm=block (its twin: BatchNorm per block) or local")
        }
        guard c.optim.kind == .sgd else { throw Refusal(key: "optim.kind", reason: "the script runs SGD") }
        guard c.data.globalBatch % ranks == 0 else {
            throw Refusal(key: "data.global_batch", reason: "not a multiple of the \(ranks) ranks")
        }
        guard c.data.source == .synthetic else {
            throw Refusal(key: "data.source", reason: "the script times random images (use the synthetic source)")
        }
        var kd = [0.0, 4, 0], rkd = [0.0, 25, 50]
        for (i, spec) in c.loss.enumerated() {
            let key = "loss[\(i)]"
            switch spec.term {
            case let t as KDTerm where kd[0] == 0:
                kd = [Double(t.weight), Double(t.temperature), Double(t.ceWeight)]
            case let t as RKDTerm where rkd[0] == 0:
                guard !t.useEmbedding else { throw Refusal(key: key + ".input", reason: "the script uses features") }
                guard t.angleAnchors == nil || t.angleWeight == 0 else {
                    throw Refusal(key: key + ".angle_anchors", reason: "the script computes every triplet")
                }
                guard t.anglePartners.map({ $0 >= c.data.globalBatch * c.data.views }) ?? true || t.angleWeight == 0
                else {
                    throw Refusal(key: key + ".angle_partners", reason: "the script computes every triplet: "
                                  + "set it to 0 or at least the \(c.data.globalBatch * c.data.views) rows")
                }
                rkd = [Double(t.weight), Double(t.distanceWeight), Double(t.angleWeight)]
            default:
                throw Refusal(key: key + ".kind", reason: "\(spec.kind) has no twin in \(script) (kd, rkd)")
            }
        }
        func list(_ v: [Double]) -> String { v.map { String($0) }.joined(separator: ",") }
        return [script, "--teacher", c.teacher.model, "--student", c.student.model,
                "--classes", String(c.data.classes), "--image-size", String(c.data.imageSize ?? 32),
                "--per-rank", String(c.data.globalBatch / ranks), "--ranks", String(ranks),
                "--kd", list(kd), "--rkd", list(rkd), "--lr", String(c.optim.lr),
                "--bn-block", String(c.student.batchNorm == .block ? c.samplesPerBlock : 0),
                "--warmup", String(warmup), "--steps", String(steps)]
    }

    /// Whether `python` (a name on PATH or a path, e.g. a venv's `bin/python`) can import torch
    /// (`--pytorch auto` skips the comparison when it cannot).
    public static func torchAvailable(python: String = "python3") -> Bool {
        (try? runPython(["-c", "import torch"], python: python).status) == 0
    }

    /// Runs the script with `python`; the error carries its last lines of output.
    public static func run(arguments: [String], python: String = "python3") throws -> Result {
        let (status, out, err) = try runPython(arguments, python: python)
        guard status == 0, let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            let tail = err.split(separator: "\n").suffix(5).joined(separator: "\n")
            throw TrainError.io(path: script, message: "exit \(status): \(tail)")
        }
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        do { return try d.decode(Result.self, from: Data(line.utf8)) } catch {
            throw TrainError.io(path: script, message: "unreadable result \(line): \(error)")
        }
    }

    /// The two steps side by side: per-phase medians and samples/s, KDGraph ÷ PyTorch.
    public static func table(kdgraph k: BenchResult, pytorch p: Result) -> [String] {
        func ms(_ s: Double?) -> String { s.map { String(format: "%9.1f", $0 * 1000) } ?? "        -" }
        let kd = k.phases.mapValues(\.medianS)
        func sum(_ phases: [Phase]) -> Double { phases.reduce(0) { $0 + (kd[$1.rawValue] ?? 0) } }
        var lines = ["step of \(k.globalBatch) samples on \(k.ranks) rank(s), one thread each (ms, medians)",
                     "                       KDGraph   \(p.framework) (\(p.memoryFormat), \(p.teacherMode))",
                     "teacher forward     \(ms(sum([.teacher])))   \(ms(p.phasesMedianS["teacher"]))",
                     "student fwd + loss  \(ms(sum([.studentForward, .gatherLoss])))   "
                        + ms(p.phasesMedianS["forward"]),
                     "backward + reduce   \(ms(sum([.backward, .allreduce])))   \(ms(p.phasesMedianS["backward"]))",
                     "optimizer           \(ms(sum([.optimizer])))   \(ms(p.phasesMedianS["optimizer"]))",
                     "step                \(ms(k.stepMedianS))   \(ms(p.stepMedianS))"]
        lines.append(String(format: "samples/s           %9.1f   %9.1f   KDGraph/PyTorch %.2f×",
                            k.samplesPerS, p.samplesPerS, p.samplesPerS > 0 ? k.samplesPerS / p.samplesPerS : 0))
        if let kernels = k.kernels {
            lines.append("KDGraph's kernels: OpenBLAS \(kernels["blas_core"] ?? "?"), row-invariant GEMM "
                         + (kernels["row_invariant_gemm"] ?? "?"))
        }
        return lines
    }

    /// A barrier that sleeps while it waits: the other ranks wait here while rank 0 runs PyTorch, and
    /// an MPI barrier spins, which would take a core from PyTorch's processes.
    public static func quietBarrier(_ comm: Communicator) throws {
        var token: [Float] = [0]
        try token.withUnsafeMutableBufferPointer { b in
            let request = try comm.allReduceAsync(b.baseAddress!, count: 1, op: .sum)
            while try !request.test() { usleep(20_000) }
        }
    }

    static func runPython(_ arguments: [String], python: String) throws -> (status: Int32, out: String, err: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [python] + arguments
        var env = ProcessInfo.processInfo.environment
        env["OMP_NUM_THREADS"] = "1"
        p.environment = env
        // stderr to a file: a pipe left unread while stdout is drained could fill and stall the child.
        let errPath = NSTemporaryDirectory() + "kdgraph-pytorch-\(getpid()).err"
        guard FileManager.default.createFile(atPath: errPath, contents: nil) else {
            throw TrainError.io(path: errPath, message: "cannot create the file for python3's stderr")
        }
        defer { try? FileManager.default.removeItem(atPath: errPath) }
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle(forWritingAtPath: errPath)
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let e = FileManager.default.contents(atPath: errPath) ?? Data()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}
