/// Errors raised by tensor ops. Shape errors name the op and both shapes.
public enum TensorError: Error, CustomStringConvertible, Equatable {
    case shapeMismatch(op: String, lhs: [Int], rhs: [Int])
    case invalidArgument(op: String, message: String)

    public var description: String {
        switch self {
        case let .shapeMismatch(op, lhs, rhs):
            return "\(op): shape mismatch between \(lhs) and \(rhs)"
        case let .invalidArgument(op, message):
            return "\(op): \(message)"
        }
    }
}

/// A dense, contiguous, row-major Float32 tensor.
///
/// Images are NHWC (see docs/tensors.md: im2col rows are contiguous channel runs, and one GEMM covers
/// the whole batch). A tensor that `requiresGrad` and was produced by an op while `GradMode.isEnabled`
/// has a node on the `Tape`; `Tape.backward(loss)` fills `grad` of every leaf that requires it.
public final class Tensor: @unchecked Sendable {
    public let shape: [Int]
    public let count: Int
    public let storage: Storage
    /// Whether gradients flow to (leaf) or through (op output) this tensor.
    public var requiresGrad: Bool
    /// True for tensors not produced by a recorded op (parameters, inputs).
    public internal(set) var isLeaf = true
    /// The accumulated gradient, same shape. `nil` means zero.
    public var grad: Tensor?
    /// With `SampleBlocks` on, the per-block partials of a parameter's gradient, `[blocks, count]`
    /// (`accumulateRowSum`); the trainer sums them into `grad` exactly.
    public var blockGrad: Tensor?
    /// Loss blocks whose gradients this tensor keeps apart in `lossBlockGrad` (`LossBlocks`); 0: one `grad`.
    public var lossBlocks = 0
    /// For a tensor that keeps its loss blocks apart (`lossBlocks > 0`), the partial of each loss block,
    /// row by row (`LossBlockPartials`).
    public var lossBlockGrad: LossBlockPartials?
    /// A name for error messages and checkpoints (parameters carry their PyTorch-style name).
    public var name: String = ""
    /// Tape bookkeeping: the generation and node index of this leaf's first use.
    var tapeGeneration = -1

    @inline(__always) public var ptr: UnsafeMutablePointer<Float> { storage.ptr }
    public var rank: Int { shape.count }

    /// Uninitialised tensor (contents undefined); ops overwrite every element.
    public init(uninitializedShape shape: [Int], requiresGrad: Bool = false) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        self.storage = Storage(count: count)
        self.requiresGrad = requiresGrad
    }

    /// A view with a new shape on the same storage (no copy).
    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        self.shape = shape
        self.count = shape.reduce(1, *)
        precondition(count <= storage.count, "view of \(shape) exceeds storage of \(storage.count)")
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    public convenience init(shape: [Int], repeating value: Float, requiresGrad: Bool = false) {
        self.init(uninitializedShape: shape, requiresGrad: requiresGrad)
        ptr.initialize(repeating: value, count: count)
    }

    public convenience init(shape: [Int], data: [Float], requiresGrad: Bool = false) {
        precondition(data.count == shape.reduce(1, *),
                     "Tensor(shape: \(shape)) needs \(shape.reduce(1, *)) values, got \(data.count)")
        self.init(uninitializedShape: shape, requiresGrad: requiresGrad)
        data.withUnsafeBufferPointer { ptr.update(from: $0.baseAddress!, count: count) }
    }

    public convenience init(shape: [Int], data: UnsafeBufferPointer<Float>, requiresGrad: Bool = false) {
        precondition(data.count == shape.reduce(1, *))
        self.init(uninitializedShape: shape, requiresGrad: requiresGrad)
        if count > 0 { ptr.update(from: data.baseAddress!, count: count) }
    }

    public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
        Tensor(shape: shape, repeating: 0, requiresGrad: requiresGrad)
    }

    public static func scalar(_ v: Float) -> Tensor { Tensor(shape: [], data: [v]) }

    /// Normal(0, std²) values from a keyed stream.
    public static func randn(_ shape: [Int], std: Float = 1, rng: inout KDRandom,
                             requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape, requiresGrad: requiresGrad)
        for i in 0..<t.count { t.ptr[i] = rng.nextNormal() * std }
        return t
    }

    /// Uniform values in [lo, hi).
    public static func uniform(_ shape: [Int], _ lo: Float, _ hi: Float, rng: inout KDRandom,
                               requiresGrad: Bool = false) -> Tensor {
        let t = Tensor(uninitializedShape: shape, requiresGrad: requiresGrad)
        for i in 0..<t.count { t.ptr[i] = lo + (hi - lo) * rng.nextFloat() }
        return t
    }

    /// Copies the values out.
    public var array: [Float] { Array(UnsafeBufferPointer(start: ptr, count: count)) }
    /// The single value of a one-element tensor.
    public var item: Float { precondition(count == 1, "item of tensor with shape \(shape)"); return ptr[0] }

    public subscript(flat i: Int) -> Float {
        get { ptr[i] }
        set { ptr[i] = newValue }
    }

    /// A detached copy (no tape history, own storage).
    public func copy() -> Tensor {
        let t = Tensor(uninitializedShape: shape)
        t.ptr.update(from: ptr, count: count)
        return t
    }

    /// The same storage, cut from the tape (no gradient flows through it).
    public func detached() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// Overwrites the values from another tensor of the same element count.
    public func assign(from other: Tensor) {
        precondition(other.count == count, "assign: \(other.shape) into \(shape)")
        ptr.update(from: other.ptr, count: count)
    }

    public func fill(_ v: Float) { ptr.update(repeating: v, count: count) }

    /// Gradient buffer for accumulation: allocates it on first use. `fresh` is true when the buffer was
    /// just created and holds garbage, so the caller must overwrite (e.g. sgemm beta = 0) not add.
    /// A tensor that keeps its loss blocks apart returns the running node's block partial.
    @inline(__always)
    public func gradBuffer() -> (ptr: UnsafeMutablePointer<Float>, fresh: Bool) {
        if lossBlocks > 0, let block = LossBlocks.backwardBlock { return (lossBlockPartials.dense(block), false) }
        if let g = grad { return (g.ptr, false) }
        let g = Tensor(uninitializedShape: shape)
        grad = g
        return (g.ptr, true)
    }

    /// grad += src (elementwise, `count` values).
    public func accumulateGrad(_ src: UnsafePointer<Float>) {
        let (g, fresh) = gradBuffer()
        if fresh { g.update(from: src, count: count) } else { for i in 0..<count { g[i] += src[i] } }
    }

    /// grad += scale · src.
    public func accumulateGrad(_ src: UnsafePointer<Float>, scale: Float) {
        let (g, fresh) = gradBuffer()
        if fresh { for i in 0..<count { g[i] = scale * src[i] } } else { for i in 0..<count { g[i] += scale * src[i] } }
    }

    /// Sets `grad` to nil (= zero).
    public func zeroGrad() { grad = nil; blockGrad = nil; lossBlockGrad = nil }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let vals = (0..<Swift.min(count, 8)).map { String(ptr[$0]) }.joined(separator: ", ")
        return "Tensor(\(name.isEmpty ? "" : name + ", ")shape: \(shape), [\(vals)\(count > 8 ? ", …" : "")])"
    }
}

/// Throws a shape error unless `a == b`.
@inline(__always)
public func checkSameShape(_ op: String, _ a: Tensor, _ b: Tensor) throws {
    if a.shape != b.shape { throw TensorError.shapeMismatch(op: op, lhs: a.shape, rhs: b.shape) }
}
