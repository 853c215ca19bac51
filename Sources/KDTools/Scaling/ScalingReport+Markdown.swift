import Foundation
import KDComm
import KDTensor
import KDTrain

/// `report.md`: the measured table, the phases, the cost model, the projection.
extension ScalingReport {
    public var markdown: String {
        var s = "# KDGraph \(mode.rawValue) scaling: \(configName)\n\n"
        s += "Machine: \(machine). Date: \(date).\n\n"
        s += mode == .weak
            ? "Weak scaling: the per-rank batch is fixed, the global batch grows with the ranks. "
                + "Efficiency(N) = throughput(N) / (N · throughput(1)).\n\n"
            : "Strong scaling: the global batch is fixed. "
                + "Speed-up(N) = throughput(N) / throughput(1); efficiency(N) = speed-up(N) / N.\n\n"
        if let b = base, b.ranks != 1 {
            s += "(The smallest world measured is \(b.ranks) ranks; speed-up and efficiency are relative to it.)\n\n"
        }
        s += "| ranks | global batch | samples/s | speed-up | efficiency | step (ms) | comm share "
        s += "| all-reduce wait (ms) | predicted all-reduce (ms) | peak RSS/rank (MiB) |\n"
        s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
        for p in points {
            let pred = costModel.map {
                String(format: "%.2f", 1e3 * $0.predict(ranks: p.ranks, bytes: p.bytesAllReduced))
            } ?? "n/a"
            s += String(format: "| %d | %d | %.1f | %.2f | %.1f%% | %.1f | %.1f%% | %.2f | %@ | %.0f |\n",
                        p.ranks, p.globalBatch, p.samplesPerSecond, speedup(p), 100 * efficiency(p),
                        1e3 * p.stepSeconds,
                        100 * (p.stepSeconds > 0 ? p.communicationSeconds / p.stepSeconds : 0),
                        1e3 * (p.phases[Phase.allreduce.rawValue] ?? 0), pred, p.peakRSSBytes / 1_048_576)
        }
        s += "\nStep time by phase (median ms per step):\n\n| ranks | "
            + ScalingReport.phaseOrder.joined(separator: " | ") + " |\n"
        s += "|---:|" + String(repeating: "---:|", count: ScalingReport.phaseOrder.count) + "\n"
        for p in points {
            s += "| \(p.ranks) | "
                + ScalingReport.phaseOrder.map { String(format: "%.1f", 1e3 * (p.phases[$0] ?? 0)) }
                    .joined(separator: " | ") + " |\n"
        }
        if let m = costModel {
            s += String(format: "\nAll-reduce cost model (fitted to this machine's measurements): "
                            + "t = 2(N−1)/N · bytes / %.2f GB/s + 2(N−1) · %.1f µs.\n",
                        m.bandwidthBytesPerSecond / 1e9, m.latencySeconds * 1e6)
            if let bytes = points.last?.bytesAllReduced, bytes > 0 {
                s += "\nExtrapolated all-reduce time of this model's gradients "
                    + "(\(String(format: "%.1f", bytes / 1_048_576)) MiB) with that fit:\n\n"
                    + "| ranks | predicted all-reduce (ms) |\n|---:|---:|\n"
                for n in [2, 4, 8, 16, 64, 512] {
                    s += String(format: "| %d | %.2f |\n", n, 1e3 * m.predict(ranks: n, bytes: bytes))
                }
            }
        }
        let proj = projection
        if !proj.isEmpty, let b = base {
            s += "\n## Weak-scaling projection (a model fed with measurements, not a measurement)\n\n"
            s += "From the \(b.ranks)-rank bench: the networks' share of the step stays as measured; "
            s += "one rank's share of the loss "
            s += "(forward + backward, the relational graphs over the whole global batch) "
            s += "is timed on this machine at each global batch; "
            let c = b.collectives
            s += costModel == nil
                ? "communication is left out (no all-reduce fit: measure at least two world sizes). "
                : "communication (gradient all-reduce, \(c!.statisticsAllReduces) BatchNorm statistics all-reduces, "
                    + "\(c!.gathers) all-gathers and \(c!.reduceScatters) reduce-scatters per step) "
                    + "comes from the cost model above. "
            s += "step(N) = step(\(b.ranks)) − loss(\(b.ranks)) − comm(\(b.ranks)) + loss(N) + comm(N); "
            s += "efficiency(N) = step(\(b.ranks)) / step(N). "
            s += "Not modelled: memory-bandwidth contention between ranks on one node, stragglers, "
            s += "a slower network than the one measured.\n\n"
            let accumulated = otherSchedule == .accumulated
            let other = otherSchedule.name
            let forward = abs(otherScheduleSeconds)
            s += accumulated
                ? "The accumulated columns model the same step with graph accumulation (`train.micro_batch`): "
                    + String(format: "one more student forward over the rank's share (%.1f ms, ", 1e3 * forward)
                    + "the measured `student_forward`); the loss and the collectives are unchanged.\n\n"
                : "This bench ran with graph accumulation (`train.micro_batch \(b.microBatch ?? 0)`: two student "
                    + "forwards per step); the one-pass columns take one away "
                    + String(format: "(%.1f ms, half the measured `student_forward`).\n\n", 1e3 * forward)
            s += "| ranks | global batch | loss share (ms) | measured loss share (ms) | predicted comm (ms) "
            s += "| projected step (ms) | projected efficiency | measured efficiency "
            s += "| \(other) step (ms) | \(other) efficiency |\n"
            s += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            for p in proj {
                s += String(format: "| %d | %d | %.1f | %@ | %.2f | %.1f | %.1f%% | %@ | %.1f | %.1f%% |\n",
                            p.ranks, p.globalBatch, 1e3 * p.lossSeconds,
                            p.measuredLossSeconds.map { String(format: "%.1f", 1e3 * $0) } ?? "—",
                            1e3 * p.communicationSeconds, 1e3 * p.stepSeconds, 100 * p.efficiency,
                            p.measuredEfficiency.map { String(format: "%.1f%%", 100 * $0) } ?? "—",
                            1e3 * p.otherStepSeconds, 100 * p.otherEfficiency)
            }
            s += "\nMeasured loss share: where that world size was run, one rank's share timed on that run's "
            s += "real inputs, every rank at once (the row-sharded terms' all-reduces included; the slowest "
            s += "rank); beside the projected share it is the projection's error on the measured points.\n"
        }
        let perTerm = proj.isEmpty ? [] : (base?.lossProjection ?? []).filter { $0.terms != nil }
        if let names = perTerm.first?.terms?.keys.sorted(), !names.isEmpty {
            s += "\nOne rank's loss share by term (ms, forward + backward, timed as above), and its memory "
            s += "(MiB): the gathered inputs, and the objective's working memory above them (tensor-pool "
            s += "high-water mark during one forward + backward of all terms):\n\n"
            s += "| ranks | global batch | " + names.joined(separator: " | ") + " | inputs (MiB) | working (MiB) |\n"
            s += "|---:|---:|" + String(repeating: "---:|", count: names.count + 2) + "\n"
            func mib(_ v: Double?) -> String { v.map { String(format: "%.1f", $0 / 1_048_576) } ?? "—" }
            for p in perTerm {
                let cells = names.map { String(format: "%.1f", 1e3 * (p.terms?[$0] ?? 0)) }
                s += "| \(p.ranks) | \(p.globalBatch) | " + cells.joined(separator: " | ")
                    + " | \(mib(p.inputBytes)) | \(mib(p.peakBytes)) |\n"
            }
        }
        s += linksSection
        let warned = points.filter { !$0.loadWarnings.isEmpty }
        if !warned.isEmpty {
            s += "\n**Measurements not to be trusted** (the machine was not quiet; `MachineLoad`):\n\n"
            for p in warned { for w in p.loadWarnings { s += "- \(p.ranks) rank(s): \(w)\n" } }
        }
        s += "\nCommunication share = (all-reduce wait + gather wait) / step time. Files: report.csv, scaling.svg"
        s += proj.isEmpty ? ".\n" : ", projection.csv.\n"
        return s
    }

