import Foundation
import KDComm
import KDData
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
    /// finishes the current step, checkpoints and throws `TrainError.interrupted`.
    public func run(resumeFrom: String? = nil) throws -> RunSummary {
        let isRoot = comm.rank == 0
        if isRoot {
            try FileManager.default.createDirectory(atPath: config.outputDir, withIntermediateDirectories: true)
            try config.resolvedYAML.write(toFile: (config.outputDir as NSString).appendingPathComponent("config.yaml"),
                                          atomically: true, encoding: .utf8)
            try ConvAlgorithmTuner.write(convAlgorithms, directory: config.outputDir)
            for line in ConvAlgorithmTuner.summary(convAlgorithms) { log.info("\(line)") }
        }
        if let resumeFrom { try resume(from: resumeFrom) }
        let metrics = try MetricsWriter(directory: config.outputDir, enabled: isRoot, append: resumeFrom != nil)
        defer { metrics.close() }
        let startStep = step
        let progress = ProgressLine(total: totalSteps, enabled: isRoot)
        log.info("kdgraph train: \(config.mode.rawValue) \(config.student.model) on \(comm.size) rank(s), global batch \(config.data.globalBatch), \(totalSteps) steps, \(parameters.reduce(0) { $0 + $1.1.count }) parameters")
        Runtime.installSignalHandlers()

        let start = samplerPosition(afterSteps: step)
        let remaining = totalSteps - step
        let stream = data.stream(sampler, from: start, steps: remaining, depth: config.data.prefetch ? 2 : 1)
        defer { stream.shutdown() }
        var lastEval: EvalResult? = nil
        var windowStart = monotonicSeconds(), windowSamples = 0
        var sps = 0.0
        timer.startStep()
        while step < totalSteps {
            guard let batch = try stream.next() else { break }
            let (_, stop) = try step(batch, stopRequested: Runtime.pendingSignal != 0)
            timer.endStep()
            windowSamples += sampler.batchSize(step: batch.step)

            let logged = step % config.train.logEvery == 0 || step == totalSteps || stop
            if logged {
                let now = monotonicSeconds()
                sps = Double(windowSamples) / max(now - windowStart, 1e-9)
                windowStart = now; windowSamples = 0
                var r = MetricRecord()
                r.set("step", Double(step))
                r.set("epoch", Double(batch.epoch))
                r.set("loss", lastLoss)
                for (k, v) in lastTerms { r.set(k, v) }
                r.set("lr", optimizer.learningRate)
                r.set("samples_per_s", sps)
                for p in Phase.allCases { r.set("time/\(p.rawValue)", timer.current[p] ?? 0) }
                r.set("time/gather_wait", gatherSeconds)
                r.set("bytes/allreduce", Double(buckets.totalBytes))
                r.set("bytes/gathered", Double(bytesGathered))
                metrics.write(r)
            }
            progress.update(step: step, loss: lastLoss, samplesPerSecond: sps, startStep: startStep, logged: logged)

            if config.train.syncCheckEvery > 0 && step % config.train.syncCheckEvery == 0 {
                try checkParametersInSync()
            }
            if config.train.evalEvery > 0 && step % config.train.evalEvery == 0 && step < totalSteps {
                lastEval = try evaluate()
                writeEval(lastEval!, metrics: metrics, epoch: batch.epoch)
            }
            if stop {
                progress.finish()
                let path = try saveCheckpoint(name: String(format: "step_%08d.safetensors", step))
                throw TrainError.interrupted(step: step, signal: Runtime.pendingSignal == 0 ? SIGTERM : Runtime.pendingSignal, checkpoint: path)
            }
            if config.train.checkpointEvery > 0 && step % config.train.checkpointEvery == 0 && step < totalSteps {
                try saveCheckpoint(name: String(format: "step_%08d.safetensors", step))
            }
            timer.startStep()
        }
        progress.finish()
        try checkParametersInSync()
        lastEval = try evaluate()
        writeEval(lastEval!, metrics: metrics, epoch: samplerPosition(afterSteps: max(step - 1, 0)).epoch)
        let path = try saveCheckpoint(name: "final.safetensors")
        log.info("done: \(step) steps, loss \(lastLoss), eval top-1 \(String(format: "%.4f", lastEval!.top1)), checkpoint \(path)")
        return RunSummary(steps: step, finalLoss: lastLoss, eval: lastEval, checkpoint: path, samplesPerSecond: sps)
    }

    func writeEval(_ e: EvalResult, metrics: MetricsWriter, epoch: Int) {
        var r = MetricRecord()
        r.set("step", Double(step))
        r.set("epoch", Double(epoch))
        r.set("eval.top1", e.top1)
        r.set("eval.top5", e.top5)
        r.set("eval.loss", e.loss)
        metrics.write(r)
        log.info("step \(step): eval top-1 \(String(format: "%.4f", e.top1)), top-5 \(String(format: "%.4f", e.top5)) on \(e.samples) samples")
    }
}
