import Foundation
import XCTest
import KDData
import KDFormats
import KDLosses
import KDModels
import KDTensor
import KDTestSupport
@testable import KDTrain

/// The bridge for teachers outside KDGraph (docs/training.md, "Teachers outside KDGraph"), with a
/// KDGraph network as the stand-in for a Python teacher: `export-views` on 2 ranks, the stand-in
/// embeds the exported views block by block and saves `N×R×V×D`, and training with
/// `teacher.kind: embeddings` on that file takes bit-identical steps to training with the same network
/// teacher through the teacher cache — so the exported views are exactly the student's views of each
/// round, and the embeddings file is read at round `epoch mod R`.
final class ViewExportTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-views-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func config(teacher: String, out: String, loss: String = "[{kind: rkd, distance_weight: 25, angle_weight: 50}]")
        throws -> KDConfig {
        let yaml = """
        seed: 6
        mode: distill
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 40, eval_size: 10, global_batch: 10, \
        views: 2, augment: true, prefetch: false}
        teacher: \(teacher)
        student: {model: resnet8, batch_norm: sync}
        loss: \(loss)
        optim: {kind: sgd, lr: 0.01, momentum: 0.9, schedule: cosine}
        train: {steps: 12, log_every: 1}
        output: {dir: "\(dir)/\(out)"}
        runtime: {conv_algorithm: winograd2}
        """
        return try KDConfig.parse(yaml: yaml, file: "views.yaml")
    }

    func losses(_ cfg: KDConfig) throws -> [Double] {
        try InProcessWorld(size: 1).run { comm -> [Double] in
            let t = try Trainer(config: cfg, comm: comm)
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 12, depth: 1)
            defer { stream.shutdown() }
            var out: [Double] = []
            while let b = try stream.next() { try t.step(b); out.append(t.lastLoss) }
            return out
        }[0]
    }

    func testExportedViewsEmbeddedOutsideTrainLikeTheCachedTeacher() throws {
        let network = "{kind: network, model: resnet8, init: random, cache: {rounds: 2, path: \"\(dir)/cache\"}}"
        let views = "\(dir)/views"
        func export(_ ranks: Int) throws -> [ViewExport.Summary] {
            try InProcessWorld(size: ranks).run { comm in
                try ViewExport.run(config: self.config(teacher: network, out: "x"), rounds: 2, out: views,
                                   comm: comm) { _ in }
            }
        }
        let summaries = try export(2)
        XCTAssertEqual(summaries[0].shape, [40, 2, 16, 16, 3])
        XCTAssertTrue(FileManager.default.fileExists(atPath: views + "/views.json"))
        // A second export into the same folder is refused, the first one untouched.
        let before = try Data(contentsOf: URL(fileURLWithPath: views + "/round-0001.npy"))
        XCTAssertThrowsError(try export(1)) { e in
            XCTAssertTrue("\(e)".contains("already holds exported views"), "\(e)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: views + "/round-0001.npy")), before)
        // No round to export: refused as the call's argument, not as a key of the config file.
        XCTAssertThrowsError(try InProcessWorld(size: 1).run { comm in
            try ViewExport.run(config: self.config(teacher: network, out: "x"), rounds: 0, out: views + "-none",
                               comm: comm) { _ in }
        }) { e in XCTAssertTrue("\(e)".hasSuffix("export-views: rounds must be ≥ 1, got 0"), "\(e)") }

        // The stand-in teacher: the network the cached run builds (seeded init, winograd2), fused, run on the
        // exported views in the cache's blocks of 16 samples.
        let model = try ModelZoo.make(name: "resnet8", classes: 5, inputChannels: 3, imageSize: [16, 16], seed: 6)
        model.eval()
        for (_, m) in model.namedModules() { (m as? Conv2d)?.algorithm = .winograd2 }
        let fused = try XCTUnwrap(FusedResNet(model))
        let (N, R, V, D, per) = (40, 2, 2, model.featureSize, 2 * 16 * 16 * 3)
        var embeddings = [Float](repeating: 0, count: N * R * V * D)
        for r in 0..<R {
            let a = try NPYArray(path: String(format: "\(views)/round-%04d.npy", r))
            for lo in stride(from: 0, to: N, by: TeacherOutputCache.blockSize) {
                let n = min(TeacherOutputCache.blockSize, N - lo)
                let x = Tensor(uninitializedShape: [n * V, 16, 16, 3])
                a.copyAsFloat(elementOffset: lo * per, count: n * per, into: x.ptr)
                let (f, _) = try withNoGrad { try fused(x) }
                for k in 0..<n { for v in 0..<V { for d in 0..<D {
                    embeddings[(((lo + k) * R + r) * V + v) * D + d] = f.ptr[(k * V + v) * D + d]
                } } }
            }
        }
        try NPYWriter.write(embeddings, shape: [N, R, V, D], to: "\(dir)/emb.npy")

        let cached = try losses(config(teacher: network, out: "a"))
        let bridged = try losses(config(teacher: "{kind: embeddings, embeddings: \"\(dir)/emb.npy\", "
                                            + "cache: {rounds: 2}}", out: "b"))
        XCTAssertEqual(cached.count, 12)
        XCTAssertEqual(bridged, cached, "the embeddings path at round epoch mod 2 = the cached network teacher")
        // Without the round replay the file is refused, naming the key.
        XCTAssertThrowsError(try losses(config(teacher: "{kind: embeddings, embeddings: \"\(dir)/emb.npy\"}",
                                               out: "c"))) { e in
            XCTAssertTrue("\(e)".contains("teacher.cache.rounds is 0"), "\(e)")
        }
    }

    /// An embeddings teacher with `teacher.prompts` gives every term that reads teacher logits its prompt logits
    /// (`prgTeacher`): `kd` and `vrm` failed at the first step with "missing input 'teacher logits'" (only `prg`
    /// read them, from a field of their own), though the config accepted them.
    func testAnEmbeddingsTeachersPromptLogitsReachEveryTermThatReadsTeacherLogits() throws {
        let (N, D, C) = (40, 12, 5)
        var rng = KDRandom(keys: 0xE3B, 1)
        try NPYWriter.write(Tensor.randn([N, D], rng: &rng).array, shape: [N, D], to: "\(dir)/emb.npy")
        try NPYWriter.write(Tensor.randn([2, C, D], rng: &rng).array, shape: [2, C, D], to: "\(dir)/prompts.npy")
        let teacher = "{kind: embeddings, embeddings: \"\(dir)/emb.npy\", prompts: \"\(dir)/prompts.npy\"}"
        let cfg = try config(teacher: teacher, out: "p", loss: "[{kind: kd}, {kind: vrm}, {kind: prg}]")
        let prompts = try PromptEmbeddings.load(path: "\(dir)/prompts.npy", classes: C)
        _ = try InProcessWorld(size: 1).run { comm in
            let t = try Trainer(config: cfg, comm: comm)
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 2, depth: 1)
            defer { stream.shutdown() }
            while let b = try stream.next() {
                // What the teacher side hands the terms: the prompt logits of its embeddings, bit for bit.
                let out = try XCTUnwrap(t.teacher)(b)
                let expected = try prgTeacher(features: out.embedding, prompts: prompts, clipScale: 100).logits
                XCTAssertEqual(try XCTUnwrap(out.logits).array, expected.array)
                try t.step(b)
                let record = try XCTUnwrap(t.lastRecord)
                let terms = Dictionary(uniqueKeysWithValues: record.terms.map { ($0.name, $0.value) })
                for name in ["loss/kd", "loss/vrm", "loss/prg"] {
                    let v = try XCTUnwrap(terms[name], "\(name) missing: \(terms.keys.sorted())")
                    XCTAssertTrue(v.isFinite && v != 0, "\(name) = \(v)")
                }
            }
        }
    }
}
