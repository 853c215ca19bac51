import Foundation
import KDComm
import KDCore
import KDData
import KDFormats
import KDModels
import KDTensor

/// Stage ③ with `teacher.cache` (docs/training.md, "Teacher cache"; TinyViT's fast pretraining
/// distillation, Wu et al., ECCV 2022): a network teacher's outputs (embedding and logits of every
/// view) of augmentation round `r = epoch mod R`, stored once per (round, sample) and read back on
/// every later pass over that round, so the teacher forward runs once per round instead of once per
/// epoch.
///
/// A step reads the records of its samples. With a batch-invariant teacher (the fused ResNet: every
/// GEMM row-invariant) the samples without a valid record (first pass over the round, or an
/// interrupted write) are computed from the step's own views as one batch and stored: their bits are
/// what the teacher gives them in any batch. Any other teacher computes each such sample's whole
/// block of `blockSize` consecutive indices, rendered in that round, as one batch, and stores the
/// block: a block is always the same batch, so its records have the same bits whichever run, world
/// size or `kdgraph teacher-cache` (always in blocks) computed them. The values a step uses are
/// always the stored ones (a float16 cache rounds a fresh record before using it).
public final class TeacherOutputCache {
    /// The teacher network on images `[m·V, …]`: embedding `[m·V, D]`, logits `[m·V, C]`.
    public typealias Forward = (Tensor) throws -> (embedding: Tensor, logits: Tensor)
    /// Samples per teacher forward when records are computed (`TeacherCacheLayout.block`): large
    /// enough for efficient GEMMs (the convolution tuner times 16 images too), small enough that the
    /// first pass over a round computes little beyond what its steps need at the start.
    public static let blockSize = 16
    public let store: TeacherCacheStore
    public let rounds: Int
    let embeddingSize: Int, classes: Int
    /// Records read from the cache and records computed (and written) by this rank so far.
    public private(set) var recordsRead = 0, recordsComputed = 0
    /// The teacher gives a sample the same bits in any batch (the fused ResNet: row-invariant GEMMs,
    /// no batch statistics). Then a step computes only its missing samples, from its own views, and the
    /// first pass over a round costs what an uncached step costs; otherwise whole blocks are computed.
    /// Set when the cache is built (tests force the block path).
    public internal(set) var batchInvariantTeacher: Bool
    /// The training data, whose augmentation rounds a block is rendered from.
    let data: TrainingData
    /// The teacher network's forward, no tape.
    let forward: Forward

    /// The cache of `store` for the teacher network `forward` (built by `TeacherSide`, which owns it).
    init(store: TeacherCacheStore, data: TrainingData, embeddingSize: Int, classes: Int, batchInvariantTeacher: Bool,
         forward: @escaping Forward) {
        self.store = store; rounds = store.layout.rounds; self.data = data
        self.embeddingSize = embeddingSize; self.classes = classes
        self.batchInvariantTeacher = batchInvariantTeacher; self.forward = forward
    }

    /// The teacher outputs of `batch` (rows `sample·V + view`): the stored records where valid; the other
    /// samples are run through the teacher and stored — from the batch's own views with a batch-invariant
    /// teacher, otherwise with their whole blocks rendered.
    func outputs(_ batch: Batch) throws -> (Tensor, Tensor) {
        let n = batch.count, V = batch.views, D = embeddingSize, C = classes, W = D + C, per = V * W
        let round = batch.epoch % rounds
        let records = Tensor(uninitializedShape: [max(1, n * per)])
        var missing: [Int] = []   // positions in the batch
        for k in 0..<n where !(try store.read(round: round, sample: batch.indices[k], into: records.ptr + k * per)) {
            missing.append(k)
        }
        recordsRead += n - missing.count
        if batchInvariantTeacher, !missing.isEmpty {
            // The batch's own views of its missing samples, as one batch: the teacher gives them the bits it
            // gives them in any batch, a block's included.
            let perImage = batch.images.count / max(1, n * V)
            var shape = batch.images.shape
            shape[0] = missing.count * V
            let images = Tensor(uninitializedShape: shape)
            for (j, k) in missing.enumerated() {
                (images.ptr + j * V * perImage).update(from: batch.images.ptr + k * V * perImage, count: V * perImage)
            }
            let computed = try computeRecords(missing.map { batch.indices[$0] }, images: images, round: round)
            for (j, k) in missing.enumerated() {
                (records.ptr + k * per).update(from: computed.ptr + j * per, count: per)
            }
        } else {
            let byBlock = Dictionary(grouping: missing) { batch.indices[$0] / store.layout.block }
            for block in byBlock.keys.sorted() {
                let ids = Array(store.layout.blockSamples(of: block * store.layout.block))
                let computed = try computeBlock(ids, round: round)
                for k in byBlock[block]! {
                    (records.ptr + k * per).update(from: computed.ptr + (batch.indices[k] - ids[0]) * per,
                                                   count: per)
                }
            }
        }
        let embedding = Tensor(uninitializedShape: [n * V, D]), logits = Tensor(uninitializedShape: [n * V, C])
        for row in 0..<(n * V) {
            (embedding.ptr + row * D).update(from: records.ptr + row * W, count: D)
            (logits.ptr + row * C).update(from: records.ptr + row * W + D, count: C)
        }
        return (embedding, logits)
    }

