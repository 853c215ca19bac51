import Foundation

extension Trainer {
    /// Rank 0, at the end of `run()` (finished or stopped by a signal): writes `summary.md` and
    /// `curves.svg` into `output.dir` from its `metrics.jsonl` (`RunResults`) and logs the summary's
    /// few lines. Throws `TrainError.io` naming the file that could not be read or written.
    func writeResults(seconds: Double, checkpoint: String?, stoppedBySignal: Bool) throws {
        guard comm.rank == 0 else { return }
        let what = """
            \(config.mode.rawValue) \(config.student.model) on \(comm.size) rank(s), \
            global batch \(config.data.globalBatch), \(totalSteps) steps
            """
        let results = try RunResults(directory: config.outputDir, description: what, seconds: seconds, steps: step,
                                     totalSteps: totalSteps, stoppedBySignal: stoppedBySignal,
                                     checkpoint: checkpoint, tensorboard: config.output.tensorboard)
        try results.write()
        for line in results.logLines { log.info("\(line)") }
        if let w = results.unreadableWarning { log.warning("\(w)") }
    }
}
