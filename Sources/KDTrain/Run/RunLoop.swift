import Foundation
import KDComm
import KDCore
import KDData
import KDFormats
import KDTensor

/// Summary of a finished (or stopped) run.
public struct RunSummary {
    public var steps: Int
    public var finalLoss: Double
    public var eval: EvalResult?
    public var checkpoint: String?
    public var samplesPerSecond: Double
}

extension Trainer {
    /// Trains from the current step to `totalSteps`: logs every `train.log_every` steps, evaluates
    /// every `train.eval_every` steps and at the end, checkpoints every `train.checkpoint_every` steps
    /// and at the end, checks parameter sync every `train.sync_check_every` steps. A SIGTERM/SIGINT
    /// finishes the current step, checkpoints and throws `TrainError.interrupted`. Either way rank 0 ends
    /// by writing `summary.md` and `curves.svg` and logging a short summary (`writeResults`).
    ///
    /// Before anything is written: the checkpoint `resumeFrom` is loaded and must leave steps to run
    /// (docs/training.md, "Resume and preemption"), and rank 0 claims `output.dir` for the run's lifetime
    /// (its lock; an earlier run's outputs refused unless resuming from one of its checkpoints or
    /// `overwrite`, docs/reliability.md). Every rank fails with the same message.
    public func run(resumeFrom: String? = nil, overwrite: Bool = false) throws -> RunSummary {
        let isRoot = comm.rank == 0
        let runStart = monotonicSeconds()
        if let resumeFrom {
            try resume(from: resumeFrom)
            try checkStepsLeft(resumedFrom: resumeFrom)
        }
        var lock: OutputLock?
        try comm.onRoot {
            lock = try OutputDirectory.claim(directory: config.outputDir, resumingFrom: resumeFrom,
                                             overwrite: overwrite) { log.warning("\($0)") }
        }
        defer { lock?.release() }
        if isRoot {
            // Foundation's errors here would print an NSCocoaErrorDomain dump: name the file and the reason.
            let yamlPath = (config.outputDir as NSString).appendingPathComponent("config.yaml")
            do { try config.resolvedYAML.write(toFile: yamlPath, atomically: true, encoding: .utf8) } catch {
                throw TrainError.io(path: yamlPath,
                                    message: "cannot write in output.dir: \(ioReason(error, path: yamlPath))")
            }
            do { try ConvAlgorithmTuner.write(convAlgorithms, directory: config.outputDir) } catch {
                let json = (config.outputDir as NSString).appendingPathComponent(ConvAlgorithmTuner.fileName)
                throw TrainError.io(path: json, message: "cannot write in output.dir: \(ioReason(error, path: json))")
            }
            for line in ConvAlgorithmTuner.summary(convAlgorithms) { log.info("\(line)") }
        }
        let metrics = try MetricsWriter(directory: config.outputDir, enabled: isRoot,
                                        resumedAtStep: resumeFrom != nil ? step : nil,
                                        tensorboard: config.output.tensorboard)
        defer { metrics.close() }
        for note in metrics.notes { log.warning("\(config.outputDir): \(note)") }
        let startStep = step
        let progress = ProgressLine(total: totalSteps, enabled: isRoot)
        log.info("""
            kdgraph train: \(config.mode.rawValue) \(config.student.model) on \(comm.size) rank(s), \
            global batch \(config.data.globalBatch), \(totalSteps) steps, \
            \(parameters.reduce(0) { $0 + $1.1.count }) parameters
            """)
        Runtime.installSignalHandlers()
        if linkProbeDue(afterStep: step, first: true) { try probeLinks(first: true) }

        let start = samplerPosition(afterSteps: step)
        let remaining = totalSteps - step
        let stream = data.stream(sampler, from: start, steps: remaining, depth: config.data.prefetch ? 2 : 1)
        defer { stream.shutdown() }
        var lastEval: EvalResult? = nil
        var windowStart = monotonicSeconds(), windowSamples = 0
        var sps = 0.0
        while step < totalSteps {
            let waitStart = monotonicSeconds()
            guard let batch = try stream.next() else { break }
            let dataWait = monotonicSeconds() - waitStart
            try faults.beforeStep(step + 1, rank: comm.rank)
            let stepStart = monotonicSeconds()
            var record = try step(batch, stopRequested: Runtime.pendingSignal != 0)   // read late in the step
            record.phases[.data] = dataWait
            if step == startStep + 1, comm.rank == 0,
               let warning = Runtime.stopGraceWarning(stepSeconds: monotonicSeconds() - stepStart) {
                log.warning("\(warning)")
            }
            let stop = record.stop
            windowSamples += record.plan.globalSamples

            let logged = step % config.train.logEvery == 0 || step == totalSteps || stop
            if logged {
                let now = monotonicSeconds()
                sps = Double(windowSamples) / max(now - windowStart, 1e-9)
                windowStart = now; windowSamples = 0
                try self.record(MetricRecord(record, epoch: batch.epoch, learningRate: optimizer.learningRate,
                                             samplesPerSecond: sps), in: metrics)
            }
            progress.update(step: step, loss: record.loss, samplesPerSecond: sps, startStep: startStep, logged: logged)

            if config.train.syncCheckEvery > 0 && step % config.train.syncCheckEvery == 0 {
                try checkParametersInSync()
            }
            if !stop && linkProbeDue(afterStep: step, first: false) { try probeLinks(first: false) }
            if config.train.evalEvery > 0 && step % config.train.evalEvery == 0 && step < totalSteps {
                lastEval = try evaluate()
                try writeEval(lastEval!, metrics: metrics, epoch: batch.epoch)
            }
            if stop {
                progress.finish()
                let path = try saveCheckpoint(name: stepCheckpointName)
                let signal = Runtime.pendingSignal == 0 ? SIGTERM : Runtime.pendingSignal   // 0: another rank's
                // Rank 0 alone (no collective on the way out); a failure is logged, the stop still reported.
                do {
                    try writeResults(seconds: monotonicSeconds() - runStart, checkpoint: path, stoppedBySignal: true)
                } catch { log.warning("\(error)") }
                throw TrainError.interrupted(step: step, signal: signal, checkpoint: path)
            }
            if config.train.checkpointEvery > 0 && step % config.train.checkpointEvery == 0 && step < totalSteps {
                try saveCheckpoint(name: stepCheckpointName)
            }
        }
        progress.finish()
        try checkParametersInSync()
        lastEval = try evaluate()
        try writeEval(lastEval!, metrics: metrics, epoch: samplerPosition(afterSteps: max(step - 1, 0)).epoch)
        try record(nil, in: metrics)
        let path = try saveCheckpoint(name: "final.safetensors")
        log.info("""
            done: \(step) steps, loss \(lastLoss), eval top-1 \(String(format: "%.4f", lastEval!.top1)), \
            checkpoint \(path)
            """)
        try comm.onRoot {
            try writeResults(seconds: monotonicSeconds() - runStart, checkpoint: path, stoppedBySignal: false)
        }
        return RunSummary(steps: step, finalLoss: lastLoss, eval: lastEval, checkpoint: path, samplesPerSecond: sps)
    }

