import Foundation

/// One world size's measurement, from `kdgraph bench` JSON.
public struct ScalingPoint: Equatable {
    public var ranks: Int
    public var globalBatch: Int
    public var samplesPerSecond: Double
    public var stepSeconds: Double
    /// Median seconds per phase (SPEC §1 names).
    public var phases: [String: Double]
    public var bytesAllReduced: Double
    public var bytesGathered: Double
    public var peakRSSBytes: Double

    public init(ranks: Int, globalBatch: Int, samplesPerSecond: Double, stepSeconds: Double,
                phases: [String: Double], bytesAllReduced: Double, bytesGathered: Double, peakRSSBytes: Double) {
        self.ranks = ranks; self.globalBatch = globalBatch; self.samplesPerSecond = samplesPerSecond
        self.stepSeconds = stepSeconds; self.phases = phases; self.bytesAllReduced = bytesAllReduced
        self.bytesGathered = bytesGathered; self.peakRSSBytes = peakRSSBytes
    }

    /// Communication share: gather+loss is partly compute, so only the all-reduce wait and the gather
    /// wait the bench reports separately count (`gather_wait` when present, else none of gather_loss).
    public var communicationSeconds: Double { (phases["allreduce"] ?? 0) + (phases["gather_wait"] ?? 0) }
}

/// Weak or strong scaling (SPEC §5).
public enum ScalingMode: String { case weak, strong }

/// The scaling report: Markdown table, CSV and an SVG plot, with the efficiency definitions written in.
public struct ScalingReport {
    public var mode: ScalingMode
    public var points: [ScalingPoint]
    public var configName: String
    public var machine: String
    public var date: String
    public var costModel: AllReduceCostModel?

    public init(mode: ScalingMode, points: [ScalingPoint], configName: String, machine: String, date: String,
                costModel: AllReduceCostModel?) {
        self.mode = mode; self.points = points.sorted { $0.ranks < $1.ranks }; self.configName = configName
        self.machine = machine; self.date = date; self.costModel = costModel
    }

    var base: ScalingPoint? { points.first }

    /// Speed-up relative to the smallest world size measured (normally 1 rank).
    public func speedup(_ p: ScalingPoint) -> Double {
        guard let b = base, b.samplesPerSecond > 0 else { return 0 }
        return p.samplesPerSecond / b.samplesPerSecond
    }

    /// Weak: throughput(N) / (N · throughput(1)). Strong: speed-up(N) / N. (Both normalised to the
    /// smallest world size measured, `N₀`: efficiency = speed-up · N₀ / N.)
    public func efficiency(_ p: ScalingPoint) -> Double {
        guard let b = base else { return 0 }
        return speedup(p) * Double(b.ranks) / Double(p.ranks)
    }

    public var csv: String {
        var s = "ranks,global_batch,samples_per_s,speedup,efficiency,step_s,comm_share,allreduce_s,predicted_allreduce_s,bytes_allreduced,bytes_gathered,peak_rss_bytes"
        for name in ScalingReport.phaseOrder { s += ",\(name)_s" }
        s += "\n"
        for p in points {
            let pred = costModel.map { $0.predict(ranks: p.ranks, bytes: p.bytesAllReduced) } ?? .nan
            s += "\(p.ranks),\(p.globalBatch),\(p.samplesPerSecond),\(speedup(p)),\(efficiency(p)),\(p.stepSeconds),"
            s += "\(p.stepSeconds > 0 ? p.communicationSeconds / p.stepSeconds : 0),\(p.phases["allreduce"] ?? 0),\(pred),"
            s += "\(p.bytesAllReduced),\(p.bytesGathered),\(p.peakRSSBytes)"
            for name in ScalingReport.phaseOrder { s += ",\(p.phases[name] ?? 0)" }
            s += "\n"
        }
        return s
    }

    static let phaseOrder = ["data", "teacher", "student_forward", "gather_loss", "backward", "allreduce", "optimizer"]

