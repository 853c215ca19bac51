import Foundation
import XCTest
import KDCore
import KDData
import KDFormats
import KDTestSupport
@testable import KDTrain

/// `teacher.cache` through the trainer (docs/training.md, "Teacher cache"), on in-process ranks:
/// 40 samples, batches of 10, 2 views, 2 rounds, 12 steps = 3 epochs (the third reads round 0).
final class TeacherCacheTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-teacher-cache-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func config(cache: String, dtype: String = "float32", out: String) throws -> KDConfig {
        let yaml = """
        seed: 3
        mode: distill
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 40, eval_size: 10, global_batch: 10, \
        views: 2, augment: true, prefetch: false}
        teacher: {kind: network, model: resnet8, init: random, cache: {rounds: 2, path: "\(cache)", dtype: \(dtype)}}
        student: {model: resnet8, batch_norm: sync}
        loss: [{kind: rkd, distance_weight: 25, angle_weight: 50}, {kind: kd, weight: 0.5}]
        optim: {kind: sgd, lr: 0.01, momentum: 0.9, schedule: cosine}
        train: {steps: 12, log_every: 1}
        output: {dir: "\(dir)/\(out)"}
        runtime: {conv_algorithm: winograd2}
        """
        return try KDConfig.parse(yaml: yaml, file: "teacher-cache.yaml")
    }

    struct Run { var losses: [Double] = []; var read = 0; var computed = 0; var firstTeacher: [Float] = [] }

    /// Runs the 12 steps; with `captureTeacher`, first keeps the teacher's embedding of the first batch
    /// (which, with a cache, computes and stores that batch's blocks before step 1 reads them).
    static func train(_ cfg: KDConfig, comm: Communicator, captureTeacher: Bool = false) throws -> Run {
        let t = try Trainer(config: cfg, comm: comm)
        let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 12, depth: 1)
        defer { stream.shutdown() }
        var run = Run()
        while let b = try stream.next() {
            if captureTeacher, run.losses.isEmpty, let teacher = t.teacher {
                run.firstTeacher = try teacher(b).embedding.array
            }
            try t.step(b)
            run.losses.append(t.lastLoss)
        }
        run.read = t.teacher?.cache?.recordsRead ?? 0
        run.computed = t.teacher?.cache?.recordsComputed ?? 0
        return run
    }

    func files(_ cache: String) throws -> [Data] {
        try (0..<2).flatMap { r in
            try ["records", "sums"].map {
                try Data(contentsOf: URL(fileURLWithPath: TeacherCacheStore.roundPath(cache, r, $0)))
            }
        }
    }

    /// The exactness contract: the records' bits do not depend on which run, or which world size, computed
    /// them, so a run reading another run's cache takes bit-identical steps (exact comparisons).
    func testRecordsAreTheSameWhoeverComputedThem() throws {
        func run(_ ranks: Int, _ cache: String, _ out: String) throws -> [Run] {
            try InProcessWorld(size: ranks).run { try Self.train(self.config(cache: cache, out: out), comm: $0) }
        }
        let a = try run(1, "\(dir)/A", "a")[0]
        XCTAssertEqual(a.losses.count, 12)
        XCTAssertEqual(a.computed, 2 * 40, "each record of the 2 rounds computed once (in whole blocks)")
        // The first batch's samples were computed; the third epoch (round 0 again) is read entirely.
        XCTAssertGreaterThanOrEqual(a.read, 40)
        XCTAssertLessThanOrEqual(a.read, 12 * 10 - 10)
        let b = try run(2, "\(dir)/B", "b")
        // Two ranks may compute the same block at once (both write the same bytes): at least every record.
        XCTAssertGreaterThanOrEqual(b[0].computed + b[1].computed, 2 * 40)
        XCTAssertEqual(try files("\(dir)/A"), try files("\(dir)/B"), "a 2-rank fill stores the 1-rank fill's bytes")
        let c = try run(1, "\(dir)/B", "c")[0]
        XCTAssertEqual(c.computed, 0)
        XCTAssertEqual(c.losses, a.losses, "reading the 2-rank cache: bit-identical steps")
    }

    /// Against the teacher run on every step (no store, the same round schedule): the fused ResNet
    /// teacher's GEMMs are row-invariant, so a record computed in its block has the bits the teacher gives
    /// that sample inside any training batch — float32 runs take bit-identical steps (exact comparison).
    /// Float16 records are the float32 ones rounded to nearest (11 significant bits, 4.9e-4 relative per
    /// value); step 1 from the same weights then moves by at most that relative change of the loss's
    /// teacher inputs: 2e-3 of the loss bounds it.
    func testRecordsAreThePerBatchTeachersOutputs() throws {
        let replay = try InProcessWorld(size: 1).run {
            try Self.train(self.config(cache: "", out: "r"), comm: $0, captureTeacher: true)
        }[0]
        XCTAssertEqual(replay.computed, 0)
        let f32 = try InProcessWorld(size: 1).run {
            try Self.train(self.config(cache: "\(self.dir)/F", out: "f"), comm: $0, captureTeacher: true)
        }[0]
        let f16 = try InProcessWorld(size: 1).run {
            try Self.train(self.config(cache: "\(self.dir)/H", dtype: "float16", out: "h"), comm: $0,
                           captureTeacher: true)
        }[0]
        XCTAssertEqual(f32.firstTeacher, replay.firstTeacher)
        XCTAssertEqual(f32.losses, replay.losses, "a float32 cache changes no bit of training")
        for (x, r) in zip(f16.firstTeacher, f32.firstTeacher) {
            XCTAssertEqual(x, Float(Float16(r)), "a float16 record is the float32 value rounded")
        }
        XCTAssertEqual(f16.losses[0], replay.losses[0], accuracy: 2e-3 * abs(replay.losses[0]))
    }

    /// A teacher that is not batch-invariant (forced here) gets its records computed in whole blocks: the
    /// first step computes every block its samples touch, and the stored bytes are the same as when the
    /// fused teacher computes only the step's own samples (both are the teacher's block-independent bits).
    func testBlocksWhenTheTeacherIsNotBatchInvariant() throws {
        let own = try InProcessWorld(size: 1).run {
            try Self.train(self.config(cache: "\(self.dir)/O", out: "o"), comm: $0)
        }[0]
        let run = try InProcessWorld(size: 1).run { comm -> (first: Int, expected: Int, total: Int) in
            let t = try Trainer(config: self.config(cache: "\(self.dir)/K", out: "k"), comm: comm)
            let cache = try XCTUnwrap(t.teacher?.cache)
            XCTAssertTrue(cache.batchInvariantTeacher, "the fused ResNet teacher is batch-invariant")
            cache.batchInvariantTeacher = false
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 12, depth: 1)
            defer { stream.shutdown() }
            var first = -1, expected = 0
            while let b = try stream.next() {
                if first < 0 {
                    let blocks = Set(b.indices.map { $0 / TeacherOutputCache.blockSize })
                    expected = blocks.map { min(40, ($0 + 1) * TeacherOutputCache.blockSize)
                                            - $0 * TeacherOutputCache.blockSize }.reduce(0, +)
                }
                try t.step(b)
                if first < 0 { first = cache.recordsComputed }
            }
            return (first, expected, cache.recordsComputed)
        }[0]
        XCTAssertEqual(run.first, run.expected, "step 1 computes the whole blocks of its samples")
        XCTAssertEqual(run.total, 2 * 40)
        XCTAssertEqual(own.computed, 2 * 40)
        XCTAssertEqual(try files("\(dir)/K"), try files("\(dir)/O"))
    }

    /// `kdgraph teacher-cache` on 2 ranks fills every record once; a second fill computes nothing; a record
    /// whose checksum is lost is recomputed to the same bytes (its whole block).
    func testFillIsCompleteAndResumable() throws {
        let cache = "\(dir)/P"
        let fills = try InProcessWorld(size: 2).run { comm in
            try Trainer(config: self.config(cache: cache, out: "p"), comm: comm).fillTeacherCache { _ in }
        }
        XCTAssertEqual(fills[0].computed, 2 * 40)
        XCTAssertEqual(fills[0].present, 0)
        let before = try files(cache)
        // Sample 21's checksum lost: an interrupted write.
        let sums = try NPYRowFile(path: TeacherCacheStore.roundPath(cache, 1, "sums"), dtype: .int64, shape: [40])
        try withUnsafeBytes(of: Int64(0)) { try sums.write(row: 21, $0) }
        let again = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: self.config(cache: cache, out: "q"), comm: comm).fillTeacherCache { _ in }
        }[0]
        XCTAssertEqual(again.computed, TeacherOutputCache.blockSize, "only the damaged record's block")
        XCTAssertEqual(again.present, 2 * 40 - TeacherOutputCache.blockSize)
        XCTAssertEqual(try files(cache), before)
        // The same cache read by a training run: nothing computed.
        let run = try InProcessWorld(size: 1).run { try Self.train(self.config(cache: cache, out: "s"), comm: $0) }[0]
        XCTAssertEqual(run.computed, 0)
        XCTAssertEqual(run.read, 12 * 10)
    }

    func testACacheOfOtherSettingsFailsOnEveryRank() throws {
        _ = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: self.config(cache: "\(self.dir)/M", out: "m"), comm: comm).fillTeacherCache { _ in }
        }
        var other = try config(cache: "\(dir)/M", out: "n")
        other.data.cropPadding = 2
        let errors = try InProcessWorld(size: 2).run { comm -> String in
            do { _ = try Trainer(config: other, comm: comm); return "" } catch { return "\(error)" }
        }
        for e in errors {
            XCTAssertTrue(e.contains("teacher.cache.path"), e)
            XCTAssertTrue(e.contains("data.crop_padding: 4 → 2"), e)
        }
    }

    /// A config whose loss terms read nothing of the teacher never reads its cache (training skips the teacher):
    /// the fill is refused on every rank, naming the loss list, and computes no record.
    func testAFillNoTermWouldReadIsRefused() throws {
        var cfg = try config(cache: "\(dir)/U", out: "u")
        cfg.loss = try KDConfig.parse(yaml: "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: ce}]",
                                      file: "c.yaml").loss
        let errors = try InProcessWorld(size: 2).run { comm -> String in
            do { _ = try Trainer(config: cfg, comm: comm).fillTeacherCache { _ in }; return "" } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(errors, Array(repeating: "teacher-cache.yaml: loss: no loss term reads the teacher's outputs "
                                     + "(loss: ce), so training with this config never reads the teacher cache: "
                                     + "kdgraph teacher-cache has nothing to fill", count: 2))
        // The same cache filled for the config's own terms (rkd, kd) finds no record present.
        let fill = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: self.config(cache: "\(self.dir)/U", out: "v"), comm: comm).fillTeacherCache { _ in }
        }[0]
        XCTAssertEqual(fill.present, 0)
        XCTAssertEqual(fill.computed, 2 * 40)
    }

    /// Issue 24 item 2: rows of `train_images.npy` shuffled in place (same count, shape and statistics)
    /// must not be served the records of the old rows. The manifest's training-data digest differs,
    /// and the cache is refused on every rank naming the field and the file; the same bytes written
    /// again (a new modification time, same content) still open the cache.
    func testACacheOfOtherDataContentIsRefused() throws {
        let data = dir + "/npy"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let n = 40, pixels = 16 * 16 * 3
        var images = (0..<(n * pixels)).map { UInt8(truncatingIfNeeded: ($0 * 7919) >> 3) }
        func writeImages() throws { try NPYWriter.write(images, shape: [n, 16, 16, 3], to: data + "/train_images.npy") }
        try writeImages()
        try NPYWriter.write((0..<n).map { Int64($0 % 5) }, shape: [n], to: data + "/train_labels.npy")
        try NPYWriter.write(Array(images[..<(10 * pixels)]), shape: [10, 16, 16, 3], to: data + "/test_images.npy")
        try NPYWriter.write((0..<10).map { Int64($0 % 5) }, shape: [10], to: data + "/test_labels.npy")
        var cfg = try config(cache: "\(dir)/D", out: "d")
        cfg.data.source = .npy; cfg.data.path = data; cfg.data.imageSize = nil
        _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm).fillTeacherCache { _ in } }
        try writeImages()   // same bytes, new file: still the cache's data
        _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm) }
        // Swap the first two images: same count, shape and pixel statistics.
        let first = Array(images[..<pixels])
        images.replaceSubrange(0..<pixels, with: images[pixels..<(2 * pixels)])
        images.replaceSubrange(pixels..<(2 * pixels), with: first)
        try writeImages()
        let errors = try InProcessWorld(size: 2).run { comm -> String in
            do { _ = try Trainer(config: cfg, comm: comm); return "" } catch { return "\(error)" }
        }
        for e in errors {
            XCTAssertTrue(e.contains("teacher.cache.path"), e)
            XCTAssertTrue(e.contains("training data content: sha256:"), e)
            XCTAssertTrue(e.contains("of \(data)/train_images.npy"), e)
        }
    }
}