    /// Runs the teacher on the block of samples `ids` of `round` (rendered from the training data) as one
    /// batch, stores every record (rounded to the cache's dtype) and returns them (`ids.count` records of
    /// `V·W` values).
    @discardableResult
    public func computeBlock(_ ids: [Int], round: Int) throws -> Tensor {
        try computeRecords(ids, images: data.roundBatch(ids, round: round).images, round: round)
    }

    /// Runs the teacher on `images` (the views of samples `ids` in `round`), stores and returns the records.
    func computeRecords(_ ids: [Int], images: Tensor, round: Int) throws -> Tensor {
        let V = store.layout.views, D = embeddingSize, C = classes, W = D + C, per = V * W
        let (e, l) = try forward(images)
        precondition(e.shape == [ids.count * V, D] && l.shape == [ids.count * V, C],
                     "teacher outputs \(e.shape), \(l.shape) for \(ids.count * V) rows")
        let records = Tensor(uninitializedShape: [max(1, ids.count * per)])
        for (j, id) in ids.enumerated() {
            let rec = records.ptr + j * per
            for v in 0..<V {
                (rec + v * W).update(from: e.ptr + (j * V + v) * D, count: D)
                (rec + v * W + D).update(from: l.ptr + (j * V + v) * C, count: C)
            }
            store.roundToStored(rec, count: per)
            try store.write(round: round, sample: id, from: rec)
        }
        recordsComputed += ids.count
        return records
    }

    // MARK: - opening

    /// The teacher's convolution algorithms as `layer=algorithm` pairs, sorted: they decide the stored
    /// bits, so they are part of the manifest. A stride-2 layer that runs direct is left out: caches made
    /// before such layers had choices ran them direct and list only the stride-1 layers (`adopt` reads an
    /// absent stride-2 layer as direct), so those caches stay valid.
    static func teacherAlgorithms(_ choices: [ConvAlgorithmChoice]) -> String {
        choices.filter { $0.shape.stride == 1 || $0.algorithm != .direct }
            .flatMap { c in c.layers.filter { $0.hasPrefix("teacher.") }.map { "\($0)=\(c.algorithm.rawValue)" } }
            .sorted().joined(separator: " ")
    }

    /// The manifest this run expects: the layout, and every setting that decides the stored values.
    static func manifest(config c: KDConfig, data: TrainingData, embeddingSize: Int, weights: String,
                         content: String, algorithms: String) -> TeacherCacheManifest {
        let layout = TeacherCacheLayout(samples: data.trainCount, views: c.data.views, rounds: c.teacher.cache.rounds,
                                        columns: [.init(name: "embedding", size: embeddingSize),
                                                  .init(name: "logits", size: c.data.classes)],
                                        dtype: c.teacher.cache.dtype.rawValue, block: blockSize)
        func list(_ xs: [Double]?) -> String { xs.map { "\($0)" } ?? "~" }
        let fields: [(String, String)] = [
            ("teacher.model", c.teacher.model),
            ("teacher.weights", weights),
            ("teacher.convolutions", algorithms),
            ("seed", "\(c.seed)"),
            ("data.source", c.data.source.rawValue),
            ("data.path", c.data.path),
            ("training split", "\(data.trainName), \(data.trainCount) samples"),
            ("training data content", content),
            ("data.eval_fraction", "\(c.data.evalFraction)"),
            ("data.image_size", c.data.imageSize.map(String.init) ?? "~"),
            ("data.augment", "\(c.data.augment)"),
            ("data.flip", "\(c.data.flip)"),
            ("data.crop_padding", "\(c.data.cropPadding)"),
            ("data.virtual_augment", c.data.views >= 2 ? c.data.virtualAugment.rawValue : "(one view)"),
            ("data.mean", list(c.data.mean)),
            ("data.std", list(c.data.std)),
        ]
        return TeacherCacheManifest(layout: layout, fields: fields)
    }

