import KDTensor

/// `y = max(x, 0)` elementwise (PyTorch `nn.ReLU`; no parameters).
public final class ReLU: Module, UnaryLayer {
    public override init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor { relu(x) }
}

/// Flattens `[N, d1, d2, …]` to `[N, d1·d2·…]` (NHWC order: channels fastest).
public final class Flatten: Module, UnaryLayer {
    public override init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard x.rank >= 1 else {
            throw TensorError.invalidArgument(op: "Flatten", message: "needs a batch axis, got shape \(x.shape)")
        }
        return try reshape(x, [x.shape[0], x.shape.dropFirst().reduce(1, *)])
    }
}
