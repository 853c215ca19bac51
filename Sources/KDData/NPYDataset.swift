import Foundation
import KDFormats
import KDTensor

/// Reads a label vector (`N` or `N×1`, integer dtype) and checks every label lies in `0..<classes`.
func readLabels(_ path: String, classes: Int) throws -> [Int32] {
    let a: NPYArray
    a = try wrapNPY(path) { try NPYArray(path: path) }
    try wrapNPY(path) {
        try a.expectDType([.int64, .int32, .uint8, .int8])
        if a.shape.count == 2 { try a.expectShape([nil, 1]) } else { try a.expectShape([nil]) }
    }
    var out = [Int32](repeating: 0, count: a.rowCount)
    for i in 0..<a.rowCount {
        let v = a.intValue(i) ?? -1
        guard v >= 0, v < classes else {
            throw DataError.labelOutOfRange(path: path, index: i, value: v, classes: classes)
        }
        out[i] = Int32(v)
    }
    return out
}

/// Runs `body`, turning an `NPYError` into `DataError.npy`.
func wrapNPY<T>(_ path: String, _ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as NPYError { throw DataError.npy(e) }
}

/// Images from a memory-mapped `N×H×W×C` (or `N×H×W`, C = 1) uint8 `.npy` plus `N` integer labels.
/// Only the rows that are read are paged in.
public final class NPYImageDataset: ImageDataset, @unchecked Sendable {
    public let images: NPYArray
    public let labelValues: [Int32]
    public let count: Int, height: Int, width: Int, channels: Int, classes: Int
    public var name: String { images.path }

    /// Opens `imagesPath` and `labelsPath`; `classes` bounds the labels.
    public init(imagesPath: String, labelsPath: String, classes: Int) throws {
        guard FileManager.default.fileExists(atPath: imagesPath) else {
            throw DataError.missingFile(path: imagesPath, what: "image array")
        }
        guard FileManager.default.fileExists(atPath: labelsPath) else {
            throw DataError.missingFile(path: labelsPath, what: "label array")
        }
        let a = try wrapNPY(imagesPath) { try NPYArray(path: imagesPath) }
        try wrapNPY(imagesPath) {
            try a.expectDType([.uint8])
            if a.shape.count == 3 {
                try a.expectShape([nil, nil, nil])
            } else {
                try a.expectShape([nil, nil, nil, nil])
            }
        }
        images = a
        count = a.shape[0]; height = a.shape[1]; width = a.shape[2]
        channels = a.shape.count == 4 ? a.shape[3] : 1
        guard height > 0, width > 0, channels > 0 else {
            throw DataError.invalidFile(path: imagesPath, reason: "empty image shape \(a.shape)")
        }
        // PyTorch's N×C×H×W has the values of N×H×W×C in another order; read as N×H×W×C it would train on
        // images C pixels tall with W channels. Images at most 4 pixels tall with more than 4 channels are that.
        if a.shape.count == 4, height <= 4, channels > 4 {
            throw DataError.invalidFile(path: imagesPath, reason: "shape \(a.shape) reads as N×H×W×C images "
                + "\(height)×\(width) pixels with \(channels) channels; it looks like N×C×H×W (PyTorch's layout): "
                + "save it as N×H×W×C, e.g. np.transpose(x, (0, 2, 3, 1))")
        }
        self.classes = classes
        labelValues = try readLabels(labelsPath, classes: classes)
        guard labelValues.count == count else {
            throw DataError.countMismatch(pathA: imagesPath, countA: count,
                                          pathB: labelsPath, countB: labelValues.count)
        }
    }

    public func label(_ i: Int) -> Int { Int(labelValues[i]) }

    public func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>) {
        memcpy(out, images.rowPointer(i), images.rowBytes)
    }
}

/// Float32 feature vectors `N×D` with `N` labels (students that take embeddings, not images).
public final class NPYFeatureDataset: @unchecked Sendable {
    public let features: NPYArray
    public let labelValues: [Int32]
    public let count: Int, dim: Int, classes: Int

    public init(featuresPath: String, labelsPath: String, classes: Int) throws {
        guard FileManager.default.fileExists(atPath: featuresPath) else {
            throw DataError.missingFile(path: featuresPath, what: "feature array")
        }
        let a = try wrapNPY(featuresPath) { try NPYArray(path: featuresPath) }
        try wrapNPY(featuresPath) { try a.expectDType([.float32]); try a.expectShape([nil, nil]) }
        features = a; count = a.shape[0]; dim = a.shape[1]; self.classes = classes
        labelValues = try readLabels(labelsPath, classes: classes)
        guard labelValues.count == count else {
            throw DataError.countMismatch(pathA: featuresPath, countA: count,
                                          pathB: labelsPath, countB: labelValues.count)
        }
    }