    func writeEval(_ e: EvalResult, metrics: MetricsWriter, epoch: Int) throws {
        var r = MetricRecord()
        r.set("step", Double(step))
        r.set("epoch", Double(epoch))
        r.set("eval.top1", e.top1)
        r.set("eval.top5", e.top5)
        r.set("eval.loss", e.loss)
        try record(r, in: metrics)
        log.info("""
            step \(step): eval top-1 \(String(format: "%.4f", e.top1)), \
            top-5 \(String(format: "%.4f", e.top5)) on \(e.samples) samples
            """)
    }

    /// Writes `r` (or, with nil, syncs the files) on rank 0, and agrees on the outcome (`onRoot`). When
    /// the write failed, every rank checkpoints the current step if the disk allows it, then throws the
    /// metrics error (the file and the OS reason), so the job exits non-zero everywhere
    /// (docs/reliability.md).
    func record(_ r: MetricRecord?, in metrics: MetricsWriter) throws {
        do {
            try comm.onRoot {
                if let r { try metrics.write(r) } else { try metrics.sync() }
            }
        } catch {
            let saved: String
            do {
                saved = "checkpoint \(try saveCheckpoint(name: stepCheckpointName)) written"
            } catch {
                saved = "no checkpoint either (\(error))"
            }
            throw TrainError.invalid("\(error); \(saved)")
        }
    }

    /// A resumed run must have steps left: a checkpoint at or past `totalSteps` is refused (exit
    /// non-zero), before anything is written, naming the checkpoint, its step and the setting.
    func checkStepsLeft(resumedFrom path: String) throws {
        guard step >= totalSteps else { return }
        let setting = config.train.steps > 0 ? "train.steps = \(config.train.steps)"
                                             : "train.epochs = \(config.train.epochs), \(totalSteps) steps"
        let what = step == totalSteps ? "already at the end of this run (\(setting)): nothing to do"
                                      : "past the end of this run (\(setting)): nothing to resume"
        throw TrainError.io(path: path, message: "checkpoint at step \(step) is \(what); set train.steps above "
                            + "\(step) to train further (nothing was written)")
    }
}
