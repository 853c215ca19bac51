import KDData
import KDLosses
import KDModels
import KDTensor

/// Stage ③: the frozen teacher. Forward only, never on the tape. Built complete by its one initialiser
/// from the loaded source and, with `teacher.cache`, the opened cache store: nothing is set on it
/// afterwards.
///
/// - `network`: a model-zoo network loaded from a safetensors checkpoint (or, with `teacher.init: random`,
///   left at its seeded initialisation, for benchmarks); its embedding is the pooled penultimate feature,
///   its logits the classifier output, its class proxies the classifier's rows.
/// - `embeddings`: a foundation model's precomputed image embeddings (`N×D` or `N×V×D` .npy, memory-
///   mapped, each rank reads its rows by the sample's row in the data file) and optional prompt embeddings
///   `K×C×D`, from which PRG's confidence-weighted teacher logits and class proxies come (docs/losses.md, "PRG").
public final class TeacherSide {
    public enum Source {
        case network(any Classifier)
        case embeddings(TeacherEmbeddings, prompts: Tensor?)
    }

    public let source: Source
    let data: TrainingData
    public let embeddingSize: Int
    public let clipScale: Float
    /// `teacher.cache.rounds`: an `N×R×V×D` embeddings file is read at round `epoch mod R`.
    let rounds: Int
    /// Class proxies `[C, D_t]` (nil for an embeddings teacher without prompts; with prompts, set by the
    /// first batch).
    public private(set) var proxies: Tensor?
    /// A ResNet teacher's fused inference form (BN folded, epilogues fused, docs/ops.md). It bakes in the
    /// layers' convolution algorithms, so it is built once they are final: here with a cache (whose
    /// algorithms are final when it opens), else on the first batch (after a resumed checkpoint's).
    private var fused: FusedResNet?
    /// `teacher.cache` (network teachers): the stored outputs of each augmentation round.
    public let cache: TeacherOutputCache?

    public struct Output {
        public var embedding: Tensor
        /// The classifier's logits, or an embeddings teacher's prompt logits (nil without prompts).
        public var logits: Tensor?
    }

    /// The teacher of `source`; with `cacheStore` (a network teacher's `teacher.cache`, opened with the
    /// algorithms its layers now run) its outputs are read from and written to the cache.
    public init(source: Source, config: KDConfig, data: TrainingData, cacheStore: TeacherCacheStore?) {
        self.source = source
        self.data = data
        clipScale = Float(config.teacher.clipScale)
        rounds = config.teacher.cache.rounds
        let size = source.embeddingSize
        embeddingSize = size
        switch source {
        case .network(let model):
            proxies = model.fc.weight.copy()
            if let cacheStore {
                let fused = FusedResNet(model)
                self.fused = fused
                cache = TeacherOutputCache(store: cacheStore, data: data, embeddingSize: size,
                                           classes: config.data.classes, batchInvariantTeacher: fused != nil,
                                           forward: { x in try TeacherSide.forward(x, model: model, fused: fused) })
            } else {
                cache = nil
            }
        case .embeddings:
            cache = nil
        }
    }

    /// A network teacher on images, no tape: the fused form when there is one.
    static func forward(_ x: Tensor, model: any Classifier,
                        fused: FusedResNet?) throws -> (embedding: Tensor, logits: Tensor) {
        try withNoGrad { let (f, l) = try fused?(x) ?? model(x); return (f, l) }
    }

    /// The teacher's view of this rank's batch (rows `sample·V + view`).
    public func callAsFunction(_ batch: Batch) throws -> Output {
        try withNoGrad {
            switch source {
            case .network(let model):
                if let cache {
                    let (feature, logits) = try cache.outputs(batch)
                    return Output(embedding: feature, logits: logits)
                }
                if fused == nil { fused = FusedResNet(model) }
                let (feature, logits) = try Self.forward(batch.images, model: model, fused: fused)
                return Output(embedding: feature, logits: logits)
            case .embeddings(let emb, let prompts):
                let round = rounds > 0 ? batch.epoch % rounds : 0
                let f = try emb.gather(data.fileRows(batch.indices), views: batch.views, round: round)
                guard let prompts else { return Output(embedding: f, logits: nil) }
                let (logits, proxies) = try prgTeacher(features: f, prompts: prompts, clipScale: clipScale)
                if self.proxies == nil { self.proxies = proxies }
                return Output(embedding: f, logits: logits)
            }
        }
    }
}

