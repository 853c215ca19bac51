import Foundation
import XCTest
import KDData
import KDTensor
import KDTestSupport
@testable import KDTrain

/// Issue 18 item 8: the step's memory is estimated from the config before anything is allocated.
///
/// The estimate is a lower one (docs/reliability.md, "Memory"): it counts what the step holds at once
/// and leaves out kernel scratch (im2col, Winograd tiles, GEMM packing) and allocator slack. So it must
/// never exceed the measured peak (a config it refuses cannot fit), and it must not be far below it
/// either, or it would refuse nothing: the measured tensor-pool peak is at most 2.5× the estimate in
/// both cases below (the scratch of a 3×3 convolution is 9× its input for one layer at a time, which
/// for these networks adds up to 0.4–1.2× the kept activations).
final class MemoryEstimateTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-memory-") }

    override func tearDownWithError() throws { tmp?.remove() }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// A measured figure: resnet8 supervised, 32 images of 32×32×3 on one rank, the tensor pool's
    /// high-water mark over one step (after a warm-up step).
    func testEstimateAgainstMeasuredStep() throws {
        let cfg = try KDConfig.parse(yaml: """
        data: {source: synthetic, classes: 10, train_size: 64, eval_size: 8, global_batch: 32, prefetch: false}
        student: {model: resnet8}
        train: {steps: 2}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: direct}
        """, file: "m.yaml")
        let (estimate, peak) = try InProcessWorld(size: 1).run { comm -> (MemoryEstimate, Int) in
            let t = try Trainer(config: cfg, comm: comm)
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 2, depth: 1)
            defer { stream.shutdown() }
            try t.step(try XCTUnwrap(try stream.next()))
            let batch = try XCTUnwrap(try stream.next())
            BufferPool.shared.resetPeak()
            try t.step(batch)
            return (MemoryEstimate(config: t.config, data: t.data, worldSize: 1), BufferPool.shared.peakBytes)
        }[0]
        XCTAssertLessThanOrEqual(estimate.total, peak, "\(estimate) vs measured \(peak)")
        XCTAssertGreaterThanOrEqual(Double(estimate.total) * 2.5, Double(peak), "\(estimate) vs measured \(peak)")
    }

    /// The recorded bench of configs/bench-distill-resnet32x4-resnet8x4.yaml (docs/scaling/bench_1.json:
    /// one rank, tensor pool peak 399 551 128 bytes, peak RSS 485 662 720 bytes).
    func testEstimateAgainstRecordedDistillBench() throws {
        let cfg = try KDConfig.load(path: Self.root.appendingPathComponent(
            "configs/bench-distill-resnet32x4-resnet8x4.yaml").path)
        let e = MemoryEstimate(config: cfg, inputChannels: 3, inputSize: [32, 32], features: false,
                               residentBytes: 0, worldSize: 1)
        let poolPeak = 399_551_128, rss = 485_662_720
        XCTAssertLessThanOrEqual(e.total, poolPeak, "\(e)")
        XCTAssertGreaterThanOrEqual(Double(e.total) * 2.5, Double(rss), "\(e)")
    }

    /// The loss matrices: a tile of the rank's rows × the global batch's rows (at most 2²² values: 1024 rows
    /// of 4096), plus the gathered rows' gradient on the rank's own rows (512 wide); deterministic training
    /// keeps that per local loss block with up to 256 angle partners each. 4096 samples, one view.
    func testLossMatricesFollowTheSharding() throws {
        let cfg = try KDConfig.load(path: Self.root.appendingPathComponent(
            "configs/bench-distill-resnet32x4-resnet8x4.yaml").path,
                                    overrides: ["data.global_batch=4096", "data.train_size=8192"])
        func estimate(_ c: KDConfig, _ ranks: Int) -> Int {
            MemoryEstimate(config: c, inputChannels: 3, inputSize: [32, 32], features: false, residentBytes: 0,
                           worldSize: ranks).lossMatrices
        }
        var plain = cfg
        plain.train.deterministic = false
        XCTAssertEqual(estimate(plain, 64), (64 * 4096 + 64 * 512) * 4)
        XCTAssertEqual(estimate(plain, 1), (1024 * 4096 + 4096 * 512) * 4)
        // Deterministic (the default): the config's blocks of 64 (1 at 64 ranks, 64 on one), 256 partners each.
        XCTAssertEqual(cfg.samplesPerBlock, 64)
        XCTAssertEqual(estimate(cfg, 64), (64 * 4096 + (64 + 1 * 256) * 512) * 4)
        XCTAssertEqual(estimate(cfg, 1), (1024 * 4096 + (4096 + 64 * 256) * 512) * 4)
    }

    /// Graph accumulation (issue 27): the student's tape and the teacher hold one pass (micro_batch images),
    /// plus the share's kept outputs and their gradients (counted as logits); the loss matrices are the
    /// whole global batch's as before. Global batch 16384 on 2 ranks, passes of 64.
    func testMicroBatchBoundsTheActivations() throws {
        let cfg = try KDConfig.load(path: Self.root.appendingPathComponent(
            "configs/bench-kd-rkd-resnet32x4-resnet8x4.yaml").path,
                                    overrides: ["data.global_batch=16384", "data.train_size=16384"])
        var micro = cfg
        micro.train.microBatch = 64
        func estimate(_ c: KDConfig) -> MemoryEstimate {
            MemoryEstimate(config: c, inputChannels: 3, inputSize: [32, 32], features: false, residentBytes: 0,
                           worldSize: 2)
        }
        let one = estimate(cfg), two = estimate(micro)
        // 8192 images per rank in one pass against 64 per pass: the tape's part shrinks 128×.
        let perImage = Double(one.studentActivations) / 8192
        XCTAssertEqual(Double(two.studentActivations), 64 * perImage + 2 * 8192 * 100 * 4, accuracy: perImage)
        XCTAssertEqual(Double(two.teacherActivations), Double(one.teacherActivations) / 128, accuracy: 1e3)
        XCTAssertEqual(two.lossMatrices, one.lossMatrices)
        XCTAssertGreaterThan(one.studentActivations, 8_000_000_000, "one pass: beyond a 2 GiB rank")
        XCTAssertLessThan(two.studentActivations, 250_000_000, "an eighth of a 2 GiB rank")
    }

    /// Every shipped config fits in 4 GB per rank on one rank (so none is refused on a laptop), and the
    /// check passes on this machine.
    func testShippedConfigsAreNotRefused() throws {
        var seen = 0
        for folder in ["configs", "Tests/mpi/configs"] {
            let url = Self.root.appendingPathComponent(folder)
            for name in try FileManager.default.contentsOfDirectory(atPath: url.path) where name.hasSuffix(".yaml") {
                let c = try KDConfig.load(path: url.appendingPathComponent(name).path)
                let s = c.data.imageSize ?? 32
                // CIFAR in memory: 60 000 images of 32×32×3 bytes.
                let e = MemoryEstimate(config: c, inputChannels: 3, inputSize: [s, s], features: false,
                                       residentBytes: c.data.source == .synthetic ? 0 : 60_000 * 3072, worldSize: 1)
                XCTAssertLessThan(e.total, 4_000_000_000, "\(name): \(e)")
                XCTAssertNoThrow(try e.check(config: c), name)
                seen += 1
            }
        }
        XCTAssertGreaterThanOrEqual(seen, 10)
    }

    /// The message a one-rank trainer of `cfg` fails with ("" if it is built).
    func refusal(_ cfg: KDConfig) -> String {
        do { _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm) } } catch {
            return "\(error)"
        }
        return ""
    }

    /// `data.image_size: 100000` crashed allocating 7.68 TB; now the trainer refuses it before it
    /// allocates, naming the keys.
    func testRefusesWhatCannotFitNamingTheKeys() throws {
        let yaml = """
        data: {source: synthetic, classes: 10, image_size: 100000, global_batch: 64}
        student: {model: resnet8}
        output: {dir: "\(dir)/big"}
        runtime: {memory_limit_gb: 100}
        """
        let cfg = try KDConfig.parse(yaml: yaml, file: "big.yaml")
        let m = refusal(cfg)
        // resnet8 keeps (2·16 + 5·16)·10¹⁰ + 5·32·2.5·10⁹ + 5·64·6.25·10⁸ = 1.72·10¹² floats per
        // image (a BatchNorm or a sum and the ReLU after it one tensor).
        XCTAssertTrue(m.contains("big.yaml: data.image_size: one rank's training step needs at least 455680 GB but "
                                 + "100 GB is available (runtime.memory_limit_gb 100.0): student activations 440320 "
                                 + "GB (data.image_size (100000×100000×3), data.global_batch and data.views "
                                 + "(64 images per rank) and student.model); input batches 15360 GB"), m)
        // Not even one block of 100000² images fits: no pass size is offered.
        XCTAssertTrue(m.contains("Lower those keys, run on more ranks, or set runtime.memory_limit_gb"), m)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/big"))
        // Without the key: the machine's memory, shared by the ranks on it.
        var unlimited = cfg
        unlimited.runtime.memoryLimitGB = 0
        XCTAssertTrue(MemoryEstimate.limitBytes(config: unlimited).source.hasSuffix(
            "of physical memory shared by 1 rank(s) on this machine"))
        XCTAssertEqual(try KDConfig.parse(yaml: "runtime: {memory_limit_gb: 2.5}").runtime.memoryLimitGB, 2.5)
        XCTAssertThrowsError(try KDConfig.parse(yaml: "runtime: {memory_limit_gb: -1}", file: "r.yaml")) { e in
            XCTAssertEqual("\(e)", "r.yaml: runtime.memory_limit_gb: must be ≥ 0.0, got -1.0 (line 1)")
        }
    }

    /// Activations over the limit that passes of whole blocks would bound: the message offers graph
    /// accumulation with the largest pass whose estimate fits (one more block would not).
    func testAStepThatFitsInPassesOffersTheirSize() throws {
        let yaml = """
        data: {source: synthetic, classes: 10, image_size: 32, train_size: 8192, global_batch: 8192}
        student: {model: resnet8}
        output: {dir: "\(dir)/wide"}
        runtime: {memory_limit_gb: 2}
        """
        let cfg = try KDConfig.parse(yaml: yaml, file: "wide.yaml")
        let m = refusal(cfg)
        let offered = m.components(separatedBy: "passes of at most ").dropFirst().first?.prefix { $0.isNumber }
        let pass = try XCTUnwrap(offered.flatMap { Int($0) }, m)
        XCTAssertTrue(m.contains("samples (train.micro_batch, with student.batch_norm: block; the graph still spans "
                                 + "the global batch"), m)
        let block = cfg.samplesPerBlock
        XCTAssertEqual(pass % block, 0, "whole blocks of \(block)")
        let data = try TrainingData(config: cfg)
        func total(_ micro: Int) -> Int {
            var c = cfg
            c.train.microBatch = micro
            return MemoryEstimate(config: c, data: data, worldSize: 1).total
        }
        XCTAssertLessThanOrEqual(total(pass), 2_000_000_000)
        XCTAssertGreaterThan(total(pass + block), 2_000_000_000)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/wide"))
    }

    /// Issue 24 item 7: `data.train_size: 2e9` aborted allocating the sampler's permutation on the prefetch
    /// thread. The sampler's index arrays are counted (two of 8 bytes per sample) and named when they
    /// do not fit.
    func testTheSamplersArraysAreCounted() throws {
        let yaml = """
        data: {source: synthetic, classes: 10, image_size: 8, train_size: 100000000, global_batch: 8}
        student: {model: mlp, hidden: [8]}
        output: {dir: "\(dir)/sampler"}
        runtime: {memory_limit_gb: 1}
        """
        let cfg = try KDConfig.parse(yaml: yaml, file: "s.yaml")
        var m = ""
        do { _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm) } } catch {
            m = "\(error)"
        }
        XCTAssertTrue(m.contains("s.yaml: data.train_size: one rank's training step needs at least 1.6 GB"), m)
        XCTAssertTrue(m.contains("sampler indices 1.6 GB (data.train_size, data.path)"), m)
    }
}
