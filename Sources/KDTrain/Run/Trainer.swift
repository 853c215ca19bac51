import Foundation
import KDComm
import KDCore
import KDData
import KDLosses
import KDModels
import KDTensor
import Logging

/// One training run: the nine stages of one step (docs/training.md, "The step") in `step()`, and the
/// loop around them in RunLoop.swift (evaluation, metrics, checkpoints, resume, signals, desync check).
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
    let schedule: LRSchedule
    /// The gradient all-reduce: bucketed SUM, or with `train.deterministic` the exact sum over sample blocks
    /// (one of the two is set).
    public let buckets: GradientBuckets?
    public let exactGradients: ExactGradients?
    /// Leading rows per sample block (`train.block_size × views`) when deterministic, else nil.
    public let rowsPerBlock: Int?
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
        var models: [(name: String, model: any Classifier, training: Bool)] = [("student", student, true)]
        if case .network(let t)? = teacher?.source { models.append(("teacher", t, false)) }
        return models
    }
    /// SyncBN's reducer (nil without `student.sync_bn`); counts the statistics all-reduces.
    public let statisticsReducer: CountedStatisticsReducer?
    /// Test switches (environment), applied outside the step: a failing rank, a NaN loss term.
    public let faults: FaultInjection
    /// When set, `step` keeps the loss inputs of the step in `lastLossInputs` (the benchmark's loss
    /// projection re-evaluates the objective on them at larger global batches).
    public var keepLossInputs = false
    public private(set) var lastLossInputs: LossInputs?
    /// The last step's record.
    public private(set) var lastRecord: StepRecord?
    /// The last step's global loss.
    public var lastLoss: Double { lastRecord?.loss ?? 0 }
    /// What the objective reads: the step computes and gathers exactly this.
    let needs: LossNeeds
    /// Non-finite steps in a row (skipping cannot help a value that persists: the warning says so).
    var consecutiveNonFinite = 0
    /// What a step skipped by `train.skip_nonfinite` puts back (parameters, buffers, optimizer state).
    lazy var rollback = StepRollback(tensors: parameters + student.namedBuffers(), optimizer: optimizer)

    public init(config userConfig: KDConfig, comm: Communicator) throws {
        self.comm = comm
        let seed = UInt64(userConfig.seed)
        data = try TrainingData(config: userConfig)
        // What the data decides (image size, normalisation) is part of the run's config from here on.
        let config = userConfig.resolved(by: data)
        self.config = config
        if comm.rank == 0 && data.normalizationDefaulted {
            Runtime.logger.info("data.mean/data.std not set: \(data.normalizationNote)")
        }
        // Refuse a step that cannot fit before its tensors are allocated (docs/reliability.md).
        try MemoryEstimate(config: config, data: data, worldSize: comm.size).check(config: config)
        let B = config.data.globalBatch
        do {
            sampler = try Sampler(count: data.trainCount, globalBatch: B, dropLast: config.data.dropLast, seed: seed,
                                  rank: comm.rank, worldSize: comm.size,
                                  blockSize: config.train.deterministic ? config.train.blockSize : 1)
        } catch let e as DataError {
            throw ConfigError(file: config.file, key: e.configKey ?? "data", message: "\(e)")
        }
        totalSteps = config.train.steps > 0 ? config.train.steps : config.train.epochs * sampler.stepsPerEpoch
        if totalSteps == 0 {
            throw ConfigError(file: config.file, key: "data.global_batch",
                              message: "an epoch of \(data.trainCount) samples has no full batch of \(B) "
                                  + "(drop_last is on)")
        }

        // ③ teacher, ④ student (+ projection head), ⑥ objective
        student = try ModelZoo.make(name: config.student.model, classes: config.data.classes,
                                    inputChannels: data.inputChannels,
                                    imageSize: data.inputSize,
                                    hiddenSizes: config.student.hidden.isEmpty ? [256, 256] : config.student.hidden,
                                    seed: seed)
        // On one rank the reducer sends nothing (plain BatchNorm); it is installed anyway so that the
        // statistics all-reduces are counted the same way at every world size.
        let deterministic = config.train.deterministic
        rowsPerBlock = deterministic ? config.train.blockSize * max(1, config.data.views) : nil
        if deterministic && !config.student.syncBN && student.namedModules().contains(where: { $0.1 is BatchNorm2d }) {
            throw ConfigError(file: config.file, key: "student.sync_bn", message: "false keeps BatchNorm statistics "
                + "per rank, which change with the world size; train.deterministic needs student.sync_bn: true "
                + "(statistics of the global batch, summed exactly) or train.deterministic: false")
        }
        let globalBlocks = (B + config.train.blockSize - 1) / config.train.blockSize
        if !config.student.syncBN {
            statisticsReducer = nil
        } else if deterministic {
            statisticsReducer = ExactStatisticsReducer(comm: comm, globalBlocks: globalBlocks)
        } else {
            statisticsReducer = CommStatisticsReducer(comm: comm)
        }
        if let statisticsReducer { student.setStatisticsReducer(statisticsReducer) }
        // ⑥ the objective (its terms were built and validated when the config was read)
        faults = FaultInjection.fromEnvironment()
        let terms = config.mode == .supervised ? [CETerm(weight: 1)] : config.loss.map(\.term)
        objective = LossObjective(terms: terms + (faults.term.map { [$0] } ?? []))
        needs = objective.needs
        if needs.contains(.twoViews), config.data.views < 2,
           let i = config.loss.firstIndex(where: { $0.term.needs.contains(.twoViews) }) {
            throw ConfigError(file: config.file, key: "data.views",
                              message: "loss.\(i) (\(config.loss[i].kind)) needs 2 views per sample "
                                  + "(real + virtual), got \(config.data.views)")
        }
        teacher = config.mode == .supervised ? nil : try TeacherSide(config: config, data: data)
        if needs.contains(.studentEmbedding), let teacher {
            let dim = config.student.embedDim > 0 ? config.student.embedDim : teacher.embeddingSize
            if dim != teacher.embeddingSize {
                throw ConfigError(file: config.file, key: "student.embed_dim",
                                  message: "\(dim) must equal the teacher's embedding size \(teacher.embeddingSize) "
                                      + "(the losses compare them directly), or 0")
            }
            head = ProjectionHead(inFeatures: student.featureSize, outFeatures: dim, seed: seed &+ 1)
        } else {
            head = nil
        }
        var convModels: [(name: String, model: any Classifier, training: Bool)] = [("student", student, true)]
        if case .network(let t)? = teacher?.source { convModels.append(("teacher", t, false)) }
        let imageShape = data.inputSize.count == 2 ? data.inputSize + [data.inputChannels] : []
        convAlgorithms = try ConvAlgorithmTuner.configure(
            setting: config.convAlgorithm.rawValue, models: convModels, imageShape: imageShape,
            batch: max(1, B / comm.size) * config.data.views, comm: comm,
            wisdom: ConvAlgorithmTuner.readWisdom(directory: config.outputDir), untimed: deterministic)
        if let teacher, case .network(let model) = teacher.source, config.teacher.cache.enabled {
            let cache = try TeacherOutputCache.open(config: config, data: data, teacher: teacher, model: model,
                                                    algorithms: &convAlgorithms, comm: comm)
            // Built now that the algorithms are final (the cache may have imposed its own).
            teacher.fused = FusedResNet(model)
            cache.batchInvariantTeacher = teacher.fused != nil
            teacher.cache = cache
        }
        parameters = student.namedParameters() + (head?.namedParameters().map { ("head." + $0.0, $0.1) } ?? [])

        // ⑨ optimizer and schedule
        let rule: WeightDecayRule = config.optim.decayBNBias ? .all : .skipBiasAndNorm
        switch config.optim.kind {
        case .adamw:
            optimizer = try AdamW(parameters: parameters, learningRate: config.optim.lr, beta1: config.optim.betas[0],
                                  beta2: config.optim.betas[1], eps: config.optim.eps,
                                  weightDecay: config.optim.weightDecay, decayRule: rule)
        case .sgd:
            optimizer = try SGD(parameters: parameters, learningRate: config.optim.lr, momentum: config.optim.momentum,
                                nesterov: config.optim.nesterov, weightDecay: config.optim.weightDecay,
                                decoupledWeightDecay: config.optim.decoupled, decayRule: rule)
        }
        switch config.optim.schedule {
        case .step: schedule = StepSchedule(base: config.optim.lr, milestones: config.optim.milestones,
                                             gamma: config.optim.gamma, warmupSteps: config.optim.warmupSteps)
        case .constant: schedule = ConstantSchedule(base: config.optim.lr, warmupSteps: config.optim.warmupSteps)
        case .cosine: schedule = CosineSchedule(base: config.optim.lr, totalSteps: totalSteps,
                                           warmupSteps: config.optim.warmupSteps)
        }
        // ⑧ gradient buckets: the loss is a sum of rank shares, so gradients are summed (scale 1).
        if deterministic {
            buckets = nil
            exactGradients = ExactGradients(parameters: parameters.map { $0.1 }, comm: comm)
        } else {
            buckets = try GradientBuckets(parameters: parameters.map { $0.1 }, comm: comm,
                                          bucketBytes: max(1, Int(config.comm.bucketMB * 1_048_576)), scale: 1)
            exactGradients = nil
        }
        comm.timeoutSeconds = config.comm.timeoutS
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
        let stepNumber = step + 1
        comm.currentStep = stepNumber
        let plan = batch.plan
        var timer = PhaseTimer()

        // Deterministic training: sums over samples per fixed block, row-invariant GEMMs (SampleBlocks).
        let savedBlocks = SampleBlocks.rowsPerBlock
        SampleBlocks.rowsPerBlock = rowsPerBlock
        defer { SampleBlocks.rowsPerBlock = savedBlocks }

        // ③ teacher (frozen, no tape)
        let t = try teacher?(batch)
        timer.lap(.teacher)

        // ④ student on the tape
        if config.train.skipNonfinite { rollback.capture() }   // the forward updates BN running statistics
        student.train(true)
        let (feature, logits) = try student(batch.images)
        let embedding = try head.map { try $0(feature) }
        timer.lap(.studentForward)

        // ⑤ all-gather (student rows differentiable), ⑥ this rank's share of the loss — deterministic: the
        // whole loss on every rank, as one process computes it, and no reduce-scatter in backward.
        let replicated = exactGradients != nil
        var gathers = GatherLedger()
        let rowCounts = plan.rowCounts(views: batch.views)
        func gather(_ x: Tensor?, _ need: LossNeeds, grad: Bool) throws -> Tensor? {
            guard let x, needs.contains(need) else { return nil }
            let t0 = monotonicSeconds()
            let g = grad ? try allGatherRows(x, comm: comm, counts: rowCounts, replicatedLoss: replicated)
                         : try allGatherRowsNoGrad(x, comm: comm, counts: rowCounts)
            gathers.seconds += monotonicSeconds() - t0
            let perSample = g.count / max(1, plan.globalSamples) * MemoryLayout<Float>.stride
            gathers.calls += 1
            gathers.bytesReceived += (g.count - x.count) * MemoryLayout<Float>.stride
            gathers.bytesPerSample += perSample
            if grad { gathers.differentiableCalls += 1; gathers.differentiableBytesPerSample += perSample }
            return g
        }
        var labels: [Int]? = nil
        if needs.contains(.labels) {
            let t0 = monotonicSeconds()
            labels = try comm.allGatherInts(batch.labels, counts: plan.counts)
            gathers.seconds += monotonicSeconds() - t0
            gathers.calls += 1; gathers.bytesPerSample += MemoryLayout<Int>.stride
        }
        let lossPlan = replicated ? BatchPlan(epoch: plan.epoch, step: plan.step, globalSamples: plan.globalSamples,
                                              blockSize: plan.blockSize) : plan
        let inputs = LossInputs(
            plan: lossPlan, views: batch.views,
            studentFeatures: try gather(feature, .studentFeatures, grad: true),
            studentEmbedding: try gather(embedding, .studentEmbedding, grad: true),
            studentLogits: try gather(logits, .studentLogits, grad: true),
            teacherEmbedding: try gather(t?.embedding, .teacherEmbedding, grad: false),
            teacherLogits: try gather(t?.logits, .teacherLogits, grad: false),
            promptTeacherLogits: try gather(t?.promptLogits, .teacherLogits, grad: false),
            proxies: teacher?.proxies, labels: labels, step: stepNumber, comm: replicated ? nil : comm)
        lastLossInputs = keepLossInputs ? inputs : nil
        let share = try objective.evaluate(inputs)
        timer.lap(.gatherLoss)

        // ⑦ backward (⑧ overlapped: buckets start as their gradients become final)
        if config.comm.overlap, let buckets {
            Tape.backward(share.value, onGradReady: buckets.onGradReady)
        } else {
            Tape.backward(share.value)
        }
        timer.lap(.backward)

        // ⑧ all-reduce of gradients (sum of the shares' gradients = the global gradient; deterministic:
        // the exact sum of every block's partial)
        if let exactGradients {
            try exactGradients.reduce(globalBlocks: plan.blocks)
        } else if let buckets {
            if config.comm.overlap { try buckets.finish() } else { try buckets.allReduceBlocking() }
        }
        timer.lap(.allreduce)

        // Global loss, its terms, and the stop flag in one all-reduce (identical on every rank after it).
        // A replicated loss is rank 0's (the others add zeros: exact).
        let contributes = !replicated || comm.rank == 0
        var values = ([Double(share.value.item)] + share.terms.map { $0.value }).map { contributes ? $0 : 0 }
        values.append(stopRequested() ? 1 : 0)
        values.append(student.firstNonFiniteBuffer() == nil ? 0 : 1)   // per rank without SyncBN
        try comm.allReduce(&values, op: .sum)
        let nonFiniteBuffers = values.removeLast() > 0
        let terms = zip(share.terms.map { $0.name }, values[1..<(values.count - 1)]).map { (name: $0, value: $1) }
        var record = StepRecord(step: stepNumber, plan: plan, applied: true, stop: values[values.count - 1] > 0,
                                loss: values[0], terms: terms, phases: [:], gathers: gathers,
                                bytesAllReduced: exactGradients?.bytesPerReduce ?? buckets?.totalBytes ?? 0)

        // Numerical guard: the summed loss, the all-reduced gradients and the buffer flag are the same on
        // every rank, so every rank takes the same decision without another collective.
        var bad = nonFinite(loss: record.loss, terms: terms)
        if bad == nil, nonFiniteBuffers {
            bad = ("running statistic \(student.firstNonFiniteBuffer() ?? "on another rank")", Double.nan)
        }
        if let (term, value) = bad {
            optimizer.zeroGrad()
            let cause = try nonFiniteCause(batch: batch, teacherOutput: t)
            consecutiveNonFinite += 1
            let advice = cause.advice(skipping: config.train.skipNonfinite, consecutive: consecutiveNonFinite)
            guard config.train.skipNonfinite else {
                throw TrainError.nonFinite(step: stepNumber, term: term, value: value, advice: advice)
            }
            try rollback.restore()
            let because = cause == .training && consecutiveNonFinite == 1 ? "" : ": \(advice)"
            let what = "non-finite \(term) (\(value))"
            log.warning("step \(stepNumber): \(what); step skipped (train.skip_nonfinite)\(because)")
            record.applied = false
        } else {
            // ⑨ optimizer
            optimizer.learningRate = schedule.learningRate(at: step)
            try optimizer.step()
            optimizer.zeroGrad()
            if config.train.skipNonfinite, let (name, n) = rollback.firstNonFinite() {
                try rollback.restore()   // an update that overflowed: skipped like a non-finite gradient
                consecutiveNonFinite += 1
                let what = "the update made \(n) value(s) of \(name) non-finite"
                let advice = NonFiniteCause.training.advice(skipping: true, consecutive: consecutiveNonFinite)
                let because = consecutiveNonFinite > 1 ? ": \(advice)" : ""
                log.warning("step \(stepNumber): \(what); step skipped (train.skip_nonfinite)\(because)")
                record.applied = false
            } else {
                consecutiveNonFinite = 0
            }
        }
        step += 1
        timer.lap(.optimizer)
        record.phases = timer.current
        lastRecord = record
        return record
    }

    /// Where a non-finite loss or gradient came from (the batch, the teacher, or the student's step):
    /// scanned only once the guard fired, so good steps pay nothing. The guard's decision is the same on
    /// every rank, so every rank is here and one all-reduce of the two flags gives every rank the same
    /// cause, even when only one rank's batch or teacher output is bad.
    func nonFiniteCause(batch: Batch, teacherOutput t: TeacherSide.Output?) throws -> NonFiniteCause {
        func finite(_ x: Tensor?) -> Bool { x.map { x in (0..<x.count).allSatisfy { x.ptr[$0].isFinite } } ?? true }
        let teacherFinite = t.map { finite($0.embedding) && finite($0.logits) && finite($0.promptLogits) } ?? true
        var flags = [finite(batch.images) ? 0.0 : 1, teacherFinite ? 0 : 1]
        try comm.allReduce(&flags, op: .sum)
        if flags[0] > 0 { return .data(data.trainName) }
        if flags[1] > 0 {
            return .teacher(config.teacher.kind == .embeddings ? "teacher.embeddings \(config.teacher.embeddings)"
                            : "teacher.checkpoint \(config.teacher.checkpoint)")
        }
        return .training
    }

    /// The first non-finite value among the loss, its terms and the gradients, if any.
    func nonFinite(loss: Double, terms: [(name: String, value: Double)]) -> (String, Double)? {
        if !loss.isFinite {
            return terms.first(where: { !$0.value.isFinite }).map { ($0.name, $0.value) } ?? ("loss", loss)
        }
        let bad = parameters.first { p in
            p.1.grad.map { g in !(0..<g.count).allSatisfy { g.ptr[$0].isFinite } } ?? false
        }
        return bad.map { ("gradient of \($0.0)", Double.nan) }
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