extension TeacherSide.Source {
    /// The teacher of `config` (`teacher.kind`): a model-zoo network with its checkpoint's weights (or,
    /// with `teacher.init: random`, its seeded initialisation, said loudly), in eval mode; or the
    /// precomputed embeddings, validated against the data, with their prompt embeddings if any.
    init(config: KDConfig, data: TrainingData) throws {
        switch config.teacher.kind {
        case .network:
            let model = try ModelZoo.make(name: config.teacher.model, classes: config.data.classes,
                                          inputChannels: data.inputChannels, imageSize: data.inputSize,
                                          hiddenSizes: ModelZoo.hiddenSizes(config.teacher.hidden),
                                          seed: UInt64(config.seed))
            if config.teacher.initialization == .random {
                // Benchmarks only (docs/config.md): said loudly, so a training run cannot miss it.
                let ignored = config.teacher.checkpoint.isEmpty ? "" : "; teacher.checkpoint "
                    + "\(config.teacher.checkpoint) is not read"
                let warning = "teacher \(config.teacher.model) has RANDOM weights (teacher.init: random)"
                    + "\(ignored): fine for timing, meaningless for distillation"
                Runtime.logger.warning("\(warning)")
            } else {
                let path = config.teacher.checkpoint
                do {
                    try Checkpoint.loadWeights(path: path, into: model)
                } catch {
                    // What the file holds, when its metadata says and it is not what the config builds.
                    var holds = ""
                    if let meta = try? Checkpoint.read(path: path).metadata, let m = meta["kdgraph.model"] {
                        let classes = meta["kdgraph.classes"] ?? "?"
                        if m != config.teacher.model || classes != String(config.data.classes) {
                            holds = "; the file holds a \(m) of \(classes) classes (kdgraph.model, kdgraph.classes), "
                                + "the config builds a \(config.teacher.model) (teacher.model) of "
                                + "\(config.data.classes) (data.classes)"
                        }
                    }
                    throw config.configError("teacher.checkpoint", "\(error)\(holds) (teacher.init: checkpoint; "
                                             + "benchmarks can set teacher.init: random)")
                }
            }
            model.eval()
            self = .network(model)
        default:
            // Keyed by the row in the data file, so a hold-out split keeps the user's row numbering.
            let emb = try TeacherEmbeddings(path: config.teacher.embeddings, expectedCount: data.trainFileCount,
                                            datasetName: data.trainName)
            try emb.validate(views: config.data.views, rounds: config.teacher.cache.rounds)
            var prompts: Tensor?
            if !config.teacher.prompts.isEmpty {
                prompts = try PromptEmbeddings.load(path: config.teacher.prompts, classes: config.data.classes)
                guard prompts!.shape.last == emb.dim else {
                    throw TrainError.invalid("\(config.teacher.prompts): prompt embedding size "
                                             + "\(prompts!.shape.last ?? 0) does not match the image embeddings' "
                                             + "\(emb.dim) in \(config.teacher.embeddings)")
                }
            }
            self = .embeddings(emb, prompts: prompts)
        }
    }

    /// The network of a network teacher, nil for embeddings.
    public var network: (any Classifier)? {
        if case .network(let model) = self { return model }
        return nil
    }

    /// The size of the teacher's embedding: the network's pooled feature, or the embeddings' width.
    public var embeddingSize: Int {
        switch self {
        case .network(let model): return model.featureSize
        case .embeddings(let emb, _): return emb.dim
        }
    }
}
