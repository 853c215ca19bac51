import Foundation
import KDComm
import KDData
import KDTensor

/// `kdgraph bench --config C.yaml`: warm-up plus `steps` measured steps of the real training step,
/// summarised as one JSON object (rank 0): throughput, the SPEC §1 phases (median and p90 over steps),
/// bytes gathered and all-reduced per step, peak memory per rank, and an all-reduce sweep (the points
/// the scaling report's cost model is fitted to). With `projectRanks`, also the objective's cost for
/// one rank's share at those world sizes (`LossProjection`) and the collective counts per step the
/// report's projection needs.
public enum StepBench {
    public static func run(config: KDConfig, comm: Communicator, warmup: Int, steps: Int, projectRanks: [Int] = [],
                           sweepBytes: [Int] = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]) throws -> String {
        var cfg = config
        cfg.train.steps = warmup + steps
        cfg.train.syncCheckEvery = 0
        let trainer = try Trainer(config: cfg, comm: comm)
        if comm.rank == 0 {   // the runtime.conv_algorithm choices, on stderr (stdout is the JSON)
            for line in ConvAlgorithmTuner.summary(trainer.convAlgorithms) {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
        let stream = trainer.data.stream(trainer.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: warmup + steps,
                                         depth: cfg.data.prefetch ? 2 : 1)
        defer { stream.shutdown() }
        var stepTimes: [Double] = [], gatherWaits: [Double] = []
        var statisticsCalls = 0, statisticsValues = 0
        trainer.timer.startStep()
        for k in 0..<(warmup + steps) {
            guard let batch = try stream.next() else { break }
            if k == warmup { BufferPool.shared.resetPeak() }
            trainer.keepLossInputs = !projectRanks.isEmpty && k == warmup + steps - 1
            let (calls0, values0) = (trainer.statisticsReducer?.calls ?? 0, trainer.statisticsReducer?.valuesReduced ?? 0)
            try trainer.step(batch)
            statisticsCalls = (trainer.statisticsReducer?.calls ?? 0) - calls0
            statisticsValues = (trainer.statisticsReducer?.valuesReduced ?? 0) - values0
            if k >= warmup {
                trainer.timer.endStep()
                stepTimes.append(trainer.timer.stepSeconds)
                gatherWaits.append(trainer.gatherSeconds)
            }
            trainer.timer.startStep()
        }
        // Memory of the training step itself, before the projection grows the loss inputs.
        let stepPeakRSS = Runtime.peakRSSBytes(), stepPoolPeak = BufferPool.shared.peakBytes
        let perRank = cfg.data.globalBatch / comm.size
        var projection: [LossProjection.Point] = []
        if !projectRanks.isEmpty, let inputs = trainer.lastLossInputs {
            trainer.keepLossInputs = false
            let worlds = Array(Set(projectRanks + [comm.size])).sorted()
            projection = try LossProjection.measure(objective: trainer.objective, inputs: inputs, perRank: perRank, ranks: worlds)
            var worst = projection.map { $0.seconds }
            try comm.allReduce(&worst, op: .max)
            for i in projection.indices { projection[i].seconds = worst[i] }
        }
        // Synchronise before the sweep so that no rank is still finishing its last step.
        try comm.barrier()
        var sweep: [(Int, Double)] = []
        for bytes in sweepBytes {
            let n = bytes / 4
            let buf = Tensor(shape: [n], repeating: 1)
            var times: [Double] = []
            for _ in 0..<7 {
                try comm.barrier()
                let t0 = monotonicSeconds()
                try comm.allReduce(buf.ptr, count: n, op: .sum)
                times.append(monotonicSeconds() - t0)
            }
            var worst = [PhaseTimer.percentile(times, 0.5)]
            try comm.allReduce(&worst, op: .max)
            sweep.append((bytes, worst[0]))
        }
        var rss = [Double(stepPeakRSS)]
        var allRSS = [Double](repeating: 0, count: comm.size)
        try allRSS.withUnsafeMutableBufferPointer { out in
            try rss.withUnsafeMutableBufferPointer { try comm.allGather($0.baseAddress!, count: 1, into: out.baseAddress!) }
        }
        let B = cfg.data.globalBatch
        let stepMedian = PhaseTimer.percentile(stepTimes, 0.5)
        let summary = trainer.timer.summary()
        let sps = stepMedian > 0 ? Double(B) / stepMedian : 0
        let gatherMedian = PhaseTimer.percentile(gatherWaits, 0.5)
        let allreduceMedian = summary["allreduce"]?["median_s"] ?? 0
        func num(_ x: Double) -> String { x.isFinite ? String(format: "%.6g", x) : "null" }
        var phases: [String] = []
        for p in Phase.allCases {
            let s = summary[p.rawValue]!
            phases.append("\"\(p.rawValue)\": {\"median_s\": \(num(s["median_s"]!)), \"p90_s\": \(num(s["p90_s"]!))}")
        }
        phases.append("\"gather_wait\": {\"median_s\": \(num(gatherMedian)), \"p90_s\": \(num(PhaseTimer.percentile(gatherWaits, 0.9)))}")
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let fields: [String] = [
            "\"samples_per_s\": \(num(sps))",
            "\"samples_per_s_per_rank\": \(num(sps / Double(comm.size)))",
            "\"ranks\": \(comm.size)",
            "\"global_batch\": \(B)",
            "\"views\": \(cfg.data.views)",
            "\"steps\": \(stepTimes.count)",
            "\"warmup\": \(warmup)",
            "\"student\": \"\(cfg.student.model)\"",
            "\"teacher\": \"\(cfg.mode == .distill ? (cfg.teacher.kind == "network" ? cfg.teacher.model : "embeddings") : "none")\"",
            "\"step_median_s\": \(num(stepMedian))",
            "\"step_p90_s\": \(num(PhaseTimer.percentile(stepTimes, 0.9)))",
            "\"phases\": {\(phases.joined(separator: ", "))}",
            "\"comm_share\": \(num(stepMedian > 0 ? (allreduceMedian + gatherMedian) / stepMedian : 0))",
            "\"data_wait_share\": \(num(stepMedian > 0 ? (summary["data"]?["median_s"] ?? 0) / stepMedian : 0))",
            "\"bytes_gathered_per_step\": \(trainer.bytesGathered)",
            "\"bytes_allreduced_per_step\": \(trainer.buckets.totalBytes)",
            "\"peak_rss_bytes\": \(Int(allRSS.max() ?? 0))",
            "\"peak_rss_bytes_per_rank\": [\(allRSS.map { String(Int($0)) }.joined(separator: ", "))]",
            "\"tensor_pool_peak_bytes\": \(stepPoolPeak)",
            "\"allreduce_sweep\": [\(sweep.map { "{\"bytes\": \($0.0), \"seconds\": \(num($0.1))}" }.joined(separator: ", "))]",
            "\"per_rank_batch\": \(perRank)",
            "\"statistics_allreduces_per_step\": \(statisticsCalls)",
            "\"statistics_bytes_per_step\": \(statisticsValues * MemoryLayout<Double>.stride)",
            "\"gathers_per_step\": \(trainer.gatherCalls)",
            "\"gathered_bytes_per_sample\": \(trainer.gatheredBytesPerSample)",
            "\"reduce_scatters_per_step\": \(trainer.differentiableGatherCalls)",
            "\"reduce_scattered_bytes_per_sample\": \(trainer.differentiableGatheredBytesPerSample)",
            "\"loss_projection\": [\(projection.map { "{\"ranks\": \($0.ranks), \"global_batch\": \($0.globalBatch), \"seconds\": \(num($0.seconds))}" }.joined(separator: ", "))]",
            "\"host\": \"\(String(cString: host))\"",
            "\"cores\": \(ProcessInfo.processInfo.activeProcessorCount)",
        ]
        return "{" + fields.joined(separator: ", ") + "}"
    }
}
