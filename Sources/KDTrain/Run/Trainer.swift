import Foundation
import KDComm
import KDCore
import KDData
import KDLosses
import KDModels
import KDTensor
import Logging

/// One training run: the stages of one step (docs/training.md, "The step") in `step()`, their
/// strategies chosen once here (gradient synchronisation, pass schedule, non-finite guard), and the loop
/// around them in RunLoop.swift (evaluation, metrics, checkpoints, resume, signals, desync check).
public final class Trainer {
    public let config: KDConfig
    public let comm: Communicator
    /// Stages ①–②: images with views, or feature matrices.
    public let data: TrainingData
    public let sampler: Sampler
    public let student: any Classifier
    public let head: ProjectionHead?
    public let teacher: TeacherSide?
    public let objective: LossObjective
    public let optimizer: Optimizer
    let learningRates: LRSchedule
    /// Stage ⑧: bucketed, overlapped, or exact (`train.deterministic`).
    public let gradientSync: any GradientSync
    /// Stages ③–⑦ in order: one pass.
    var passes: any PassSchedule
    /// Stops the run, or skips the step (`train.skip_nonfinite`), on a non-finite value.
    let nonFiniteGuard: NonFiniteGuard
    /// Student (and projection-head) parameters, in the order buckets and the optimizer see them.
    public let parameters: [(String, Tensor)]
    public let totalSteps: Int
    /// Optimizer steps done so far (the next step to run is `step + 1`).
    public internal(set) var step = 0
    let log = Runtime.logger
    /// The convolution algorithm of each stride-1 3×3 layer shape (`runtime.conv_algorithm`).
    public internal(set) var convAlgorithms: [ConvAlgorithmChoice]
    /// The networks whose convolutions `runtime.conv_algorithm` sets, with the layer-name prefix.
    var convModels: [(name: String, model: any Classifier, training: Bool)] {
        Self.convModels(student: student, teacher: teacher?.source.network)
    }
    /// BatchNorm's statistics reducer (nil with `student.batch_norm: local`); counts the all-reduces.
    public let statisticsReducer: CountedStatisticsReducer?
    /// Test switches (environment), applied outside the step: a failing rank, a NaN loss term.
    public let faults: FaultInjection
    /// Told of every step's gathered loss inputs and record (the bench attaches its own).
    public var observers: [any StepObserver] = []
    /// The last link probe (`comm.link_probe_every`; LinkChecks.swift), attached to every later step record.
    public internal(set) var linkCheck: LinkCheck?
    /// Every rank's host name: gathered when the trainer is built in deterministic training on several ranks,
    /// else at the first link probe.
    var hostNames: [String]?
    /// The last step's record.
    public private(set) var lastRecord: StepRecord?
    /// The last step's global loss.
    public var lastLoss: Double { lastRecord?.loss ?? 0 }
    /// What the objective reads: the step computes and gathers exactly this.
    let needs: LossNeeds

