import Foundation
import KDCore
import KDData
import KDTensor

/// Stages ①–②: where a rank's batches come from.
///
/// - images (`synthetic`, `npy` images, `cifar`): `V` augmented views per sample, NHWC;
/// - feature matrices (`npy` folder with `train_features.npy`, N×D float32, for embedding-only
///   students such as `mlp`): one view, no augmentation, rows `[n, D]`.
///
/// Both are indexed by the same world-size-invariant `Sampler`.
public final class TrainingData {
    enum Source {
        case images(ImageSplits, train: BatchLoader, eval: BatchLoader)
        case features(train: FeatureSplit, eval: FeatureSplit)
    }
    let source: Source
    public let trainCount: Int
    public let evalCount: Int
    /// What the model sees: channels and `[H, W]` (feature matrices: 1 channel, `[1, D]`).
    public let inputChannels: Int
    public let inputSize: [Int]
    public let trainName: String
    /// The evaluation split's file (or generator), named in errors.
    public let evalName: String
    /// Rows of the training file (before a hold-out split): what per-sample teacher files are keyed by.
    public let trainFileCount: Int
    /// The file row of each training-split index (nil: the split is the whole file).
    let trainFileRows: [Int]?
    /// Whether the evaluation split is held out of the training file (`data.eval_fraction`), not a file or
    /// generator of its own.
    public var evalIsHeldOut: Bool { trainFileRows != nil }

    /// The normalisation of image sources (`data.mean`/`data.std`, or per-channel defaults when unset;
    /// empty for feature matrices) and whether it was defaulted.
    public let mean: [Double]
    public let std: [Double]
    public let normalizationDefaulted: Bool
    /// The unset normalisation was computed from the training files (not the synthetic 0.5 / 0.25).
    public let normalizationComputed: Bool
    /// Where an unset normalisation came from, for the start-up line (`data.mean/data.std not set: …`).
    public var normalizationNote: String {
        let values = "mean \(mean.map { ($0 * 1e4).rounded() / 1e4 }), std \(std.map { ($0 * 1e4).rounded() / 1e4 })"
        return normalizationComputed ? "computed from the \(trainCount) training images of \(trainName): \(values)"
            : "using \(values) for the \(inputChannels) channel(s) of \(trainName)"
    }
    /// The training views' augmentation (`data.augment`, `data.flip`, `data.crop_padding`).
    public let policy: AugmentPolicy

    /// True for feature matrices (one view, no augmentation).
    public var isFeatures: Bool { if case .features = source { return true }; return false }

    /// Bytes of the data a run keeps resident over an epoch (the mapped or loaded files; synthetic
    /// images are generated per batch): counted by `MemoryEstimate`.
    public var residentBytes: Int {
        switch source {
        case .images(let splits, _, _):
            if splits.train is SyntheticDataset { return 0 }
            func bytes(_ d: ImageDataset) -> Int {
                let base = (d as? SubsetDataset)?.base ?? d
                return base.count * base.height * base.width * base.channels
            }
            let train = bytes(splits.train), eval = bytes(splits.eval)
            // A held-out split shares the training file.
            let shared = (splits.train as? SubsetDataset)?.base === (splits.eval as? SubsetDataset)?.base
            return shared && splits.train is SubsetDataset ? train : train + eval
        case .features(let train, let eval):
            let f = MemoryLayout<Float>.stride, t = train.features.count * train.dim * f
            return eval.features === train.features ? t : t + eval.features.count * eval.dim * f
        }
    }

    /// SHA-256 (hex) of what the teacher sees of the training split: every image's bytes (or feature
    /// row) in split order, with the shape. One pass over the split; the teacher cache's manifest
    /// records it, so a cache is never read for data whose content changed under the same path.
    public func trainContentDigest() -> String {
        switch source {
        case .images(let splits, _, _): return splits.train.contentDigest()
        case .features(let train, _): return train.contentDigest()
        }
    }

    /// File rows of training-split indices (teacher embeddings are keyed by the row in the data file).
    public func fileRows(_ indices: [Int]) -> [Int] {
        guard let map = trainFileRows else { return indices }
        return indices.map { map[$0] }
    }

    /// True when `data.source: npy` names a folder of feature matrices rather than images.
    static func isFeatureFolder(_ c: KDConfig) -> Bool {
        guard c.data.source == .npy else { return false }
        let dir = URL(fileURLWithPath: c.data.path)
        let fm = FileManager.default
        return fm.fileExists(atPath: dir.appendingPathComponent("train_features.npy").path)
            && !fm.fileExists(atPath: dir.appendingPathComponent("train_images.npy").path)
    }

    /// The data `c` describes; a data-layer error about a config key (`data.image_size` too small for the
    /// synthetic source) is named as the config's own errors are, at its `--set` or in the file.
    convenience init(config c: KDConfig) throws {
        do { try self.init(unlocated: c) } catch { throw c.located(error) }
    }

