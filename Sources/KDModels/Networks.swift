import KDTensor

/// A classification network: `(feature: [N, F] pooled penultimate activations, logits: [N, C])`.
public protocol Classifier: Module {
    /// The zoo name (`resnet8x4`, `wrn_40_2`, `mlp`, …).
    var modelName: String { get }
    /// F, the width of `feature`.
    var featureSize: Int { get }
    var classes: Int { get }
    /// The classifier layer (its weight rows are class proxies of a trained teacher).
    var fc: Linear { get }
    /// Forward pass on NHWC images `[N, H, W, C]` (an MLP also takes `[N, D]`).
    func callAsFunction(_ x: Tensor) throws -> (feature: Tensor, logits: Tensor)
}

/// CIFAR ResNet of RepDistiller/mdistiller `resnet.py`: conv1 3×3 → bn1 → relu → layer1..3
/// ((depth − 2)/6 `BasicBlock`s each, strides 1/2/2) → global average pool → fc.
/// PyTorch's `AvgPool2d(8)` equals the global average on 32×32 inputs; the global mean makes any
/// input size valid (28×28, 8×8, …).
public final class ResNet: Module, Classifier {
    public let modelName: String
    public let conv1: Conv2d, bn1: BatchNorm2d
    public let layer1: Sequential, layer2: Sequential, layer3: Sequential
    public let fc: Linear
    public let featureSize: Int, classes: Int

    /// `filters` = [stem, stage1, stage2, stage3], e.g. [16, 16, 32, 64] or [32, 64, 128, 256] (x4).
    public init(name: String, depth: Int, filters: [Int], classes: Int, inputChannels: Int) throws {
        guard depth >= 8, (depth - 2) % 6 == 0, filters.count == 4, classes > 0, inputChannels > 0 else {
            throw ModelError.invalidArgument("ResNet: depth \(depth) must be 6n+2 ≥ 8 with 4 filter sizes "
                                             + "(got \(filters)), classes \(classes) and input channels "
                                             + "\(inputChannels) > 0")
        }
        let n = (depth - 2) / 6
        modelName = name
        conv1 = Conv2d(inputChannels, filters[0], kernelSize: 3, stride: 1, padding: 1)
        bn1 = BatchNorm2d(filters[0])
        var inPlanes = filters[0]
        func stage(_ planes: Int, _ stride: Int) -> Sequential {
            let blocks = (0..<n).map { i -> BasicBlock in
                let b = BasicBlock(inPlanes: inPlanes, planes: planes, stride: i == 0 ? stride : 1)
                inPlanes = planes
                return b
            }
            return Sequential(blocks)
        }
        layer1 = stage(filters[1], 1)
        layer2 = stage(filters[2], 2)
        layer3 = stage(filters[3], 2)
        featureSize = filters[3]
        self.classes = classes
        fc = Linear(filters[3], classes)
    }

    public override var children: [(String, Module)] {
        [("conv1", conv1), ("bn1", bn1), ("layer1", layer1), ("layer2", layer2), ("layer3", layer3), ("fc", fc)]
    }

    public func callAsFunction(_ x: Tensor) throws -> (feature: Tensor, logits: Tensor) {
        guard x.rank == 4, x.shape[3] == conv1.inChannels else {
            throw TensorError.invalidArgument(op: modelName,
                                              message: "expects NHWC images [N, H, W, \(conv1.inChannels)], "
                                                  + "got \(x.shape)")
        }
        var h = try bn1(try conv1(x), relu: true)
        h = try layer3(try layer2(try layer1(h)))
        let feature = try globalAvgPool(h)
        return (feature, try fc(feature))
    }
}

/// Wide ResNet of RepDistiller `wrn.py` (pre-activation): conv1 → block1..3 (`(depth − 4)/6` blocks,
/// widths 16k, 32k, 64k, strides 1/2/2) → bn1 → relu → global average pool → fc (bias initialised 0).
public final class WideResNet: Module, Classifier {
    public let modelName: String
    public let conv1: Conv2d
    public let block1: NetworkBlock, block2: NetworkBlock, block3: NetworkBlock
    public let bn1: BatchNorm2d
    public let fc: Linear
    public let featureSize: Int, classes: Int

