import Foundation

/// The recording switch: the teacher runs with recording off (`withNoGrad`). Per thread, like the
/// tape (see `Tape.current`).
public enum GradMode {
    public static var isEnabled: Bool {
        @inline(__always) get { AutodiffState.current.pointee.gradEnabled }
        @inline(__always) set { AutodiffState.current.pointee.gradEnabled = newValue }
    }
}

/// Runs `body` with recording off: no tape nodes, outputs do not require grad.
@discardableResult
public func withNoGrad<T>(_ body: () throws -> T) rethrows -> T {
    let state = AutodiffState.current
    let saved = state.pointee.gradEnabled
    state.pointee.gradEnabled = false
    defer { state.pointee.gradEnabled = saved }
    return try body()
}

/// The autodiff state of one thread: the recording switch and the tape.
///
/// A rank of the product is one process whose training thread is the only one that records, so one
/// global tape would do; the in-process test world (`KDTestSupport.InProcessWorld`) runs several
/// ranks as threads of one process, each of which must record and back-propagate on its own tape.
/// The state is a plain struct behind a pthread key: reading the switch is one `pthread_getspecific`
/// and a load (no reference counting, no exclusivity check), against the µs of the smallest op. It is
/// created on a thread's first use and freed when the thread exits.
struct AutodiffState {
    var gradEnabled = true
    /// `SampleBlocks.rowsPerBlock` (0: off).
    var rowsPerBlock = 0
    /// `SampleBlocks.placing`: the first block of the running batch and the blocks of the partial (0: off).
    var firstBlock = 0, placedBlocks = 0
    /// The loss block whose ops are being recorded (`LossBlocks.recording`), −1 for none.
    var recordingBlock = -1
    /// The loss block of the node whose backward is running, −1 for none.
    var backwardBlock = -1
    let tape = Tape()

    static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { p in
            guard let state = p?.assumingMemoryBound(to: AutodiffState.self) else { return }
            state.deinitialize(count: 1)
            state.deallocate()
        }
        precondition(rc == 0, "pthread_key_create failed (\(rc))")
        return key
    }()

    /// The calling thread's state.
    static var current: UnsafeMutablePointer<AutodiffState> {
        @inline(__always) get {
            if let p = pthread_getspecific(key) { return p.assumingMemoryBound(to: AutodiffState.self) }
            return makeCurrent()
        }
    }

    @inline(never)
    static func makeCurrent() -> UnsafeMutablePointer<AutodiffState> {
        let state = UnsafeMutablePointer<AutodiffState>.allocate(capacity: 1)
        state.initialize(to: AutodiffState())
        pthread_setspecific(key, state)
        return state
    }
}

/// The reverse-mode tape (a Wengert list), one per thread (`Tape.current`).
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
        /// The loss block it was recorded for (`LossBlocks`), −1 for none.
        let block: Int
    }

    /// The calling thread's tape (each thread records on its own; see `AutodiffState`).
    public static var current: Tape { AutodiffState.current.pointee.tape }
    var nodes: [Node] = []
    /// Distinct across tapes (each starts at its own multiple of 2⁴⁰), so a leaf's `tapeGeneration`
    /// written by one thread's tape never matches another's.
    var generation: Int

    nonisolated(unsafe) private static var tapesMade = 0
    private static let tapesLock = NSLock()

    init() {
        Tape.tapesLock.lock()
        generation = Tape.tapesMade << 40
        Tape.tapesMade += 1
        Tape.tapesLock.unlock()
    }

    public var nodeCount: Int { nodes.count }

    /// Records `backward` for `output` when any input requires grad and recording is on.
    /// `backward` receives the gradient of `output` and must accumulate into the inputs that require it.
    @inline(__always)
    public static func record(_ name: String, inputs: [Tensor], output: Tensor,
                              backward: @escaping (_ gradOutput: Tensor) -> Void) {
        let state = AutodiffState.current
        guard state.pointee.gradEnabled else { return }
        var any = false
        for t in inputs where t.requiresGrad { any = true; break }
        guard any else { return }
        state.pointee.tape.append(name: name, inputs: inputs, output: output, block: state.pointee.recordingBlock,
                                  backward: backward)
    }

    func append(name: String, inputs: [Tensor], output: Tensor, block: Int,
                backward: @escaping (Tensor) -> Void) {
        output.requiresGrad = true
        output.isLeaf = false
        var firsts: [Tensor] = []
        for t in inputs where t.isLeaf && t.requiresGrad && t.tapeGeneration != generation {
            t.tapeGeneration = generation
            firsts.append(t)
        }
        nodes.append(Node(name: name, output: output, backward: backward, leavesFirstUsed: firsts, block: block))
    }

    /// Back-propagates from `root`. With no `seed`, `root` must hold one element and its gradient is 1.
    /// `onGradReady` is called once for each leaf whose gradient is final, in the order they become final.
    public static func backward(_ root: Tensor, seed: Tensor? = nil,
                                onGradReady: ((Tensor) -> Void)? = nil) {
        current.runBackward(root, seed: seed, onGradReady: onGradReady)
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
        let state = AutodiffState.current
        defer { state.pointee.backwardBlock = -1 }
        for k in stride(from: nodes.count - 1, through: 0, by: -1) {
            let node = nodes[k]
            if let g = node.output.grad {
                state.pointee.backwardBlock = node.block
                node.backward(g)
                node.output.grad = nil     // intermediate gradient no longer needed
            }
            if let onGradReady { for leaf in node.leavesFirstUsed { onGradReady(leaf) } }
        }
    }

    /// Drops every recorded node (and with them the activations they hold).
    public static func reset() { current.clear() }

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
