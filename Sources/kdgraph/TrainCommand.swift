import ArgumentParser
import Foundation
import KDCore
import KDTensor
import KDTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train: supervised (e.g. a teacher) or distillation, per the config's mode.")

    @OptionGroup var options: ConfigOptions

    @Option(help: "Continue from this checkpoint (weights, optimizer state, step).")
    var resume: String?

    @Flag(help: "Start in an output.dir that holds an earlier run's checkpoints and metrics, deleting them first.")
    var overwrite = false

    @Flag(help: ArgumentHelp("Check the config and the output folder, print the folder, and exit: no MPI, nothing "
                             + "written (the launch scripts run it before mpirun, so a refusal takes a second)."))
    var check = false

    func run() throws {
        if check { return try preflight() }
        options.withConfiguredWorld { config, comm in
            // Rank 0 alone (the folder may be on its node only) picks the run's folder — the next
            // runs/<config>/version_N when the config names none — and refuses one that holds an earlier
            // run before anything is built: printed once, and every rank exits non-zero.
            var config = config
            var outcome = ""
            if comm.rank == 0 {
                do { config.output.dir = try runFolder(config, create: true) } catch { outcome = "\(error)" }
            }
            outcome = try comm.broadcast(outcome, root: 0)
            if !outcome.isEmpty {
                if comm.rank == 0 { fputs("kdgraph: \(outcome)\n", stderr) }
                Foundation.exit(1)
            }
            config.output.dir = try comm.broadcast(config.output.dir, root: 0)
            let trainer = try Trainer(config: config, comm: comm)
            do {
                _ = try trainer.run(resumeFrom: resume, overwrite: overwrite)
            } catch let e as TrainError {
                // A signal stopped every rank after the same step and the checkpoint is written: not a
                // failure to abort on. Rank 0 says where to resume; every rank exits 128 + the signal
                // (MPI_Finalize runs at exit), so mpirun/srun and the shell see the interruption.
                guard case let .interrupted(_, signal, _) = e else { throw e }
                if comm.rank == 0 { fputs("kdgraph: \(e)\n", stderr) }
                Foundation.exit(TrainError.exitStatus(interruptedBy: signal))
            }
        }
    }
}

extension Train {
    /// The folder the run writes to: `output.dir`, or (none named) the next `version_N` of the config's
    /// `versionRoot` — or, resuming from a checkpoint in a run's `checkpoints/`, that run's folder. Throws the
    /// refusal of a folder that holds an earlier run (`OutputDirectory.refusalBeforeStart`).
    func runFolder(_ config: KDConfig, create: Bool) throws -> String {
        var dir = config.output.dir
        if dir.isEmpty {
            dir = try OutputDirectory.nextVersion(root: config.versionRoot, resumingFrom: resume, create: create)
            if create { Runtime.logger.info("output.dir: \(dir) (none named: the config's next version)") }
        }
        if let refusal = OutputDirectory.refusalBeforeStart(directory: dir, resumingFrom: resume,
                                                            overwrite: overwrite) { throw refusal }
        return dir
    }

    /// `--check`: what the run would be refused for before it starts (the config's errors, an output folder
    /// holding an earlier run), in this process alone; prints the folder on success.
    func preflight() throws {
        do {
            let config = try options.load()
            let dir = try runFolder(config, create: false)
            for note in config.unusedKeyNotes { fputs("kdgraph: warning: \(config.file): \(note)\n", stderr) }
            print("kdgraph train --check: \(config.file) is valid; the run writes to \(dir)")
        } catch {
            fputs("kdgraph: \(error)\n", stderr)
            Foundation.exit(1)
        }
    }
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Top-1/top-5 accuracy of a checkpoint on the evaluation split, as JSON on stdout.",
        discussion: """
        Without --config, the run's configuration recorded in the checkpoint (metadata kdgraph.config) is \
        used: data source, model, classes, preprocessing. --set overrides either.
        """)

    @Option(help: "The YAML configuration (default: the one recorded in the checkpoint).")
    var config: String?

    @Option(name: .customLong("set"), help: "Override a config key: --set data.path=… (repeatable).")
    var overrides: [String] = []

    @Option(help: "The checkpoint (safetensors) to evaluate.")
    var checkpoint: String

    func validate() throws {
        try refuseUnusedSections(overrides, command: "eval", unused: ["train", "optim", "loss"])
    }

    func run() throws {
        withWorld { comm in
            var config = try CheckpointConfig.load(config: self.config, checkpoint: checkpoint, overrides: overrides)
            // Evaluation needs the student only: no teacher, no losses.
            config.mode = .supervised
            config.loss = []
            let trainer: Trainer
            do { trainer = try Trainer(config: config, comm: comm) } catch where self.config == nil {
                throw CheckpointConfig.explainingMovedData(error, checkpoint: checkpoint)
            }
            try trainer.loadWeights(checkpoint)
            let r = try trainer.evaluate()
            if comm.rank == 0 {
                print(String(format: "{\"checkpoint\": \"%@\", \"top1\": %.6f, \"top5\": %.6f, \"loss\": %.6f, "
                             + "\"samples\": %d, \"ranks\": %d, \"mean\": %@, \"std\": %@}",
                             checkpoint, r.top1, r.top5, r.loss, r.samples, comm.size,
                             jsonList(trainer.data.mean), jsonList(trainer.data.std)))
            }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Logits of a checkpoint's model for the images of an .npy file, written as float32 .npy.",
        discussion: """
        The checkpoint's metadata names the model, classes, input size and normalisation (docs/training.md, \
        "Using the weights"); for weights without it (a PyTorch state_dict saved with safetensors) --config \
        names them (student.model, data.*; the normalisation the data decides, printed). --images: uint8 \
        N×H×W×C (or N×H×W for one channel) is preprocessed as in training, (pixel/255 − mean[c]) / std[c]; \
        float32/float64 N×H×W×C (or N×D feature rows) is taken as the model's input as it is. Eval mode \
        (running statistics), one process.
        """)

    @Option(help: "The checkpoint (safetensors) whose model to run.") var checkpoint: String
    @Option(help: ArgumentHelp("The input images (.npy): N×H×W×C (N×H×W for one channel), uint8 or float; "
                               + "a feature model's N×D rows.")) var images: String
    @Option(help: "Where to write the logits (.npy, float32 N×classes).") var out: String
    @Option(help: "Images per forward pass.") var batch = 256
    @Option(help: ArgumentHelp("A config naming the model and preprocessing (student.model, data.*), for weights "
                               + "without KDGraph metadata such as a PyTorch state_dict saved with safetensors."))
    var config: String?
    @Option(name: .customLong("set"), help: "Override a key of --config (repeatable).") var overrides: [String] = []

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch must be ≥ 1, got \(batch)") }
        guard config != nil || overrides.isEmpty else { throw ValidationError("--set needs --config") }
        try refuseUnusedSections(overrides, command: "predict",
                                 unused: ["train", "optim", "loss", "output", "comm", "runtime"])
    }

    func run() throws {
        setBLASThreads(1)
        let cfg = try config.map { try KDConfig.load(path: $0, overrides: overrides) }
        let n = try Prediction.run(checkpoint: checkpoint, config: cfg, images: images, out: out, batch: batch)
        print("{\"checkpoint\": \"\(checkpoint)\", \"images\": \(n.images), \"classes\": \(n.classes), "
              + "\"out\": \"\(out)\", \"model\": \"\(n.input.model)\", \"mean\": \(jsonList(n.input.mean)), "
              + "\"std\": \(jsonList(n.input.std)), \"preprocessing_from\": \"\(n.input.source)\"}")
    }
}

