import KDLosses

/// Watches the trainer's steps from outside them (the bench, the loss projection of the scaling report,
/// tests), attached with `Trainer.observers`: the training library keeps nothing on their behalf. Both
/// calls are made on every rank; an observer implements the ones it needs.
public protocol StepObserver: AnyObject {
    /// The loss inputs of optimizer step `step`, gathered, just before the objective reads them.
    func lossInputsGathered(_ inputs: LossInputs, step: Int)
    /// The record of a finished step: losses, phase timings, the gather ledger, bytes all-reduced.
    func stepFinished(_ record: StepRecord)
}

extension StepObserver {
    /// Ignores the loss inputs.
    public func lossInputsGathered(_ inputs: LossInputs, step: Int) {}
    /// Ignores the record.
    public func stepFinished(_ record: StepRecord) {}
}
