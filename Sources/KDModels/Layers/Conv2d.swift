import KDTensor

/// 2-D convolution on NHWC images, weight stored as `[Cout, kh, kw, Cin]` (PyTorch's
/// `[Cout, Cin, kh, kw]` in checkpoints), square kernel, zero padding.
///
/// Initialisation: kaiming normal, fan-out mode, ReLU gain, as RepDistiller's resnet.py/wrn.py:
/// `W ~ N(0, 2 / (Cout·kh·kw))`; bias (if any) 0.
public final class Conv2d: Module, UnaryLayer {
    public let weight: Tensor
    public let bias: Tensor?
    public let inChannels: Int, outChannels: Int, kernelSize: Int, stride: Int, padding: Int
    /// The algorithm of this layer (`runtime.conv_algorithm`, set by `ConvAlgorithmTuner`); Winograd
    /// only takes effect on stride-1 3×3 layers and (`winograd4`) on stride-2 3×3 layers with padding 1
    /// and channels multiples of 8; every other geometry runs `direct`.
    public var algorithm: ConvAlgorithm = .direct
    /// The input shape of this layer's latest forward (`ConvAlgorithmTuner` reads it after a one-image
    /// probe forward). Per layer, so ranks that are threads of one process (the in-process test world)
    /// never see each other's shapes.
    public private(set) var lastInputShape: [Int] = []

    public init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                bias: Bool = false) {
        self.inChannels = inChannels; self.outChannels = outChannels
        self.kernelSize = kernelSize; self.stride = stride; self.padding = padding
        weight = Tensor.zeros([outChannels, kernelSize, kernelSize, inChannels], requiresGrad: true)
        self.bias = bias ? Tensor.zeros([outChannels], requiresGrad: true) : nil
    }

    public override var ownParameters: [(String, Tensor)] {
        bias.map { [("weight", weight), ("bias", $0)] } ?? [("weight", weight)]
    }

    public override func layout(ofParameter name: String) -> ParameterLayout { name == "weight" ? .convOHWI : .plain }

    public override func initializeParameter(_ name: String, _ t: Tensor, rng: inout KDRandom) {
        if name == "bias" { t.fill(0); return }
        let std = Float((2.0 / Double(outChannels * kernelSize * kernelSize)).squareRoot())
        for i in 0..<t.count { t.ptr[i] = rng.nextNormal() * std }
    }

    /// `x: [N, H, W, Cin] → [N, Ho, Wo, Cout]`.
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        lastInputShape = x.shape
        return try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding, algorithm: algorithm)
    }

    /// Whether a Winograd algorithm applies to this layer (3×3, stride 1, padding ≤ 2).
    public var winogradApplies: Bool {
        ConvAlgorithm.winogradApplies(kernelSize: kernelSize, stride: stride, padding: padding)
    }

    /// Whether the strided Winograd F(4×4, 2×2) applies (`winograd4` on a 3×3 stride-2 layer with padding 1
    /// and channels multiples of 8).
    public var stridedWinogradApplies: Bool {
        ConvAlgorithm.stridedWinogradApplies(kernelSize: kernelSize, stride: stride, padding: padding,
                                             cin: inChannels, cout: outChannels)
    }
}