    public var markdown: String {
        var s = "# KDGraph \(mode.rawValue) scaling: \(configName)\n\n"
        s += "Machine: \(machine). Date: \(date).\n\n"
        s += mode == .weak
            ? "Weak scaling: the per-rank batch is fixed, the global batch grows with the ranks. Efficiency(N) = throughput(N) / (N · throughput(1)).\n\n"
            : "Strong scaling: the global batch is fixed. Speed-up(N) = throughput(N) / throughput(1); efficiency(N) = speed-up(N) / N.\n\n"
        if let b = base, b.ranks != 1 { s += "(The smallest world measured is \(b.ranks) ranks; speed-up and efficiency are relative to it.)\n\n" }
        s += "| ranks | global batch | samples/s | speed-up | efficiency | step (ms) | comm share | all-reduce wait (ms) | predicted all-reduce (ms) | peak RSS/rank (MiB) |\n"
        s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for p in points {
            let pred = costModel.map { String(format: "%.2f", 1e3 * $0.predict(ranks: p.ranks, bytes: p.bytesAllReduced)) } ?? "n/a"
            s += String(format: "| %d | %d | %.1f | %.2f | %.1f%% | %.1f | %.1f%% | %.2f | %@ | %.0f |\n",
                        p.ranks, p.globalBatch, p.samplesPerSecond, speedup(p), 100 * efficiency(p), 1e3 * p.stepSeconds,
                        100 * (p.stepSeconds > 0 ? p.communicationSeconds / p.stepSeconds : 0),
                        1e3 * (p.phases["allreduce"] ?? 0), pred, p.peakRSSBytes / 1_048_576)
        }
        s += "\nStep time by phase (median ms per step):\n\n| ranks | " + ScalingReport.phaseOrder.joined(separator: " | ") + " |\n"
        s += "|---:|" + String(repeating: "---:|", count: ScalingReport.phaseOrder.count) + "\n"
        for p in points {
            s += "| \(p.ranks) | " + ScalingReport.phaseOrder.map { String(format: "%.1f", 1e3 * (p.phases[$0] ?? 0)) }.joined(separator: " | ") + " |\n"
        }
        if let m = costModel {
            s += String(format: "\nAll-reduce cost model (fitted to this machine's measurements): t = 2(N−1)/N · bytes / %.2f GB/s + 2(N−1) · %.1f µs.\n",
                        m.bandwidthBytesPerSecond / 1e9, m.latencySeconds * 1e6)
            if let bytes = points.last?.bytesAllReduced, bytes > 0 {
                s += "\nExtrapolated all-reduce time of this model's gradients (\(String(format: "%.1f", bytes / 1_048_576)) MiB) with that fit:\n\n| ranks | predicted all-reduce (ms) |\n|---:|---:|\n"
                for n in [2, 4, 8, 16, 64, 512] { s += String(format: "| %d | %.2f |\n", n, 1e3 * m.predict(ranks: n, bytes: bytes)) }
            }
        }
        s += "\nCommunication share = (all-reduce wait + gather wait) / step time. Files: report.csv, scaling.svg.\n"
        return s
    }

    /// Throughput (left axis) and efficiency (right axis) against ranks; ideal lines dashed.
    public var svg: String {
        let w = 720.0, h = 420.0, l = 70.0, r = 70.0, t = 40.0, b = 60.0
        let pw = w - l - r, ph = h - t - b
        let maxN = Double(points.map { $0.ranks }.max() ?? 1)
        let baseRate = base.map { $0.samplesPerSecond / Double($0.ranks) } ?? 0
        let idealMax = baseRate * maxN   // ideal: linear in ranks (weak and strong alike)
        let maxY = max(points.map { $0.samplesPerSecond }.max() ?? 1, idealMax) * 1.1
        func x(_ n: Double) -> Double { l + (maxN > 1 ? (n - 1) / (maxN - 1) : 0.5) * pw }
        func y(_ v: Double) -> Double { t + ph - v / maxY * ph }
        func ye(_ e: Double) -> Double { t + ph - min(e, 1.2) / 1.2 * ph }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">KDGraph \(mode.rawValue) scaling — \(configName)</text>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t + ph)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l + pw)\" y1=\"\(t)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        for p in points {
            let px = x(Double(p.ranks))
            s += "<line x1=\"\(px)\" y1=\"\(t + ph)\" x2=\"\(px)\" y2=\"\(t + ph + 5)\" stroke=\"black\"/><text x=\"\(px)\" y=\"\(t + ph + 20)\" text-anchor=\"middle\">\(p.ranks)</text>\n"
        }
        for i in 0...4 {
            let v = maxY * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", l - 6, y(v) + 4, v)
            let e = 1.2 * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\">%.0f%%</text>\n", l + pw + 6, ye(e) + 4, e * 100)
        }
        s += "<text x=\"\(w / 2)\" y=\"\(h - 15)\" text-anchor=\"middle\">ranks</text>\n"
        s += "<text transform=\"translate(18 \(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f77b4\">samples/s</text>\n"
        s += "<text transform=\"translate(\(w - 14) \(t + ph / 2)) rotate(90)\" text-anchor=\"middle\" fill=\"#d62728\">efficiency</text>\n"
        // ideal throughput (dashed) and ideal efficiency 100% (dashed)
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#1f77b4\" stroke-dasharray=\"6 4\"/>\n",
                    x(1), y(baseRate), x(maxN), y(baseRate * maxN))
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\n",
                    x(1), ye(1), x(maxN), ye(1))
        let tp = points.map { String(format: "%.1f,%.1f", x(Double($0.ranks)), y($0.samplesPerSecond)) }.joined(separator: " ")
        let ef = points.map { String(format: "%.1f,%.1f", x(Double($0.ranks)), ye(efficiency($0))) }.joined(separator: " ")
        s += "<polyline points=\"\(tp)\" fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\n"
        s += "<polyline points=\"\(ef)\" fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\"/>\n"
        for p in points {
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/>", x(Double(p.ranks)), y(p.samplesPerSecond))
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n", x(Double(p.ranks)), ye(efficiency(p)))
        }
        s += "<g transform=\"translate(\(l + 10) \(t + 10))\"><line x1=\"0\" y1=\"0\" x2=\"20\" y2=\"0\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"26\" y=\"4\">throughput</text>"
        s += "<line x1=\"0\" y1=\"16\" x2=\"20\" y2=\"16\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"26\" y=\"20\">efficiency</text>"
        s += "<line x1=\"0\" y1=\"32\" x2=\"20\" y2=\"32\" stroke=\"gray\" stroke-dasharray=\"6 4\"/><text x=\"26\" y=\"36\">ideal</text></g>\n"
        s += "</svg>\n"
        return s
    }
}
