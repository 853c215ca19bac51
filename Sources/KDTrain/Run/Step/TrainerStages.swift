import KDComm
import KDCore
import KDData
import KDLosses
import KDModels
import KDTensor

/// The trainer's stages ③–⑦, put in order by its pass schedule, and the one all-reduce that ends them.
extension Trainer: StepStages {
    /// The teacher's outputs for `batch`; nil without a teacher, or when no term reads them (`loss: [{kind: ce}]`
    /// in a distillation config: the teacher would run every step for nothing).
    func teacherOutputs(_ batch: Batch) throws -> TeacherSide.Output? {
        guard !needs.isDisjoint(with: .teacherOutputs) else { return nil }
        return try teacher?(batch)
    }

    func studentForward(_ batch: Batch) throws -> StudentOutput {
        student.train(true)
        let (features, logits) = try student(batch.images)
        return StudentOutput(features: features, logits: logits, embedding: try head.map { try $0(features) })
    }

    /// All-gathers what the objective reads (student rows differentiable; how their backward reduces
    /// follows the gradient synchronisation's loss sharing), tells the observers, and counts the gathers:
    /// calls, bytes, and the time spent inside them.
    func gatherLossInputs(_ batch: Batch, student s: StudentOutput, teacher t: TeacherSide.Output?,
                step: Int) throws -> (LossInputs, GatherLedger) {
        let plan = batch.plan, sharing = gradientSync.lossSharing
        var ledger = GatherLedger()
        let rowCounts = plan.rowCounts(views: batch.views)
        func gather(_ x: Tensor?, _ need: LossNeeds, grad: Bool) throws -> Tensor? {
            guard let x, needs.contains(need) else { return nil }
            let t0 = monotonicSeconds()
            let g = grad ? try allGatherRows(x, comm: comm, counts: rowCounts, blocks: sharing.gatherBlocks(plan))
                         : try allGatherRowsNoGrad(x, comm: comm, counts: rowCounts)
            ledger.seconds += monotonicSeconds() - t0
            let perSample = g.count / max(1, plan.globalSamples) * MemoryLayout<Float>.stride
            ledger.calls += 1
            ledger.bytesReceived += (g.count - x.count) * MemoryLayout<Float>.stride
            ledger.bytesPerSample += perSample
            if grad { ledger.differentiableCalls += 1; ledger.differentiableBytesPerSample += perSample }
            return g
        }
        var labels: [Int]? = nil
        if needs.contains(.labels) {
            let t0 = monotonicSeconds()
            labels = try comm.allGatherInts(batch.labels, counts: plan.counts)
            ledger.seconds += monotonicSeconds() - t0
            ledger.calls += 1; ledger.bytesPerSample += MemoryLayout<Int>.stride
        }
        let inputs = LossInputs(
            plan: plan, views: batch.views,
            studentFeatures: try gather(s.features, .studentFeatures, grad: true),
            studentEmbedding: try gather(s.embedding, .studentEmbedding, grad: true),
            studentLogits: try gather(s.logits, .studentLogits, grad: true),
            teacherEmbedding: try gather(t?.embedding, .teacherEmbedding, grad: false),
            teacherLogits: try gather(t?.logits, .teacherLogits, grad: false),
            proxies: teacher?.proxies, labels: labels, step: step, comm: comm, exact: sharing == .exactBlocks)
        for o in observers { o.lossInputsGathered(inputs, step: step) }
        return (inputs, ledger)
    }

    func lossShare(_ inputs: LossInputs) throws -> LossShare { try objective.evaluate(inputs) }

    func backward(_ share: LossShare) { Tape.backward(share.value, onGradReady: gradientSync.onGradReady) }

    func setRunningStatistics(_ mode: BatchNorm2d.RunningMode) {
        student.setBatchNormRunningMode(mode)
        head?.setBatchNormRunningMode(mode)
    }

    func commitRunningStatistics() throws {
        try BatchNorm2d.commitRunningStatistics(of: student.batchNormLayers + (head?.batchNormLayers ?? []))
    }

    var trainedParameters: [Tensor] { parameters.map { $0.1 } }

    /// One node recorded after the forward hands each output its gradient rows; run first in backward, it
    /// does what the gathers' backward does in one pass (each output's gradient is set before the head's
    /// and the classifier's contributions are added to the features'), so the sums keep their order.
    func backward(seeding out: StudentOutput, with g: StudentOutputGradients, last: Bool) {
        let pairs = [(out.features, g.features), (out.embedding, g.embedding), (out.logits, g.logits)]
            .compactMap { o, s in o.flatMap { o in s.map { (o, $0) } } }
        guard !pairs.isEmpty else { return }
        let root = Tensor.zeros([1])
        Tape.record("graphAccumulationSeed", inputs: pairs.map(\.0), output: root) { _ in
            for (o, s) in pairs where o.requiresGrad { o.accumulateGrad(s.ptr) }
        }
        Tape.backward(root, onGradReady: last ? gradientSync.onGradReady : nil)
    }

    /// The step's record from one all-reduce (identical on every rank after it): the global loss and its
    /// terms (the sums of the ranks' shares; exact sums of the blocks' values with `.exactBlocks`), whether
    /// some rank asked to stop, and whether some rank's running statistics went non-finite (the guard's flag).
    func agree(_ pass: StepPass, plan: BatchPlan, step: Int,
               stopRequested: Bool) throws -> (record: StepRecord, nonFiniteBuffers: Bool) {
        let share = pass.share
        var values = [Double(share.value.item)] + share.terms.map { $0.value }
        values.append(stopRequested ? 1 : 0)
        values.append(nonFiniteGuard.localBufferFlag())
        if gradientSync.lossSharing == .exactBlocks {
            var flags = Array(values.suffix(2))
            try comm.allReduce(&flags, op: .sum)
            values = try ExactSum.sums(share.blockValues, count: values.count - 2, globalBlocks: plan.blocks,
                                       comm: comm) + flags
        } else {
            try comm.allReduce(&values, op: .sum)
        }
        let nonFiniteBuffers = values.removeLast() > 0
        let terms = zip(share.terms.map { $0.name }, values[1..<(values.count - 1)]).map { (name: $0, value: $1) }
        let record = StepRecord(step: step, plan: plan, applied: true, stop: values[values.count - 1] > 0,
                                loss: values[0], terms: terms, phases: [:], gathers: pass.gathers,
                                bytesAllReduced: gradientSync.bytesPerStep)
        return (record, nonFiniteBuffers)
    }
}
