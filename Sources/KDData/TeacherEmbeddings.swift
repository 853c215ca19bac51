import Foundation
import KDFormats
import KDTensor

/// Precomputed teacher embeddings: a memory-mapped float32 (or float16) `.npy` of shape `N×D` (one
/// embedding per sample), `N×V×D` (one per view) or `N×R×V×D` (one per view of each augmentation
/// round, `teacher.cache.rounds: R`: the views `kdgraph export-views` wrote), row `i` = dataset sample
/// `i`. Each rank reads only its rows.
public final class TeacherEmbeddings: @unchecked Sendable {
    public let array: NPYArray
    public let count: Int
    public let dim: Int
    /// Views stored per sample (1 for an `N×D` file).
    public let storedViews: Int
    /// Augmentation rounds stored per sample (1 unless `N×R×V×D`).
    public let storedRounds: Int
    public var path: String { array.path }

    /// Opens `path` and checks it has one row per sample of `dataset` (`N` equal).
    public convenience init(path: String, dataset: ImageDataset) throws {
        try self.init(path: path, expectedCount: dataset.count, datasetName: dataset.name)
    }

    public init(path: String, expectedCount: Int, datasetName: String) throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError.missingFile(path: path, what: "teacher embeddings")
        }
        let a = try wrapNPY(path) { try NPYArray(path: path) }
        try wrapNPY(path) {
            try a.expectDType([.float32, .float16])
            try a.expectShape([Int?](repeating: nil, count: min(max(a.shape.count, 2), 4)))
        }
        array = a
        count = a.shape[0]; dim = a.shape.last!
        storedViews = a.shape.count >= 3 ? a.shape[a.shape.count - 2] : 1
        storedRounds = a.shape.count == 4 ? a.shape[1] : 1
        guard count == expectedCount else {
            throw DataError.countMismatch(pathA: path, countA: count, pathB: datasetName, countB: expectedCount)
        }
        guard dim > 0, storedViews > 0 else {
            throw DataError.invalidFile(path: path, reason: "empty embedding shape \(a.shape)")
        }
    }

    /// Checks that a `views`-view run with `rounds` augmentation rounds can use this file: `N×D` fits any
    /// `V` and `R`, `N×V'×D` needs `V' = V`, `N×R'×V'×D` also `R' = R` (the rounds must be replayed).
    public func validate(views: Int, rounds: Int = 0) throws {
        guard storedViews == 1 || storedViews == views else {
            throw DataError.invalidFile(path: path, reason: "stores \(storedViews) views per sample "
                                        + "but data.views is \(views)")
        }
        guard array.shape.count < 4 || storedRounds == rounds else {
            throw DataError.invalidFile(path: path, reason: "stores \(storedRounds) augmentation rounds per sample "
                                        + "(N×R×V×D) but teacher.cache.rounds is \(rounds)")
        }
    }

    /// Embeddings of `indices` as `[n·V, D]`, sample-major like `Batch.images`: an `N×D` file repeats
    /// each sample's row `views` times, an `N×V×D` file gives view `v` of sample `k` in row `k·V + v`, an
    /// `N×R×V×D` file that view of round `round`.
    public func gather(_ indices: [Int], views: Int = 1, round: Int = 0) throws -> Tensor {
        try validate(views: views, rounds: array.shape.count == 4 ? storedRounds : 0)
        guard array.shape.count < 4 || (0..<storedRounds).contains(round) else {
            throw DataError.invalidFile(path: path, reason: "round \(round) outside the \(storedRounds) stored")
        }
        let out = Tensor(uninitializedShape: [indices.count * views, dim])
        for (k, i) in indices.enumerated() {
            guard i >= 0, i < count else {
                throw DataError.invalidFile(path: path, reason: "sample \(i) outside 0..<\(count)")
            }
            for v in 0..<views {
                let dst = out.ptr + (k * views + v) * dim
                if storedViews == 1 { array.copyAsFloat(elementOffset: i * dim, count: dim, into: dst) }
                else {
                    let row = (i * storedRounds + (array.shape.count == 4 ? round : 0)) * storedViews + v
                    array.copyAsFloat(elementOffset: row * dim, count: dim, into: dst)
                }
            }
        }
        return out
    }
}

/// Prompt (class-proxy) embeddings: a float32 `.npy` of shape `K×C×D` (K prompt templates per class)
/// or `C×D` (read as K = 1).
public enum PromptEmbeddings {
    /// Loads the prompts as a `[K, C, D]` tensor and checks `C == classes`.
    public static func load(path: String, classes: Int) throws -> Tensor {
        guard FileManager.default.fileExists(atPath: path) else {
            throw DataError.missingFile(path: path, what: "prompt embeddings")
        }
        let a = try wrapNPY(path) { try NPYArray(path: path) }
        try wrapNPY(path) {
            try a.expectDType([.float32, .float64])
            if a.shape.count == 2 { try a.expectShape([classes, nil]) } else { try a.expectShape([nil, classes, nil]) }
        }
        let shape = a.shape.count == 2 ? [1] + a.shape : a.shape
        let t = Tensor(uninitializedShape: shape)
        if a.count > 0 { a.copyAsFloat(elementOffset: 0, count: a.count, into: t.ptr) }
        // Small (K × C × D) and read on every step: a NaN here would surface as a non-finite teacher output
        // blamed on the embeddings file, so it is named now.
        if let bad = (0..<t.count).first(where: { !t.ptr[$0].isFinite }) {
            let n = (0..<t.count).filter { !t.ptr[$0].isFinite }.count
            throw DataError.invalidFile(path: path, reason: "prompt embeddings (teacher.prompts) hold \(n) NaN/Inf "
                                        + "value(s), the first at element \(bad) (\(t.ptr[bad]))")
        }
        return t
    }
}
