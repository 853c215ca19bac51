import Foundation
import XCTest
import KDCore
import KDData
import KDTestSupport
@testable import KDTrain

/// `--resume` continues the interrupted run exactly, for every optimizer and schedule kind (issue 24
/// item 1: an AdamW checkpoint could not be read back). Each case trains 6 steps straight, and 3 steps,
/// a checkpoint, a new trainer resumed from it, 3 more steps; the last 3 losses, every parameter and
/// every optimizer state tensor must be the same bits (same build, same process, pinned convolution
/// algorithm: nothing may differ, so no tolerance).
final class ResumeTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try makeFolderWithTeacher("kdgraph-resume-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func config(optim: String, distill: Bool, out: String) throws -> KDConfig {
        let distillation = """
        mode: distill
        teacher: {kind: network, model: resnet8, checkpoint: "\(dir)/teacher.safetensors"}
        loss: [{kind: prg}, {kind: kd, weight: 0.5}]
        """
        let yaml = """
        seed: 11
        \(distill ? distillation : "mode: supervised")
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 40, eval_size: 8, global_batch: 8, \
        views: 1, augment: true, prefetch: false}
        student: {model: resnet8, batch_norm: sync}
        optim: \(optim)
        train: {steps: 6, log_every: 1}
        output: {dir: "\(dir)/\(out)"}
        runtime: {conv_algorithm: winograd2}
        """
        return try KDConfig.parse(yaml: yaml, file: "resume.yaml")
    }

    struct State: Equatable { var losses: [Double]; var parameters: [[Float]]; var optimizer: [String: [Float]] }

    /// Steps `from..<6` of a trainer (resumed from `checkpoint` when given); with `saveAt`, writes a
    /// checkpoint after that step and returns its path too.
    static func run(_ cfg: KDConfig, comm: Communicator, resume checkpoint: String? = nil,
                    saveAt: Int? = nil) throws -> (State, String?) {
        let t = try Trainer(config: cfg, comm: comm)
        if let checkpoint { try t.resume(from: checkpoint) }
        let start = t.step
        let stream = t.data.stream(t.sampler, from: t.samplerPosition(afterSteps: start), steps: 6 - start, depth: 1)
        defer { stream.shutdown() }
        var losses: [Double] = [], saved: String?
        while let b = try stream.next() {
            losses.append(try t.step(b).loss)
            if t.step == saveAt { saved = try t.saveCheckpoint(name: t.stepCheckpointName) }
        }
        let optimizer = Dictionary(t.optimizer.stateTensors().map { ($0.0, $0.1.array) },
                                   uniquingKeysWith: { a, _ in a })
        return (State(losses: losses, parameters: t.parameters.map { $0.1.array }, optimizer: optimizer), saved)
    }

    func testEveryOptimizerAndScheduleResumesExactly() throws {
        let optimizers = [
            "kind: sgd, lr: 0.05, momentum: 0.9, weight_decay: 5e-4",
            "kind: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 5e-4",
            "kind: sgd, lr: 0.05, momentum: 0.9, decoupled: true, weight_decay: 5e-4",
            "kind: adamw, lr: 0.002, betas: [0.9, 0.99], eps: 1e-7, weight_decay: 0.01",
        ]
        let schedules = ["schedule: cosine, warmup_steps: 2", "schedule: step, milestones: [2, 4], gamma: 0.5",
                         "schedule: constant, warmup_steps: 1"]
        var cases: [(String, Bool)] = []
        for o in optimizers { for s in schedules { cases.append(("{\(o), \(s)}", false)) } }
        cases.append(("{\(optimizers[3]), \(schedules[0])}", true))   // + projection head and distillation
        for (n, (optim, distill)) in cases.enumerated() {
            let straight = try config(optim: optim, distill: distill, out: "straight\(n)")
            let interrupted = try config(optim: optim, distill: distill, out: "interrupted\(n)")
            let world = InProcessWorld(size: 1)
            let (whole, _) = try world.run { try Self.run(straight, comm: $0) }[0]
            let (firstHalf, path) = try world.run { try Self.run(interrupted, comm: $0, saveAt: 3) }[0]
            XCTAssertEqual(firstHalf.losses, Array(whole.losses), "\(optim): the same run until the end")
            let checkpoint = try XCTUnwrap(path, optim)
            let (resumed, _) = try world.run { try Self.run(interrupted, comm: $0, resume: checkpoint) }[0]
            XCTAssertEqual(resumed.losses, Array(whole.losses[3...]),
                           "\(optim) distill \(distill): losses after resume")
            XCTAssertTrue(resumed.parameters == whole.parameters, "\(optim) distill \(distill): parameters")
            XCTAssertEqual(Set(resumed.optimizer.keys), Set(whole.optimizer.keys), optim)
            XCTAssertFalse(whole.optimizer.isEmpty, "\(optim): the optimizer has state to resume")
            XCTAssertTrue(resumed.optimizer == whole.optimizer, "\(optim) distill \(distill): optimizer state")
        }
    }
}
