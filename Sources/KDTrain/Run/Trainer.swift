import Foundation
import KDComm
import KDData
import KDLosses
import KDModels
import KDTensor
import Logging

/// One training run: the nine stages of SPEC §1 in `step()`, and the loop around them (evaluation,
/// metrics, checkpoints, resume, signals, numerical guard, desync check).
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
    public let buckets: GradientBuckets
    /// Student (and projection-head) parameters, in the order buckets and the optimizer see them.
    public let parameters: [(String, Tensor)]
    public let totalSteps: Int
    /// Optimizer steps done so far (the next step to run is `step + 1`).
    public internal(set) var step = 0
    public var timer = PhaseTimer()
    let log = Runtime.logger
    /// Bytes of gathered rows received by this rank in the last step.
    public private(set) var bytesGathered = 0
    /// Seconds spent inside all-gather calls in the last step (waiting for the slowest rank included).
    public private(set) var gatherSeconds = 0.0
    /// All-gathers in the last step, and how many of them were differentiable (their backward is a
    /// reduce-scatter of the same size).
    public private(set) var gatherCalls = 0, differentiableGatherCalls = 0
    /// Bytes per sample of all gathered rows (student and teacher tensors, all views), and of the
    /// differentiable (student) ones: what one more rank adds to every rank's gather.
    public private(set) var gatheredBytesPerSample = 0, differentiableGatheredBytesPerSample = 0
    /// The convolution algorithm of each stride-1 3×3 layer shape (`runtime.conv_algorithm`).
    public let convAlgorithms: [ConvAlgorithmChoice]
    /// SyncBN's reducer (nil without `student.sync_bn`); counts the statistics all-reduces.
    public let statisticsReducer: CommStatisticsReducer?
    /// When set, `step` keeps the loss inputs of the step in `lastLossInputs` (the benchmark's loss
    /// projection re-evaluates the objective on them at larger global batches).
    public var keepLossInputs = false
    public private(set) var lastLossInputs: LossInputs?
    /// The last step's global loss and its terms.
    public private(set) var lastLoss = 0.0
    public private(set) var lastTerms: [(String, Double)] = []
    var needsFeatures = false, needsEmbedding = false, needsLogits = true, needsLabels = false

    public init(config: KDConfig, comm: Communicator) throws {
        self.config = config
        self.comm = comm
        let seed = UInt64(config.seed)
        data = try TrainingData(config: config)
        let B = config.data.globalBatch
        if B < comm.size {
            throw ConfigError(file: config.file, key: "data.global_batch",
                              message: "\(B) samples cannot be split over \(comm.size) ranks: every rank needs at least one sample per step")
        }
        sampler = try Sampler(count: data.trainCount, globalBatch: B, dropLast: config.data.dropLast, seed: seed,
                              rank: comm.rank, worldSize: comm.size)
        if !config.data.dropLast, data.trainCount % B != 0, data.trainCount % B < comm.size {
            throw ConfigError(file: config.file, key: "data.drop_last",
                              message: "the last batch of each epoch has \(data.trainCount % B) samples, fewer than the \(comm.size) ranks; set drop_last: true or change global_batch")
        }
        totalSteps = config.train.steps > 0 ? config.train.steps : config.train.epochs * sampler.stepsPerEpoch
        if totalSteps == 0 {
            throw ConfigError(file: config.file, key: "data.global_batch",
                              message: "an epoch of \(data.trainCount) samples has no full batch of \(B) (drop_last is on)")
        }

        // ③ teacher, ④ student (+ projection head), ⑥ objective
        student = try ModelZoo.make(name: config.student.model, classes: config.data.classes, inputChannels: data.inputChannels,
                                    imageSize: data.inputSize,
                                    hiddenSizes: config.student.hidden.isEmpty ? [256, 256] : config.student.hidden, seed: seed)
        // On one rank the reducer sends nothing (plain BatchNorm); it is installed anyway so that the
        // statistics all-reduces are counted the same way at every world size.
        statisticsReducer = config.student.syncBN ? CommStatisticsReducer(comm: comm) : nil
        if let statisticsReducer { student.setStatisticsReducer(statisticsReducer) }
        // ⑥ the objective first: a misspelt loss key fails before any teacher file is opened.
        if config.mode == .supervised {
            objective = LossObjective(terms: [try makeLossTerm(["kind": "ce", "weight": 1.0])])
        } else {
            objective = LossObjective(terms: try config.loss.enumerated().map { i, spec in
                var d: [String: Any] = ["kind": spec.kind, "weight": spec.weight]
                for (k, v) in spec.params { d[k] = Double(v) ?? v as Any }
                do { return try makeLossTerm(d) } catch {
                    throw ConfigError(file: config.file, key: "loss.\(i)", message: "\(error)", line: spec.line)
                }
            })
        }
        teacher = config.mode == .supervised ? nil : try TeacherSide(config: config, data: data)
        for (i, t) in objective.terms.enumerated() {
            switch t {
            case let r as RKDTerm: if r.useEmbedding { needsEmbedding = true } else { needsFeatures = true }
            case let s as SpectralTerm: if s.useFeatures { needsFeatures = true } else { needsEmbedding = true }
            case is PRGTerm: needsEmbedding = true
            case is CETerm: needsLabels = true
            case let k as KDTerm: if k.ceWeight != 0 { needsLabels = true }
            case is VRMTerm:
                if config.data.views < 2 {
                    throw ConfigError(file: config.file, key: "data.views", message: "loss.\(i) (vrm) needs 2 views per sample (real + virtual), got \(config.data.views)")
                }
            default: break
            }
        }
        if needsEmbedding, let teacher {
            let dim = config.student.embedDim > 0 ? config.student.embedDim : teacher.embeddingSize
            if dim != teacher.embeddingSize {
                throw ConfigError(file: config.file, key: "student.embed_dim",
                                  message: "\(dim) must equal the teacher's embedding size \(teacher.embeddingSize) (the losses compare them directly), or 0")
            }
            head = ProjectionHead(inFeatures: student.featureSize, outFeatures: dim, seed: seed &+ 1)
        } else {
            head = nil
        }
        var convModels: [(name: String, model: any Classifier, training: Bool)] = [("student", student, true)]
        if case .network(let t)? = teacher?.source { convModels.append(("teacher", t, false)) }
        let imageShape = data.inputSize.count == 2 ? data.inputSize + [data.inputChannels] : []
        convAlgorithms = try ConvAlgorithmTuner.configure(
            setting: config.convAlgorithm, models: convModels, imageShape: imageShape,
            batch: max(1, B / comm.size) * config.data.views, comm: comm,
            wisdom: ConvAlgorithmTuner.readWisdom(directory: config.outputDir))
        parameters = student.namedParameters() + (head?.namedParameters().map { ("head." + $0.0, $0.1) } ?? [])

        // ⑨ optimizer and schedule
        let rule: WeightDecayRule = config.optim.decayBNAndBias ? .all : .skipBiasAndNorm
        switch config.optim.kind {
        case "adamw":
            optimizer = try AdamW(parameters: parameters, learningRate: config.optim.lr, beta1: config.optim.betas[0],
                                  beta2: config.optim.betas[1], eps: config.optim.eps,
                                  weightDecay: config.optim.weightDecay, decayRule: rule)
        default:
            optimizer = try SGD(parameters: parameters, learningRate: config.optim.lr, momentum: config.optim.momentum,
                                nesterov: config.optim.nesterov, weightDecay: config.optim.weightDecay,
                                decoupledWeightDecay: config.optim.decoupled, decayRule: rule)
        }
        switch config.optim.schedule {
        case "step": schedule = StepSchedule(base: config.optim.lr, milestones: config.optim.milestones,
                                             gamma: config.optim.gamma, warmupSteps: config.optim.warmupSteps)
        case "constant": schedule = ConstantSchedule(base: config.optim.lr, warmupSteps: config.optim.warmupSteps)
        default: schedule = CosineSchedule(base: config.optim.lr, totalSteps: totalSteps, warmupSteps: config.optim.warmupSteps)
        }
        // ⑧ gradient buckets: the loss is a sum of rank shares, so gradients are summed (scale 1).
        buckets = try GradientBuckets(parameters: parameters.map { $0.1 }, comm: comm,
                                      bucketBytes: max(1, Int(config.comm.bucketMB * 1_048_576)), scale: 1)
        if let mpi = comm as? MPICommunicator { mpi.timeoutSeconds = config.comm.timeoutS }
    }

    // MARK: - one step (SPEC §1)

    /// Runs one optimizer step on `batch` (this rank's share of global batch `step`). Returns false
    /// when the step was skipped (non-finite with `train.skip_nonfinite`).
    @discardableResult
    public func step(_ batch: Batch, stopRequested: Bool = false) throws -> (applied: Bool, stop: Bool) {
        let stepNumber = step + 1
        if let mpi = comm as? MPICommunicator { mpi.currentStep = stepNumber }
        if Runtime.injectedFailure(rank: comm.rank, step: stepNumber) {
            throw TrainError.invalid("injected failure at step \(stepNumber) (KDGRAPH_FAIL_RANK=\(comm.rank))")
        }
        timer.lap(.data)
        let V = batch.views
        let globalSamples = sampler.batchSize(step: (batch.step))
        let sampleCounts = Sampler.shareCounts(worldSize: comm.size, batch: globalSamples)
        let rowCounts = sampleCounts.map { $0 * V }

        // ③ teacher (frozen, no tape)
        let t = try teacher?(batch)
        timer.lap(.teacher)

        // ④ student on the tape
        student.train(true)
        let (feature, logits) = try student(batch.images)
        let embedding = try head.map { try $0(feature) }
        timer.lap(.studentForward)

        // ⑤ all-gather (student rows differentiable), ⑥ this rank's share of the loss
        bytesGathered = 0
        gatherSeconds = 0
        gatherCalls = 0; differentiableGatherCalls = 0
        gatheredBytesPerSample = 0; differentiableGatheredBytesPerSample = 0
        func gather(_ x: Tensor?, grad: Bool) throws -> Tensor? {
            guard let x else { return nil }
            let t0 = monotonicSeconds()
            let g = grad ? try allGatherRows(x, comm: comm, counts: rowCounts)
                         : try allGatherRowsNoGrad(x, comm: comm, counts: rowCounts)
            gatherSeconds += monotonicSeconds() - t0
            bytesGathered += (g.count - x.count) * MemoryLayout<Float>.stride
            let perSample = g.count / max(1, globalSamples) * MemoryLayout<Float>.stride
            gatherCalls += 1; gatheredBytesPerSample += perSample
            if grad { differentiableGatherCalls += 1; differentiableGatheredBytesPerSample += perSample }
            return g
        }
        var labels: [Int]? = nil
        if needsLabels {
            let t0 = monotonicSeconds()
            labels = try comm.allGatherInts(batch.labels, counts: sampleCounts)
            gatherSeconds += monotonicSeconds() - t0
            gatherCalls += 1; gatheredBytesPerSample += MemoryLayout<Int>.stride
        }
        let inputs = LossInputs(
            batchSize: globalSamples, views: V,
            shard: Sampler.share(rank: comm.rank, worldSize: comm.size, batch: globalSamples),
            studentFeatures: try gather(needsFeatures ? feature : nil, grad: true),
            studentEmbedding: try gather(needsEmbedding ? embedding : nil, grad: true),
            studentLogits: try gather(logits, grad: true),
            teacherEmbedding: try gather(t?.embedding, grad: false),
            teacherLogits: try gather(t?.logits, grad: false),
            promptTeacherLogits: try gather(t?.promptLogits, grad: false),
            proxies: teacher?.proxies, labels: labels, step: stepNumber)
        lastLossInputs = keepLossInputs ? inputs : nil
        let share = try objective.evaluate(inputs)
        if Runtime.injectedNaN(step: stepNumber) { share.value.ptr[0] = .nan }
        timer.lap(.gatherLoss)

        // ⑦ backward (⑧ overlapped: buckets start as their gradients become final)
        if config.comm.overlap {
            Tape.backward(share.value, onGradReady: buckets.onGradReady)
        } else {
            Tape.backward(share.value)
        }
        timer.lap(.backward)

        // ⑧ all-reduce of gradients (sum of the shares' gradients = the global gradient)
        if config.comm.overlap { try buckets.finish() } else { try buckets.allReduceBlocking() }
        timer.lap(.allreduce)

        // Global loss, its terms, and the stop flag in one all-reduce (identical on every rank after it).
        var values = [Double(share.value.item)] + share.terms.map { $0.value }
        values.append(stopRequested ? 1 : 0)
        try comm.allReduce(&values, op: .sum)
        lastLoss = values[0]
        lastTerms = zip(share.terms.map { $0.name }, values[1..<(values.count - 1)]).map { ($0, $1) }
        let stop = values[values.count - 1] > 0

        // Numerical guard: the summed loss and the all-reduced gradients are the same on every rank,
        // so every rank takes the same decision without another collective.
        var bad: (String, Double)? = nil
        if !lastLoss.isFinite {
            bad = lastTerms.first(where: { !$0.1.isFinite }) ?? ("loss", lastLoss)
        } else if let p = parameters.first(where: { p in p.1.grad.map { g in !(0..<g.count).allSatisfy { g.ptr[$0].isFinite } } ?? false }) {
            bad = ("gradient of \(p.0)", Double.nan)
        }
        if let (term, value) = bad {
            optimizer.zeroGrad()
            if config.train.skipNonfinite {
                log.warning("step \(stepNumber): non-finite \(term) (\(value)); step skipped (train.skip_nonfinite)")
                step += 1
                timer.lap(.optimizer)
                return (false, stop)
            }
            throw TrainError.nonFinite(step: stepNumber, term: term, value: value)
        }

        // ⑨ optimizer
        optimizer.learningRate = schedule.learningRate(at: step)
        try optimizer.step()
        optimizer.zeroGrad()
        step += 1
        timer.lap(.optimizer)
        return (true, stop)
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
            throw TrainError.desync(step: step, detail: "ranks \(differing.map(String.init).joined(separator: ", ")) differ from rank 0 (checksums \(all[0]) vs \(all[2 * differing[0]]))")
        }
    }
}
