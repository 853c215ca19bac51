import XCTest
@testable import KDData
@testable import KDFormats

final class SourceTests: TempDirTestCase {
    func writeFolder(n: Int = 12, h: Int = 4, w: Int = 3, c: Int = 3, labels: [Int64]? = nil,
                     version: Int = 1) throws -> [UInt8] {
        let px = (0..<(n * h * w * c)).map { UInt8($0 % 251) }
        try NPYWriter.write(px, shape: [n, h, w, c], to: path("train_images.npy"), version: version)
        try NPYWriter.write(labels ?? (0..<n).map { Int64($0 % 5) }, shape: [n], to: path("train_labels.npy"),
                            version: version)
        return px
    }

    func testNPYFolderWithTestSplit() throws {
        for version in 1...3 {
            let px = try writeFolder(version: version)
            try NPYWriter.write([UInt8](repeating: 9, count: 2 * 36), shape: [2, 4, 3, 3],
                                to: path("test_images.npy"), version: version)
            try NPYWriter.write([Int32(1), 4], shape: [2], to: path("test_labels.npy"), version: version)
            let s = try DataSources.open(DataSourceConfig(source: "npy", path: dir.path, classes: 5, imageSize: nil))
            XCTAssertEqual(s.train.count, 12); XCTAssertEqual(s.eval.count, 2)
            XCTAssertEqual([s.train.height, s.train.width, s.train.channels], [4, 3, 3])
            XCTAssertEqual(s.train.image(7), Array(px[(7 * 36)..<(8 * 36)]))
            XCTAssertEqual(s.train.label(7), 2); XCTAssertEqual(s.eval.labels(), [1, 4])
            XCTAssertEqual(s.eval.image(1), [UInt8](repeating: 9, count: 36))
        }
    }

    func testNPYHoldOutIsDeterministicAndDisjoint() throws {
        _ = try writeFolder(n: 40)
        let cfg = DataSourceConfig(source: "npy", path: dir.path, classes: 5, imageSize: nil,
                                   evalFraction: 0.25, seed: 3)
        let a = try DataSources.open(cfg), b = try DataSources.open(cfg)
        let ia = (a.eval as! SubsetDataset).indices, ta = (a.train as! SubsetDataset).indices
        XCTAssertEqual(ia.count, 10); XCTAssertEqual(ta.count, 30)
        XCTAssertEqual(ia, (b.eval as! SubsetDataset).indices)
        XCTAssertEqual((ia + ta).sorted(), Array(0..<40))
        XCTAssertEqual(a.eval.image(0),
                       try NPYImageDataset(imagesPath: path("train_images.npy"), labelsPath: path("train_labels.npy"),
                                           classes: 5).image(ia[0]))
        var other = cfg; other.seed = 4
        XCTAssertNotEqual(ia, (try DataSources.open(other).eval as! SubsetDataset).indices)
    }

