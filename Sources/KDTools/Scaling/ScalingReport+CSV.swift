import Foundation
import KDTrain

/// `report.csv` (one row per measured world size) and `projection.csv` (one per projected one).
extension ScalingReport {
    public var projectionCSV: String {
        let other = otherSchedule.name.replacingOccurrences(of: "-", with: "_")
        var s = "ranks,global_batch,loss_share_s,predicted_comm_s,projected_step_s,projected_efficiency,"
            + "measured_efficiency,\(other)_step_s,\(other)_efficiency\n"
        for p in projection {
            s += "\(p.ranks),\(p.globalBatch),\(p.lossSeconds),\(p.communicationSeconds),\(p.stepSeconds),"
            s += "\(p.efficiency),"
            s += "\(p.measuredEfficiency.map { String($0) } ?? ""),\(p.otherStepSeconds),\(p.otherEfficiency)\n"
        }
        return s
    }

    public var csv: String {
        var s = "ranks,global_batch,samples_per_s,speedup,efficiency,step_s,comm_share,allreduce_s,"
            + "predicted_allreduce_s,bytes_allreduced,bytes_gathered,peak_rss_bytes"
        for name in ScalingReport.phaseOrder { s += ",\(name)_s" }
        s += "\n"
        for p in points {
            let pred = costModel.map { $0.predict(ranks: p.ranks, bytes: p.bytesAllReduced) } ?? .nan
            s += "\(p.ranks),\(p.globalBatch),\(p.samplesPerSecond),\(speedup(p)),\(efficiency(p)),\(p.stepSeconds),"
            s += "\(p.stepSeconds > 0 ? p.communicationSeconds / p.stepSeconds : 0),"
            s += "\(p.phases[Phase.allreduce.rawValue] ?? 0),\(pred),"
            s += "\(p.bytesAllReduced),\(p.bytesGathered),\(p.peakRSSBytes)"
            for name in ScalingReport.phaseOrder { s += ",\(p.phases[name] ?? 0)" }
            s += "\n"
        }
        return s
    }

    static let phaseOrder = Phase.allCases.map(\.rawValue)
}
