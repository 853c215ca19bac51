import Foundation

/// CIFAR-10 / CIFAR-100 binary batches, memory-mapped and exposed as 32×32×3 HWC.
///
/// CIFAR-10 record (3073 bytes): 1 label byte, then 3072 bytes CHW (1024 R, 1024 G, 1024 B, rows of 32).
/// Files `data_batch_1.bin … data_batch_5.bin` (train), `test_batch.bin` (test).
/// CIFAR-100 record (3074 bytes): coarse label byte, fine label byte, 3072 bytes CHW.
/// Files `train.bin`, `test.bin`; the fine label (100 classes) or the coarse one (20) is used.
public final class CIFARDataset: ImageDataset, @unchecked Sendable {
    public enum Variant: Sendable, Equatable {
        case cifar10
        case cifar100(coarse: Bool)
        var recordBytes: Int { self == .cifar10 ? 3073 : 3074 }
        var labelOffset: Int { self == .cifar100(coarse: false) ? 1 : 0 }
        var classes: Int {
            switch self { case .cifar10: return 10; case .cifar100(let c): return c ? 20 : 100 }
        }
    }

    public let variant: Variant
    public let height = 32, width = 32, channels = 3
    public let count: Int
    public var classes: Int { variant.classes }
    public let name: String
    private let files: [MappedBytes]
    private let starts: [Int]   // first sample index of each file
    private let labelValues: [UInt8]

    /// Maps `paths` (in order) and checks record sizes and labels.
    public init(paths: [String], variant: Variant) throws {
        self.variant = variant
        name = paths.count == 1 ? paths[0] : "\(paths[0]) … (\(paths.count) files)"
        var files: [MappedBytes] = [], starts: [Int] = [], labels: [UInt8] = []
        var total = 0
        for p in paths {
            guard FileManager.default.fileExists(atPath: p) else {
                // The variant's first file missing: perhaps the folder holds the other variant.
                let hint = p == paths.first ? Self.otherVariantHint(p, variant) : ""
                throw DataError.missingFile(path: p, what: "CIFAR batch file" + hint)
            }
            let m = try MappedBytes(path: p)
            let r = variant.recordBytes
            guard m.bytes.count > 0, m.bytes.count % r == 0 else {
                throw DataError.invalidFile(path: p, reason: "size \(m.bytes.count) bytes is not a positive multiple "
                                            + "of the \(r)-byte record (truncated or not a "
                                            + "\(variant == .cifar10 ? "CIFAR-10" : "CIFAR-100") batch)")
            }
            let n = m.bytes.count / r
            for k in 0..<n {
                let v = m.bytes[k * r + variant.labelOffset]
                guard Int(v) < variant.classes else {
                    throw DataError.labelOutOfRange(path: p, index: k, value: Int(v), classes: variant.classes)
                }
                labels.append(v)
            }
            files.append(m); starts.append(total); total += n
        }
        self.files = files; self.starts = starts; self.labelValues = labels; self.count = total
    }

    public func label(_ i: Int) -> Int { Int(labelValues[i]) }

    /// When the folder of the missing `path` holds the other variant's files, which `data.classes` reads them
    /// (a CIFAR-100 folder under `data.classes: 10` asked for `data_batch_1.bin`).
    static func otherVariantHint(_ path: String, _ variant: Variant) -> String {
        let folder = (path as NSString).deletingLastPathComponent
        let (other, file, classes) = variant == .cifar10 ? ("CIFAR-100", "train.bin", "100 or 20")
            : ("CIFAR-10", "data_batch_1.bin", "10")
        guard FileManager.default.fileExists(atPath: (folder as NSString).appendingPathComponent(file)) else {
            return ""
        }
        return " (the folder holds \(other)'s \(file), which data.classes: \(classes) reads)"
    }

    public func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>) {
        var f = files.count - 1
        while starts[f] > i { f -= 1 }
        let r = variant.recordBytes
        let src = (files[f].bytes.baseAddress! + (i - starts[f]) * r + (r - 3072)).assumingMemoryBound(to: UInt8.self)
        for p in 0..<1024 {   // CHW -> HWC
            out[3 * p] = src[p]; out[3 * p + 1] = src[1024 + p]; out[3 * p + 2] = src[2048 + p]
        }
    }
}

/// The `cifar` source: a folder holding the extracted binary batches (see `launch/download_cifar.sh`).
/// `classes` 10 selects CIFAR-10, 100 CIFAR-100 fine labels, 20 CIFAR-100 coarse labels. The test
/// batch is the evaluation split; if it is absent, `evalFraction` of train is held out.
public enum CIFARSource {
    public static func load(folder: String, classes: Int, evalFraction: Double, seed: UInt64) throws -> ImageSplits {
        let dir = URL(fileURLWithPath: folder)
        let f = { (n: String) in dir.appendingPathComponent(n).path }
        let variant: CIFARDataset.Variant
        let train: [String], test: String
        switch classes {
        case 10: variant = .cifar10; train = (1...5).map { f("data_batch_\($0).bin") }; test = f("test_batch.bin")
        case 100, 20: variant = .cifar100(coarse: classes == 20); train = [f("train.bin")]; test = f("test.bin")
        default:
            throw DataError.invalidConfig(field: "data.classes",
                                          message: "\(classes) does not select a CIFAR variant "
                                              + "(10, 100, or 20 for CIFAR-100 coarse)")
        }
        let trainSet = try CIFARDataset(paths: train, variant: variant)
        if FileManager.default.fileExists(atPath: test) {
            return ImageSplits(train: trainSet, eval: try CIFARDataset(paths: [test], variant: variant))
        }
        return try holdOutSplit(trainSet, evalFraction: evalFraction, seed: seed)
    }
}