    /// Opens (rank 0 creates) the store of `config.teacher.cache` for the teacher network `model`, on
    /// every rank, and returns it with the algorithms the teacher runs: under
    /// `runtime.conv_algorithm: auto`, a cache made with other teacher algorithms imposes its own (the
    /// stored bits depend on them; set on `model`'s layers); any other difference is an error on every
    /// rank naming the field.
    static func openStore(config c: KDConfig, data: TrainingData, model: any Classifier, embeddingSize: Int,
                          algorithms chosen: [ConvAlgorithmChoice],
                          comm: Communicator) throws -> (TeacherCacheStore, [ConvAlgorithmChoice]) {
        var algorithms = chosen
        let dir = c.teacher.cache.path
        // What decides the stored values beyond the config: the teacher's weights and the training data's
        // content (rows shuffled or edited in place under the same path change it). Rank 0 reads both.
        var identity = ["", ""]
        try comm.onRoot {
            identity[0] = c.teacher.initialization == .random ? "random (seed \(c.seed))"
                : "sha256:" + (try sha256HexOfFile(c.teacher.checkpoint))
            identity[1] = "sha256:" + data.trainContentDigest() + " of " + data.trainName
        }
        let weights = try comm.broadcast(identity[0], root: 0), content = try comm.broadcast(identity[1], root: 0)
        // The algorithms of an existing cache (rank 0 reads, every rank decides the same way).
        var stored = ""
        if comm.rank == 0, let m = try? TeacherCacheStore.readManifest(dir) {
            stored = m.value("teacher.convolutions") ?? ""
        }
        stored = try comm.broadcast(stored, root: 0)
        if c.convAlgorithm.perLayer, !stored.isEmpty, stored != teacherAlgorithms(algorithms) {
            try adopt(stored, into: &algorithms, teacher: model)
            if comm.rank == 0 {
                Runtime.logger.info("teacher.cache \(dir): running the teacher's convolutions as the cache was made")
            }
        }
        let expected = manifest(config: c, data: data, embeddingSize: embeddingSize, weights: weights,
                                content: content, algorithms: teacherAlgorithms(algorithms))
        do {
            try comm.onRoot { try TeacherCacheStore.prepare(directory: dir, manifest: expected) }
        } catch {
            throw c.configError("teacher.cache.path", "\(error)")
        }
        var store: TeacherCacheStore?
        var failure = ""
        do { store = try TeacherCacheStore(directory: dir, expected: expected) } catch { failure = "\(error)" }
        var failed = [failure.isEmpty ? 0.0 : 1.0]
        try comm.allReduce(&failed, op: .max)
        guard let store, failed[0] == 0 else {
            throw c.configError("teacher.cache.path",
                                failure.isEmpty ? "the cache could not be opened on another rank" : failure)
        }
        return (store, algorithms)
    }

    /// Sets the teacher's layers to the `layer=algorithm` pairs of `stored` (stride-2 layers it does not
    /// list to direct) and records them in `algorithms` (source `teacher cache`).
    static func adopt(_ stored: String, into algorithms: inout [ConvAlgorithmChoice], teacher: any Classifier) throws {
        var wanted: [String: ConvAlgorithm] = [:]
        for pair in stored.split(separator: " ") {
            let parts = pair.split(separator: "=")
            guard parts.count == 2, let a = ConvAlgorithm(rawValue: String(parts[1])) else {
                throw TrainError.invalid("teacher cache manifest: teacher.convolutions entry '\(pair)' is not "
                                         + "layer=algorithm")
            }
            wanted[String(parts[0])] = a
        }
        let convs = ConvAlgorithmTuner.namedConvolutions([("teacher", teacher, false)])
        for (name, a) in wanted {
            guard let conv = convs[name] else {
                throw TrainError.invalid("teacher cache manifest: no layer \(name) in this teacher")
            }
            conv.algorithm = a
        }
        ConvAlgorithmTuner.runUnrecordedStridedDirect(convs, recorded: Set(wanted.keys))
        for i in algorithms.indices {
            let layers = algorithms[i].layers.filter { $0.hasPrefix("teacher.") }
            let listed = layers.compactMap { wanted[$0] }
            // A stride-2 layer the cache does not list ran direct (`teacherAlgorithms`).
            let strided = algorithms[i].shape.stride != 1 && !layers.isEmpty && listed.isEmpty
            guard let a = strided ? .direct : listed.first else { continue }
            algorithms[i].algorithm = a
            algorithms[i].source = "teacher cache"
        }
    }
}

