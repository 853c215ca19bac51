import Foundation

/// Models by name, with PyTorch-style parameter names matching RepDistiller/mdistiller.
///
/// | name | architecture |
/// |---|---|
/// | resnet8/14/20/32/44/56/110 | CIFAR ResNet, filters 16/16/32/64, (depth−2)/6 blocks per stage |
/// | resnet8x4, resnet32x4 | filters 32/64/128/256 |
/// | wrn_16_1, wrn_16_2, wrn_40_1, wrn_40_2 | Wide ResNet depth_width |
/// | mlp | flattened input → hidden sizes (ReLU) → fc |
public enum ModelZoo {
    /// `mlp`'s hidden widths when none are configured (`student.hidden: []`, `teacher.hidden: []`).
    public static let defaultHidden = [256, 256]

    /// The hidden widths `make` uses for `configured` (empty: `defaultHidden`).
    public static func hiddenSizes(_ configured: [Int]) -> [Int] { configured.isEmpty ? defaultHidden : configured }

    /// Every name `make` accepts.
    public static let names = ["resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
                               "resnet8x4", "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2", "mlp"]

    /// Whether `name` reads NHWC images: every model but `mlp`, which flattens whatever it gets and is the
    /// only one with hidden widths (`student.hidden`, `teacher.hidden`).
    public static func readsImages(_ name: String) -> Bool { name != "mlp" }

    /// Builds the model `name` and initialises it from `seed` (identical on every rank).
    ///
    /// - Parameters:
    ///   - imageSize: `[H, W]` of the input, used by `mlp` only (its first layer's width is H·W·C).
    ///   - hiddenSizes: hidden widths of `mlp`.
    public static func make(name: String, classes: Int, inputChannels: Int = 3, imageSize: [Int] = [32, 32],
                            hiddenSizes: [Int] = defaultHidden, seed: UInt64 = 0) throws -> any Classifier {
        let model: any Classifier
        let small = [16, 16, 32, 64], wide = [32, 64, 128, 256]
        switch name {
        case "resnet8x4":
            model = try ResNet(name: name, depth: 8, filters: wide, classes: classes, inputChannels: inputChannels)
        case "resnet32x4":
            model = try ResNet(name: name, depth: 32, filters: wide, classes: classes, inputChannels: inputChannels)
        case "mlp":
            guard imageSize.count == 2, imageSize.allSatisfy({ $0 > 0 }) else {
                throw ModelError.invalidArgument("model zoo: mlp needs imageSize [H, W] > 0, got \(imageSize)")
            }
            model = try MLP(inputSize: imageSize[0] * imageSize[1] * inputChannels, hiddenSizes: hiddenSizes,
                            classes: classes)
        default:
            if name.hasPrefix("resnet"), let depth = Int(name.dropFirst(6)), names.contains(name) {
                model = try ResNet(name: name, depth: depth, filters: small, classes: classes,
                                   inputChannels: inputChannels)
            } else if name.hasPrefix("wrn_"), names.contains(name) {
                let parts = name.split(separator: "_")
                model = try WideResNet(name: name, depth: Int(parts[1])!, widenFactor: Int(parts[2])!,
                                       classes: classes, inputChannels: inputChannels)
            } else {
                throw ModelError.invalidArgument("model zoo: unknown model '\(name)' "
                                                 + "(known: \(names.joined(separator: ", ")))")
            }
        }
        model.initialize(seed: seed)
        return model
    }

    /// One row of `kdgraph models`.
    public struct Row: Equatable {
        public let name: String
        public let parameterCount: Int
        public let featureSize: Int
    }

    /// The zoo with parameter counts for `classes` classes and `inputChannels` channels.
    public static func table(classes: Int = 100, inputChannels: Int = 3, imageSize: [Int] = [32, 32],
                             hiddenSizes: [Int] = defaultHidden) throws -> [Row] {
        try names.map { n in
            let m = try make(name: n, classes: classes, inputChannels: inputChannels, imageSize: imageSize,
                             hiddenSizes: hiddenSizes)
            return Row(name: n, parameterCount: m.parameterCount, featureSize: m.featureSize)
        }
    }

    /// The table as aligned text (name, parameters, millions, feature size).
    public static func formattedTable(classes: Int = 100, inputChannels: Int = 3) throws -> String {
        let rows = try table(classes: classes, inputChannels: inputChannels)
        var s = "parameters for \(classes) classes and \(inputChannels) input channel(s) (--classes, --channels; "
            + "mlp: 32×32 inputs, hidden \(defaultHidden.map(String.init).joined(separator: ",")))\n"
            + "model        parameters  (M)     feature\n"
        for r in rows {
            let m = Double(r.parameterCount) / 1e6
            let mm = String(Int((m * 100).rounded())) // hundredths
            let millions = mm.count > 2 ? "\(mm.dropLast(2)).\(mm.suffix(2))"
                                        : "0.\(String(repeating: "0", count: 2 - mm.count))\(mm)"
            s += r.name.padding(toLength: 13, withPad: " ", startingAt: 0)
                + String(r.parameterCount).leftPad(10) + "  " + millions.leftPad(6)
                + "  " + String(r.featureSize).leftPad(8) + "\n"
        }
        return s
    }
}

extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
