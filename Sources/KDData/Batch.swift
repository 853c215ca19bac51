import KDCore
import KDTensor

/// One rank's share of a batch, ready for the model.
///
/// `images` is `[n·V, H, W, C]` NHWC floats, **sample-major**: row `k·V + v` is view `v` of sample `k`
/// (sample 0 view 0, sample 0 view 1, …, sample 1 view 0, …). `indices[k]` is sample `k`'s global
/// dataset index, `labels[k]` its label.
public struct Batch {
    public let images: Tensor
    public let labels: [Int]
    public let indices: [Int]
    public let views: Int
    /// The global batch this share belongs to: position, size, every rank's count, this rank's share.
    public let plan: BatchPlan
    public var epoch: Int { plan.epoch }
    public var step: Int { plan.step }

    /// Labels per image row (each label repeated `views` times), matching `images`' rows.
    public var rowLabels: [Int] { labels.flatMap { [Int](repeating: $0, count: views) } }
    /// Number of samples.
    public var count: Int { indices.count }

    public init(images: Tensor, labels: [Int], indices: [Int], views: Int, plan: BatchPlan) {
        precondition(indices.count == plan.counts[plan.rank],
                     "\(indices.count) samples for a share of \(plan.counts[plan.rank])")
        self.images = images; self.labels = labels; self.indices = indices
        self.views = views; self.plan = plan
    }

    private init(part images: Tensor, labels: [Int], indices: [Int], views: Int, plan: BatchPlan) {
        self.images = images; self.labels = labels; self.indices = indices
        self.views = views; self.plan = plan
    }

    /// The same samples with other image rows (same shape): a test's differently augmented views.
    public func replacingImages(_ images: Tensor) -> Batch {
        precondition(images.shape == self.images.shape, "images \(images.shape) for \(self.images.shape)")
        return Batch(part: images, labels: labels, indices: indices, views: views, plan: plan)
    }

    /// Samples `range` of this share as a batch of their own (their image rows, labels and indices), for a
    /// step that runs in chunks (`train.micro_batch`). Its `plan` is still the whole share's, so its `count`
    /// is not `plan.counts[plan.rank]`: it is for what reads samples (the student, the teacher), not for
    /// what reads the plan (the gathers, the loss).
    public func samples(_ range: Range<Int>) throws -> Batch {
        if range == 0..<count { return self }
        let part = try slice(images, axis: 0, range: (range.lowerBound * views)..<(range.upperBound * views))
        return Batch(part: part, labels: Array(labels[range]), indices: Array(indices[range]), views: views,
                     plan: plan)
    }
}

/// Loads samples of an `ImageDataset` and renders their views into a `Batch`.
public final class BatchLoader: @unchecked Sendable {
    public let dataset: ImageDataset
    public let views: Int
    public let renderer: ViewRenderer
    /// Augmentation rounds (`teacher.cache.rounds`): epoch `e` renders the views of round `e mod rounds`,
    /// so they repeat every `rounds` epochs (TinyViT's replay); 0: every epoch its own views.
    public let rounds: Int

    /// `views ≥ 1` augmented views per sample; `seed` keys the augmentation.
    public init(dataset: ImageDataset, views: Int, policy: AugmentPolicy, normalization: Normalization,
                seed: UInt64, rounds: Int = 0) throws {
        guard views >= 1 else { throw DataError.invalidConfig(field: "data.views", message: "\(views) must be ≥ 1") }
        self.dataset = dataset; self.views = views; self.rounds = max(0, rounds)
        renderer = try ViewRenderer(height: dataset.height, width: dataset.width, channels: dataset.channels,
                                    policy: policy, normalization: normalization, seed: seed)
    }

    /// The batch of samples `indices` (this rank's share of `plan`): with `augment`, `views` augmented
    /// views each (epoch `plan.epoch`, or its round); without (evaluation), one normalised view each.
    public func load(_ indices: [Int], plan: BatchPlan, augment: Bool = true) -> Batch {
        let epoch = rounds > 0 ? plan.epoch % rounds : plan.epoch
        let V = augment ? views : 1
        let H = dataset.height, W = dataset.width, C = dataset.channels, per = H * W * C
        let images = Tensor(uninitializedShape: [indices.count * V, H, W, C])
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: max(per, 1))
        defer { scratch.deallocate() }
        var labels = [Int](); labels.reserveCapacity(indices.count)
        for (k, i) in indices.enumerated() {
            precondition(i >= 0 && i < dataset.count, "sample \(i) outside 0..<\(dataset.count) of \(dataset.name)")
            dataset.copyImage(i, into: scratch)
            labels.append(dataset.label(i))
            for v in 0..<V {
                renderer.render(scratch, sampleIndex: i, epoch: epoch, view: v, views: V, augment: augment,
                                into: images.ptr + (k * V + v) * per)
            }
        }
        return Batch(images: images, labels: labels, indices: indices, views: V, plan: plan)
    }

    /// This rank's training batch at `position`.
    public func trainBatch(_ sampler: Sampler, at position: SamplerPosition) -> Batch {
        let plan = sampler.plan(epoch: position.epoch, step: position.step)
        return load(sampler.localIndices(plan), plan: plan)
    }
}
