import Foundation
import KDFormats

/// What a run leaves to look at, from its `metrics.jsonl` (all of it: a resumed run's earlier steps
/// too): the curves (`curves.svg`), the summary (`summary.md`) and the few lines logged at the end.
public struct RunResults {
    /// A metric's values against the step, in the file's order.
    public typealias Curve = [(x: Double, y: Double)]

    /// The training records' curves: `loss`, each `loss/<term>` (by name), `lr`, `samples_per_s`.
    public var curves: [(key: String, points: Curve)] = []
    /// `eval.top1` against the step.
    public var evalTop1: Curve = []

    /// The folder the run wrote (`output.dir`), as configured.
    public var directory: String
    /// Seconds this invocation ran (`run()`), steps it ended at, and how it ended.
    public var seconds: Double
    public var steps: Int
    public var totalSteps: Int
    public var stoppedBySignal: Bool
    /// The last checkpoint written, as a path relative to `directory` when inside it.
    public var checkpoint: String?
    /// Whether `tensorboard/` was written (`output.tensorboard`).
    public var tensorboard: Bool
    /// What ran, one line (mode, models, ranks, batch).
    public var description: String
    /// The 1-based numbers of `metrics.jsonl`'s lines that are not a metrics record (e.g. a line cut short
    /// when a run was killed mid-write): left out of the curves and the summary, and named in both.
    public var unreadableLines: [Int] = []