struct TeacherCacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "teacher-cache",
        abstract: "Precompute the teacher cache (teacher.cache) of a distillation config: every round, every sample.",
        discussion: """
        The blocks of samples are split over the ranks; records already in the cache are kept, so an interrupted \
        fill resumes where it stopped. Training with the same config then reads the records instead of running \
        the teacher (docs/training.md, "Teacher cache"). Prints a JSON summary on rank 0.
        """)

    @OptionGroup var options: ConfigOptions

    func validate() throws {
        // The records are the teacher's outputs of the data's views: the student, the losses, the optimizer
        // and the run folder do not change them (`train` stays: its block size and exactness do).
        try refuseUnusedSections(options.overrides, command: "teacher-cache",
                                 unused: ["student", "loss", "optim", "output"])
    }

    func run() throws {
        options.withConfiguredWorld { config, comm in
            try Trainer.refuseAnUnreadCache(config)
            let trainer = try Trainer(config: config, comm: comm)
            let fill = try trainer.fillTeacherCache { line in fputs("teacher-cache: \(line)\n", stderr) }
            if comm.rank == 0 { print(fill.json) }
        }
    }
}

struct ExportViews: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-views",
        abstract: "Write the augmented views of each round (float32 .npy) for a teacher outside KDGraph.",
        discussion: """
        OUT/round-NNNN.npy is [rows, views, H, W, C]: the normalised views the student sees of each training-file \
        row in round NNNN. Embed them (e.g. with open_clip in Python), save N×R×V×D, and train with \
        teacher.kind: embeddings and teacher.cache.rounds: R (docs/training.md, "Teachers outside KDGraph").
        """)

    @OptionGroup var options: ConfigOptions
    @Option(help: "Augmentation rounds to export (training replays epoch e as round e mod R).") var rounds: Int
    @Option(help: "Output folder (must not hold an earlier export).") var out: String

    func validate() throws {
        if rounds < 1 { throw ValidationError("--rounds must be ≥ 1, got \(rounds)") }
        // The views are the data's, seeded by `seed`: no network runs, and --out is the folder.
        try refuseUnusedSections(options.overrides, command: "export-views",
                                 unused: ["student", "loss", "optim", "train", "output"])
    }

    func run() throws {
        options.withConfiguredWorld { config, comm in
            let summary = try ViewExport.run(config: config, rounds: rounds, out: out, comm: comm) { line in
                fputs("export-views: \(line)\n", stderr)
            }
            if comm.rank == 0 { print(summary.json) }
        }
    }
}

/// Refuses a `--set` of a config section that plays no part in `command` (it would be ignored without a
/// word): `--set train.steps=5` for `eval`. The sections a command validates but does not run (a distillation
/// config's `teacher` and `mode`) stay settable, so that a moved teacher checkpoint can be named.
func refuseUnusedSections(_ overrides: [String], command: String, unused: [String]) throws {
    for o in overrides {
        guard let section = KDConfig.overrideSection(o), unused.contains(section) else { continue }
        throw ValidationError("--set \(o): \(command) does not use the \(section) section ("
                              + unused.joined(separator: ", ") + " play no part in it)")
    }
}

/// A JSON array of numbers, as `eval` and `predict` print the normalisation they used.
private func jsonList<T: CustomStringConvertible>(_ values: [T]) -> String {
    "[" + values.map(\.description).joined(separator: ", ") + "]"
}
