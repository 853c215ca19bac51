import Foundation
import KDComm
import KDCore
import KDData
import KDLosses
import KDTensor
import KDTrain

/// `kdgraph bench --config C.yaml`: warm-up plus `steps` measured steps of the real training step,
/// summarised as one `BenchResult` (rank 0): throughput, the step's phases (median and p90 over steps),
/// bytes gathered and all-reduced per step, peak memory per rank, and an all-reduce sweep (the points
/// the scaling report's cost model is fitted to). With `projectRanks`, also the objective's cost for
/// one rank's share at those world sizes (`LossProjection`) and the collective counts per step the
/// report's projection needs. After the sweep, the link probe across hosts (`LinkProbe`).
public enum StepBench {
    public static func run(config: KDConfig, comm: Communicator, warmup: Int, steps: Int, projectRanks: [Int] = [],
                           sweepBytes: [Int] = [4 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]) throws -> BenchResult {
        let trainer = try Trainer(config: benchConfig(config, warmup: warmup, steps: steps), comm: comm)
        return try run(trainer: trainer, comm: comm, warmup: warmup, steps: steps, projectRanks: projectRanks,
                       sweepBytes: sweepBytes)
    }

    /// The config a bench trainer runs: exactly `warmup + steps` steps, no desync checks in between.
    static func benchConfig(_ config: KDConfig, warmup: Int, steps: Int) -> KDConfig {
        var cfg = config
        cfg.train.steps = warmup + steps
        cfg.train.syncCheckEvery = 0
        return cfg
    }

