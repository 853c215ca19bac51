import KDFormats
import KDTensor

/// A labelled image collection, read by index. Images are `height × width × channels` UInt8, HWC
/// order (whatever the file layout), labels in `0..<classes`. Implementations are immutable after
/// construction and safe to read from the prefetch thread.
public protocol ImageDataset: AnyObject, Sendable {
    /// Number of samples.
    var count: Int { get }
    var height: Int { get }
    var width: Int { get }
    var channels: Int { get }
    var classes: Int { get }
    /// The file or folder (or generator) this split comes from, named in errors.
    var name: String { get }
    /// Label of sample `i` (`0 ≤ i < count`), in `0..<classes`.
    func label(_ i: Int) -> Int
    /// Writes sample `i` as `height·width·channels` HWC bytes into `out`.
    func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>)
}

extension ImageDataset {
    /// Bytes per image.
    public var imageBytes: Int { height * width * channels }

    /// Sample `i` as HWC bytes.
    public func image(_ i: Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: imageBytes) { b, n in copyImage(i, into: b.baseAddress!); n = imageBytes }
    }

    /// Sample `i` as HWC floats scaled to [0, 1].
    public func imageFloat(_ i: Int) -> [Float] { image(i).map { Float($0) / 255 } }

    /// Every label, in index order.
    public func labels() -> [Int] { (0..<count).map(label) }

    /// Per-channel mean and (population) standard deviation of the pixels scaled to [0, 1], over every
    /// image in index order: one pass, sums in Double (exact for any realistic count: each term is an
    /// integer ≤ 255², the sums stay below 2⁵³ up to 10¹¹ pixels), so every rank gets the same values.
    /// A channel with no spread gets std 1 (nothing to scale).
    public func channelStatistics() -> (mean: [Double], std: [Double]) {
        var sum = [Double](repeating: 0, count: channels), squares = sum
        var image = [UInt8](repeating: 0, count: imageBytes)
        for i in 0..<count {
            image.withUnsafeMutableBufferPointer { copyImage(i, into: $0.baseAddress!) }
            for (k, v) in image.enumerated() {
                let x = Double(v)
                sum[k % channels] += x
                squares[k % channels] += x * x
            }
        }
        let n = Double(max(1, count * height * width))
        let mean = sum.map { $0 / n / 255 }
        let std = zip(sum, squares).map { s, q in
            let variance = max(0, q / n - (s / n) * (s / n)) / (255 * 255)
            return variance > 0 ? variance.squareRoot() : 1
        }
        return (mean, std)
    }

    /// SHA-256 (hex) of the shape and of every image's bytes in index order: what a teacher sees of this
    /// split. Reordered, edited or replaced images give another digest (the teacher cache's manifest
    /// records it); labels are not part of it.
    public func contentDigest() -> String {
        var h = SHA256Stream()
        h.update("images \(count)x\(height)x\(width)x\(channels)\n")
        var image = [UInt8](repeating: 0, count: imageBytes)
        for i in 0..<count {
            image.withUnsafeMutableBufferPointer { copyImage(i, into: $0.baseAddress!) }
            image.withUnsafeBytes { h.update($0) }
        }
        return h.finalizeHex()
    }
}

/// A training split and an evaluation split of one source.
public struct ImageSplits {
    public let train: ImageDataset
    public let eval: ImageDataset
    public init(train: ImageDataset, eval: ImageDataset) { self.train = train; self.eval = eval }
}

/// The samples `indices` of `base`, in that order (hold-out splits).
public final class SubsetDataset: ImageDataset, @unchecked Sendable {
    public let base: ImageDataset
    public let indices: [Int]
    public let name: String
    public var count: Int { indices.count }
    public var height: Int { base.height }
    public var width: Int { base.width }
    public var channels: Int { base.channels }
    public var classes: Int { base.classes }

    public init(base: ImageDataset, indices: [Int], name: String) {
        self.base = base; self.indices = indices; self.name = name
    }
    public func label(_ i: Int) -> Int { base.label(indices[i]) }
    public func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>) { base.copyImage(indices[i], into: out) }
}

/// Deterministic hold-out: a permutation of `0..<count` keyed by `(seed, 0xE7A1)` puts its first
/// `round(fraction · count)` entries in the evaluation split and the rest in training, each sorted
/// ascending (so the mapped file is read in order). `name` names the source in errors.
public func holdOutIndices(count: Int, evalFraction: Double, seed: UInt64,
                           name: String) throws -> (train: [Int], eval: [Int]) {
    guard evalFraction > 0, evalFraction < 1 else {
        throw DataError.invalidConfig(field: "data.eval_fraction",
                                      message: "\(evalFraction) must be in (0, 1) when \(name) has no test split")
    }
    let nEval = Int((evalFraction * Double(count)).rounded())
    guard nEval >= 1, nEval < count else {
        throw DataError.invalidConfig(field: "data.eval_fraction",
                                      message: "\(evalFraction) of \(count) samples in \(name) leaves an empty split")
    }
    var rng = KDRandom(keys: seed, 0xE7A1)
    let perm = rng.permutation(count)
    return (Array(perm[nEval...]).sorted(), Array(perm[..<nEval]).sorted())
}

/// Splits `base` into training and held-out evaluation subsets (`holdOutIndices`).
public func holdOutSplit(_ base: ImageDataset, evalFraction: Double, seed: UInt64) throws -> ImageSplits {
    let (trainIdx, evalIdx) = try holdOutIndices(count: base.count, evalFraction: evalFraction, seed: seed,
                                                 name: base.name)
    return ImageSplits(train: SubsetDataset(base: base, indices: trainIdx, name: "\(base.name) (train part)"),
                       eval: SubsetDataset(base: base, indices: evalIdx, name: "\(base.name) (held-out part)"))
}