    func testNPYErrors() throws {
        _ = try writeFolder(n: 6, labels: [0, 1, 2, 7, 1, 0])
        let img = path("train_images.npy"), lab = path("train_labels.npy")
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(lab): label 7 at index 3 is out of range 0..<5")
        try NPYWriter.write([Int64](repeating: 0, count: 5), shape: [5], to: lab)
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "sample count mismatch: \(img) has 6 samples but \(lab) has 5")
        try NPYWriter.write([Float](repeating: 0, count: 6), shape: [6], to: lab)
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(lab): dtype '<f4' does not fit here (expected one of <i8, <i4, |u1, |i1)")
        try NPYWriter.write([Int64](repeating: 0, count: 6), shape: [6], to: lab)
        try NPYWriter.write([Float](repeating: 0, count: 6 * 36), shape: [6, 4, 3, 3], to: img)
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(img): dtype '<f4' does not fit here (expected one of |u1)")
        try NPYWriter.write([UInt8](repeating: 0, count: 6 * 12), shape: [6, 12], to: img)
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(img): shape [6, 12] does not match the expected [*, *, *, *]")
        // N×C×H×W (PyTorch's layout) would read as images 3 pixels tall with 16 channels.
        try NPYWriter.write([UInt8](repeating: 0, count: 6 * 3 * 16 * 16), shape: [6, 3, 16, 16], to: img)
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(img): shape [6, 3, 16, 16] reads as N×H×W×C images 3×16 pixels with 16 channels; it "
                       + "looks like N×C×H×W (PyTorch's layout): save it as N×H×W×C, e.g. "
                       + "np.transpose(x, (0, 2, 3, 1))")
        // Truncated image file.
        let full = NPYWriter.encode([UInt8](repeating: 1, count: 6 * 36), shape: [6, 4, 3, 3])
        try Data(full[0..<(full.count - 10)]).write(to: URL(fileURLWithPath: img))
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: img, labelsPath: lab, classes: 5) },
                       "\(img): truncated data: the shape needs 216 bytes, the file has 206")
        let missing = path("nothing/train_images.npy")
        XCTAssertEqual(message { _ = try NPYImageDataset(imagesPath: missing, labelsPath: lab, classes: 5) },
                       "\(missing): missing image array")
        XCTAssertEqual(message { _ = try DataSources.open(DataSourceConfig(source: "npy", path: nil)) },
                       "config data.path: source 'npy' needs a folder")
        XCTAssertEqual(message { _ = try DataSources.open(DataSourceConfig(source: "npy", path: img)) },
                       "\(img): a file, not a folder: data.path names the folder that holds the train_images.npy or "
                       + "train_features.npy files")
        XCTAssertEqual(message { _ = try DataSources.open(DataSourceConfig(source: "imagenet")) },
                       "config data.source: unknown source 'imagenet' (synthetic, npy, cifar)")
        try Data(full).write(to: URL(fileURLWithPath: img))
        XCTAssertEqual(message { _ = try DataSources.open(DataSourceConfig(source: "npy", path: dir.path, classes: 5,
                                                                           imageSize: 32, evalFraction: 0.5)) },
                       "\(dir.path)/train_images.npy (train part): images are 4×3 but data.image_size is 32 "
                       + "(file sources take their size from the files: remove data.image_size)")
        XCTAssertEqual(message { _ = try DataSources.open(DataSourceConfig(source: "npy", path: dir.path, classes: 5,
                                                                           imageSize: nil, evalFraction: 0)) },
                       "config data.eval_fraction: 0.0 must be in (0, 1) when \(img) has no test split")
    }

    /// CIFAR records: label byte(s) then 1024 R, 1024 G, 1024 B; exposed as HWC.
    func cifarRecord(label: [UInt8], seed: Int) -> [UInt8] {
        label + (0..<3072).map { UInt8(($0 * 13 + seed * 29) % 256) }
    }

    func testCIFAR10And100() throws {
        var files: [[UInt8]] = []
        for f in 1...5 {
            let recs = (0..<(f == 5 ? 1 : 2)).flatMap { k in
                cifarRecord(label: [UInt8((f + k) % 10)], seed: f * 10 + k)
            }
            try Data(recs).write(to: URL(fileURLWithPath: path("data_batch_\(f).bin"))); files.append(recs)
        }
        try Data(cifarRecord(label: [3], seed: 99)).write(to: URL(fileURLWithPath: path("test_batch.bin")))
        let s = try DataSources.open(DataSourceConfig(source: "cifar", path: dir.path, classes: 10))
        XCTAssertEqual(s.train.count, 9); XCTAssertEqual(s.eval.count, 1)
        XCTAssertEqual(s.train.labels(), [1, 2, 2, 3, 3, 4, 4, 5, 5])
        // Sample 7 = second record of data_batch_4 (seed 41); pixel (y, x, c) = CHW[c·1024 + y·32 + x].
        let img = s.train.image(7), chw = cifarRecord(label: [0], seed: 41).dropFirst().map { $0 }
        for (y, x, c) in [(0, 0, 0), (5, 7, 1), (31, 31, 2), (12, 30, 0)] {
            XCTAssertEqual(img[(y * 32 + x) * 3 + c], chw[c * 1024 + y * 32 + x])
        }
        XCTAssertEqual(s.eval.label(0), 3)

        let recs100 = (0..<3).flatMap { k in cifarRecord(label: [UInt8(k + 17), UInt8(k * 40)], seed: k) }
        try Data(recs100).write(to: URL(fileURLWithPath: path("train.bin")))
        let fine = try CIFARSource.load(folder: dir.path, classes: 100, evalFraction: 1.0 / 3, seed: 0)
        XCTAssertEqual(fine.train.count + fine.eval.count, 3)
        let whole = try CIFARDataset(paths: [path("train.bin")], variant: .cifar100(coarse: false))
        XCTAssertEqual(whole.labels(), [0, 40, 80])
        XCTAssertEqual(try CIFARDataset(paths: [path("train.bin")], variant: .cifar100(coarse: true)).labels(),
                       [17, 18, 19])
        XCTAssertEqual(whole.image(2)[3 * 33 + 1], cifarRecord(label: [0, 0], seed: 2)[2 + 1024 + 33])
    }

    func testCIFARErrors() throws {
        let p = path("data_batch_1.bin")
        try Data(cifarRecord(label: [1], seed: 0) + [1, 2, 3]).write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(message { _ = try CIFARDataset(paths: [p], variant: .cifar10) },
                       "\(p): size 3076 bytes is not a positive multiple of the 3073-byte record "
                       + "(truncated or not a CIFAR-10 batch)")
        try Data(cifarRecord(label: [1], seed: 0) + cifarRecord(label: [12], seed: 1))
            .write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(message { _ = try CIFARDataset(paths: [p], variant: .cifar10) },
                       "\(p): label 12 at index 1 is out of range 0..<10")
        let q = path("train.bin")
        try Data(cifarRecord(label: [25, 3], seed: 0)).write(to: URL(fileURLWithPath: q))
        XCTAssertEqual(message { _ = try CIFARDataset(paths: [q], variant: .cifar100(coarse: true)) },
                       "\(q): label 25 at index 0 is out of range 0..<20")
        try Data(cifarRecord(label: [1], seed: 0)).write(to: URL(fileURLWithPath: p))
        XCTAssertEqual(message { _ = try CIFARSource.load(folder: dir.path, classes: 10, evalFraction: 0.1, seed: 0) },
                       "\(path("data_batch_2.bin")): missing CIFAR batch file")
        // No file of the variant asked for, but the other variant's: said so.
        try FileManager.default.removeItem(atPath: p)
        XCTAssertEqual(message { _ = try CIFARSource.load(folder: dir.path, classes: 10, evalFraction: 0.1, seed: 0) },
                       "\(p): missing CIFAR batch file (the folder holds CIFAR-100's train.bin, which data.classes: "
                       + "100 or 20 reads)")
        XCTAssertEqual(message { _ = try CIFARSource.load(folder: dir.path, classes: 7, evalFraction: 0.1, seed: 0) },
                       "config data.classes: 7 does not select a CIFAR variant (10, 100, or 20 for CIFAR-100 coarse)")
    }

    func testTeacherEmbeddingsAndPrompts() throws {
        let ds = PatternDataset(count: 5)
        let e = path("teacher.npy")
        try NPYWriter.write((0..<15).map(Float.init), shape: [5, 3], to: e)
        let t = try TeacherEmbeddings(path: e, dataset: ds)
        let g = try t.gather([4, 0], views: 2)
        XCTAssertEqual(g.shape, [4, 3]); XCTAssertEqual(g.array, [12, 13, 14, 12, 13, 14, 0, 1, 2, 0, 1, 2])
        try NPYWriter.write((0..<30).map(Float.init), shape: [5, 2, 3], to: e)
        let tv = try TeacherEmbeddings(path: e, dataset: ds)
        XCTAssertEqual(try tv.gather([1], views: 2).array, [6, 7, 8, 9, 10, 11])
        XCTAssertEqual(message { _ = try tv.gather([1], views: 3) },
                       "\(e): stores 2 views per sample but data.views is 3")
        // N×R×V×D (teacher.cache.rounds: R): view v of sample i in round r at [i, r, v].
        try NPYWriter.write((0..<60).map(Float.init), shape: [5, 2, 2, 3], to: e)
        let tr = try TeacherEmbeddings(path: e, dataset: ds)
        XCTAssertEqual(try tr.gather([1, 0], views: 2, round: 1).array, [18, 19, 20, 21, 22, 23, 6, 7, 8, 9, 10, 11])
        XCTAssertEqual(try tr.gather([4], views: 2, round: 0).array, [48, 49, 50, 51, 52, 53])
        XCTAssertEqual(message { try tr.validate(views: 2, rounds: 3) },
                       "\(e): stores 2 augmentation rounds per sample (N×R×V×D) but teacher.cache.rounds is 3")
        XCTAssertEqual(message { _ = try tr.gather([1], views: 2, round: 2) }, "\(e): round 2 outside the 2 stored")

        try NPYWriter.write([Float](repeating: 0, count: 12), shape: [4, 3], to: e)
        XCTAssertEqual(message { _ = try TeacherEmbeddings(path: e, dataset: ds) },
                       "sample count mismatch: \(e) has 4 samples but pattern has 5")
        try NPYWriter.write([Int64](repeating: 0, count: 5), shape: [5], to: e)
        XCTAssertEqual(message { _ = try TeacherEmbeddings(path: e, dataset: ds) },
                       "\(e): dtype '<i8' does not fit here (expected one of <f4, <f2)")

        let p = path("prompts.npy")
        try NPYWriter.write((0..<24).map(Float.init), shape: [2, 4, 3], to: p)
        let pr = try PromptEmbeddings.load(path: p, classes: 4)
        XCTAssertEqual(pr.shape, [2, 4, 3]); XCTAssertEqual(pr.array, (0..<24).map(Float.init))
        try NPYWriter.write((0..<12).map(Double.init), shape: [4, 3], to: p)
        XCTAssertEqual(try PromptEmbeddings.load(path: p, classes: 4).shape, [1, 4, 3])
        XCTAssertEqual(message { _ = try PromptEmbeddings.load(path: p, classes: 10) },
                       "\(p): shape [4, 3] does not match the expected [10, *]")
        // Issue 24 item 10: a NaN in the prompts was blamed on teacher.embeddings at the first step.
        var values = (0..<12).map(Float.init)
        values[7] = .nan; values[9] = .infinity
        try NPYWriter.write(values, shape: [4, 3], to: p)
        XCTAssertTrue(message { _ = try PromptEmbeddings.load(path: p, classes: 4) }.hasSuffix(
            "\(p): prompt embeddings (teacher.prompts) hold 2 NaN/Inf value(s), the first at element 7 (nan)"))
    }

    func testFeatureDataset() throws {
        try NPYWriter.write((0..<12).map(Float.init), shape: [4, 3], to: path("f.npy"))
        try NPYWriter.write([Int32(0), 1, 2, 1], shape: [4], to: path("l.npy"))
        let f = try NPYFeatureDataset(featuresPath: path("f.npy"), labelsPath: path("l.npy"), classes: 3)
        XCTAssertEqual(f.dim, 3); XCTAssertEqual(f.label(3), 1)
        var out = [Float](repeating: 0, count: 6)
        out.withUnsafeMutableBufferPointer { f.copyRows([3, 1], into: $0.baseAddress!) }
        XCTAssertEqual(out, [9, 10, 11, 3, 4, 5])

        try NPYWriter.write((0..<40).map(Float.init), shape: [10, 4], to: path("train_features.npy"))
        try NPYWriter.write((0..<10).map { Int64($0 % 3) }, shape: [10], to: path("train_labels.npy"))
        let s = try NPYFolderSource.loadFeatures(folder: dir.path, classes: 3, evalFraction: 0.2, seed: 1)
        XCTAssertEqual(s.train.count, 8); XCTAssertEqual(s.eval.count, 2)
        XCTAssertEqual((s.train.rows + s.eval.rows).sorted(), Array(0..<10))
        let (x, y) = s.eval.batch([1, 0])
        XCTAssertEqual(x.shape, [2, 4])
        XCTAssertEqual(x.array, [s.eval.rows[1], s.eval.rows[0]].flatMap { r in (0..<4).map { Float(r * 4 + $0) } })
        XCTAssertEqual(y, [s.eval.rows[1] % 3, s.eval.rows[0] % 3])
        try NPYWriter.write((0..<6).map(Float.init), shape: [2, 3], to: path("test_features.npy"))
        try NPYWriter.write([Int64(0), 1], shape: [2], to: path("test_labels.npy"))
        XCTAssertEqual(message { _ = try NPYFolderSource.loadFeatures(folder: dir.path, classes: 3,
                                                                       evalFraction: 0.2, seed: 1) },
                       "\(path("test_features.npy")): feature size 3 differs from \(path("train_features.npy"))'s 4")
    }
}
