import KDTensor

/// The residual block of CIFAR ResNets (RepDistiller/mdistiller `resnet.py`, post-activation):
///
///     out = relu(bn1(conv1(x)))            conv1: 3×3, stride s
///     out = bn2(conv2(out))                conv2: 3×3, stride 1
///     out = relu(out + shortcut(x))        shortcut = downsample(x) or x
///
/// `downsample` (names `downsample.0` conv 1×1 stride s, `downsample.1` BN) exists when the stride
/// is not 1 or the channel count changes.
public final class BasicBlock: Module, UnaryLayer {
    public let conv1: Conv2d, bn1: BatchNorm2d, conv2: Conv2d, bn2: BatchNorm2d
    public let downsample: Sequential?

    public init(inPlanes: Int, planes: Int, stride: Int = 1) {
        conv1 = Conv2d(inPlanes, planes, kernelSize: 3, stride: stride, padding: 1)
        bn1 = BatchNorm2d(planes)
        conv2 = Conv2d(planes, planes, kernelSize: 3, stride: 1, padding: 1)
        bn2 = BatchNorm2d(planes)
        downsample = (stride != 1 || inPlanes != planes)
            ? Sequential([Conv2d(inPlanes, planes, kernelSize: 1, stride: stride), BatchNorm2d(planes)]) : nil
    }

    public override var children: [(String, Module)] {
        var c: [(String, Module)] = [("conv1", conv1), ("bn1", bn1), ("conv2", conv2), ("bn2", bn2)]
        if let downsample { c.append(("downsample", downsample)) }
        return c
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        var out = try bn1(try conv1(x), relu: true)
        out = try bn2(try conv2(out))
        let residual = try downsample?(x) ?? x
        return try addReLU(out, residual)
    }
}

/// The pre-activation block of Wide ResNets (RepDistiller `wrn.py`):
///
///     equal in/out:  out = conv2(relu(bn2(conv1(relu(bn1(x)))))) + x
///     otherwise:     a = relu(bn1(x)); out = conv2(relu(bn2(conv1(a)))) + convShortcut(a)
///
/// conv1 3×3 stride s, conv2 3×3, convShortcut 1×1 stride s (only when channels differ).
public final class WideBasicBlock: Module, UnaryLayer {
    public let bn1: BatchNorm2d, conv1: Conv2d, bn2: BatchNorm2d, conv2: Conv2d
    public let convShortcut: Conv2d?

    public init(inPlanes: Int, outPlanes: Int, stride: Int) {
        bn1 = BatchNorm2d(inPlanes)
        conv1 = Conv2d(inPlanes, outPlanes, kernelSize: 3, stride: stride, padding: 1)
        bn2 = BatchNorm2d(outPlanes)
        conv2 = Conv2d(outPlanes, outPlanes, kernelSize: 3, stride: 1, padding: 1)
        convShortcut = inPlanes == outPlanes ? nil : Conv2d(inPlanes, outPlanes, kernelSize: 1, stride: stride)
    }

    public override var children: [(String, Module)] {
        var c: [(String, Module)] = [("bn1", bn1), ("conv1", conv1), ("bn2", bn2), ("conv2", conv2)]
        if let convShortcut { c.append(("convShortcut", convShortcut)) }
        return c
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        let a = try bn1(x, relu: true)
        let out = try conv2(try bn2(try conv1(a), relu: true))
        if let convShortcut { return try add(out, try convShortcut(a)) }
        return try add(out, x)
    }
}

/// A stage of a Wide ResNet: `layer` = blocks (names `block1.layer.0.…`).
public final class NetworkBlock: Module, UnaryLayer {
    public let layer: Sequential
    public init(count: Int, inPlanes: Int, outPlanes: Int, stride: Int) {
        layer = Sequential((0..<count).map {
            WideBasicBlock(inPlanes: $0 == 0 ? inPlanes : outPlanes, outPlanes: outPlanes, stride: $0 == 0 ? stride : 1)
        })
    }
    public override var children: [(String, Module)] { [("layer", layer)] }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try layer(x) }
}
