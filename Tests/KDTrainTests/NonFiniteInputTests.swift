import Foundation
import XCTest
import KDFormats
import KDData
import KDModels
import KDTestSupport
@testable import KDTrain

/// Issue 24 item 5: `predict` on NaN images returned finite logits and `eval` with a NaN row reported a
/// finite loss and accuracy. Both refuse non-finite inputs, naming the file and the image or sample.
final class NonFiniteInputTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-nonfinite-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    func config(_ extra: [String] = []) throws -> KDConfig {
        let yaml = """
        seed: 1
        data: {source: synthetic, classes: 4, image_size: 8, train_size: 32, eval_size: 8, global_batch: 8}
        student: {model: resnet8}
        train: {steps: 1, log_every: 1}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: direct}
        """
        return try KDConfig.parse(yaml: yaml, file: "n.yaml", overrides: extra)
    }

    func testEvaluationRefusesANaNSampleNamingIt() throws {
        let feat = dir + "/feat"
        try FileManager.default.createDirectory(atPath: feat, withIntermediateDirectories: true)
        try NPYWriter.write((0..<(32 * 4)).map { Float($0 % 7) }, shape: [32, 4], to: feat + "/train_features.npy")
        try NPYWriter.write((0..<32).map { Int64($0 % 4) }, shape: [32], to: feat + "/train_labels.npy")
        var test: [Float] = (0..<(8 * 4)).map { Float($0 % 5) }
        test[3 * 4 + 2] = .nan
        try NPYWriter.write(test, shape: [8, 4], to: feat + "/test_features.npy")
        try NPYWriter.write((0..<8).map { Int64($0 % 4) }, shape: [8], to: feat + "/test_labels.npy")
        let cfg = try config(["data.source=npy", "data.path=\(feat)", "data.image_size=~", "student.model=mlp",
                              "student.hidden=[8]"])
        let m = message {
            _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm).evaluate() }
        }
        XCTAssertTrue(m.contains("\(feat)/test_features.npy: evaluation sample 3 holds a non-finite value (nan)"), m)
        // A convolutional student on feature rows is named at its key (it failed at the first forward).
        let conv = try config(["data.source=npy", "data.path=\(feat)", "data.image_size=~"])
        let c = message { _ = try InProcessWorld(size: 1).run { try Trainer(config: conv, comm: $0) } }
        XCTAssertTrue(c.hasSuffix("n.yaml: student.model: resnet8 is a convolutional network for images, but "
                                  + "\(feat)/train_features.npy holds feature rows (4 per sample): use mlp"), c)
    }

    /// A model trained on feature rows: predict says so for a wrong row size or uint8 images (it spoke of NHWC
    /// images, and of "mean/std have 0/0 entries" for uint8 input).
    func testPredictOnAFeatureModelSpeaksOfFeatureRows() throws {
        let feat = dir + "/feat"
        try FileManager.default.createDirectory(atPath: feat, withIntermediateDirectories: true)
        try NPYWriter.write((0..<(32 * 4)).map { Float($0 % 7) }, shape: [32, 4], to: feat + "/train_features.npy")
        try NPYWriter.write((0..<32).map { Int64($0 % 4) }, shape: [32], to: feat + "/train_labels.npy")
        let cfg = try config(["data.source=npy", "data.path=\(feat)", "data.image_size=~", "student.model=mlp",
                              "student.hidden=[8]"])
        let checkpoint = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: cfg, comm: comm).saveCheckpoint(name: "f.safetensors")
        }[0]
        try NPYWriter.write([Float](repeating: 0.5, count: 3 * 5), shape: [3, 5], to: dir + "/rows5.npy")
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/rows5.npy",
                                                       out: dir + "/z.npy", batch: 2) }
            .hasSuffix("rows5.npy: shape [3, 5]: the model takes feature rows of 4 values (N×4)"))
        try NPYWriter.write([UInt8](repeating: 7, count: 3 * 4), shape: [3, 2, 2, 1], to: dir + "/img.npy")
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/img.npy",
                                                       out: dir + "/z.npy", batch: 2) }
            .hasSuffix("img.npy: dtype uint8: the model was trained on feature rows (float values, no "
                       + "normalisation), not on images"))
        try NPYWriter.write([Float](repeating: 0.5, count: 3 * 4), shape: [3, 4], to: dir + "/rows4.npy")
        XCTAssertEqual(try Prediction.run(checkpoint: checkpoint, images: dir + "/rows4.npy", out: dir + "/z.npy",
                                          batch: 2).classes, 4)
    }

    func testPredictRefusesNaNImagesAndAnEmptyFile() throws {
        let cfg = try config()
        let checkpoint = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: cfg, comm: comm).saveCheckpoint(name: "w.safetensors")
        }[0]
        var pixels = [Float](repeating: 0.25, count: 4 * 8 * 8 * 3)
        pixels[2 * 192 + 17] = .nan
        try NPYWriter.write(pixels, shape: [4, 8, 8, 3], to: dir + "/x.npy")
        let m = message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/x.npy",
                                                 out: dir + "/z.npy", batch: 3) }
        XCTAssertTrue(m.contains("\(dir)/x.npy: image 2 holds a non-finite value (nan at element 17)"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/z.npy"), "nothing written")
        let finite = [Float](repeating: 0.25, count: 4 * 8 * 8 * 3)
        try NPYWriter.write(finite, shape: [4, 8, 8, 3], to: dir + "/ok.npy")
        XCTAssertEqual(try Prediction.run(checkpoint: checkpoint, images: dir + "/ok.npy", out: dir + "/z.npy",
                                          batch: 3).images, 4)
        // The layout, not only the count: N×C×H×W (PyTorch's) and flattened rows hold as many values per image.
        try NPYWriter.write(finite, shape: [4, 3, 8, 8], to: dir + "/nchw.npy")
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/nchw.npy",
                                                       out: dir + "/z.npy", batch: 3) }
            .hasSuffix("nchw.npy: shape [4, 3, 8, 8]: the model takes N×8×8×3 images (NHWC); this is N×C×H×W "
                       + "(PyTorch's layout): transpose it, e.g. np.transpose(x, (0, 2, 3, 1))"))
        try NPYWriter.write(finite, shape: [4, 192], to: dir + "/flat.npy")
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/flat.npy",
                                                       out: dir + "/z.npy", batch: 3) }
            .hasSuffix("flat.npy: shape [4, 192]: the model takes N×8×8×3 images (NHWC)"))
        try NPYWriter.write([Float](), shape: [0, 8, 8, 3], to: dir + "/none.npy")
        let e = message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/none.npy",
                                                 out: dir + "/e.npy", batch: 3) }
        XCTAssertTrue(e.contains("\(dir)/none.npy: holds no images (shape [0, 8, 8, 3])"), e)
        // --out naming an input (another spelling of the same file) is refused and the input kept; a folder
        // in the way or a missing folder is named as such, not as Foundation's "error 512".
        let sameImages = message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/ok.npy",
                                                          out: dir + "/./ok.npy", batch: 3) }
        XCTAssertTrue(sameImages.hasSuffix("\(dir)/./ok.npy: the same file as the input images (\(dir)/ok.npy): "
                                           + "writing the logits would replace it; choose another --out"), sameImages)
        XCTAssertEqual(try NPYArray(path: dir + "/ok.npy").shape, [4, 8, 8, 3])
        let sameWeights = message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/ok.npy",
                                                           out: checkpoint, batch: 3) }
        XCTAssertTrue(sameWeights.contains("the same file as the checkpoint"), sameWeights)
        try FileManager.default.createDirectory(atPath: dir + "/folder", withIntermediateDirectories: true)
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/ok.npy",
                                                       out: dir + "/folder", batch: 3) }
            .hasSuffix("\(dir)/folder: cannot write .npy file: a folder of that name is in the way"))
        XCTAssertTrue(message { _ = try Prediction.run(checkpoint: checkpoint, images: dir + "/ok.npy",
                                                       out: dir + "/missing/z.npy", batch: 3) }
            .hasSuffix("\(dir)/missing/z.npy: cannot write .npy file: the folder \(dir)/missing does not exist"))
    }
}