    /// Reads `<directory>/metrics.jsonl`; a line that is not a metrics record is left out and counted
    /// (`unreadableLines`).
    public init(directory: String, description: String, seconds: Double, steps: Int, totalSteps: Int,
                stoppedBySignal: Bool, checkpoint: String?, tensorboard: Bool) throws {
        self.directory = directory
        self.description = description
        self.seconds = seconds
        self.steps = steps
        self.totalSteps = totalSteps
        self.stoppedBySignal = stoppedBySignal
        self.tensorboard = tensorboard
        let prefix = (directory as NSString).standardizingPath + "/"
        if let checkpoint, (checkpoint as NSString).standardizingPath.hasPrefix(prefix) {
            self.checkpoint = String((checkpoint as NSString).standardizingPath.dropFirst(prefix.count))
        } else {
            self.checkpoint = checkpoint
        }
        let path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw TrainError.io(path: path, message: "cannot read the metrics back: \(ioReason(error, path: path))")
        }
        var index: [String: Int] = [:]
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
        where !line.allSatisfy(\.isWhitespace) {
            guard let r = Self.parse(line) else { unreadableLines.append(number + 1); continue }
            guard let step = r["step"] else { continue }
            if let top1 = r["eval.top1"] { evalTop1.append((step, top1)); continue }
            for (k, v) in r where MetricRecord.isCurve(k) {
                if index[k] == nil { index[k] = curves.count; curves.append((k, [])) }
                curves[index[k]!].points.append((step, v))
            }
        }
        // JSON objects are unordered: loss first, its terms by name, then lr and samples/s.
        func rank(_ k: String) -> Int { k == "loss" ? 0 : k.hasPrefix("loss/") ? 1 : k == "lr" ? 2 : 3 }
        curves.sort { (rank($0.key), $0.key) < (rank($1.key), $1.key) }
    }

    /// One metrics line as key → value (`NaN`, `Infinity`, `-Infinity` as written by `MetricRecord`),
    /// every number to its last bit (`JSONDecoder`), or nil when the line is not such an object. Text
    /// fields (`MetricRecord.texts`) are left out.
    static func parse(_ line: Substring) -> [String: Double]? {
        let json = line.replacingOccurrences(of: ": -Infinity", with: ": \"-inf\"")
            .replacingOccurrences(of: ": Infinity", with: ": \"inf\"")
            .replacingOccurrences(of: ": NaN", with: ": \"nan\"")
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf",
                                                                         negativeInfinity: "-inf", nan: "nan")
        return (try? decoder.decode([String: MetricValue].self, from: Data(json.utf8)))?
            .compactMapValues { if case .number(let v) = $0 { return v } else { return nil } }
    }

    /// A metrics value: a number, or the text of a text field.
    enum MetricValue: Decodable {
        case number(Double), text(String)
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let v = try? c.decode(Double.self) { self = .number(v) } else { self = .text(try c.decode(String.self)) }
        }
    }

    /// The curve of `key`, empty if none.
    public func curve(_ key: String) -> Curve { curves.first { $0.key == key }?.points ?? [] }

    /// The last logged loss and its step.
    public var finalLoss: (step: Int, value: Double)? { curve("loss").last.map { (Int($0.x), $0.y) } }
    /// The last evaluation's top-1 and its step.
    public var finalTop1: (step: Int, value: Double)? { evalTop1.last.map { (Int($0.x), $0.y) } }
    /// The highest evaluation top-1 and its (first) step.
    public var bestTop1: (step: Int, value: Double)? {
        evalTop1.filter { $0.y.isFinite }.reduce(nil) { (best: (x: Double, y: Double)?, p) in
            best.map { $0.y >= p.y ? $0 : p } ?? p
        }.map { (Int($0.x), $0.y) }
    }

    /// "1h 02m 03s", "2m 05s" or "4.2 s".
    public static func duration(_ s: Double) -> String {
        if s < 60 { return String(format: "%.1f s", s) }
        let t = Int(s.rounded()), h = t / 3600, m = t % 3600 / 60, sec = t % 60
        return h > 0 ? String(format: "%dh %02dm %02ds", h, m, sec) : String(format: "%dm %02ds", m, sec)
    }

    static func eval(_ e: (step: Int, value: Double)?) -> String {
        e.map { String(format: "%.4f (step %d)", $0.value, $0.step) } ?? "none"
    }

    /// The files of the run folder this summary names, with what each holds.
    public var files: [(name: String, what: String)] {
        var f: [(String, String)] = [
            ("summary.md", "this summary"),
            ("curves.svg", "loss and its terms, lr, eval top-1 and samples/s against the step"),
            ("config.yaml", "the resolved configuration: every key, defaults included"),
            ("metrics.jsonl", "one JSON object per logged step and per evaluation (also `metrics.csv`)"),
            ("checkpoints/", "`step_NNNNNNNN.safetensors` and `final.safetensors`"
                             + (checkpoint.map { "; last written: `\($0)`" } ?? "")),
        ]
        if tensorboard { f.append(("tensorboard/", "TensorBoard event file: `tensorboard --logdir` on this folder")) }
        return f
    }

    /// `summary.md`.
    public var markdown: String {
        var s = "# Run summary: \(directory)\n\n"
        s += "\(description)\n\n"
        s += "| | |\n|---|---|\n"
        s += "| ended | " + (stoppedBySignal ? "stopped by a signal at step \(steps) of \(totalSteps)"
                                           : "finished, step \(steps) of \(totalSteps)") + " |\n"
        s += "| time | \(Self.duration(seconds)) (this invocation) |\n"
        s += "| final loss | " + (finalLoss.map { String(format: "%.6g (step %d)", $0.value, $0.step) } ?? "none")
            + " |\n"
        s += "| final eval top-1 | \(Self.eval(finalTop1)) |\n"
        s += "| best eval top-1 | \(Self.eval(bestTop1)) |\n"
        if let sps = curve("samples_per_s").last {
            s += String(format: "| samples/s | %.1f (last logged, step %d) |\n", sps.y, Int(sps.x))
        }
        if let w = unreadableWarning { s += "\n**Note:** \(w).\n" }
        s += "\n## Files\n\n| file | what |\n|---|---|\n"
        for f in files { s += "| `\(f.name)` | \(f.what) |\n" }
        s += "\n![training curves](curves.svg)\n"
        return s
    }

    /// `curves.svg`: small multiples of the loss and its terms, the learning rate, eval top-1 and
    /// samples/s against the step.
    public var svg: String {
        let terms = curves.filter { $0.key == "loss" || $0.key.hasPrefix("loss/") }
        let panels = [
            SVG.Panel(title: "loss", xLabel: "step", series: terms.enumerated().map { i, c in
                SVG.Series(name: c.key, color: SVG.palette[i % SVG.palette.count], points: c.points)
            }),
            SVG.Panel(title: "learning rate", xLabel: "step",
                      series: [SVG.Series(name: "lr", color: SVG.palette[2], points: curve("lr"))]),
            SVG.Panel(title: "eval top-1", xLabel: "step",
                      series: [SVG.Series(name: "eval.top1", color: SVG.palette[1], points: evalTop1)]),
            SVG.Panel(title: "samples/s", xLabel: "step",
                      series: [SVG.Series(name: "samples_per_s", color: SVG.palette[4],
                                          points: curve("samples_per_s"))]),
        ]
        return SVG.smallMultiples(title: "KDGraph run: \(directory)", panels: panels)
    }

    /// The lines logged at the end: time, final and best eval, the folder and its files.
    public var logLines: [String] {
        [
            "\(stoppedBySignal ? "stopped" : "finished") after \(Self.duration(seconds)) at step \(steps)"
                + (finalLoss.map { String(format: ", loss %.6g", $0.value) } ?? ""),
            "eval top-1: final \(Self.eval(finalTop1)), best \(Self.eval(bestTop1))",
            "results in \(directory)/: " + files.map(\.name).joined(separator: ", "),
        ]
    }

    /// The unreadable lines of `metrics.jsonl`, named (nil when every line was read).
    public var unreadableWarning: String? {
        guard !unreadableLines.isEmpty else { return nil }
        let shown = unreadableLines.prefix(5).map(String.init).joined(separator: ", ")
            + (unreadableLines.count > 5 ? ", …" : "")
        return "metrics.jsonl: \(unreadableLines.count) line(s) are not a metrics record (line \(shown)); "
            + "left out of summary.md and curves.svg"
    }

    /// Writes `summary.md` and `curves.svg` into `directory`; throws `TrainError.io` naming the file and
    /// the OS reason.
    public func write() throws {
        for (name, text) in [("curves.svg", svg), ("summary.md", markdown)] {
            let path = (directory as NSString).appendingPathComponent(name)
            do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
                throw TrainError.io(path: path, message: "cannot write in output.dir: \(ioReason(error, path: path))")
            }
        }
    }
}
