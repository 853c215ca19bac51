import ArgumentParser
import Foundation
import KDComm
import KDTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train: supervised (e.g. a teacher) or distillation, per the config's mode.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Continue from this checkpoint (weights, optimizer state, step).")
    var resume: String?

    @Flag(help: "Start in an output.dir that holds an earlier run's checkpoints and metrics, deleting them first.")
    var overwrite = false

    func run() throws {
        let config: KDConfig
        do { config = try options.load() } catch {
            // Every rank reads the same file and fails the same way; abort so mpirun ends at once.
            withWorld { comm in throw error }
            return
        }
        withWorld(blasThreads: config.blasThreads) { comm in
            let trainer = try Trainer(config: config, comm: comm)
            _ = try trainer.run(resumeFrom: resume, overwrite: overwrite)
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1/top-5 accuracy of a checkpoint on the evaluation split, as JSON on stdout.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "The checkpoint (safetensors) to evaluate.")
    var checkpoint: String

    func run() throws {
        withWorld { comm in
            var config = try options.load()
            // Evaluation needs the student only: no teacher, no losses.
            config.mode = .supervised
            config.loss = []
            let trainer = try Trainer(config: config, comm: comm)
            try trainer.loadWeights(checkpoint)
            let r = try trainer.evaluate()
            if comm.rank == 0 {
                print(String(format: "{\"checkpoint\": \"%@\", \"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f, \"samples\": %d, \"ranks\": %d}",
                             checkpoint, r.top1, r.top5, r.loss, r.samples, comm.size))
            }
        }
    }
}