/// Issue 29 item 2: weights without KDGraph metadata (a PyTorch `state_dict` saved with safetensors) run
/// from the command line with `--config` naming the model and the data; without it the message says so.
final class PlainWeightsTests: XCTestCase {
    func testPredictTakesPlainWeightsWithAConfig() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-plain-")
        defer { tmp.remove() }
        let dir = tmp.path
        try SyntheticExport.write(folder: dir + "/data", train: 24, test: 8, classes: 4, size: 8, seed: 1)
        let yaml = """
        data: {source: npy, path: "\(dir)/data", classes: 4, global_batch: 8}
        student: {model: resnet8}
        train: {steps: 1}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: direct}
        """
        let cfg = try KDConfig.parse(yaml: yaml, file: "plain.yaml")
        let checkpoint = try InProcessWorld(size: 1).run { comm -> String in
            let t = try Trainer(config: cfg, comm: comm)
            let path = try t.saveCheckpoint(name: "w.safetensors")
            // The same weights as PyTorch would save them: the state_dict, no metadata, no checksum.
            try Safetensors.write(Checkpoint.modelTensors(t.student), metadata: [:], addChecksum: false,
                                  to: dir + "/plain.safetensors")
            return path
        }[0]
        let images = dir + "/data/test_images.npy"
        let a = try Prediction.run(checkpoint: checkpoint, images: images, out: dir + "/a.npy", batch: 3)
        let b = try Prediction.run(checkpoint: dir + "/plain.safetensors", config: cfg, images: images,
                                   out: dir + "/b.npy", batch: 3)
        XCTAssertEqual(b.input.source, "plain.yaml")
        XCTAssertEqual(b.input.mean, a.input.mean, "the files' statistics, as the checkpoint recorded them")
        XCTAssertNotEqual(b.input.std, [0.25, 0.25, 0.25], "not the synthetic defaults")
        // Same model, weights, preprocessing and batches: the same logits, bit for bit.
        XCTAssertEqual(try NPYArray(path: dir + "/a.npy").floatArray(), try NPYArray(path: dir + "/b.npy").floatArray())
        do {
            _ = try Prediction.run(checkpoint: dir + "/plain.safetensors", images: images, out: dir + "/c.npy",
                                   batch: 4)
            XCTFail("plain weights need --config")
        } catch {
            XCTAssertTrue("\(error)".contains("plain safetensors weights (e.g. a PyTorch state_dict): name the model "
                                              + "and preprocessing with --config C.yaml"), "\(error)")
        }
    }
}