    /// Measures `trainer` (built from `benchConfig`).
    static func run(trainer: Trainer, comm: Communicator, warmup: Int, steps: Int, projectRanks: [Int],
                    sweepBytes: [Int]) throws -> BenchResult {
        let cfg = trainer.config
        if comm.rank == 0 {   // the runtime.conv_algorithm choices, on stderr (stdout is the JSON)
            for line in ConvAlgorithmTuner.summary(trainer.convAlgorithms) {
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        }
        // The machine's speed before the measurement, and its CPU time (MachineLoad: warnings only).
        let calibrationBefore = try MachineLoad.calibrateAll(comm), cpuBefore = MachineLoad.cpuTimes()
        let stream = trainer.data.stream(trainer.sampler, from: SamplerPosition(epoch: 0, step: 0),
                                         steps: warmup + steps, depth: cfg.data.prefetch ? 2 : 1)
        defer { stream.shutdown() }
        var records: [StepRecord] = []
        var statisticsCalls = 0, statisticsValues = 0
        let kept = LossInputsKeeper(step: trainer.step + warmup + steps)
        trainer.observers.append(kept)
        for k in 0..<(warmup + steps) {
            let waitStart = monotonicSeconds()
            guard let batch = try stream.next() else { break }
            let dataWait = monotonicSeconds() - waitStart
            if k == warmup { BufferPool.shared.resetPeak() }
            let (calls0, values0) = (trainer.statisticsReducer?.calls ?? 0,
                                     trainer.statisticsReducer?.valuesReduced ?? 0)
            var record = try trainer.step(batch)
            record.phases[.data] = dataWait
            statisticsCalls = (trainer.statisticsReducer?.calls ?? 0) - calls0
            statisticsValues = (trainer.statisticsReducer?.valuesReduced ?? 0) - values0
            if k >= warmup { records.append(record) }
        }
        guard let last = records.last else { throw TrainError.invalid("bench: no measured step (steps = \(steps))") }
        // Memory of the training step itself, before the projection grows the loss inputs.
        let stepPeakRSS = Runtime.peakRSSBytes(), stepPoolPeak = BufferPool.shared.peakBytes
        let perRank = cfg.data.globalBatch / comm.size
        let lossShare = try kept.inputs.map { try timeLossShare(trainer.objective, inputs: $0, comm: comm) }
        var projection: [LossProjection.Point] = []
        if !projectRanks.isEmpty, let inputs = kept.inputs {
            let worlds = Array(Set(projectRanks + [comm.size])).sorted()
            // Row-sharded terms run as in the step (with a communicator), here over this rank alone.
            let solo = inputs.comm == nil ? nil : try comm.alone()
            projection = try LossProjection.measure(objective: trainer.objective, inputs: inputs, perRank: perRank,
                                                    ranks: worlds, comm: solo)
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
        // Which host's link is slow, if one is (nothing on one host).
        let links = try LinkProbe.run(comm, hosts: LinkProbe.hostNames(comm))
        // Per rank: peak RSS and the tensor pool's high-water mark during the measured steps.
        let allMemory = try comm.allGatherV([Double(stepPeakRSS), Double(stepPoolPeak)],
                                            counts: Array(repeating: 2, count: comm.size))
        let allRSS = (0..<comm.size).map { allMemory[2 * $0] }, allPool = (0..<comm.size).map { allMemory[2 * $0 + 1] }
        let calibrationAfter = try MachineLoad.calibrateAll(comm), cpuAfter = MachineLoad.cpuTimes()
        var steal: Double? = nil
        if let a = cpuBefore, let b = cpuAfter, b.total > a.total { steal = (b.steal - a.steal) / (b.total - a.total) }
        let load = MachineLoad(calibrationBeforeS: calibrationBefore, calibrationAfterS: calibrationAfter,
                               stealShare: steal,
                               warnings: MachineLoad.warnings(before: calibrationBefore, after: calibrationAfter,
                                                              stealShare: steal))
        let estimate = MemoryEstimate(config: trainer.config, data: trainer.data, worldSize: comm.size)
        // With graph accumulation, what the same step would need in one pass (it is not run: it may not fit).
        var onePass: MemoryEstimate? = nil
        if trainer.config.train.microBatch > 0 {
            var c = trainer.config
            c.train.microBatch = 0
            onePass = MemoryEstimate(config: c, data: trainer.data, worldSize: comm.size)
        }
        if comm.rank == 0 {   // on stderr beside the conv choices; the JSON has the same figures
            for w in load.warnings { FileHandle.standardError.write(Data("warning: \(w)\n".utf8)) }
            let passes = onePass.map { " with train.micro_batch \(trainer.config.train.microBatch) (one pass would "
                + "need ≥ \(MemoryEstimate.gb($0.total)))" } ?? ""
            let line = "memory per rank: estimated ≥ \(estimate)\(passes), measured peak RSS "
                + allRSS.map { MemoryEstimate.gb(Int($0)) }.joined(separator: " / ") + ", tensor pool peak "
                + allPool.map { MemoryEstimate.gb(Int($0)) }.joined(separator: " / ") + " (rank 0 / 1 / …)\n"
            FileHandle.standardError.write(Data(line.utf8))
        }
        let B = cfg.data.globalBatch
        let stepTimes = records.map(\.seconds)
        var phases = phaseSpreads(records)
        phases[Phase.gatherWait] = spread(records.map(\.gathers.seconds))
        let stepMedian = PhaseTimer.percentile(stepTimes, 0.5)
        let sps = stepMedian > 0 ? Double(B) / stepMedian : 0
        let commMedian = phases[Phase.allreduce.rawValue]!.medianS + phases[Phase.gatherWait]!.medianS
        var host = [CChar](repeating: 0, count: 256)
        gethostname(&host, 255)
        let teacher = BenchResult.teacherName(cfg)
        var result = BenchResult(
            samplesPerS: sps, samplesPerSPerRank: sps / Double(comm.size), ranks: comm.size, globalBatch: B,
            views: cfg.data.views, steps: records.count, warmup: warmup, student: cfg.student.model, teacher: teacher,
            stepMedianS: stepMedian, stepP90S: PhaseTimer.percentile(stepTimes, 0.9), phases: phases,
            commShare: stepMedian > 0 ? commMedian / stepMedian : 0,
            dataWaitShare: stepMedian > 0 ? phases[Phase.data.rawValue]!.medianS / stepMedian : 0,
            bytesGatheredPerStep: last.gathers.bytesReceived, bytesAllreducedPerStep: last.bytesAllReduced,
            peakRssBytes: Int(allRSS.max() ?? 0), peakRssBytesPerRank: allRSS.map { Int($0) },
            tensorPoolPeakBytes: stepPoolPeak,
            allreduceSweep: sweep.map { BenchResult.SweepPoint(bytes: $0.0, seconds: $0.1) },
            perRankBatch: perRank, statisticsAllreducesPerStep: statisticsCalls,
            statisticsBytesPerStep: statisticsValues * MemoryLayout<Double>.stride,
            gathersPerStep: last.gathers.calls, gatheredBytesPerSample: last.gathers.bytesPerSample,
            reduceScattersPerStep: last.gathers.differentiableCalls,
            reduceScatteredBytesPerSample: last.gathers.differentiableBytesPerSample,
            lossProjection: projection, host: String(cString: host),
            cores: ProcessInfo.processInfo.activeProcessorCount, estimatedStepBytes: estimate.total)
        result.lossShareS = lossShare
        result.kernels = ["blas_core": blasCoreName(),
                          "row_invariant_gemm": RowInvariantGEMM.wideKernel ? "avx512 12x32" : "avx2 6x16"]
        result.tensorPoolPeakBytesPerRank = allPool.map { Int($0) }
        if let onePass {
            result.microBatch = trainer.config.train.microBatch
            result.estimatedOnePassBytes = onePass.total
        }
        result.load = load
        result.linkProbe = links
        if trainer.objective.terms.contains(where: { $0 is SpectralTerm }) {
            result.spectralSolves = SpectralSolverStatistics.current
        }
        return result
    }

    /// Keeps the loss inputs of optimizer step `step` (the last measured one), which the loss projection
    /// re-evaluates at larger global batches.
    final class LossInputsKeeper: StepObserver {
        let step: Int
        private(set) var inputs: LossInputs?
        init(step: Int) { self.step = step }
        func lossInputsGathered(_ inputs: LossInputs, step: Int) { if step == self.step { self.inputs = inputs } }
    }

    /// Median and 90th percentile of `xs`.
    static func spread(_ xs: [Double]) -> BenchResult.Spread {
        BenchResult.Spread(medianS: PhaseTimer.percentile(xs, 0.5), p90S: PhaseTimer.percentile(xs, 0.9))
    }

    /// The spread of each phase (`Phase` names) over `records`.
    static func phaseSpreads(_ records: [StepRecord]) -> [String: BenchResult.Spread] {
        Dictionary(uniqueKeysWithValues: Phase.allCases.map { p in
            (p.rawValue, spread(records.map { $0.phases[p] ?? 0 }))
        })
    }

    /// One rank's share of `objective` on a step's real `inputs` (forward + backward, every rank at once, so
    /// the row-sharded terms' all-reduces are real): the slowest rank's median of three.
    static func timeLossShare(_ objective: LossObjective, inputs: LossInputs, comm: Communicator) throws -> Double {
        var times: [Double] = []
        for _ in 0..<3 {
            try comm.barrier()
            times.append(try LossProjection.timeOnce(objective, on: inputs))
        }
        return try comm.allReduce(PhaseTimer.percentile(times, 0.5), op: .max)
    }
}
