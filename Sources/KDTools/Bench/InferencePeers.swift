import Foundation
import KDTrain

/// The teacher forward beside inference runtimes (`launch/inference_teacher_bench.py`): the config's
/// teacher exported to ONNX and run by ONNX Runtime and OpenVINO, one thread each, on one rank's batch —
/// the optional second comparison of `kdgraph bench --pytorch on|auto` where the interpreter imports
/// either package (docs/ops.md, "Against PyTorch"). Never needed by CI.
public enum InferencePeers {
    /// One runtime's result: its median seconds per batch, or why it was skipped.
    public struct Peer: Codable, Equatable {
        public var framework: String
        public var threads: Int? = nil
        public var medianS: Double? = nil
        public var skipped: String? = nil
        public init(framework: String, threads: Int? = nil, medianS: Double? = nil, skipped: String? = nil) {
            self.framework = framework; self.threads = threads; self.medianS = medianS; self.skipped = skipped
        }
    }

    public static let script = "launch/inference_teacher_bench.py"

    /// The script's arguments for the teacher of `config` (a network teacher of a distillation), one
    /// rank's batch; nil when the step has no network teacher.
    public static func arguments(config c: KDConfig, ranks: Int, warmup: Int, steps: Int) -> [String]? {
        guard c.mode == .distill, c.teacher.kind == .network else { return nil }
        return [script, "--teacher", c.teacher.model, "--classes", "\(c.data.classes)",
                "--image-size", "\(c.data.imageSize ?? 32)", "--batch", "\(c.data.globalBatch / max(1, ranks))",
                "--warmup", "\(max(1, warmup))", "--steps", "\(max(1, steps))"]
    }

    /// Whether `python` imports ONNX Runtime or OpenVINO (and torch, to export the teacher).
    public static func available(python: String) -> Bool {
        let probe = "import importlib.util as u, sys; import torch; "
            + "sys.exit(0 if u.find_spec('onnxruntime') or u.find_spec('openvino') else 1)"
        return (try? PyTorchComparison.runPython(["-c", probe], python: python).status) == 0
    }

    /// Runs the script; the peers it measured or skipped.
    public static func run(arguments: [String], python: String) throws -> [Peer] {
        let (status, out, err) = try PyTorchComparison.runPython(arguments, python: python)
        guard status == 0 else {
            throw TrainError.io(path: script, message: "exit \(status): "
                                + err.split(separator: "\n").suffix(3).joined(separator: " | "))
        }
        return try parse(out)
    }

    /// The peers of the script's last output line (`{"peers": [...]}`, snake_case keys).
    public static func parse(_ output: String) throws -> [Peer] {
        struct Line: Codable { var peers: [Peer] }
        let line = output.split(separator: "\n").last.map(String.init) ?? ""
        let d = JSONDecoder()
        d.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try d.decode(Line.self, from: Data(line.utf8)).peers
        } catch {
            throw TrainError.io(path: script, message: "unreadable result \(line): \(error)")
        }
    }

    /// KDGraph's teacher forward (`teacherS`, the bench's `teacher` phase median) beside each peer's.
    public static func table(teacherS: Double, batch: Int, peers: [Peer]) -> [String] {
        var lines = [String(format: "teacher forward of %d images, one thread: KDGraph %.1f ms", batch,
                            teacherS * 1000)]
        for p in peers {
            if let s = p.medianS {
                lines.append(String(format: "  %@: %.1f ms (KDGraph %.2f× faster)", p.framework, s * 1000,
                                    teacherS > 0 ? s / teacherS : 0))
            } else {
                lines.append("  \(p.framework): skipped (\(p.skipped ?? "no result"))")
            }
        }
        return lines
    }
}
