/// Global switch for recording: the teacher runs with recording off (`withNoGrad`).
public enum GradMode {
    public nonisolated(unsafe) static var isEnabled = true
}

/// Runs `body` with recording off: no tape nodes, outputs do not require grad.
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let saved = GradMode.isEnabled
    GradMode.isEnabled = false
    defer { GradMode.isEnabled = saved }
    return try body()
}

/// The reverse-mode tape (a Wengert list).
///
/// Every op, forward written beside backward, ends with `Tape.record(...)`: if recording is on and an
/// input requires grad, the op's backward closure is appended. `Tape.backward(loss)` runs the closures
/// in reverse order; each reads its output's gradient and accumulates into its inputs' `grad`.
/// Intermediate gradients are dropped as soon as their node has run. Parameter (leaf) gradients are
/// final after the node of their *first* forward use has run, which is when `onGradReady` fires:
/// gradient buckets start their all-reduce from there.
public final class Tape {
    struct Node {
        let name: String
        let output: Tensor
        let backward: (Tensor) -> Void
        /// Leaves first used by this node: their gradients are final once it has run.
        var leavesFirstUsed: [Tensor]
    }

    public nonisolated(unsafe) static let shared = Tape()
    var nodes: [Node] = []
    var generation = 0

    public var nodeCount: Int { nodes.count }

    /// Records `backward` for `output` when any input requires grad and recording is on.
    /// `backward` receives the gradient of `output` and must accumulate into the inputs that require it.
    @inline(__always)
    public static func record(_ name: String, inputs: [Tensor], output: Tensor,
                              backward: @escaping (_ gradOutput: Tensor) -> Void) {
        guard GradMode.isEnabled else { return }
        var any = false
        for t in inputs where t.requiresGrad { any = true; break }
        guard any else { return }
        shared.append(name: name, inputs: inputs, output: output, backward: backward)
    }

    func append(name: String, inputs: [Tensor], output: Tensor, backward: @escaping (Tensor) -> Void) {
        output.requiresGrad = true
        output.isLeaf = false
        var firsts: [Tensor] = []
        for t in inputs where t.isLeaf && t.requiresGrad && t.tapeGeneration != generation {
            t.tapeGeneration = generation
            firsts.append(t)
        }
        nodes.append(Node(name: name, output: output, backward: backward, leavesFirstUsed: firsts))
    }

    /// Back-propagates from `root`. With no `seed`, `root` must hold one element and its gradient is 1.
    /// `onGradReady` is called once for each leaf whose gradient is final, in the order they become final.
    public static func backward(_ root: Tensor, seed: Tensor? = nil,
                                onGradReady: ((Tensor) -> Void)? = nil) {
        shared.runBackward(root, seed: seed, onGradReady: onGradReady)
    }

    func runBackward(_ root: Tensor, seed: Tensor?, onGradReady: ((Tensor) -> Void)?) {
        defer { clear() }
        if let seed {
            precondition(seed.count == root.count, "backward seed \(seed.shape) for output \(root.shape)")
            root.accumulateGrad(seed.ptr)
        } else {
            precondition(root.count == 1, "backward() needs a scalar, got shape \(root.shape)")
            root.accumulateGrad([Float(1)])
        }
        if root.isLeaf { if root.requiresGrad { onGradReady?(root) }; return }
        for k in stride(from: nodes.count - 1, through: 0, by: -1) {
            let node = nodes[k]
            if let g = node.output.grad {
                node.backward(g)
                node.output.grad = nil     // intermediate gradient no longer needed
            }
            if let onGradReady { for leaf in node.leavesFirstUsed { onGradReady(leaf) } }
        }
    }

    /// Drops every recorded node (and with them the activations they hold).
    public static func reset() { shared.clear() }

    func clear() {
        nodes.removeAll(keepingCapacity: true)
        generation += 1
    }
}

extension Tensor {
    /// Back-propagates from this scalar (see `Tape.backward`).
    public func backward(onGradReady: ((Tensor) -> Void)? = nil) {
        Tape.backward(self, onGradReady: onGradReady)
    }
}
