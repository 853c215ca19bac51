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
    /// The collectives of one step (from a bench that ran with `--project-ranks`).
    public var collectives: StepCollectives?
    /// One rank's loss share timed at other world sizes (`LossProjection`), by the same bench.
    public var lossProjection: [LossProjection.Point]

    public init(ranks: Int, globalBatch: Int, samplesPerSecond: Double, stepSeconds: Double,
                phases: [String: Double], bytesAllReduced: Double, bytesGathered: Double, peakRSSBytes: Double,
                collectives: StepCollectives? = nil, lossProjection: [LossProjection.Point] = []) {
        self.ranks = ranks; self.globalBatch = globalBatch; self.samplesPerSecond = samplesPerSecond
        self.stepSeconds = stepSeconds; self.phases = phases; self.bytesAllReduced = bytesAllReduced
        self.bytesGathered = bytesGathered; self.peakRSSBytes = peakRSSBytes
        self.collectives = collectives; self.lossProjection = lossProjection
    }

    /// Communication share: gather+loss is partly compute, so only the all-reduce wait and the gather
    /// wait the bench reports separately count (`gather_wait` when present, else none of gather_loss).
    public var communicationSeconds: Double { (phases["allreduce"] ?? 0) + (phases["gather_wait"] ?? 0) }
}

/// The collectives one training step issues besides the gradient all-reduce, per rank.
public struct StepCollectives: Equatable {
    /// Samples per rank.
    public var perRankBatch: Int
    /// SyncBN statistics all-reduces (forward and backward) and their total bytes.
    public var statisticsAllReduces: Int
    public var statisticsBytes: Double
    /// Row all-gathers and the bytes per sample they carry (all gathered tensors together).
    public var gathers: Int
    public var gatheredBytesPerSample: Double
    /// Reduce-scatters (the backward of the differentiable gathers) and their bytes per sample.
    public var reduceScatters: Int
    public var reduceScatteredBytesPerSample: Double

    public init(perRankBatch: Int, statisticsAllReduces: Int, statisticsBytes: Double, gathers: Int,
                gatheredBytesPerSample: Double, reduceScatters: Int, reduceScatteredBytesPerSample: Double) {
        self.perRankBatch = perRankBatch; self.statisticsAllReduces = statisticsAllReduces
        self.statisticsBytes = statisticsBytes; self.gathers = gathers; self.gatheredBytesPerSample = gatheredBytesPerSample
        self.reduceScatters = reduceScatters; self.reduceScatteredBytesPerSample = reduceScatteredBytesPerSample
    }
}

/// One row of the weak-scaling projection (a model fed with measurements, not a measurement).
public struct ProjectedPoint: Equatable {
    public var ranks: Int
    public var globalBatch: Int
    /// One rank's loss share, forward + backward, timed on this machine at that global batch.
    public var lossSeconds: Double
    /// Gradient all-reduce + SyncBN all-reduces + gathers + reduce-scatters, from the cost model.
    public var communicationSeconds: Double
    public var stepSeconds: Double
    public var efficiency: Double
    /// The measured weak efficiency where that world size was also run.
    public var measuredEfficiency: Double?
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

    /// Predicted communication of one step at `n` ranks by the fitted model: the gradient all-reduce,
    /// the SyncBN all-reduces, and the all-gathers and reduce-scatters as ring collectives.
    public func predictedCommunication(ranks n: Int, point p: ScalingPoint, model m: AllReduceCostModel) -> Double {
        guard n > 1, let c = p.collectives else { return 0 }
        var t = m.predict(ranks: n, bytes: p.bytesAllReduced)
        if c.statisticsAllReduces > 0 {
            t += Double(c.statisticsAllReduces) * m.predict(ranks: n, bytes: c.statisticsBytes / Double(c.statisticsAllReduces))
        }
        let samples = Double(c.perRankBatch * n)
        t += m.predictRingCollective(ranks: n, bytes: samples * c.gatheredBytesPerSample, calls: c.gathers)
        t += m.predictRingCollective(ranks: n, bytes: samples * c.reduceScatteredBytesPerSample, calls: c.reduceScatters)
        return t
    }

