import Foundation

/// The data settings the trainer passes from its config (`data.*` keys, docs/config.md).
public struct DataSourceConfig: Equatable, Sendable {
    /// `synthetic`, `npy` or `cifar`.
    public var source: String
    /// Folder of the `npy` / `cifar` files (unused for `synthetic`).
    public var path: String?
    public var classes: Int
    /// Side of the synthetic images (nil: 32). File sources take their size from the files; when set
    /// (the user wrote `data.image_size`) it must agree with them.
    public var imageSize: Int?
    /// Fraction of train held out for evaluation when a source has no test split.
    public var evalFraction: Double
    public var seed: UInt64
    /// Sizes of the synthetic splits.
    public var syntheticTrainCount: Int
    public var syntheticEvalCount: Int

    public init(source: String, path: String? = nil, classes: Int = 10, imageSize: Int? = 32,
                evalFraction: Double = 0.1,
                seed: UInt64 = 0, syntheticTrainCount: Int = 50_000, syntheticEvalCount: Int = 10_000) {
        self.source = source; self.path = path; self.classes = classes; self.imageSize = imageSize
        self.evalFraction = evalFraction; self.seed = seed
        self.syntheticTrainCount = syntheticTrainCount; self.syntheticEvalCount = syntheticEvalCount
    }
}

/// Opens the training and evaluation splits a `DataSourceConfig` names, validating every file.
public enum DataSources {
    public static func open(_ c: DataSourceConfig) throws -> ImageSplits {
        let splits: ImageSplits
        switch c.source {
        case "synthetic":
            let s = c.imageSize ?? 32
            splits = ImageSplits(
                train: try SyntheticDataset(count: c.syntheticTrainCount, classes: c.classes, height: s, width: s,
                                            seed: c.seed, split: 0),
                eval: try SyntheticDataset(count: c.syntheticEvalCount, classes: c.classes, height: s, width: s,
                                           seed: c.seed, split: 1))
        case "npy", "cifar":
            guard let p = c.path, !p.isEmpty else {
                throw DataError.invalidConfig(field: "data.path", message: "source '\(c.source)' needs a folder")
            }
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: p, isDirectory: &isDir) else {
                throw DataError.missingFile(path: p, what: "data folder (data.path)")
            }
            guard isDir.boolValue else {
                let files = c.source == "npy" ? "train_images.npy or train_features.npy" : "CIFAR binary"
                throw DataError.invalidFile(path: p, reason: "a file, not a folder: data.path names the folder that "
                                            + "holds the \(files) files")
            }
            splits = c.source == "npy"
                ? try NPYFolderSource.load(folder: p, classes: c.classes, evalFraction: c.evalFraction, seed: c.seed)
                : try CIFARSource.load(folder: p, classes: c.classes, evalFraction: c.evalFraction, seed: c.seed)
        default:
            throw DataError.invalidConfig(field: "data.source",
                                          message: "unknown source '\(c.source)' (synthetic, npy, cifar)")
        }
        if let s = c.imageSize, c.source != "synthetic", splits.train.height != s || splits.train.width != s {
            let size = "\(splits.train.height)×\(splits.train.width)"
            throw DataError.invalidFile(path: splits.train.name,
                                        reason: "images are \(size) but data.image_size is \(s) (file sources take "
                                            + "their size from the files: remove data.image_size)")
        }
        return splits
    }
}
