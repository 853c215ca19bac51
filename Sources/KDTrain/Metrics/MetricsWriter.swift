import Foundation
import KDFormats
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One logged record: ordered keys with numeric values, then text fields (JSON Lines and CSV share it;
/// TensorBoard takes the numbers only).
public struct MetricRecord {
    public var fields: [(String, Double)] = []
    /// Fields whose value is a name, not a number (e.g. `link/straggler`, the host a link probe named).
    public var texts: [(String, String)] = []
    public init() {}
    public mutating func set(_ key: String, text: String) {
        if let i = texts.firstIndex(where: { $0.0 == key }) { texts[i].1 = text } else { texts.append((key, text)) }
    }
    public func text(_ key: String) -> String? { texts.first(where: { $0.0 == key })?.1 }
    public mutating func set(_ key: String, _ value: Double) {
        if let i = fields.firstIndex(where: { $0.0 == key }) {
            fields[i].1 = value
        } else {
            fields.append((key, value))
        }
    }
    public subscript(key: String) -> Double? { fields.first(where: { $0.0 == key })?.1 }

    /// Whether `key` is one of a step's curves (`curves.svg`, TensorBoard): the loss, each
    /// `loss/<term>`, the learning rate, the throughput.
    public static func isCurve(_ key: String) -> Bool {
        key == "loss" || key.hasPrefix("loss/") || key == "lr" || key == "samples_per_s"
    }

    public var json: String {
        let numbers = fields.map { k, v in
            "\"\(k)\": \(MetricRecord.format(v, integral: k == "step" || k == "epoch"))"
        }
        let words = texts.map { "\"\($0)\": \(jsonStringLiteral($1))" }
        return "{" + (numbers + words).joined(separator: ", ") + "}"
    }

    /// `text` as a CSV cell: quoted (quotes doubled) when it holds a comma, a quote or a line break.
    static func csvCell(_ text: String) -> String {
        text.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline })
            ? "\"" + text.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : text
    }

    static func format(_ v: Double, integral: Bool) -> String {
        if integral, v.rounded() == v, abs(v) < 1e15 { return String(Int(v)) }
        if !v.isFinite { return v.isNaN ? "NaN" : (v > 0 ? "Infinity" : "-Infinity") }
        return "\(v)"
    }
}

/// Writes `metrics.jsonl` (one object per logged step and per evaluation) and `metrics.csv` (the same
/// records; columns those of the first record, plus the evaluation columns and any key a later record
/// brings), and with `tensorboard`
/// the same records' scalars as a TensorBoard event file (`TensorBoardWriter`). Rank 0 only.
///
/// Each record is one `write(2)` per file; a failed or short write (disk full, I/O error) is cut back
/// to the files' previous lengths, so both files hold whole lines only and the same records, and is
/// reported as
/// `TrainError.io(path: <file>, message: "metrics not written: <OS error>")` (docs/reliability.md).
public final class MetricsWriter {
    /// One append-only file descriptor and the path it names in errors.
    final class Sink {
        let path: String
        var fd: Int32

        init(path: String, append: Bool) throws {
            self.path = path
            fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0o644)
            guard fd >= 0 else {
                throw TrainError.io(path: path, message: "cannot open the metrics file: \(errnoText())")
            }
        }

        var size: Int { var st = stat(); return fstat(fd, &st) == 0 ? Int(st.st_size) : -1 }

        /// Appends `text` whole, or restores the previous length and throws.
        func append(_ text: String) throws { try append(bytes: Array(text.utf8)) }

        /// Appends `bytes` whole, or restores the previous length and throws.
        func append(bytes: [UInt8]) throws {
            let before = size
            var done = 0
            while done < bytes.count {
                let w = bytes.withUnsafeBytes { posixWrite(fd, $0.baseAddress! + done, $0.count - done) }
                if w < 0 && errno == EINTR { continue }
                guard w > 0 else {
                    let reason = w < 0 ? errnoText() : "no progress"
                    if done > 0 && before >= 0 { _ = ftruncate(fd, off_t(before)) }
                    throw TrainError.io(path: path, message: "metrics not written: \(reason)")
                }
                done += w
            }
        }

