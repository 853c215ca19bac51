import KDTensor

/// Everything one optimizer step may change, copied before the step so that a rejected step leaves no
/// trace (`train.skip_nonfinite`, docs/reliability.md): the live tensors given at construction (the
/// parameters and the module buffers: BatchNorm running mean/var and `num_batches_tracked`, which the
/// training-mode forward updates), and the optimizer's state tensors (momentum, Adam moments) and step
/// count. `capture()` copies into storage allocated once; `restore()` copies back.
public final class StepRollback {
    let live: [(String, Tensor)]
    let saved: [Tensor]
    let optimizer: Optimizer?
    var optimizerState: [String: Tensor] = [:]
    var optimizerSteps = 0
    public private(set) var isCaptured = false

    public init(tensors: [(String, Tensor)], optimizer: Optimizer?) {
        live = tensors
        saved = tensors.map { Tensor(uninitializedShape: $0.1.shape) }
        self.optimizer = optimizer
    }

    /// Copies the current values (before the step's forward).
    public func capture() {
        for ((_, t), s) in zip(live, saved) { s.assign(from: t) }
        if let optimizer {
            optimizerState = Dictionary(optimizer.stateTensors().map { ($0.0, $0.1.copy()) },
                                        uniquingKeysWith: { a, _ in a })
            optimizerSteps = optimizer.stepCount
        }
        isCaptured = true
    }

    /// Puts back the values of the last `capture()`.
    public func restore() throws {
        precondition(isCaptured, "StepRollback.restore() before capture()")
        for ((_, t), s) in zip(live, saved) { t.assign(from: s) }
        try optimizer?.loadState(optimizerState, stepCount: optimizerSteps)
    }

    /// The first tracked tensor (or optimizer state tensor) holding NaN or ±Inf, with the number of
    /// such values, or nil when all are finite.
    public func firstNonFinite() -> (name: String, count: Int)? {
        for (name, t) in live { if let n = nonFiniteCount(t) { return (name, n) } }
        for (name, t) in optimizer?.stateTensors() ?? [] {
            if let n = nonFiniteCount(t) { return ("optimizer state " + name, n) }
        }
        return nil
    }
}

/// The number of NaN/±Inf values in `t`, or nil when there are none.
public func nonFiniteCount(_ t: Tensor) -> Int? {
    var n = 0
    for i in 0..<t.count where !t.ptr[i].isFinite { n += 1 }
    return n == 0 ? nil : n
}

extension Module {
    /// The name of the first buffer (running statistic) holding NaN/±Inf, or nil.
    public func firstNonFiniteBuffer() -> String? {
        namedBuffers().first { nonFiniteCount($0.1) != nil }?.0
    }
}
