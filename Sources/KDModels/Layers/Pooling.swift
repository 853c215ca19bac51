import KDTensor

/// Max pooling over `kernel × kernel` windows of NHWC images (PyTorch `nn.MaxPool2d`, padding with −∞).
public final class MaxPool2d: Module, UnaryLayer {
    public let kernel: Int, stride: Int, padding: Int
    public init(kernel: Int, stride: Int? = nil, padding: Int = 0) {
        self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding
    }
    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        try maxPool2d(x, kernel: kernel, stride: stride, padding: padding)
    }
}

/// Average pooling over `kernel × kernel` windows of NHWC images (PyTorch `nn.AvgPool2d`, no padding).
public final class AvgPool2d: Module, UnaryLayer {
    public let kernel: Int, stride: Int
    public init(kernel: Int, stride: Int? = nil) { self.kernel = kernel; self.stride = stride ?? kernel }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try avgPool2d(x, kernel: kernel, stride: stride) }
}

/// Mean over all spatial positions: `[N, H, W, C] → [N, C]` (PyTorch `AdaptiveAvgPool2d(1)` + flatten).
public final class GlobalAvgPool2d: Module, UnaryLayer {
    public override init() {}
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try globalAvgPool(x) }
}