    /// Builds the run of `userConfig` on `comm`: data, sampler, student, objective, teacher, optimizer and
    /// the step's strategies. `convAlgorithms` (e.g. another trainer's) replaces the
    /// `runtime.conv_algorithm` choice, so that two trainers compared by a benchmark run the same
    /// convolutions.
    public init(config userConfig: KDConfig, comm: Communicator,
                convAlgorithms given: [ConvAlgorithmChoice]? = nil) throws {
        self.comm = comm
        comm.timeoutSeconds = userConfig.comm.timeoutS   // from the first collective on (data, teacher, tuner)
        let seed = UInt64(userConfig.seed)
        let data = try TrainingData(config: userConfig)
        self.data = data
        // What the data decides (image size, normalisation) is part of the run's config from here on.
        let config = userConfig.resolved(by: data)
        self.config = config
        if data.isFeatures {
            // A convolutional network on feature rows failed at its first forward ("expects NHWC images").
            let networkTeacher = config.mode == .distill && config.teacher.kind == .network
            let models = [("student.model", config.student.model)]
                + (networkTeacher ? [("teacher.model", config.teacher.model)] : [])
            for (key, model) in models where ModelZoo.readsImages(model) {
                throw config.configError(key, "\(model) is a convolutional network for images, but \(data.trainName) "
                                         + "holds feature rows (\(data.inputSize.last ?? 0) per sample): use mlp")
            }
        }
        if comm.rank == 0 && data.normalizationDefaulted {
            Runtime.logger.info("data.mean/data.std not set: \(data.normalizationNote)")
        }
        // Refuse a step that cannot fit before its tensors are allocated (docs/reliability.md).
        try MemoryEstimate(config: config, data: data, worldSize: comm.size).check(config: config) { [comm] m in
            var chunked = config
            chunked.train.microBatch = m
            return MemoryEstimate(config: chunked, data: data, worldSize: comm.size).total
        }
        let B = config.data.globalBatch
        do {
            sampler = try Sampler(count: data.trainCount, globalBatch: B, dropLast: config.data.dropLast, seed: seed,
                                  rank: comm.rank, worldSize: comm.size,
                                  blockSize: config.sharesWholeBlocks ? config.samplesPerBlock : 1)
        } catch {
            throw config.located(error)
        }
        totalSteps = config.train.steps > 0 ? config.train.steps : config.train.epochs * sampler.stepsPerEpoch
        if totalSteps == 0 {
            throw config.configError("data.global_batch",
                                     "an epoch of \(data.trainCount) samples has no full batch of \(B) "
                                         + "(drop_last is on)")
        }
        try Self.refuseThePartialBatch(config: config, trainCount: data.trainCount, sampler: sampler,
                                       totalSteps: totalSteps)
        if comm.rank == 0 {
            let notes = config.dataNotes(evalIsHeldOut: data.evalIsHeldOut, evalName: data.evalName,
                                         featureRows: data.isFeatures ? data.trainName : nil)
                + config.scheduleNotes(totalSteps: totalSteps) + config.worldNotes(ranks: comm.size)
            for note in notes {
                Runtime.logger.warning("\(config.file): \(note)")
            }
        }

        // ④ student, ⑥ objective, ③ teacher (+ the projection head the objective's needs ask for)
        student = try ModelZoo.make(name: config.student.model, classes: config.data.classes,
                                    inputChannels: data.inputChannels,
                                    imageSize: data.inputSize,
                                    hiddenSizes: ModelZoo.hiddenSizes(config.student.hidden),
                                    seed: seed)
        statisticsReducer = try Self.statisticsReducer(config: config, student: student, comm: comm)
        if let statisticsReducer { student.setStatisticsReducer(statisticsReducer) }
        if config.student.batchNorm == .block {
            student.setBatchNormBlocks(rows: config.samplesPerBlock * max(1, config.data.views))
        }
        faults = FaultInjection.fromEnvironment()
        let terms = config.mode == .supervised ? [CETerm(weight: 1)] : config.loss.map(\.term)
        objective = LossObjective(terms: terms + (faults.term.map { [$0] } ?? []))
        needs = objective.needs   // what the terms need exists (`KDConfig.validate`)
        let teacherSource = config.mode == .supervised ? nil : try TeacherSide.Source(config: config, data: data)
        head = try Self.projectionHead(config: config, needs: needs, student: student,
                                       teacherEmbeddingSize: teacherSource?.embeddingSize, seed: seed)
        // The convolution algorithms, then the teacher built complete on them (a cache may impose its own).
        let imageShape = data.inputSize.count == 2 ? data.inputSize + [data.inputChannels] : []
        let models = Self.convModels(student: student, teacher: teacherSource?.network)
        var algorithms = try given.map { try ConvAlgorithmTuner.apply($0, models: models); return $0 }
            ?? ConvAlgorithmTuner.configure(
                setting: config.convAlgorithm.rawValue, models: models, imageShape: imageShape,
                batch: max(1, B / comm.size) * config.data.views, comm: comm,
                wisdom: ConvAlgorithmTuner.readWisdom(directory: config.outputDir),
                timed: config.convAlgorithm == .timed)
        var cacheStore: TeacherCacheStore?
        if let model = teacherSource?.network, let source = teacherSource, config.teacher.cache.enabled {
            (cacheStore, algorithms) = try TeacherOutputCache.openStore(
                config: config, data: data, model: model, embeddingSize: source.embeddingSize,
                algorithms: algorithms, comm: comm)
        }
        convAlgorithms = algorithms
        teacher = teacherSource.map { TeacherSide(source: $0, config: config, data: data, cacheStore: cacheStore) }
        parameters = student.namedParameters() + (head?.namedParameters().map { ("head." + $0.0, $0.1) } ?? [])

        // ⑨ optimizer and learning-rate schedule; ⑧ gradient synchronisation; the step's pass and guard
        optimizer = try Self.optimizer(config: config, parameters: parameters)
        learningRates = Self.learningRates(config: config, totalSteps: totalSteps)
        // Deterministic training chooses the gradient sum's transport by the hosts (one all-gather of their names,
        // kept for the link probes); otherwise the first link probe gathers them.
        if config.train.deterministic && comm.size > 1 { hostNames = try LinkProbe.hostNames(comm) }
        gradientSync = try makeGradientSync(config: config, parameters: parameters.map { $0.1 }, comm: comm,
                                            hostNames: hostNames)
        passes = config.train.microBatch > 0
            ? MicroBatchSchedule(samplesPerChunk: config.train.microBatch, secondPassImages: faults.secondPassImages)
            : OnePassSchedule(commitsRunningStatisticsOnce: config.student.batchNorm == .block)
        nonFiniteGuard = NonFiniteGuard(config: config, dataName: data.trainName, parameters: parameters,
                                        student: student, optimizer: optimizer, comm: comm)
    }