    /// Weak scaling projected from the smallest world measured, `R`, which must carry a loss
    /// projection: the networks' share of the step stays, the loss share is the one timed at `N`,
    /// communication comes from the cost model (zero without one):
    ///
    ///     step(N) = step(R) − loss(R) − comm(R) + loss(N) + comm(N),   efficiency(N) = step(R) / step(N)
    public var projection: [ProjectedPoint] {
        guard mode == .weak, let b = base, b.collectives != nil,
              let own = b.lossProjection.first(where: { $0.ranks == b.ranks }) else { return [] }
        func comm(_ n: Int) -> Double { costModel.map { predictedCommunication(ranks: n, point: b, model: $0) } ?? 0 }
        let fixed = b.stepSeconds - own.seconds - comm(b.ranks)
        return b.lossProjection.map { lp in
            let c = comm(lp.ranks), step = fixed + lp.seconds + c
            let measured = points.first(where: { $0.ranks == lp.ranks }).map { efficiency($0) }
            return ProjectedPoint(ranks: lp.ranks, globalBatch: lp.globalBatch, lossSeconds: lp.seconds,
                                  communicationSeconds: c, stepSeconds: step,
                                  efficiency: step > 0 ? b.stepSeconds / step : 0, measuredEfficiency: measured)
        }
    }

    public var projectionCSV: String {
        var s = "ranks,global_batch,loss_share_s,predicted_comm_s,projected_step_s,projected_efficiency,measured_efficiency\n"
        for p in projection {
            s += "\(p.ranks),\(p.globalBatch),\(p.lossSeconds),\(p.communicationSeconds),\(p.stepSeconds),\(p.efficiency),"
            s += "\(p.measuredEfficiency.map { String($0) } ?? "")\n"
        }
        return s
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
        let proj = projection
        if !proj.isEmpty, let b = base {
            s += "\n## Weak-scaling projection (a model fed with measurements, not a measurement)\n\n"
            s += "From the \(b.ranks)-rank bench: the networks' share of the step stays as measured; one rank's share of the loss "
            s += "(forward + backward, the relational graphs over the whole global batch) is timed on this machine at each global batch; "
            s += costModel == nil
                ? "communication is left out (no all-reduce fit: measure at least two world sizes). "
                : "communication (gradient all-reduce, \(b.collectives!.statisticsAllReduces) SyncBN all-reduces, \(b.collectives!.gathers) all-gathers and \(b.collectives!.reduceScatters) reduce-scatters per step) comes from the cost model above. "
            s += "step(N) = step(\(b.ranks)) − loss(\(b.ranks)) − comm(\(b.ranks)) + loss(N) + comm(N); efficiency(N) = step(\(b.ranks)) / step(N). "
            s += "Not modelled: memory-bandwidth contention between ranks on one node, stragglers, a slower network than the one measured.\n\n"
            s += "| ranks | global batch | loss share (ms) | predicted comm (ms) | projected step (ms) | projected efficiency | measured efficiency |\n"
            s += "|---:|---:|---:|---:|---:|---:|---:|\n"
            for p in proj {
                s += String(format: "| %d | %d | %.1f | %.2f | %.1f | %.1f%% | %@ |\n", p.ranks, p.globalBatch, 1e3 * p.lossSeconds,
                            1e3 * p.communicationSeconds, 1e3 * p.stepSeconds, 100 * p.efficiency,
                            p.measuredEfficiency.map { String(format: "%.1f%%", 100 * $0) } ?? "—")
            }
        }
        s += "\nCommunication share = (all-reduce wait + gather wait) / step time. Files: report.csv, scaling.svg"
        s += proj.isEmpty ? ".\n" : ", projection.csv.\n"
        return s
    }