    /// The link probe of each world size that ran across hosts (`LinkProbe`): each host's best-link
    /// bandwidth and the straggler the rule names; empty when no bench ran across hosts.
    var linksSection: String {
        let probed = points.filter { $0.linkProbe != nil }
        guard !probed.isEmpty else { return "" }
        var s = "\n## Links between hosts (link probe)\n\n"
        s += "Each host's best link, bytes per second each way (the fastest of "
        s += "\(LinkProbe.repetitions) × 2 timings of a \(LinkProbe.messageBytes >> 10) KiB exchange with each other "
        s += "host); a host is named a straggler when, with at least 3 hosts, its best link is below the median "
        s += "host's / \(Int(LinkProbe.stragglerFactor)) (docs/scaling.md, \"A straggler link\"). The projection "
        s += "assumes every link as fast as the all-reduce fit: a straggler's link paces every ring collective.\n\n"
        s += "| ranks | hosts | best-link bandwidth by host | median | straggler |\n|---:|---:|---|---:|---|\n"
        for p in probed {
            let r = p.linkProbe!
            let each = zip(r.hosts, r.hostBytesPerSecond).map { "\($0) \(LinkProbe.rate($1))" }
            s += "| \(p.ranks) | \(r.hosts.count) | \(each.joined(separator: ", ")) | "
                + "\(LinkProbe.rate(r.medianBytesPerSecond)) | "
                + (r.stragglers.isEmpty ? "none" : "**" + r.stragglers.joined(separator: ", ") + "**") + " |\n"
        }
        return s
    }

    /// Throughput (left axis) and efficiency (right axis) against ranks on a log₂ axis; ideal lines
    /// dashed; the weak-scaling projection (when there is one) dotted with hollow markers.
}