    // MARK: - one step

    /// Runs one optimizer step on `batch` (this rank's share of the global batch `batch.plan`) and returns
    /// what it did. A non-finite loss or gradient throws, or skips the step with `train.skip_nonfinite`
    /// (`applied` false). `stopRequested` (a signal on this rank) is agreed on by all ranks (`stop`). It is
    /// read just before the step's last all-reduce, not when the step starts, so a signal that arrives
    /// during the step stops the run after this step rather than the next: under `mpirun` the ranks
    /// have `odls_base_sigkill_timeout` seconds between SIGTERM and SIGKILL (docs/launch.md).
    @discardableResult
    public func step(_ batch: Batch, stopRequested: @autoclosure () -> Bool = false) throws -> StepRecord {
        let number = step + 1
        comm.currentStep = number
        let record = try gradientSync.scope { () throws -> StepRecord in
            var timer = PhaseTimer()
            nonFiniteGuard.capture()
            // ③ teacher → ④ student forward → ⑤ gather → ⑥ objective → ⑦ backward
            let pass = try passes.run(batch, step: number, stages: self, timer: &timer)
            // ⑧ the global gradient
            try gradientSync.reduce(batch.plan)
            timer.lap(.allreduce)
            // The global loss, its terms and the stop vote (identical on every rank)
            let agreed = try agree(pass, plan: batch.plan, step: number, stopRequested: stopRequested())
            var record = agreed.record
            // The guard: the same decision on every rank, from the same all-reduced values
            var fault = try nonFiniteGuard.inspect(record, nonFiniteBuffers: agreed.nonFiniteBuffers, batch: batch,
                                                   teacher: pass.teacher)
            if fault == nil {
                // ⑨ optimizer
                optimizer.learningRate = learningRates.learningRate(at: step)
                try optimizer.step()
                fault = nonFiniteGuard.inspectUpdate()
            }
            optimizer.zeroGrad()
            record.applied = try nonFiniteGuard.settle(fault, step: number)
            step += 1
            timer.lap(.optimizer)
            record.phases = timer.current
            record.links = linkCheck
            return record
        }
        for o in observers { o.stepFinished(record) }
        lastRecord = record
        return record
    }

    // MARK: - consistency

    /// A cheap checksum of the parameters (Σx and Σ(i mod 7 + 1)·x in Double), compared across ranks.
    public func checkParametersInSync() throws {
        var local = [0.0, 0.0]
        for (_, p) in parameters {
            for i in 0..<p.count { let x = Double(p.ptr[i]); local[0] += x; local[1] += Double(i % 7 + 1) * x }
        }
        var all = [Double](repeating: 0, count: 2 * comm.size)
        try all.withUnsafeMutableBufferPointer { out in
            try local.withUnsafeBufferPointer { try comm.allGather($0.baseAddress!, count: 2, into: out.baseAddress!) }
        }
        let differing = (1..<comm.size).filter { r in all[2 * r] != all[0] || all[2 * r + 1] != all[1] }
        if !differing.isEmpty {
            throw TrainError.desync(step: step, detail: "ranks \(differing.map(String.init).joined(separator: ", ")) "
                                    + "differ from rank 0 (checksums \(all[0]) vs \(all[2 * differing[0]]))")
        }
    }
}

// MARK: - construction

extension Trainer {
    /// The networks whose convolutions `runtime.conv_algorithm` sets: the student (trained) and a network
    /// teacher (frozen), with their layer-name prefixes.
    static func convModels(student: any Classifier,
                           teacher: (any Classifier)?) -> [(name: String, model: any Classifier, training: Bool)] {
        [("student", student, true)] + (teacher.map { [("teacher", $0, false)] } ?? [])
    }