    private init(unlocated c: KDConfig) throws {
        let seed = UInt64(c.seed)
        if TrainingData.isFeatureFolder(c) {
            if c.data.views != 1 {
                throw c.configError("data.views",
                                    "feature matrices (\(c.data.path)/train_features.npy) "
                                        + "have no augmented views: use 1, got \(c.data.views)")
            }
            let (train, eval) = try NPYFolderSource.loadFeatures(folder: c.data.path, classes: c.data.classes,
                                                                  evalFraction: c.data.evalFraction, seed: seed)
            source = .features(train: train, eval: eval)
            trainCount = train.count; evalCount = eval.count
            inputChannels = 1; inputSize = [1, train.dim]
            mean = []; std = []; normalizationDefaulted = false; normalizationComputed = false
            policy = AugmentPolicy(enabled: false)
            trainName = train.features.features.path
            evalName = eval.features.features.path
            trainFileCount = train.features.count
            trainFileRows = train.rows == Array(0..<train.features.count) ? nil : train.rows
            return
        }
        let splits = try DataSources.open(DataSourceConfig(
            source: c.data.source.rawValue, path: c.data.path.isEmpty ? nil : c.data.path,
            classes: c.data.classes, imageSize: c.data.imageSize, evalFraction: c.data.evalFraction,
            seed: seed, syntheticTrainCount: c.data.trainSize, syntheticEvalCount: c.data.evalSize))
        let train = splits.train
        // Unset, the normalisation comes from the data: a file source's per-channel statistics over its
        // training split (one pass), the synthetic source's neutral 0.5 / 0.25 (what its runs always used).
        normalizationDefaulted = c.data.mean == nil || c.data.std == nil
        let computed = normalizationDefaulted && c.data.source != .synthetic ? train.channelStatistics() : nil
        normalizationComputed = computed != nil
        mean = c.data.mean ?? computed?.mean ?? [Double](repeating: 0.5, count: train.channels)
        std = c.data.std ?? computed?.std ?? [Double](repeating: 0.25, count: train.channels)
        for (key, values) in [("data.mean", mean), ("data.std", std)] where values.count != train.channels {
            throw c.configError(key, "needs one entry per image channel "
                                    + "(\(train.channels) in \(train.name)), got \(values.count); remove it to use "
                                    + "the files' own statistics")
        }
        let norm = try Normalization(mean: mean.map(Float.init), std: std.map(Float.init))
        policy = AugmentPolicy.training(augment: c.data.augment, flip: c.data.flip, cropPadding: c.data.cropPadding,
                                        views: c.data.views, strongVirtualView: c.data.virtualAugment == .strong)
        let loader = try BatchLoader(dataset: train, views: c.data.views, policy: policy,
                                     normalization: norm, seed: seed, rounds: c.teacher.cache.rounds)
        let evalLoader = try BatchLoader(dataset: splits.eval, views: 1, policy: AugmentPolicy(enabled: false),
                                         normalization: norm, seed: seed)
        source = .images(splits, train: loader, eval: evalLoader)
        trainCount = train.count; evalCount = splits.eval.count
        inputChannels = train.channels; inputSize = [train.height, train.width]
        trainName = train.name
        evalName = splits.eval.name
        if let subset = train as? SubsetDataset {
            trainFileCount = subset.base.count
            trainFileRows = subset.indices
        } else {
            trainFileCount = train.count
            trainFileRows = nil
        }
    }

    /// This rank's training batch at `position`.
    public func trainBatch(_ sampler: Sampler, at position: SamplerPosition) -> Batch {
        switch source {
        case .images(_, let loader, _):
            return loader.trainBatch(sampler, at: position)
        case .features(let train, _):
            let plan = sampler.plan(epoch: position.epoch, step: position.step)
            let indices = sampler.localIndices(plan)
            let (x, labels) = train.batch(indices)
            return Batch(images: x, labels: labels, indices: indices, views: 1, plan: plan)
        }
    }

    /// Training samples `indices` with the views of augmentation round `round` (< `teacher.cache.rounds`),
    /// as one batch of their own: what the teacher cache stores for them (`kdgraph teacher-cache`).
    public func roundBatch(_ indices: [Int], round: Int) -> Batch {
        let plan = BatchPlan(epoch: round, step: 0, globalSamples: indices.count)
        switch source {
        case .images(_, let loader, _):
            return loader.load(indices, plan: plan)
        case .features(let train, _):
            let (x, labels) = train.batch(indices)
            return Batch(images: x, labels: labels, indices: indices, views: 1, plan: plan)
        }
    }

    /// Evaluation samples `indices`, this rank's share of `plan` (one view, no augmentation).
    public func evalBatch(_ indices: [Int], plan: BatchPlan) -> Batch {
        switch source {
        case .images(_, _, let evalLoader):
            return evalLoader.load(indices, plan: plan, augment: false)
        case .features(_, let eval):
            let (x, labels) = eval.batch(indices)
            return Batch(images: x, labels: labels, indices: indices, views: 1, plan: plan)
        }
    }

    /// `steps` training batches from `start`, loaded on a background thread.
    public func stream(_ sampler: Sampler, from start: SamplerPosition, steps: Int,
                       depth: Int = 2) -> Prefetcher<Batch> {
        trainBatchStream(sampler: sampler, start: start, steps: steps, depth: depth) {
            self.trainBatch(sampler, at: $0)
        }
    }
}

extension KDConfig {
    /// The config with what the data decides filled in: the image size and the normalisation of an
    /// image source (docs/data.md, "Views, augmentation, normalisation"). This is what `config.yaml`,
    /// the config digest and the checkpoint's `kdgraph.config` record, so a resumed run or `kdgraph eval`
    /// sees the same values.
    func resolved(by data: TrainingData) -> KDConfig {
        var c = self
        guard case .images = data.source else { return c }
        if c.data.imageSize == nil, data.inputSize[0] == data.inputSize[1] { c.data.imageSize = data.inputSize[0] }
        c.data.mean = data.mean
        c.data.std = data.std
        return c
    }
}

extension KDConfig {
    /// `error` named at the config key it is about (`DataError.configKey`), as the config's own errors are;
    /// any other error as it is.
    func located(_ error: Error) -> Error {
        guard let e = error as? DataError, let key = e.configKey else { return error }
        return configError(key, e.detail)
    }
}