    /// Throughput (left axis) and efficiency (right axis) against ranks on a log₂ axis; ideal lines
    /// dashed; the weak-scaling projection (when there is one) dotted with hollow markers.
    public var svg: String {
        let w = 720.0, h = 420.0, l = 70.0, r = 70.0, t = 40.0, b = 60.0
        let pw = w - l - r, ph = h - t - b
        let proj = projection
        let allN = Array(Set(points.map { $0.ranks } + proj.map { $0.ranks })).sorted()
        let maxN = Double(allN.last ?? 1), minN = Double(allN.first ?? 1)
        let baseRate = base.map { $0.samplesPerSecond / Double($0.ranks) } ?? 0
        let projRate = proj.map { Double($0.globalBatch) / $0.stepSeconds }
        let maxY = max(points.map { $0.samplesPerSecond }.max() ?? 1, projRate.max() ?? 0, baseRate * maxN) * 1.1
        func x(_ n: Double) -> Double { l + (maxN > minN ? log2(n / minN) / log2(maxN / minN) : 0.5) * pw }
        func y(_ v: Double) -> Double { t + ph - v / maxY * ph }
        func ye(_ e: Double) -> Double { t + ph - min(e, 1.2) / 1.2 * ph }
        func polyline(_ pts: [(Double, Double)], _ color: String, _ dash: String?) -> String {
            let coords = pts.map { String(format: "%.1f,%.1f", $0.0, $0.1) }.joined(separator: " ")
            return "<polyline points=\"\(coords)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>\n"
        }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(w / 2)\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">KDGraph \(mode.rawValue) scaling — \(configName)</text>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t + ph)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(l + pw)\" y1=\"\(t)\" x2=\"\(l + pw)\" y2=\"\(t + ph)\" stroke=\"black\"/>\n"
        for n in allN {
            let px = x(Double(n))
            s += "<line x1=\"\(px)\" y1=\"\(t + ph)\" x2=\"\(px)\" y2=\"\(t + ph + 5)\" stroke=\"black\"/><text x=\"\(px)\" y=\"\(t + ph + 20)\" text-anchor=\"middle\">\(n)</text>\n"
        }
        for i in 0...4 {
            let v = maxY * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f</text>\n", l - 6, y(v) + 4, v)
            let e = 1.2 * Double(i) / 4
            s += String(format: "<text x=\"%.1f\" y=\"%.1f\">%.0f%%</text>\n", l + pw + 6, ye(e) + 4, e * 100)
        }
        s += "<text x=\"\(w / 2)\" y=\"\(h - 15)\" text-anchor=\"middle\">ranks (log scale)</text>\n"
        s += "<text transform=\"translate(18 \(t + ph / 2)) rotate(-90)\" text-anchor=\"middle\" fill=\"#1f77b4\">samples/s</text>\n"
        s += "<text transform=\"translate(\(w - 14) \(t + ph / 2)) rotate(90)\" text-anchor=\"middle\" fill=\"#d62728\">efficiency</text>\n"
        // ideal throughput (linear in ranks) and ideal efficiency 100%, dashed
        s += polyline(allN.map { (x(Double($0)), y(baseRate * Double($0))) }, "#1f77b4", "6 4")
        s += String(format: "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/>\n",
                    x(minN), ye(1), x(maxN), ye(1))
        s += polyline(points.map { (x(Double($0.ranks)), y($0.samplesPerSecond)) }, "#1f77b4", nil)
        s += polyline(points.map { (x(Double($0.ranks)), ye(efficiency($0))) }, "#d62728", nil)
        for p in points {
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#1f77b4\"/>", x(Double(p.ranks)), y(p.samplesPerSecond))
            s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"#d62728\"/>\n", x(Double(p.ranks)), ye(efficiency(p)))
        }
        if proj.count > 1 {
            s += polyline(zip(proj, projRate).map { (x(Double($0.0.ranks)), y($0.1)) }, "#1f77b4", "2 4")
            s += polyline(proj.map { (x(Double($0.ranks)), ye($0.efficiency)) }, "#d62728", "2 4")
            for (p, rate) in zip(proj, projRate) where p.measuredEfficiency == nil {
                s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"white\" stroke=\"#1f77b4\"/>", x(Double(p.ranks)), y(rate))
                s += String(format: "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"white\" stroke=\"#d62728\"/>\n", x(Double(p.ranks)), ye(p.efficiency))
            }
        }
        s += "<g transform=\"translate(\(l + 10) \(t + 0.3 * ph))\"><line x1=\"0\" y1=\"0\" x2=\"20\" y2=\"0\" stroke=\"#1f77b4\" stroke-width=\"2\"/><text x=\"26\" y=\"4\">throughput</text>"
        s += "<line x1=\"0\" y1=\"16\" x2=\"20\" y2=\"16\" stroke=\"#d62728\" stroke-width=\"2\"/><text x=\"26\" y=\"20\">efficiency</text>"
        s += "<line x1=\"0\" y1=\"32\" x2=\"20\" y2=\"32\" stroke=\"gray\" stroke-dasharray=\"6 4\"/><text x=\"26\" y=\"36\">ideal</text>"
        if proj.count > 1 {
            s += "<line x1=\"0\" y1=\"48\" x2=\"20\" y2=\"48\" stroke=\"gray\" stroke-dasharray=\"2 4\"/><text x=\"26\" y=\"52\">projected (model)</text>"
        }
        s += "</g>\n</svg>\n"
        return s
    }
}
