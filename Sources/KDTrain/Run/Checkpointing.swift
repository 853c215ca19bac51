import Foundation
import KDCore
import KDData
import KDFormats
import KDModels
import KDTensor

extension Trainer {
    var checkpointDir: String { (config.outputDir as NSString).appendingPathComponent("checkpoints") }
    /// `step_00000012.safetensors`: the name of the checkpoint after the current step.
    var stepCheckpointName: String { String(format: "step_%08d.safetensors", step) }

    /// Metadata that lets `--resume` continue the same trajectory.
    func checkpointMetadata() -> [String: String] {
        let pos = samplerPosition(afterSteps: step)
        return ["kdgraph.step": String(step), "kdgraph.epoch": String(pos.epoch),
                "kdgraph.sampler_step": String(pos.step),
                "kdgraph.total_steps": String(totalSteps), "kdgraph.world_size": String(comm.size),
                "kdgraph.seed": String(config.seed), "kdgraph.rng": "keyed(seed, epoch, sample, view)",
                "kdgraph.config_digest": sha256Hex(Array(config.resolvedYAML.utf8)),
                "kdgraph.student": config.student.model, "kdgraph.mode": config.mode.rawValue,
                "kdgraph.conv_algorithms": ConvAlgorithmTuner.metadataValue(convAlgorithms)]
            .merging(preprocessingMetadata(), uniquingKeysWith: { a, _ in a })
    }

    /// What a user needs to run the weights without the run's config (docs/training.md, "Using the
    /// weights"): the model and its input, the normalisation `x̂ = (pixel/255 − mean[c]) / std[c]`,
    /// and the whole resolved config (`kdgraph eval --checkpoint X` rebuilds the run from it).
    func preprocessingMetadata() -> [String: String] {
        func list(_ v: [Double]) -> String { v.map { "\($0)" }.joined(separator: ",") }
        return ["kdgraph.model": config.student.model, "kdgraph.classes": String(config.data.classes),
                "kdgraph.input_channels": String(data.inputChannels),
                "kdgraph.input_size": data.inputSize.map(String.init).joined(separator: ","),
                // Hidden widths mean something for an mlp only (a resnet8 recorded 256,256 before).
                "kdgraph.hidden": config.student.model == "mlp"
                    ? ModelZoo.hiddenSizes(config.student.hidden).map(String.init).joined(separator: ",") : "",
                "kdgraph.mean": list(data.mean), "kdgraph.std": list(data.std),
                "kdgraph.layout": "NHWC", "kdgraph.config": config.resolvedYAML]
    }

    func samplerPosition(afterSteps k: Int) -> SamplerPosition {
        SamplerPosition(epoch: 0, step: 0).advanced(by: k, stepsPerEpoch: sampler.stepsPerEpoch)
    }

    /// Rank 0 writes `path` (temporary file, fsync, rename); every rank waits for it so that a
    /// failure to write is reported as the same error on every rank.
    @discardableResult
    public func saveCheckpoint(name: String) throws -> String {
        let path = (checkpointDir as NSString).appendingPathComponent(name)
        try comm.onRoot {
            do {
                try FileManager.default.createDirectory(atPath: checkpointDir, withIntermediateDirectories: true)
                let extra = head?.namedParameters().map { ("state.head." + $0.0, $0.1) } ?? []
                try Checkpoint.save(path: path, model: student, optimizer: optimizer, extraTensors: extra,
                                    metadata: checkpointMetadata(), rank: 0)
            } catch {
                throw TrainError.io(path: path, message: "checkpoint not written: \(error)")
            }
        }
        return path
    }

