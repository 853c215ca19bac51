import KDTensor

/// Errors of optimizers, schedules, layers, the model zoo and checkpoints.
public enum ModelError: Error, CustomStringConvertible, Equatable {
    case invalidArgument(String)
    case stateMismatch(String)
    case checkpoint(file: String, message: String)

    public var description: String {
        switch self {
        case let .invalidArgument(m): return m
        case let .stateMismatch(m): return m
        case let .checkpoint(file, m): return "checkpoint \(file): \(m)"
        }
    }
}

/// Which parameters receive weight decay.
public enum WeightDecayRule: Sendable, Equatable {
    /// Decay every parameter of rank ≥ 2 (conv and linear weights); no decay for BatchNorm weights and
    /// biases (rank ≤ 1). The usual choice for distillation recipes.
    case skipBiasAndNorm
    /// Decay every parameter (PyTorch's default when one param group holds everything).
    case all

    func decays(_ name: String, _ t: Tensor) -> Bool {
        switch self {
        case .all: return true
        case .skipBiasAndNorm: return t.rank >= 2
        }
    }
}

/// An optimizer over named parameters (the list of `Module.namedParameters()`).
///
/// `step()` updates every parameter whose `grad` is non-nil (parameters without a gradient are
/// skipped, as in PyTorch). State tensors are exposed by name for checkpoints: `"<param>.<slot>"`,
/// e.g. `layer1.0.conv1.weight.momentum_buffer` or `fc.weight.exp_avg`.
public protocol Optimizer: AnyObject {
    /// The parameters, in the order given at construction.
    var parameters: [(String, Tensor)] { get }
    /// The learning rate used by the next `step()` (a schedule sets it before each step).
    var learningRate: Double { get set }
    /// Number of `step()` calls so far.
    var stepCount: Int { get }
    /// Applies one update from the current gradients.
    func step() throws
    /// Optimizer state as named tensors (copies are not made: the tensors are live).
    func stateTensors() -> [(String, Tensor)]
    /// Restores state saved by `stateTensors()` with the `stepCount` it had. Missing or mis-shaped
    /// entries are errors naming them.
    func loadState(_ tensors: [String: Tensor], stepCount: Int) throws
}

extension Optimizer {
    /// Sets every parameter's gradient to nil (zero).
    public func zeroGrad() { for (_, p) in parameters { p.grad = nil } }

    /// Weight-decay mask for a parameter list.
    static func decayMask(_ params: [(String, Tensor)], _ rule: WeightDecayRule) -> [Bool] {
        params.map { rule.decays($0.0, $0.1) }
    }
}

/// Looks up `name` in `tensors` and checks its shape against `like`.
func restoreSlot(_ tensors: [String: Tensor], _ name: String, like: Tensor) throws -> Tensor? {
    guard let t = tensors[name] else { return nil }
    guard t.shape == like.shape else {
        throw ModelError.stateMismatch("optimizer state '\(name)': shape \(t.shape) vs parameter \(like.shape)")
    }
    return t.copy()
}