        func sync() throws {
            guard fsync(fd) == 0 else {
                throw TrainError.io(path: path, message: "metrics not written: fsync failed: \(errnoText())")
            }
        }

        func close() { if fd >= 0 { posixClose(fd); fd = -1 } }

        /// Replaces the file's contents with `text` atomically (a new file renamed over it: a crash leaves
        /// the old contents or the new) and appends to the new file from then on.
        func replaceContents(with text: String) throws {
            try MetricsWriter.writeAtomically(text, to: path)
            let reopened = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard reopened >= 0 else {
                throw TrainError.io(path: path, message: "cannot open the metrics file: \(errnoText())")
            }
            close()
            fd = reopened
        }
    }

    static func writeAtomically(_ text: String, to path: String) throws {
        do { try SafetensorsIO.writeAtomically(Array(text.utf8), to: path) } catch SafetensorsError.io(_, let why) {
            throw TrainError.io(path: path, message: "metrics not rewritten: \(why)")
        }
    }

    let jsonl: Sink?
    let csv: Sink?
    /// The TensorBoard event file (`output.tensorboard`), or nil.
    public let tensorboard: TensorBoardWriter?
    var columns: [String] = []
    public static let evalColumns = ["eval.top1", "eval.top5", "eval.loss"]

    /// What opening the files did that the run should say (records of steps past a resumed checkpoint moved
    /// aside); rank 0 logs each as a warning.
    public private(set) var notes: [String] = []

    /// `enabled` false (ranks other than 0) makes every call a no-op. `resumedAtStep` (a resumed run: its
    /// checkpoint's step; nil: a new run, which starts the files afresh): the existing files are continued and
    /// the CSV keeps the columns of its header line, adding any a record brings; the records of later steps
    /// are of the run that went on from the checkpoint and were superseded, so they move to
    /// `metrics.superseded-after-step-N.jsonl` (`supersede`). With `tensorboard`, a new event file in
    /// `<directory>/tensorboard/` receives every record too (a resumed run adds a file, which tells
    /// TensorBoard to drop the earlier files' events from step N + 1 on).
    public init(directory: String, enabled: Bool, resumedAtStep: Int? = nil, tensorboard: Bool = false) throws {
        guard enabled else { jsonl = nil; csv = nil; self.tensorboard = nil; return }
        let csvPath = (directory as NSString).appendingPathComponent("metrics.csv")
        let append = resumedAtStep != nil
        if let s = resumedAtStep { notes = try Self.supersede(directory: directory, after: s) }
        jsonl = try Sink(path: (directory as NSString).appendingPathComponent("metrics.jsonl"), append: append)
        csv = try Sink(path: csvPath, append: append)
        self.tensorboard = tensorboard
            ? try TensorBoardWriter(directory: directory, purgeFrom: resumedAtStep.map { $0 + 1 }) : nil
        if append, let csv, csv.size > 0 {
            // Re-read the header of the existing CSV so appended rows keep its columns.
            if let text = try? String(contentsOfFile: csvPath, encoding: .utf8),
               let first = text.split(separator: "\n").first {
                columns = first.split(separator: ",").map(String.init)
            }
        }
    }

    /// Appends `r` to both files (and its scalars to the event file); throws `TrainError.io` naming the
    /// file that could not be written.
    public func write(_ r: MetricRecord) throws {
        guard let jsonl, let csv else { return }
        let jsonlBefore = jsonl.size
        try jsonl.append(r.json + "\n")
        var text = ""
        var newColumns = columns
        let keys = r.fields.map { $0.0 } + r.texts.map { $0.0 }
        if newColumns.isEmpty {
            newColumns = keys
            for c in MetricsWriter.evalColumns where !newColumns.contains(c) { newColumns.append(c) }
            text = newColumns.joined(separator: ",") + "\n"
        } else if case let added = keys.filter({ !newColumns.contains($0) }), !added.isEmpty {
            // A key the header lacks (a loss term a resumed run added): the header grows, earlier rows get
            // empty cells, rather than the CSV dropping the value.
            do { try csv.replaceContents(with: Self.widened(csvText(), by: added.count, header: newColumns + added)) }
            catch {
                if jsonlBefore >= 0 { _ = ftruncate(jsonl.fd, off_t(jsonlBefore)) }
                throw error
            }
            newColumns += added
        }
        let row = newColumns.map { c in
            r[c].map { MetricRecord.format($0, integral: c == "step" || c == "epoch") }
                ?? r.text(c).map(MetricRecord.csvCell) ?? ""
        }
        do {
            try csv.append(text + row.joined(separator: ",") + "\n")
        } catch {
            // Keep the two files in step: the record is in neither.
            if jsonlBefore >= 0 { _ = ftruncate(jsonl.fd, off_t(jsonlBefore)) }
            throw error
        }
        columns = newColumns
        try tensorboard?.write(r)
    }

    func csvText() -> String { csv.flatMap { try? String(contentsOfFile: $0.path, encoding: .utf8) } ?? "" }

    /// `csv` with `header` as its first line and `count` empty cells added to each other line.
    static func widened(_ csv: String, by count: Int, header: [String]) -> String {
        let pad = String(repeating: ",", count: count)
        let rows = csv.split(separator: "\n").dropFirst().map { String($0) + pad }
        return ([header.joined(separator: ",")] + rows).joined(separator: "\n") + "\n"
    }

    /// Moves the records of steps after `s` out of `metrics.jsonl` and `metrics.csv` in `directory`: a run
    /// resumed from step `s`'s checkpoint recomputes those steps, and two records of one step would draw two
    /// curves and could give the summary a best evaluation of a run that was superseded. The JSON lines move
    /// to `metrics.superseded-after-step-<s>.jsonl` (appended), written before the files are rewritten
    /// (each atomically), so no record is lost; lines that are not records stay. Returns the note to log.
    static func supersede(directory: String, after s: Int) throws -> [String] {
        let path = { (directory as NSString).appendingPathComponent($0) }
        guard let text = try? String(contentsOfFile: path("metrics.jsonl"), encoding: .utf8) else { return [] }
        func step(_ line: Substring) -> Int? {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            return (object?["step"] as? NSNumber)?.intValue
        }
        let lines = text.split(separator: "\n")
        let later = lines.filter { (step($0) ?? s) > s }
        guard !later.isEmpty else { return [] }
        let aside = "metrics.superseded-after-step-\(s).jsonl"
        let sink = try Sink(path: path(aside), append: true)
        defer { sink.close() }
        try sink.append(later.joined(separator: "\n") + "\n")
        try sink.sync()
        try writeAtomically(lines.filter { (step($0) ?? s) <= s }.map { $0 + "\n" }.joined(), to: path("metrics.jsonl"))
        if let csv = try? String(contentsOfFile: path("metrics.csv"), encoding: .utf8) {
            let rows = csv.split(separator: "\n")
            let at = rows.first?.split(separator: ",", omittingEmptySubsequences: false).firstIndex(of: "step") ?? 0
            let kept = rows.enumerated().filter { i, row in
                i == 0 || (Int(row.split(separator: ",", omittingEmptySubsequences: false).dropFirst(at).first ?? "")
                           ?? s) <= s
            }
            try writeAtomically(kept.map { $0.1 + "\n" }.joined(), to: path("metrics.csv"))
        }
        return ["metrics.jsonl: \(counted(later.count, "record")) of steps after \(s) (from the run "
                + "that went on from this checkpoint) moved to \(aside); this run writes those steps again"]
    }

    /// Flushes the files to the disk; throws `TrainError.io` naming the file.
    public func sync() throws {
        try jsonl?.sync()
        try csv?.sync()
        try tensorboard?.sync()
    }

    public func close() {
        jsonl?.close()
        csv?.close()
        tensorboard?.close()
    }

    deinit { close() }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
private func posixWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
private func posixClose(_ fd: Int32) { _ = close(fd) }
