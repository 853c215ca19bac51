import KDData
import KDLosses
import KDModels
import KDTensor

/// The student's outputs on this rank's batch (stage ④): rows `sample·V + view`.
struct StudentOutput {
    var features: Tensor
    var logits: Tensor
    /// The projection head's output (nil without a head).
    var embedding: Tensor?
}

/// What a step's passes leave for the rest of the step: this rank's loss share (its gradients are in
/// the parameters), the teacher's outputs (the non-finite guard looks for the cause in them) and the
/// ledger of the all-gathers.
struct StepPass {
    var share: LossShare
    var teacher: TeacherSide.Output?
    var gathers: GatherLedger
}

/// The stages a pass schedule puts in order (the trainer's, TrainerStages.swift).
protocol StepStages {
    /// ③ The frozen teacher on the batch (nil in supervised mode).
    func teacherOutputs(_ batch: Batch) throws -> TeacherSide.Output?
    /// ④ The student (and projection head) on the tape.
    func studentForward(_ batch: Batch) throws -> StudentOutput
    /// ⑤ The rows the objective reads, gathered from every rank, and the ledger of the gathers.
    func gatherLossInputs(_ batch: Batch, student: StudentOutput, teacher: TeacherSide.Output?,
                step: Int) throws -> (LossInputs, GatherLedger)
    /// ⑥ This rank's share of the loss.
    func lossShare(_ inputs: LossInputs) throws -> LossShare
    /// ⑦ Backward from the share (the gradient synchronisation's hook sees each final gradient).
    func backward(_ share: LossShare)

    /// What the student's block BatchNorm layers do with their running statistics from now on.
    func setRunningStatistics(_ mode: BatchNorm2d.RunningMode)
    /// Applies the running statistics collected since `.collect` was set (collective: one reduction).
    func commitRunningStatistics() throws

    // Graph accumulation (`MicroBatchSchedule`):
    /// The parameters whose gradients the step computes.
    var trainedParameters: [Tensor] { get }
    /// Backward from the student's outputs `out`, seeded with `gradients` (rows of the loss's gradient) in
    /// the order the gathers deliver them; the synchronisation's hook only on the `last` chunk's.
    func backward(seeding out: StudentOutput, with gradients: StudentOutputGradients, last: Bool)
}

/// How a step turns its batch into this rank's loss share and gradients (stages ③–⑦), chosen once when
/// the trainer is built: `OnePassSchedule`, or `MicroBatchSchedule` (graph accumulation,
/// `train.micro_batch`, GraphAccumulation.swift).
protocol PassSchedule {
    /// Runs the stages on `batch` (optimizer step `step`), charging each phase to `timer`.
    func run(_ batch: Batch, step: Int, stages: StepStages, timer: inout PhaseTimer) throws -> StepPass
}

/// One pass over the batch: teacher, student forward, gather, objective, backward.
struct OnePassSchedule: PassSchedule {
    /// Block BatchNorm (`student.batch_norm: block`): the forward collects its layers' running-statistics
    /// partials, and they are reduced once after it for all layers (one collective per step, not one per
    /// layer inside the forward; the same bits).
    var commitsRunningStatisticsOnce = false

    func run(_ batch: Batch, step: Int, stages: StepStages, timer: inout PhaseTimer) throws -> StepPass {
        let teacher = try stages.teacherOutputs(batch)
        timer.lap(.teacher)
        if commitsRunningStatisticsOnce { stages.setRunningStatistics(.collect) }
        defer { if commitsRunningStatisticsOnce { stages.setRunningStatistics(.now) } }
        let student = try stages.studentForward(batch)
        if commitsRunningStatisticsOnce { try stages.commitRunningStatistics() }
        timer.lap(.studentForward)
        let (inputs, gathers) = try stages.gatherLossInputs(batch, student: student, teacher: teacher, step: step)
        let share = try stages.lossShare(inputs)
        timer.lap(.gatherLoss)
        stages.backward(share)
        timer.lap(.backward)
        return StepPass(share: share, teacher: teacher, gathers: gathers)
    }
}