    public init(name: String, depth: Int, widenFactor: Int, classes: Int, inputChannels: Int) throws {
        guard depth >= 10, (depth - 4) % 6 == 0, widenFactor > 0, classes > 0, inputChannels > 0 else {
            throw ModelError.invalidArgument("WideResNet: depth \(depth) must be 6n+4 ≥ 10, widen factor "
                                             + "\(widenFactor), classes \(classes) and input channels "
                                             + "\(inputChannels) > 0")
        }
        let n = (depth - 4) / 6
        let ch = [16, 16 * widenFactor, 32 * widenFactor, 64 * widenFactor]
        modelName = name
        conv1 = Conv2d(inputChannels, ch[0], kernelSize: 3, stride: 1, padding: 1)
        block1 = NetworkBlock(count: n, inPlanes: ch[0], outPlanes: ch[1], stride: 1)
        block2 = NetworkBlock(count: n, inPlanes: ch[1], outPlanes: ch[2], stride: 2)
        block3 = NetworkBlock(count: n, inPlanes: ch[2], outPlanes: ch[3], stride: 2)
        bn1 = BatchNorm2d(ch[3])
        fc = Linear(ch[3], classes, zeroBias: true)
        featureSize = ch[3]
        self.classes = classes
    }

    public override var children: [(String, Module)] {
        [("conv1", conv1), ("block1", block1), ("block2", block2), ("block3", block3), ("bn1", bn1), ("fc", fc)]
    }

    public func callAsFunction(_ x: Tensor) throws -> (feature: Tensor, logits: Tensor) {
        guard x.rank == 4, x.shape[3] == conv1.inChannels else {
            throw TensorError.invalidArgument(op: modelName,
                                              message: "expects NHWC images [N, H, W, \(conv1.inChannels)], "
                                                  + "got \(x.shape)")
        }
        var h = try block3(try block2(try block1(try conv1(x))))
        h = try bn1(h, relu: true)
        let feature = try globalAvgPool(h)
        return (feature, try fc(feature))
    }
}

/// Multi-layer perceptron on flattened inputs (NHWC order): `layers` = Linear, ReLU, Linear, ReLU, …
/// (names `layers.0.weight`, `layers.2.weight`, …); the feature is the last hidden activation
/// (the flattened input when there are no hidden layers); then fc.
public final class MLP: Module, Classifier {
    public let modelName = "mlp"
    public let inputSize: Int
    public let layers: Sequential
    public let fc: Linear
    public let featureSize: Int, classes: Int

    public init(inputSize: Int, hiddenSizes: [Int], classes: Int) throws {
        guard inputSize > 0, classes > 0, hiddenSizes.allSatisfy({ $0 > 0 }) else {
            throw ModelError.invalidArgument("MLP: input size \(inputSize), hidden sizes \(hiddenSizes) "
                                             + "and classes \(classes) must be > 0")
        }
        self.inputSize = inputSize
        var seq: [any UnaryLayer] = []
        var d = inputSize
        for h in hiddenSizes { seq.append(Linear(d, h)); seq.append(ReLU()); d = h }
        layers = Sequential(seq)
        featureSize = d
        self.classes = classes
        fc = Linear(d, classes)
    }

    public override var children: [(String, Module)] { [("layers", layers), ("fc", fc)] }

    public func callAsFunction(_ x: Tensor) throws -> (feature: Tensor, logits: Tensor) {
        let flat = x.shape.dropFirst().reduce(1, *)
        guard x.rank >= 2, flat == inputSize else {
            throw TensorError.invalidArgument(op: "mlp", message: "expects [N, …] with \(inputSize) values per row, "
                                              + "got \(x.shape)")
        }
        let h = x.rank == 2 ? x : try reshape(x, [x.shape[0], flat])
        let feature = try layers(h)
        return (feature, try fc(feature))
    }
}

/// Linear projection of student features to the teacher's dimension, `[N, F] → [N, D_t]`
/// (names `proj.weight`, `proj.bias`; PyTorch default initialisation).
public final class ProjectionHead: Module, UnaryLayer {
    public let proj: Linear
    public init(inFeatures: Int, outFeatures: Int, seed: UInt64) {
        proj = Linear(inFeatures, outFeatures)
        super.init()
        initialize(seed: seed)
    }
    public override var children: [(String, Module)] { [("proj", proj)] }
    public func callAsFunction(_ x: Tensor) throws -> Tensor { try proj(x) }
}