    /// Restores weights, projection head, optimizer state and the step counter from a checkpoint.
    public func resume(from path: String) throws {
        // The run kind first: a supervised checkpoint has no projection head or distillation state, and
        // loading it would fail on the first missing tensor with a message about that tensor.
        // Each file is read (and its checksum verified) once: the weights, then the training state.
        let weights = try Checkpoint.read(path: path)
        let recorded = weights.metadata
        if let mode = recorded["kdgraph.mode"], mode != config.mode.rawValue {
            throw TrainError.io(path: path, message: "written by a \(mode) run (kdgraph.mode) but \(config.file) "
                                + "is a \(config.mode.rawValue) config: --resume continues the same run. "
                                + (mode == "supervised" ? "To distil from it, name it as teacher.checkpoint."
                                   : "Resume it with the distill config it was written by."))
        }
        let state = try Checkpoint.readState(path: path, weights: weights)
        let meta = try namingTheCause(recorded, "--resume continues the same model and optimizer") {
            try Checkpoint.load(weights, state: state, into: student, optimizer: optimizer)
        }
        if let head {
            guard let f = state else {
                throw TrainError.io(path: path,
                                    message: "no training state (\(Checkpoint.statePath(of: path)) is missing)")
            }
            for (name, p) in head.namedParameters() {
                guard let st = f.tensors["state.head." + name] else {
                    throw TrainError.io(path: path, message: "no projection head tensor state.head.\(name) "
                                        + "(was it written by a run with the same losses?)")
                }
                guard st.shape == p.shape, st.dtype == .F32 else {
                    throw TrainError.io(path: path, message: "state.head.\(name) is \(st.dtype) \(st.shape), "
                                        + "the head needs F32 \(p.shape)")
                }
                st.copyFloats(into: p.ptr)
            }
        }
        guard let s = meta["kdgraph.step"].flatMap(Int.init) else {
            throw TrainError.io(path: path, message: "no kdgraph.step in __metadata__: not a training checkpoint")
        }
        if let digest = meta["kdgraph.config_digest"], digest != sha256Hex(Array(config.resolvedYAML.utf8)) {
            let changes = meta["kdgraph.config"].map { KDConfig.differences(from: $0, to: config.resolvedYAML) } ?? []
            let shown = changes.prefix(8).joined(separator: "; ") + (changes.count > 8 ? "; …" : "")
            let what = changes.isEmpty ? "config digest differs" : "\(changes.count) key(s) differ: \(shown)"
            log.warning("\(path): written with a different configuration (\(what)); continuing with the current one")
        }
        if config.convAlgorithm.perLayer, let json = meta["kdgraph.conv_algorithms"] {
            guard let recorded = try? JSONDecoder().decode([ConvAlgorithmChoice].self, from: Data(json.utf8)) else {
                throw TrainError.io(path: path, message: "kdgraph.conv_algorithms in __metadata__ is not readable JSON")
            }
            try ConvAlgorithmTuner.apply(recorded, models: convModels)
            convAlgorithms = recorded.map { var c = $0; c.source = "checkpoint"; return c }
        }
        step = s
    }
}

extension Trainer {
    /// Loads model weights only (evaluation, or a student used as a teacher).
    public func loadWeights(_ path: String) throws {
        let file = try Checkpoint.read(path: path)
        try namingTheCause(file.metadata, "the weights fit the model of the checkpoint's own config") {
            try Checkpoint.loadWeights(file, into: student)
        }
    }

    /// Runs `load`; a checkpoint that does not fit the model or optimizer (the tensors name the symptom) gets
    /// the config keys that differ from the checkpoint's recorded config and build them (`student.model:
    /// resnet20 → resnet8`: the cause), when it carries one, and `advice`.
    @discardableResult
    func namingTheCause<T>(_ recorded: [String: String], _ advice: String, _ load: () throws -> T) throws -> T {
        do { return try load() } catch let ModelError.checkpoint(file, message) {
            let causes = ["student.", "data.classes:", "data.image_size:", "optim.kind:"]
            let keys = recorded["kdgraph.config"].map { KDConfig.differences(from: $0, to: config.resolvedYAML) }?
                .filter { causes.contains(where: $0.hasPrefix) } ?? []
            guard !keys.isEmpty else { throw ModelError.checkpoint(file: file, message: message) }
            throw ModelError.checkpoint(file: file, message: message + " (this config differs from the checkpoint's: "
                                        + keys.joined(separator: "; ") + "; \(advice))")
        }
    }
}
