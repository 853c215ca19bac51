import KDTensor

/// How a parameter is laid out internally versus in PyTorch checkpoints.
public enum ParameterLayout: Sendable, Equatable {
    /// Same layout in KDGraph and PyTorch.
    case plain
    /// Conv weight: internal `[Cout, kh, kw, Cin]`, PyTorch `[Cout, Cin, kh, kw]`.
    case convOHWI
}

/// One entry of a module's state (PyTorch `state_dict` order: a module's own parameters, then its own
/// buffers, then its children's, depth first).
public struct StateEntry {
    public let name: String
    public let tensor: Tensor
    public let isBuffer: Bool
    public let layout: ParameterLayout
}

/// Base class of layers and models, in the style of MLX-Swift's `MLXNN.Module` and PyTorch's `nn.Module`.
///
/// A subclass lists its own parameters, buffers and children (in registration order) by overriding
/// `ownParameters`, `ownBuffers` and `children`; names are joined with dots into PyTorch-style names
/// (`layer1.0.conv1.weight`). The order of `namedParameters()` is deterministic: it is the order of
/// PyTorch's `named_parameters()` for the same architecture, and the parameter index used to key
/// initialisation (`initialize(seed:)`) and gradient buckets.
open class Module {
    /// Training mode (BatchNorm uses batch statistics and updates running ones; dropout is active).
    public private(set) var training = true

    public init() {}

    /// This module's own parameters, local names, registration order.
    open var ownParameters: [(String, Tensor)] { [] }
    /// This module's own buffers (not trained: BatchNorm running statistics).
    open var ownBuffers: [(String, Tensor)] { [] }
    /// Child modules, local names, registration order.
    open var children: [(String, Module)] { [] }

    /// Fills one of this module's own parameters from `rng` (keyed by seed and parameter index).
    open func initializeParameter(_ name: String, _ tensor: Tensor, rng: inout KDRandom) {}

    /// Layout of one of this module's own parameters in PyTorch checkpoints.
    open func layout(ofParameter name: String) -> ParameterLayout { .plain }

    /// Every module, depth first, with its dotted prefix (`""` for self).
    public final func namedModules() -> [(String, Module)] {
        var out: [(String, Module)] = []
        func walk(_ m: Module, _ prefix: String) {
            out.append((prefix, m))
            for (n, c) in m.children { walk(c, prefix.isEmpty ? n : prefix + "." + n) }
        }
        walk(self, "")
        return out
    }

    /// All parameters with dotted names, in `named_parameters()` order.
    public final func namedParameters() -> [(String, Tensor)] {
        namedModules().flatMap { (prefix, m) in
            m.ownParameters.map { (prefix.isEmpty ? $0.0 : prefix + "." + $0.0, $0.1) }
        }
    }

    /// All buffers with dotted names (`bn1.running_mean`, `bn1.running_var`, `bn1.num_batches_tracked`).
    public final func namedBuffers() -> [(String, Tensor)] {
        namedModules().flatMap { (prefix, m) in
            m.ownBuffers.map { (prefix.isEmpty ? $0.0 : prefix + "." + $0.0, $0.1) }
        }
    }

    /// Parameters and buffers in PyTorch `state_dict()` order, with their checkpoint layout.
    public final func stateEntries() -> [StateEntry] {
        var out: [StateEntry] = []
        for (prefix, m) in namedModules() {
            let p = prefix.isEmpty ? "" : prefix + "."
            for (n, t) in m.ownParameters {
                out.append(StateEntry(name: p + n, tensor: t, isBuffer: false, layout: m.layout(ofParameter: n)))
            }
            for (n, t) in m.ownBuffers {
                out.append(StateEntry(name: p + n, tensor: t, isBuffer: true, layout: .plain))
            }
        }
        return out
    }

    /// Parameters only (the list for the optimizer and gradient buckets).
    public final var parameters: [Tensor] { namedParameters().map(\.1) }

    /// Total number of trainable scalars.
    public final var parameterCount: Int { namedParameters().reduce(0) { $0 + $1.1.count } }

    /// Sets training (`true`) or evaluation (`false`) mode on this module and all descendants.
    public final func train(_ on: Bool = true) {
        for (_, m) in namedModules() { m.training = on }
    }

    /// Evaluation mode (`train(false)`).
    public final func eval() { train(false) }

    /// Initialises every parameter from `KDRandom(keys: seed, index)`, `index` being the parameter's
    /// position in `namedParameters()`, so every rank (and every run) builds identical weights.
    /// Also names each tensor with its dotted name and marks parameters as requiring gradients.
    public final func initialize(seed: UInt64) {
        var index: UInt64 = 0
        for (prefix, m) in namedModules() {
            let p = prefix.isEmpty ? "" : prefix + "."
            for (n, t) in m.ownParameters {
                var rng = KDRandom(keys: seed, index)
                m.initializeParameter(n, t, rng: &rng)
                t.name = p + n
                t.requiresGrad = true
                index += 1
            }
            for (n, t) in m.ownBuffers { t.name = p + n }
        }
    }

    /// Marks every parameter as trainable (`true`) or frozen (`false`, e.g. a teacher): frozen
    /// parameters record no tape nodes and receive no gradient.
    public final func setRequiresGrad(_ on: Bool) {
        for (_, t) in namedParameters() { t.requiresGrad = on; if !on { t.grad = nil } }
    }

    /// Sets every parameter's gradient to nil.
    public final func zeroGrad() { for (_, t) in namedParameters() { t.grad = nil } }
}

/// A module with one input and one output tensor (the element type of `Sequential`).
public protocol UnaryLayer: Module {
    func callAsFunction(_ x: Tensor) throws -> Tensor
}

/// Layers applied in order; children are named `0`, `1`, … as in PyTorch `nn.Sequential`.
public final class Sequential: Module, UnaryLayer {
    public let layers: [any UnaryLayer]
    public init(_ layers: [any UnaryLayer]) { self.layers = layers }
    public override var children: [(String, Module)] { layers.enumerated().map { (String($0.offset), $0.element) } }
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var h = x
        for l in layers { h = try l(h) }
        return h
    }
}
