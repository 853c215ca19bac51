import Foundation
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
        try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
    }
}
