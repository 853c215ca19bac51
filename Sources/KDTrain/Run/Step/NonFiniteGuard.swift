import KDComm
import KDCore
import KDData
import KDModels
import KDTensor
import Logging

/// A non-finite value the guard found in a step, and where it came from.
struct NonFiniteFault {
    /// The value's name and value, as the error names them (a loss term, `gradient of x`, a statistic).
    var term: String
    var value: Double
    /// What was non-finite, as the skip warning says it.
    var what: String
    var cause: NonFiniteCause
    /// Found after the optimizer's update (the inputs and gradients were finite).
    var afterUpdate = false
}

/// The numerical guard of the step (docs/reliability.md): a non-finite loss, loss term, gradient or
/// running statistic stops the run with advice (`TrainError.nonFinite`), or with `train.skip_nonfinite`
/// skips the step — parameters, buffers and optimizer state put back as they were before its forward —
/// as it does an update that made a value non-finite. The values it inspects are the same on every rank
/// (all-reduced), so every rank takes the same decision.
final class NonFiniteGuard {
    let comm: Communicator
    /// Student (and head) parameters: their gradients are inspected.
    let parameters: [(String, Tensor)]
    let student: any Classifier
    /// What the cause names for a bad batch and a bad teacher.
    let dataName: String, teacherName: String?
    /// The state a skipped step puts back: nil unless `train.skip_nonfinite` (then the step stops instead).
    let rollback: StepRollback?
    /// Non-finite steps in a row (skipping cannot help a value that persists: the warning says so).
    private(set) var consecutive = 0
    let log = Runtime.logger

    init(config: KDConfig, dataName: String, parameters: [(String, Tensor)], student: any Classifier,
         optimizer: Optimizer, comm: Communicator) {
        self.comm = comm; self.parameters = parameters; self.student = student; self.dataName = dataName
        teacherName = config.mode == .supervised ? nil : config.teacher.kind == .embeddings
            ? "teacher.embeddings \(config.teacher.embeddings)" : "teacher.checkpoint \(config.teacher.checkpoint)"
        rollback = config.train.skipNonfinite
            ? StepRollback(tensors: parameters + student.namedBuffers(), optimizer: optimizer) : nil
    }

    /// Keeps what a skipped step puts back; called before the student's forward (it updates BatchNorm's
    /// running statistics).
    func capture() { rollback?.capture() }

    /// This rank's running-statistics flag (1: a buffer is non-finite), all-reduced with the loss: without
    /// SyncBN the statistics are per rank.
    func localBufferFlag() -> Double { student.firstNonFiniteBuffer() == nil ? 0 : 1 }

    /// The first non-finite value among the step's global loss, its terms, the gradients and (when any
    /// rank flagged one) the running statistics, with its cause, or nil. Collective when it finds one.
    func inspect(_ record: StepRecord, nonFiniteBuffers: Bool, batch: Batch,
                 teacher: TeacherSide.Output?) throws -> NonFiniteFault? {
        var found: (String, Double)?
        if !record.loss.isFinite {
            let term = record.terms.first { !$0.value.isFinite }
            found = term.map { ($0.name, $0.value) } ?? ("loss", record.loss)
        } else if let p = parameters.first(where: { $0.1.grad.map { !Self.finite($0) } ?? false }) {
            found = ("gradient of \(p.0)", .nan)
        } else if nonFiniteBuffers {
            found = ("running statistic \(student.firstNonFiniteBuffer() ?? "on another rank")", .nan)
        }
        guard let (term, value) = found else { return nil }
        return NonFiniteFault(term: term, value: value, what: "non-finite \(term) (\(value))",
                              cause: try cause(batch: batch, teacher: teacher))
    }

    /// After the optimizer: a value the update made non-finite (an overflowing learning rate), in both
    /// modes: skipping scans everything it would put back; otherwise the parameters (identical on every
    /// rank after the all-reduced gradients, so every rank takes the same decision), and the run stops at
    /// this step with the guard's advice instead of training on Inf and failing in the checkpoint writer.
    func inspectUpdate() -> NonFiniteFault? {
        let hit = rollback.map { $0.firstNonFinite() }
            ?? parameters.lazy.compactMap { p in nonFiniteCount(p.1).map { (name: p.0, count: $0) } }.first
        guard let (name, n) = hit else { return nil }
        return NonFiniteFault(term: name, value: .nan, what: "the update made \(n) value(s) of \(name) non-finite",
                              cause: .training, afterUpdate: true)
    }

    /// Settles step `step` after `fault`: nil counts a good step and returns true (applied); a fault
    /// throws `TrainError.nonFinite`, or when skipping puts the captured state back (the one rollback
    /// path), warns and returns false.
    func settle(_ fault: NonFiniteFault?, step: Int) throws -> Bool {
        guard let fault else { consecutive = 0; return true }
        consecutive += 1
        let advice = fault.cause.advice(skipping: rollback != nil, consecutive: consecutive)
        guard let rollback else {
            if fault.afterUpdate { throw TrainError.nonFiniteUpdate(step: step, what: fault.what, advice: advice) }
            throw TrainError.nonFinite(step: step, term: fault.term, value: fault.value, advice: advice)
        }
        try rollback.restore()
        let because = fault.cause == .training && consecutive == 1 ? "" : ": \(advice)"
        log.warning("step \(step): \(fault.what); step skipped (train.skip_nonfinite)\(because)")
        return false
    }

    /// Where a non-finite value came from (the batch, the teacher, or the student's step): scanned only
    /// once the guard fired, so good steps pay nothing. Every rank is here (the decision is global), and
    /// one all-reduce of the two flags gives every rank the same cause, even when only one rank's batch
    /// or teacher output is bad.
    func cause(batch: Batch, teacher t: TeacherSide.Output?) throws -> NonFiniteCause {
        let teacherFinite = t.map { [$0.embedding, $0.logits].allSatisfy(Self.finite) } ?? true
        var flags = [Self.finite(batch.images) ? 0.0 : 1, teacherFinite ? 0 : 1]
        try comm.allReduce(&flags, op: .sum)
        if flags[0] > 0 { return .data(dataName) }
        if flags[1] > 0, let teacherName { return .teacher(teacherName) }
        return .training
    }

    /// Whether every value of `x` is finite (true for none).
    static func finite(_ x: Tensor?) -> Bool { x.map { x in (0..<x.count).allSatisfy { x.ptr[$0].isFinite } } ?? true }
}