    public func label(_ i: Int) -> Int { Int(labelValues[i]) }

    /// Rows `indices` as a `[n, D]` float buffer (row k = sample indices[k]).
    public func copyRows(_ indices: [Int], into out: UnsafeMutablePointer<Float>) {
        for (k, i) in indices.enumerated() { features.copyRowAsFloat(i, into: out + k * dim) }
    }
}

/// One split of a feature dataset: the rows `rows` of `features`, addressed by split index `0..<count`
/// (the sampler's indices).
public struct FeatureSplit: @unchecked Sendable {
    public let features: NPYFeatureDataset
    public let rows: [Int]
    public var count: Int { rows.count }
    public var dim: Int { features.dim }
    public func label(_ i: Int) -> Int { features.label(rows[i]) }

    /// Samples `indices` (split indices) as a `[n, D]` tensor and their labels.
    public func batch(_ indices: [Int]) -> (features: Tensor, labels: [Int]) {
        let t = Tensor(uninitializedShape: [indices.count, dim])
        features.copyRows(indices.map { rows[$0] }, into: t.ptr)
        return (t, indices.map(label))
    }

    /// SHA-256 (hex) of the shape and of the split's rows as float32, in split order (see
    /// `ImageDataset.contentDigest`).
    public func contentDigest() -> String {
        var h = SHA256Stream()
        h.update("features \(count)x\(dim)\n")
        var row = [Float](repeating: 0, count: dim)
        for r in rows {
            row.withUnsafeMutableBufferPointer { features.copyRows([r], into: $0.baseAddress!) }
            row.withUnsafeBytes { h.update($0) }
        }
        return h.finalizeHex()
    }
}

/// The `npy` source: a folder with `train_images.npy` (N×H×W×C uint8) and `train_labels.npy`
/// (N int64/int32), and optionally `test_images.npy` / `test_labels.npy`. Without a test pair,
/// `evalFraction` of the training samples is held out (deterministic, keyed by `seed`).
public enum NPYFolderSource {
    public static func load(folder: String, classes: Int, evalFraction: Double, seed: UInt64) throws -> ImageSplits {
        let dir = URL(fileURLWithPath: folder)
        let f = { (n: String) in dir.appendingPathComponent(n).path }
        let train = try NPYImageDataset(imagesPath: f("train_images.npy"), labelsPath: f("train_labels.npy"),
                                        classes: classes)
        let fm = FileManager.default
        if fm.fileExists(atPath: f("test_images.npy")) || fm.fileExists(atPath: f("test_labels.npy")) {
            let test = try NPYImageDataset(imagesPath: f("test_images.npy"), labelsPath: f("test_labels.npy"),
                                           classes: classes)
            guard test.height == train.height, test.width == train.width, test.channels == train.channels else {
                throw DataError.invalidFile(path: test.name,
                                            reason: "image shape \(test.height)×\(test.width)×\(test.channels) "
                                                + "differs from \(train.name)'s "
                                                + "\(train.height)×\(train.width)×\(train.channels)")
            }
            return ImageSplits(train: train, eval: test)
        }
        return try holdOutSplit(train, evalFraction: evalFraction, seed: seed)
    }

    /// Float feature matrices for embedding-only students: `train_features.npy` (N×D float32) and
    /// `train_labels.npy`, optionally `test_features.npy` / `test_labels.npy` (else a hold-out, as for images).
    public static func loadFeatures(folder: String, classes: Int, evalFraction: Double,
                                    seed: UInt64) throws -> (train: FeatureSplit, eval: FeatureSplit) {
        let dir = URL(fileURLWithPath: folder)
        let f = { (n: String) in dir.appendingPathComponent(n).path }
        let train = try NPYFeatureDataset(featuresPath: f("train_features.npy"), labelsPath: f("train_labels.npy"),
                                          classes: classes)
        if FileManager.default.fileExists(atPath: f("test_features.npy")) {
            let test = try NPYFeatureDataset(featuresPath: f("test_features.npy"), labelsPath: f("test_labels.npy"),
                                             classes: classes)
            guard test.dim == train.dim else {
                throw DataError.invalidFile(path: test.features.path, reason: "feature size \(test.dim) "
                                            + "differs from \(train.features.path)'s \(train.dim)")
            }
            return (FeatureSplit(features: train, rows: Array(0..<train.count)),
                    FeatureSplit(features: test, rows: Array(0..<test.count)))
        }
        let (t, e) = try holdOutIndices(count: train.count, evalFraction: evalFraction, seed: seed,
                                        name: train.features.path)
        return (FeatureSplit(features: train, rows: t), FeatureSplit(features: train, rows: e))
    }
}
