import Foundation
import XCTest
import KDCore
import KDData
import KDModels
import KDTestSupport
@testable import KDTrain

/// `Trainer.step` over N in-process ranks (N = 2, 3, 4), through the public API only: each rank builds
/// `Trainer(config:comm:)` from the same YAML (resnet8 student on synthetic 16×16 images, distilled
/// from a random-weight resnet8 teacher checkpoint with PRG, RKD and KD, SyncBN on), runs three steps,
/// and the first step is compared with a one-rank `Trainer` from the same initial state.
///
/// Tolerance 1e-4 relative for the loss and the parameters after one step: the two runs differ only in
/// the order of float32 sums (GEMMs over each rank's samples, SyncBN statistics, the loss shares, the
/// gradient all-reduce). A sum of n float32 terms in another order differs by at most n·u relative to
/// Σ|x| (u = 2⁻²⁴ ≈ 6e-8), i.e. ≤ 6e-5 for the longest sums here (n ≤ 1000: 3×3×64 im2col rows,
/// 10 rows × 64 features); the losses add their shares in Float64. Parameters move by lr·Δgradient in
/// one step, far below 1e-4 of their size. Between ranks nothing is reassociated: the all-reduced
/// gradients and losses are the same bits on every rank, so the parameters must stay bit-identical.
final class TrainerWorldTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try makeFolderWithTeacher("kdgraph-trainer-world-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func config(overlap: Bool) throws -> KDConfig {
        let yaml = """
        seed: 5
        mode: distill
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 64, eval_size: 20, global_batch: 10, \
        views: 1, augment: false, prefetch: false}
        teacher: {kind: network, model: resnet8, checkpoint: "\(dir)/teacher.safetensors"}
        student: {model: resnet8, batch_norm: sync}
        loss: [{kind: prg}, {kind: rkd}, {kind: kd, weight: 0.5}]
        optim: {kind: sgd, lr: 0.02, momentum: 0.9, weight_decay: 5e-4, schedule: cosine, warmup_steps: 2}
        train: {steps: 8, log_every: 1, deterministic: \(!overlap)}
        comm: {overlap: \(overlap), bucket_mb: 0.05}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: winograd2}
        """
        return try KDConfig.parse(yaml: yaml, file: "trainer-world.yaml")
    }

    struct Run {
        var losses: [Double] = []
        var afterFirst: [[Float]] = []
        var final: [[Float]] = []
    }

    /// Runs `steps` steps of a fresh trainer on `comm`.
    static func train(_ cfg: KDConfig, comm: Communicator, steps: Int) throws -> Run {
        var run = Run()
        let t = try runTrainer(cfg, comm: comm, steps: steps) { t, record, s in
            run.losses.append(record.loss)
            if s == 0 { run.afterFirst = t.parameters.map { $0.1.array } }
        }
        try t.checkParametersInSync()
        run.final = t.parameters.map { $0.1.array }
        return run
    }

    /// max_i |a_i − b_i| / max_i |b_i| over the worst parameter tensor.
    static func maxRelDiff(_ a: [[Float]], _ b: [[Float]]) -> Double {
        zip(a, b).map { p, q in
            let d = zip(p, q).map { Double(abs($0 - $1)) }.max() ?? 0
            return d / max(Double(q.map { abs($0) }.max() ?? 0), 1e-6)
        }.max() ?? 0
    }

    func testStepOnNRanksMatchesOneRankAndRanksAgree() throws {
        for (size, overlap) in [(2, false), (3, true), (4, false)] {
            let cfg = try config(overlap: overlap)
            let reference = try InProcessWorld(size: 1).run { try Self.train(cfg, comm: $0, steps: 1) }[0]
            let runs = try InProcessWorld(size: size).run { try Self.train(cfg, comm: $0, steps: 3) }
            let first = runs[0]
            XCTAssertEqual(first.losses.count, 3)
            XCTAssertTrue(first.losses.allSatisfy { $0.isFinite && $0 > 0 }, "\(first.losses)")
            let rel = abs(first.losses[0] - reference.losses[0]) / abs(reference.losses[0])
            XCTAssertLessThan(rel, 1e-4, "N = \(size): loss \(first.losses[0]) vs one rank \(reference.losses[0])")
            let paramRel = Self.maxRelDiff(first.afterFirst, reference.afterFirst)
            XCTAssertLessThan(paramRel, 1e-4, "N = \(size): parameters after one step")
            print("TrainerWorldTests N = \(size) overlap \(overlap): losses \(first.losses), one-rank step-1 loss "
                  + "\(reference.losses[0]) (rel \(rel)), parameters rel \(paramRel)")
            XCTAssertGreaterThan(Self.maxRelDiff(first.final, first.afterFirst), 1e-6, "training moves the parameters")
            for r in 1..<size {
                XCTAssertEqual(runs[r].losses, first.losses, "N = \(size): rank \(r) sees the same global losses")
                XCTAssertTrue(runs[r].final == first.final, "N = \(size): rank \(r) parameters are bit-identical")
            }
        }
    }

    /// `--resume` under `runtime.conv_algorithm: auto` takes the layers' algorithms from the checkpoint's
    /// `kdgraph.conv_algorithms`, whatever a new timing would pick: the killed-and-resumed run computes
    /// what the uninterrupted one would have (Tests/mpi/faults.sh checks the losses under mpirun).
    func testResumeRunsTheCheckpointsAlgorithms() throws {
        var cfg = try config(overlap: false)
        cfg.convAlgorithm = .auto
        let dir = self.dir
        _ = try InProcessWorld(size: 1).run { comm in
            let a = try Trainer(config: cfg, comm: comm)
            XCTAssertFalse(a.convAlgorithms.isEmpty, "resnet8 has stride-1 3×3 layers")
            // Record choices no timing would make for every shape: the opposite of what auto picked.
            var forced = a.convAlgorithms
            for i in forced.indices { forced[i].algorithm = forced[i].algorithm == .winograd4 ? .direct : .winograd4 }
            try ConvAlgorithmTuner.apply(forced, models: a.convModels)
            a.convAlgorithms = forced
            let path = try a.saveCheckpoint(name: "step_00000000.safetensors")

            var other = cfg
            other.outputDir = dir + "/elsewhere"   // no conv_algorithms.json to reuse
            let b = try Trainer(config: other, comm: comm)
            try b.resume(from: path)
            XCTAssertEqual(b.convAlgorithms.map(\.algorithm), forced.map(\.algorithm))
            XCTAssertTrue(b.convAlgorithms.allSatisfy { $0.source == "checkpoint" })
            let convs = ConvAlgorithmTuner.namedConvolutions(b.convModels)
            XCTAssertTrue(forced.flatMap(\.layers).contains { $0.hasPrefix("teacher.") }, "the teacher's layers too")
            for choice in forced {
                for layer in choice.layers {
                    XCTAssertEqual(convs[layer]?.algorithm, choice.algorithm, layer)
                }
            }
        }
    }
}
