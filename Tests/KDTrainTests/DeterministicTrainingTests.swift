import Foundation
import XCTest
import KDCore
import KDData
import KDModels
import KDTestSupport
@testable import KDTrain

/// `train.deterministic` (docs/training.md, "Bit-identical training at any world size") over in-process
/// worlds of 1–4 ranks: the per-step losses and every parameter after training are compared for
/// *equality* — no tolerance, the scheme is exact by construction (fixed sample blocks, exact
/// fixed-point sums, a replicated loss). The same comparisons run under a real `mpirun` in
/// Tests/mpi/train_e2e.sh.
final class DeterministicTrainingTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try makeFolderWithTeacher("kdgraph-deterministic-") }

    override func tearDownWithError() throws { tmp?.remove() }

    /// Global batch 10 in blocks of 2: five blocks, shared 5 / 3+2 / 1+2+2 / 1+1+1+2 over 1–4 ranks.
    func config(_ extra: String = "", losses: String = "[{kind: prg}, {kind: rkd}, {kind: kd, weight: 0.5}]",
                views: Int = 1, algorithm: String = "winograd2", overrides: [String] = []) throws -> KDConfig {
        let yaml = """
        seed: 5
        mode: distill
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 64, eval_size: 20, global_batch: 10, \
        views: \(views), augment: true, prefetch: false}
        teacher: {kind: network, model: resnet8, checkpoint: "\(dir)/teacher.safetensors"}
        student: {model: resnet8, batch_norm: sync}
        loss: \(losses)
        optim: {kind: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5e-4, schedule: cosine, warmup_steps: 2}
        train: {steps: 6, log_every: 1, deterministic: true, block_size: 2}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: \(algorithm)}
        \(extra)
        """
        return try KDConfig.parse(yaml: yaml, file: "deterministic.yaml", overrides: overrides)
    }

    struct Run: Equatable {
        var losses: [Double] = []
        var terms: [[Double]] = []
        var final: [[Float]] = []
        var buffers: [[Float]] = []
    }

    static func train(_ cfg: KDConfig, comm: Communicator, steps: Int) throws -> Run {
        var run = Run()
        let t = try runTrainer(cfg, comm: comm, steps: steps) { _, record, _ in
            run.losses.append(record.loss)
            run.terms.append(record.terms.map(\.value))
        }
        run.final = t.parameters.map { $0.1.array }
        run.buffers = t.student.namedBuffers().map { $0.1.array }
        return run
    }

    func assertSameAtEveryWorldSize(_ cfg: KDConfig, steps: Int = 6, sizes: [Int] = [2, 3, 4],
                                    file: StaticString = #filePath, line: UInt = #line) throws {
        let one = try InProcessWorld(size: 1).run { try Self.train(cfg, comm: $0, steps: steps) }[0]
        XCTAssertTrue(one.losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(one.losses)", file: file, line: line)
        for n in sizes {
            let runs = try InProcessWorld(size: n).run { try Self.train(cfg, comm: $0, steps: steps) }
            for (r, run) in runs.enumerated() {
                XCTAssertEqual(run.losses, one.losses, "N = \(n), rank \(r): losses", file: file, line: line)
                XCTAssertEqual(run.terms, one.terms, "N = \(n), rank \(r): loss terms", file: file, line: line)
                XCTAssertTrue(run.final == one.final, "N = \(n), rank \(r): parameters", file: file, line: line)
                XCTAssertTrue(run.buffers == one.buffers, "N = \(n), rank \(r): running statistics",
                              file: file, line: line)
            }
        }
    }

    func testDistillationIsBitIdenticalOnOneToFourRanks() throws {
        try assertSameAtEveryWorldSize(try config())
    }

    /// Two views per sample (VRM's real + virtual rows): a block is 2 samples × 2 views = 4 rows.
    func testTwoViewsAndVRMAreBitIdentical() throws {
        try assertSameAtEveryWorldSize(try config(losses: "[{kind: vrm}]", views: 2), sizes: [2, 4])
    }

    /// `auto` picks by a fixed rule (no timing) and the spectral term's eigensolver runs on every rank.
    func testSpectralWithAutoAlgorithmsIsBitIdentical() throws {
        try assertSameAtEveryWorldSize(try config(losses: "[{kind: spectral}, {kind: kd}]", algorithm: "auto"),
                                       sizes: [3])
    }

    /// The deterministic run learns what the ordinary one learns: the same first-step loss to float32
    /// reassociation (1e-5 relative: sums of at most a few thousand terms in another order, n·u ≤ 1e-4
    /// relative to Σ|x| and far less in practice; the losses themselves add in Float64).
    func testFirstStepMatchesTheOrdinaryStep() throws {
        let det = try config()
        var plain = det
        plain.train.deterministic = false
        let a = try InProcessWorld(size: 2).run { try Self.train(det, comm: $0, steps: 1) }[0]
        let b = try InProcessWorld(size: 2).run { try Self.train(plain, comm: $0, steps: 1) }[0]
        XCTAssertEqual(a.losses[0], b.losses[0], accuracy: 1e-5 * abs(b.losses[0]))
        XCTAssertLessThan(TrainerWorldTests.maxRelDiff(a.final, b.final), 1e-4)
    }

    func testWhatCannotBeInvariantIsRefused() throws {
        XCTAssertThrowsError(try config(overrides: ["train.block_size=3"])) {
            XCTAssertTrue("\($0)".contains("train.block_size"), "\($0)")
        }
        let noSync = try KDConfig.parse(yaml: """
            seed: 1
            mode: distill
            data: {source: synthetic, classes: 5, image_size: 16, train_size: 64, eval_size: 20, global_batch: 10}
            teacher: {kind: network, model: resnet8, checkpoint: "\(dir)/teacher.safetensors"}
            student: {model: resnet8, batch_norm: local}
            loss: [{kind: kd}]
            train: {steps: 1, deterministic: true, block_size: 2}
            output: {dir: "\(dir)/out2"}
            """, file: "nosync.yaml")
        XCTAssertThrowsError(try InProcessWorld(size: 1).run { try Trainer(config: noSync, comm: $0) }) {
            XCTAssertTrue("\($0)".contains("nosync.yaml: student.batch_norm: local keeps"), "\($0)")
        }
        // The trainer's refusal of a key given by --set names the override, not the file.
        let synced = noSync.resolvedYAML.replacingOccurrences(of: "batch_norm: local", with: "batch_norm: sync")
        let overridden = try KDConfig.parse(yaml: synced, file: "sync.yaml", overrides: ["student.batch_norm=local"])
        XCTAssertThrowsError(try InProcessWorld(size: 1).run { try Trainer(config: overridden, comm: $0) }) {
            XCTAssertTrue("\($0)".contains("--set: student.batch_norm=local: student.batch_norm: local keeps"),
                          "\($0)")
        }
        XCTAssertThrowsError(try config("comm: {overlap: true}")) {
            XCTAssertTrue("\($0)".contains("deterministic.yaml: comm.overlap"), "\($0)")
        }
        XCTAssertThrowsError(try InProcessWorld(size: 6).run { try Trainer(config: try self.config(), comm: $0) }) {
            XCTAssertTrue("\($0)".contains("train.block_size") && "\($0)".contains("6 ranks"), "\($0)")
        }
    }

    /// Graph accumulation (issue 27): `train.micro_batch: 2` (one block per pass) gives the one-pass step's
    /// losses, terms, parameters and running statistics at 1 and 2 in-process ranks; a second pass on
    /// mirrored images (`secondPassImages`) does not, so the comparison can fail.
    func testMicroBatchIsTheOnePassStep() throws {
        let onePass = try config(overrides: ["student.batch_norm=block"])
        let reference = try InProcessWorld(size: 1).run { try Self.train(onePass, comm: $0, steps: 4) }[0]
        var micro = onePass
        micro.train.microBatch = 2
        for n in [1, 2] {
            let runs = try InProcessWorld(size: n).run { try Self.train(micro, comm: $0, steps: 4) }
            for (r, run) in runs.enumerated() {
                XCTAssertEqual(run.losses, reference.losses, "N = \(n), rank \(r)")
                XCTAssertEqual(run.terms, reference.terms, "N = \(n), rank \(r)")
                XCTAssertTrue(run.final == reference.final, "N = \(n), rank \(r): parameters")
                XCTAssertTrue(run.buffers == reference.buffers, "N = \(n), rank \(r): running statistics")
            }
        }
        let mirrored = try InProcessWorld(size: 1).run { comm -> Run in
            var run = Run()
            let t = try Trainer(config: micro, comm: comm)
            t.passes = MicroBatchSchedule(samplesPerChunk: 2,
                                          secondPassImages: FaultInjection(mirrorSecondPass: true).secondPassImages)
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 4, depth: 1)
            defer { stream.shutdown() }
            while let batch = try stream.next() { run.losses.append(try t.step(batch).loss) }
            run.final = t.parameters.map { $0.1.array }
            return run
        }[0]
        XCTAssertEqual(mirrored.losses[0], reference.losses[0], "step 1's loss comes from the first pass")
        XCTAssertNotEqual(mirrored.losses, reference.losses)
        XCTAssertFalse(mirrored.final == reference.final)
    }
}