    /// An epoch's last partial batch (`data.drop_last: false`) is a smaller graph than a full batch's, which
    /// the config checked (`KDConfig.validate`): a term's limit on it (`LossTerm.refusal`, spectral's `k`) is
    /// refused when the run starts, not at the end of its first epoch. Only when the run reaches that batch.
    static func refuseThePartialBatch(config: KDConfig, trainCount: Int, sampler: Sampler, totalSteps: Int) throws {
        let rest = trainCount % config.data.globalBatch, views = max(1, config.data.views)
        guard config.mode == .distill, !config.data.dropLast, rest > 0, totalSteps >= sampler.stepsPerEpoch else {
            return
        }
        let rows = rest * views
        let graph = "the last batch of each epoch has \(counted(rows, "row")) (\(trainCount) training samples, "
            + "data.global_batch \(config.data.globalBatch): \(counted(rest, "sample")) × \(counted(views, "view")))"
        for (i, entry) in config.loss.enumerated() {
            if let r = entry.term.refusal(rows: rows, graph: graph) {
                throw config.configError(KDConfig.lossKey(i, r.key),
                                         r.message + "; data.drop_last: true skips that batch")
            }
        }
    }

    /// BatchNorm's statistics reducer (`student.batch_norm`): nil for `local`; for `sync` (the statistics)
    /// and `block` (the running statistics' average over blocks), the exact sum over sample blocks when
    /// deterministic, else an all-reduce. On one rank the reducer sends nothing; it is installed anyway so
    /// that the statistics all-reduces are counted the same way at every world size. Deterministic
    /// training with `local` on a student with BatchNorm is refused (per-rank statistics change with the
    /// world size).
    static func statisticsReducer(config: KDConfig, student: any Classifier,
                                  comm: Communicator) throws -> CountedStatisticsReducer? {
        let deterministic = config.train.deterministic
        if deterministic && config.student.batchNorm == .local
            && student.namedModules().contains(where: { $0.1 is BatchNorm2d }) {
            throw config.configError("student.batch_norm", "local keeps BatchNorm statistics per rank, which "
                + "change with the world size; train.deterministic needs student.batch_norm: sync (statistics of "
                + "the global batch, summed exactly) or block (per train.block_size samples), or "
                + "train.deterministic: false")
        }
        guard config.student.batchNorm != .local else { return nil }
        guard deterministic else { return CommStatisticsReducer(comm: comm) }
        let globalBlocks = (config.data.globalBatch + config.samplesPerBlock - 1) / config.samplesPerBlock
        return ExactStatisticsReducer(comm: comm, globalBlocks: globalBlocks)
    }

    /// The projection head from the student's features to the teacher's embedding size, when a loss reads
    /// the student's embedding (`student.embed_dim`, 0: the teacher's size; any other size is refused).
    static func projectionHead(config: KDConfig, needs: LossNeeds, student: any Classifier,
                               teacherEmbeddingSize size: Int?, seed: UInt64) throws -> ProjectionHead? {
        guard needs.contains(.studentEmbedding), let size else { return nil }
        let dim = config.student.embedDim > 0 ? config.student.embedDim : size
        if dim != size {
            throw config.configError("student.embed_dim",
                                     "\(dim) must equal the teacher's embedding size \(size) "
                                         + "(the losses compare them directly), or 0")
        }
        return ProjectionHead(inFeatures: student.featureSize, outFeatures: dim, seed: seed &+ 1)
    }

    /// `optim.kind`: SGD or AdamW.
    static func optimizer(config: KDConfig, parameters: [(String, Tensor)]) throws -> Optimizer {
        let o = config.optim
        let rule: WeightDecayRule = o.decayBNBias ? .all : .skipBiasAndNorm
        switch o.kind {
        case .adamw:
            return try AdamW(parameters: parameters, learningRate: o.lr, beta1: o.betas[0], beta2: o.betas[1],
                             eps: o.eps, weightDecay: o.weightDecay, decayRule: rule)
        case .sgd:
            return try SGD(parameters: parameters, learningRate: o.lr, momentum: o.momentum, nesterov: o.nesterov,
                           weightDecay: o.weightDecay, decoupledWeightDecay: o.decoupled, decayRule: rule)
        }
    }

    /// `optim.schedule`: step, constant, or cosine over `totalSteps`.
    static func learningRates(config: KDConfig, totalSteps: Int) -> LRSchedule {
        let o = config.optim
        switch o.schedule {
        case .step:
            return StepSchedule(base: o.lr, milestones: o.milestones, gamma: o.gamma, warmupSteps: o.warmupSteps)
        case .constant: return ConstantSchedule(base: o.lr, warmupSteps: o.warmupSteps)
        case .cosine: return CosineSchedule(base: o.lr, totalSteps: totalSteps, warmupSteps: o.warmupSteps)
        }
    }
}
