import Foundation

/// One logged record: ordered keys with numeric values (JSON Lines and CSV share it).
public struct MetricRecord {
    public var fields: [(String, Double)] = []
    public init() {}
    public mutating func set(_ key: String, _ value: Double) {
        if let i = fields.firstIndex(where: { $0.0 == key }) { fields[i].1 = value } else { fields.append((key, value)) }
    }
    public subscript(key: String) -> Double? { fields.first(where: { $0.0 == key })?.1 }

    public var json: String {
        "{" + fields.map { k, v in "\"\(k)\": \(MetricRecord.format(v, integral: k == "step" || k == "epoch"))" }
            .joined(separator: ", ") + "}"
    }

    static func format(_ v: Double, integral: Bool) -> String {
        if integral, v.rounded() == v, abs(v) < 1e15 { return String(Int(v)) }
        if !v.isFinite { return v.isNaN ? "NaN" : (v > 0 ? "Infinity" : "-Infinity") }
        return "\(v)"
    }
}

/// Writes `metrics.jsonl` (one object per logged step and per evaluation) and `metrics.csv` (the same
/// records; columns fixed by the first record, plus the evaluation columns). Rank 0 only.
public final class MetricsWriter {
    let jsonl: FileHandle?
    let csv: FileHandle?
    var columns: [String] = []
    public static let evalColumns = ["eval.top1", "eval.top5", "eval.loss"]

    /// `enabled` false (ranks other than 0) makes every call a no-op.
    public init(directory: String, enabled: Bool, append: Bool = false) throws {
        guard enabled else { jsonl = nil; csv = nil; return }
        func open(_ name: String) throws -> FileHandle {
            let path = (directory as NSString).appendingPathComponent(name)
            if !append || !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw TrainError.io(path: path, message: "cannot create the metrics file")
                }
            }
            guard let h = FileHandle(forWritingAtPath: path) else {
                throw TrainError.io(path: path, message: "cannot open the metrics file for writing")
            }
            h.seekToEndOfFile()
            return h
        }
        jsonl = try open("metrics.jsonl")
        csv = try open("metrics.csv")
        if append, let csv, csv.offsetInFile > 0 {
            // Re-read the header of the existing CSV so appended rows keep its columns.
            let path = (directory as NSString).appendingPathComponent("metrics.csv")
            if let text = try? String(contentsOfFile: path, encoding: .utf8), let first = text.split(separator: "\n").first {
                columns = first.split(separator: ",").map(String.init)
            }
        }
    }

    public func write(_ r: MetricRecord) {
        guard let jsonl, let csv else { return }
        jsonl.write((r.json + "\n").data(using: .utf8)!)
        if columns.isEmpty {
            columns = r.fields.map { $0.0 }
            for c in MetricsWriter.evalColumns where !columns.contains(c) { columns.append(c) }
            csv.write((columns.joined(separator: ",") + "\n").data(using: .utf8)!)
        }
        let row = columns.map { c in r[c].map { MetricRecord.format($0, integral: c == "step" || c == "epoch") } ?? "" }
        csv.write((row.joined(separator: ",") + "\n").data(using: .utf8)!)
    }

    public func close() {
        try? jsonl?.synchronize(); try? csv?.synchronize()
        try? jsonl?.close(); try? csv?.close()
    }
}
