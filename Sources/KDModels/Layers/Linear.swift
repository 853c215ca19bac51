import KDTensor

/// Fully connected layer `y = x·Wᵀ + b`, weight `[out, in]` as PyTorch `nn.Linear`.
///
/// Initialisation as PyTorch's default: W, b ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5);
/// with `zeroBias` the bias starts at 0 (RepDistiller's WRN).
public final class Linear: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let inFeatures: Int, outFeatures: Int
    let zeroBias: Bool

    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, zeroBias: Bool = false) {
        self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.zeroBias = zeroBias
        weight = Tensor.zeros([outFeatures, inFeatures], requiresGrad: true)
        self.bias = bias ? Tensor.zeros([outFeatures], requiresGrad: true) : nil
    }

    public override var ownParameters: [(String, Tensor)] {
        bias.map { [("weight", weight), ("bias", $0)] } ?? [("weight", weight)]
    }

    public override func initializeParameter(_ name: String, _ t: Tensor, rng: inout KDRandom) {
        let bound = Float(1 / Double(max(inFeatures, 1)).squareRoot())
        if name == "bias" && zeroBias { t.fill(0); return }
        for i in 0..<t.count { t.ptr[i] = -bound + 2 * bound * rng.nextFloat() }
    }

    /// `x: [N, in] → [N, out]`.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try linear(x, weight: weight, bias: bias)
    }
}
