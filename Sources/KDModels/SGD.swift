import KDTensor

/// Stochastic gradient descent with momentum, PyTorch `torch.optim.SGD` semantics.
///
/// For each parameter p with gradient g (weight decay λ, momentum μ, dampening τ, learning rate η):
///
///     coupled decay:   g ← g + λ·p                     (PyTorch `weight_decay`, L2 in the loss)
///     decoupled decay: p ← p − η·λ·p                   (applied before the update instead)
///     b ← g                    on the first step,  b ← μ·b + (1 − τ)·g afterwards
///     d ← g + μ·b (Nesterov)   or   d ← b
///     p ← p − η·d
///
/// Decay applies only where the `WeightDecayRule` says (by default not to BN weights and biases).
public final class SGD: Optimizer {
    public let parameters: [(String, Tensor)]
    public var learningRate: Double
    public let momentum: Double
    public let dampening: Double
    public let nesterov: Bool
    public let weightDecay: Double
    public let decoupledWeightDecay: Bool
    public private(set) var stepCount = 0
    let decay: [Bool]
    /// Momentum buffers, created on a parameter's first update.
    var buffers: [Tensor?]

    public init(parameters: [(String, Tensor)], learningRate: Double, momentum: Double = 0,
                dampening: Double = 0, nesterov: Bool = false, weightDecay: Double = 0,
                decoupledWeightDecay: Bool = false, decayRule: WeightDecayRule = .skipBiasAndNorm) throws {
        guard learningRate >= 0, momentum >= 0, weightDecay >= 0 else {
            throw ModelError.invalidArgument("SGD: learning rate \(learningRate), momentum \(momentum) "
                                             + "and weight decay \(weightDecay) must be ≥ 0")
        }
        if nesterov && (momentum <= 0 || dampening != 0) {
            throw ModelError.invalidArgument("SGD: Nesterov momentum needs momentum > 0 and zero dampening "
                                             + "(got \(momentum), \(dampening))")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.momentum = momentum
        self.dampening = dampening
        self.nesterov = nesterov
        self.weightDecay = weightDecay
        self.decoupledWeightDecay = decoupledWeightDecay
        self.decay = SGD.decayMask(parameters, decayRule)
        self.buffers = Array(repeating: nil, count: parameters.count)
    }

    public func step() throws {
        let lr = Float(learningRate), mu = Float(momentum), damp = Float(1 - dampening)
        for (k, (_, p)) in parameters.enumerated() {
            guard let gT = p.grad else { continue }
            let n = p.count
            let w = p.ptr, g = gT.ptr
            let wd: Float = decay[k] ? Float(weightDecay) : 0
            if decoupledWeightDecay && wd != 0 {
                let f = 1 - lr * wd
                for i in 0..<n { w[i] *= f }
            }
            let coupled: Float = decoupledWeightDecay ? 0 : wd
            if momentum == 0 {
                for i in 0..<n { w[i] -= lr * (g[i] + coupled * w[i]) }
                continue
            }
            if let bT = buffers[k] {
                let b = bT.ptr
                for i in 0..<n {
                    let gi = g[i] + coupled * w[i]
                    b[i] = mu * b[i] + damp * gi
                    w[i] -= lr * (nesterov ? gi + mu * b[i] : b[i])
                }
            } else {
                let bT = Tensor(uninitializedShape: p.shape)
                let b = bT.ptr
                for i in 0..<n {
                    let gi = g[i] + coupled * w[i]
                    b[i] = gi
                    w[i] -= lr * (nesterov ? gi + mu * gi : gi)
                }
                buffers[k] = bT
            }
        }
        stepCount += 1
    }

    public func stateTensors() -> [(String, Tensor)] {
        parameters.indices.compactMap { k in buffers[k].map { ("\(parameters[k].0).momentum_buffer", $0) } }
    }

    public func loadState(_ tensors: [String: Tensor], stepCount: Int) throws {
        var restored: [Tensor?] = []
        for (name, p) in parameters {
            let b = try restoreSlot(tensors, "\(name).momentum_buffer", like: p)
            if momentum != 0 && stepCount > 0 && b == nil {
                throw ModelError.stateMismatch("optimizer state: missing '\(name).momentum_buffer' "
                                               + "for step \(stepCount)")
            }
            restored.append(b)
        }
        buffers = restored
        self.stepCount = stepCount
    }
}
