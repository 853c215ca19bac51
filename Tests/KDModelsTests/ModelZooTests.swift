import XCTest
import KDTensor
@testable import KDModels

final class ModelZooTests: XCTestCase {
    /// Parameter counts for 100 classes, 3 input channels, against the PyTorch definitions
    /// (RepDistiller: resnet8x4 1.23 M, resnet32x4 7.43 M, resnet56 0.86 M, wrn_40_2 2.26 M).
    func testParameterCounts() throws {
        let expected: [String: Int] = [
            "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756,
            "resnet44": 667_188, "resnet56": 861_620, "resnet110": 1_736_564,
            "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
            "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
        ]
        let rows = try ModelZoo.table(classes: 100, inputChannels: 3)
        XCTAssertEqual(rows.map(\.name), ModelZoo.names)
        for r in rows where r.name != "mlp" { XCTAssertEqual(r.parameterCount, expected[r.name], r.name) }
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0.name, $0) })
        XCTAssertEqual(Double(byName["resnet8x4"]!.parameterCount) / 1e6, 1.23, accuracy: 0.005)
        XCTAssertEqual(Double(byName["resnet32x4"]!.parameterCount) / 1e6, 7.43, accuracy: 0.005)
        XCTAssertEqual(byName["resnet8x4"]!.featureSize, 256)
        XCTAssertEqual(byName["resnet20"]!.featureSize, 64)
        XCTAssertEqual(byName["wrn_40_2"]!.featureSize, 128)
        // mlp 3·32·32 → 256 → 256 → 100
        XCTAssertEqual(byName["mlp"]!.parameterCount, 3072 * 256 + 256 + 256 * 256 + 256 + 256 * 100 + 100)
        let text = try ModelZoo.formattedTable()
        XCTAssertTrue(text.contains("resnet32x4      7433860    7.43       256"), text)
    }

    func testResNetNamesMatchPyTorch() throws {
        let m = try ModelZoo.make(name: "resnet8x4", classes: 10)
        let names = m.namedParameters().map(\.0)
        XCTAssertEqual(Array(names.prefix(9)), [
            "conv1.weight", "bn1.weight", "bn1.bias",
            "layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias",
            "layer1.0.conv2.weight", "layer1.0.bn2.weight", "layer1.0.bn2.bias"])
        XCTAssertTrue(names.contains("layer1.0.downsample.0.weight"))
        XCTAssertTrue(names.contains("layer3.0.downsample.1.bias"))
        XCTAssertEqual(Array(names.suffix(2)), ["fc.weight", "fc.bias"])
        let buffers = m.namedBuffers().map(\.0)
        XCTAssertEqual(Array(buffers.prefix(3)), ["bn1.running_mean", "bn1.running_var", "bn1.num_batches_tracked"])
        let state = m.stateEntries().map(\.name)
        XCTAssertEqual(Array(state.prefix(7)), ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                                                "bn1.running_var", "bn1.num_batches_tracked", "layer1.0.conv1.weight"])
        // resnet20 (16 → 16): no downsample in layer1, one in layer2.
        let r20 = try ModelZoo.make(name: "resnet20", classes: 10).namedParameters().map(\.0)
        XCTAssertFalse(r20.contains { $0.hasPrefix("layer1.0.downsample") })
        XCTAssertTrue(r20.contains("layer2.0.downsample.0.weight"))
        XCTAssertTrue(r20.contains("layer3.2.conv2.weight"))
        XCTAssertFalse(r20.contains("layer3.3.conv2.weight"))
        XCTAssertEqual(m.namedParameters().first!.1.name, "conv1.weight")
        XCTAssertEqual(m.namedParameters().first!.1.shape, [32, 3, 3, 3])   // [Cout, kh, kw, Cin]
    }

    func testWideResNetNames() throws {
        let m = try ModelZoo.make(name: "wrn_16_2", classes: 10)
        let names = m.namedParameters().map(\.0)
        XCTAssertEqual(Array(names.prefix(8)), [
            "conv1.weight", "block1.layer.0.bn1.weight", "block1.layer.0.bn1.bias", "block1.layer.0.conv1.weight",
            "block1.layer.0.bn2.weight", "block1.layer.0.bn2.bias", "block1.layer.0.conv2.weight",
            "block1.layer.0.convShortcut.weight"])
        XCTAssertTrue(names.contains("block3.layer.1.conv2.weight"))
        XCTAssertEqual(Array(names.suffix(4)), ["bn1.weight", "bn1.bias", "fc.weight", "fc.bias"])
        XCTAssertEqual(m.fc.bias!.array, [Float](repeating: 0, count: 10))
    }

    func testMLPNames() throws {
        let m = try ModelZoo.make(name: "mlp", classes: 10, inputChannels: 1, imageSize: [28, 28],
                                  hiddenSizes: [32, 16])
        XCTAssertEqual(m.namedParameters().map(\.0),
                       ["layers.0.weight", "layers.0.bias", "layers.2.weight", "layers.2.bias", "fc.weight", "fc.bias"])
        XCTAssertEqual(m.featureSize, 16)
        XCTAssertEqual(m.namedParameters()[0].1.shape, [32, 784])
    }

    func testInitialisationIsDeterministicAndPyTorchLike() throws {
        let a = try ModelZoo.make(name: "resnet20", classes: 10, seed: 3)
        let b = try ModelZoo.make(name: "resnet20", classes: 10, seed: 3)
        let c = try ModelZoo.make(name: "resnet20", classes: 10, seed: 4)
        for ((n, x), (_, y)) in zip(a.namedParameters(), b.namedParameters()) { XCTAssertEqual(x.array, y.array, n) }
        XCTAssertNotEqual(a.namedParameters()[0].1.array, c.namedParameters()[0].1.array)
        XCTAssertTrue(a.namedParameters().allSatisfy { $0.1.requiresGrad })
        // Kaiming normal (fan_out): layer3.0.conv2 is [64, 3, 3, 64], std √(2/(64·9)) ≈ 0.0589.
        let w = a.namedParameters().first { $0.0 == "layer3.0.conv2.weight" }!.1.array
        let mean = w.reduce(0, +) / Float(w.count)
        let std = (w.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, (2.0 / 576.0).squareRoot(), accuracy: 0.003)
        // BN γ = 1, β = 0; Linear U(−1/√64, 1/√64).
        XCTAssertEqual(Set(a.namedParameters().first { $0.0 == "bn1.weight" }!.1.array), [1])
        XCTAssertEqual(Set(a.namedParameters().first { $0.0 == "bn1.bias" }!.1.array), [0])
        let fc = a.fc.weight.array
        XCTAssertLessThanOrEqual(fc.map(abs).max()!, 0.125)
        XCTAssertGreaterThan(fc.map(abs).max()!, 0.1)
    }

    func testTrainEvalPropagates() throws {
        let m = try ModelZoo.make(name: "resnet8", classes: 10)
        XCTAssertTrue(m.namedModules().allSatisfy { $0.1.training })
        m.eval()
        XCTAssertTrue(m.namedModules().allSatisfy { !$0.1.training })
        m.train()
        XCTAssertTrue(m.namedModules().allSatisfy { $0.1.training })
    }

    func testUnknownModelAndBadArguments() {
        XCTAssertThrowsError(try ModelZoo.make(name: "resnet9", classes: 10)) {
            XCTAssertTrue("\($0)".hasPrefix("model zoo: unknown model 'resnet9'"))
        }
        XCTAssertThrowsError(try ModelZoo.make(name: "resnet8", classes: 0)) {
            XCTAssertTrue("\($0)".contains("classes 0"))
        }
        XCTAssertThrowsError(try ModelZoo.make(name: "mlp", classes: 10, imageSize: [28])) {
            XCTAssertTrue("\($0)".contains("imageSize"))
        }
    }

    func testProjectionHead() throws {
        let h = ProjectionHead(inFeatures: 64, outFeatures: 256, seed: 1)
        XCTAssertEqual(h.namedParameters().map(\.0), ["proj.weight", "proj.bias"])
        XCTAssertEqual(h.proj.weight.shape, [256, 64])
        XCTAssertEqual(h.parameterCount, 64 * 256 + 256)
    }
}
