import Foundation
import KDComm
import KDCore
import KDData
import KDFormats
import KDTensor

/// `kdgraph export-views --config C --rounds R --out DIR` (docs/training.md, "Teachers outside
/// KDGraph"): the exact augmented views the student will see in each of `R` rounds, so that a teacher
/// run elsewhere (an open_clip ViT in Python) embeds exactly those views; `teacher.kind: embeddings`
/// then reads its `N×R×V×D` file at round `epoch mod R`.
///
/// `DIR/round-NNNN.npy`: float32 `[rows, V, H, W, C]`, row = the sample's row in the training data
/// file (what `teacher.embeddings` is keyed by; rows of a held-out split stay zero), view `v` the
/// normalised NHWC image the student's batch holds for it (docs/data.md), written by the ranks in
/// contiguous ranges. `DIR/views.json` describes the layout and the settings that made it.
public enum ViewExport {
    public struct Summary: Sendable {
        public var rounds: Int, rows: Int, samples: Int, views: Int
        public var shape: [Int]
        public var seconds: Double
        public var json: String {
            String(format: "{\"rounds\": %d, \"rows\": %d, \"training_samples\": %d, \"views\": %d, "
                   + "\"shape\": [%@], \"seconds\": %.3f}", rounds, rows, samples, views,
                   shape.map(String.init).joined(separator: ", "), seconds)
        }
    }

    public static let chunk = 64

    public static func run(config userConfig: KDConfig, rounds: Int, out: String, comm: Communicator,
                           progress: (String) -> Void) throws -> Summary {
        var config = userConfig
        comm.timeoutSeconds = config.comm.timeoutS
        // `kdgraph export-views` refuses --rounds below 1 before it starts; this guards other callers.
        guard rounds >= 1 else { throw TrainError.invalid("export-views: rounds must be ≥ 1, got \(rounds)") }
        if config.teacher.cache.rounds != 0 && config.teacher.cache.rounds != rounds {
            throw config.configError("teacher.cache.rounds",
                                     "\(config.teacher.cache.rounds) differs from --rounds \(rounds): the "
                                         + "embeddings must be of the rounds training replays")
        }
        config.teacher.cache = .init(rounds: rounds)
        let data = try TrainingData(config: config)
        guard !data.isFeatures, data.inputSize.count == 2 else {
            throw config.configError("data.path",
                                     "export-views needs images; feature matrices have no augmented views")
        }
        let V = config.data.views, (H, W) = (data.inputSize[0], data.inputSize[1]), C = data.inputChannels
        let shape = [data.trainFileCount, V, H, W, C]
        let paths = (0..<rounds).map { (out as NSString).appendingPathComponent(String(format: "round-%04d.npy", $0)) }
        let description = (out as NSString).appendingPathComponent("views.json")
        try comm.onRoot {
            if FileManager.default.fileExists(atPath: description) {
                throw TrainError.io(path: description, message: "this folder already holds exported views; "
                                    + "choose another --out or delete it")
            }
            do {
                try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
            } catch {
                throw TrainError.io(path: out,
                                    message: "--out: cannot create the folder (\(ioReason(error, path: out)))")
            }
            do {
                for p in paths { try NPYRowFile.create(path: p, dtype: .float32, shape: shape) }
            } catch let e as NPYError {
                throw TrainError.io(path: out, message: "--out: \(e)")
            }
        }
        let files = try paths.map { try NPYRowFile(path: $0, dtype: .float32, shape: shape) }
        let mine = Array(BatchPlan.share(rank: comm.rank, worldSize: comm.size, batch: data.trainCount))
        let per = V * H * W * C
        let start = monotonicSeconds()
        var lastReport = start
        for r in 0..<rounds {
            for (n, lo) in stride(from: 0, to: mine.count, by: chunk).enumerated() {
                let ids = Array(mine[lo..<min(mine.count, lo + chunk)])
                let images = data.roundBatch(ids, round: r).images
                for (k, row) in data.fileRows(ids).enumerated() {
                    try files[r].write(row: row, UnsafeRawBufferPointer(start: images.ptr + k * per,
                                                                       count: per * MemoryLayout<Float>.stride))
                }
                let now = monotonicSeconds()
                if comm.rank == 0 && now - lastReport >= 5 {
                    lastReport = now
                    progress("round \(r + 1)/\(rounds): \(min(mine.count, (n + 1) * chunk))/\(mine.count) samples "
                             + "of rank 0's share")
                }
            }
        }
        // The description last, once every rank has written: its presence says the export is complete.
        try comm.barrier()
        try comm.onRoot {
            let text = """
            {
              "format": "kdgraph-views/1",
              "rounds": \(rounds), "rows": \(shape[0]), "training_samples": \(data.trainCount), "views": \(V),
              "height": \(H), "width": \(W), "channels": \(C), "dtype": "float32",
              "layout": "round-NNNN.npy[row, view] = the normalised NHWC view the student sees of training-file \
            row `row` in augmentation round NNNN (epochs e with e mod rounds = NNNN); rows not in the training \
            split are zero. Embed each view and save an N×R×V×D .npy for teacher.embeddings.",
              "mean": \(data.mean), "std": \(data.std), "seed": \(config.seed),
              "training_split": "\(data.trainName)"
            }

            """
            try text.write(toFile: description, atomically: true, encoding: .utf8)
        }
        return Summary(rounds: rounds, rows: shape[0], samples: data.trainCount, views: V, shape: shape,
                       seconds: monotonicSeconds() - start)
    }
}