/// What `kdgraph teacher-cache` did (docs/training.md, "Teacher cache").
public struct TeacherCacheFill: Sendable {
    public var rounds: Int, samples: Int
    /// Records computed and written by all ranks, and records found valid (an earlier, interrupted fill).
    public var computed: Int, present: Int
    public var seconds: Double
    /// Bytes of one record and its checksum.
    public var bytesPerSampleRound: Int

    public var json: String {
        let mb = Double(computed * bytesPerSampleRound) / 1e6
        return String(format: "{\"rounds\": %d, \"samples\": %d, \"records_computed\": %d, \"records_present\": %d, "
                      + "\"seconds\": %.3f, \"records_per_s\": %.1f, \"bytes_per_sample_round\": %d, "
                      + "\"cache_bytes\": %d, \"write_mb_per_s\": %.2f}",
                      rounds, samples, computed, present, seconds, Double(computed) / max(seconds, 1e-9),
                      bytesPerSampleRound, rounds * samples * bytesPerSampleRound, mb / max(seconds, 1e-9))
    }
}

extension Trainer {
    /// Refuses to fill the cache of a config whose loss terms read nothing of the teacher: training skips such a
    /// teacher (`TrainerStages.teacherOutputs`), and with it the cache. `kdgraph teacher-cache` asks before the
    /// trainer opens (creates) the cache's files.
    public static func refuseAnUnreadCache(_ config: KDConfig) throws {
        guard config.mode == .distill, !config.lossReadsTeacher else { return }
        throw config.configError("loss", "no loss term reads the teacher's outputs (loss: "
                                 + config.loss.map(\.kind).joined(separator: ", ") + "), so training with this "
                                 + "config never reads the teacher cache: kdgraph teacher-cache has nothing to fill")
    }

    /// Computes every missing record of every round (`kdgraph teacher-cache`): the blocks are split over
    /// the ranks in contiguous ranges, each block is one teacher forward; records already valid are
    /// skipped, so a fill interrupted at any point resumes where it stopped (a record whose write was
    /// cut short fails its checksum and is computed again). `progress` gets rank 0's lines.
    public func fillTeacherCache(progress: (String) -> Void) throws -> TeacherCacheFill {
        guard let cache = teacher?.cache else {
            throw config.configError("teacher.cache",
                                     "kdgraph teacher-cache needs mode: distill, a network teacher and "
                                         + "teacher.cache with rounds ≥ 1 and a path")
        }
        try Self.refuseAnUnreadCache(config)
        let layout = cache.store.layout
        let mine = BatchPlan.share(rank: comm.rank, worldSize: comm.size, batch: layout.blockCount)
        let scratch = Tensor(uninitializedShape: [max(1, layout.recordValues)])
        let start = monotonicSeconds()
        var lastReport = start
        var counts = [0.0, 0.0]   // computed, present
        for round in 0..<layout.rounds {
            for (done, block) in mine.enumerated() {
                let ids = Array(layout.blockSamples(of: block * layout.block))
                let missing = try ids.filter { !(try cache.store.read(round: round, sample: $0, into: scratch.ptr)) }
                if missing.isEmpty {
                    counts[1] += Double(ids.count)
                } else {
                    try cache.computeBlock(ids, round: round)
                    counts[0] += Double(ids.count)
                }
                let now = monotonicSeconds()
                if comm.rank == 0 && (now - lastReport >= 5 || done + 1 == mine.count) {
                    lastReport = now
                    let fraction = Double(round * mine.count + done + 1) / Double(max(1, layout.rounds * mine.count))
                    let eta = (now - start) * (1 - fraction) / max(fraction, 1e-9)
                    progress(String(format: "round %d/%d: block %d/%d of rank 0 (%.0f%% of its share), "
                                    + "%.1f records/s, ETA %.0f s", round + 1, layout.rounds, done + 1, mine.count,
                                    100 * fraction, counts[0] / max(now - start, 1e-9), eta))
                }
            }
        }
        try comm.allReduce(&counts, op: .sum)
        return TeacherCacheFill(rounds: layout.rounds, samples: layout.samples, computed: Int(counts[0]),
                                present: Int(counts[1]), seconds: monotonicSeconds() - start,
                                bytesPerSampleRound: cache.store.bytesPerSampleRound)
    }
}
