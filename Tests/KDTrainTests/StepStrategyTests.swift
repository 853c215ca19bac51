import Foundation
import XCTest
import KDComm
import KDData
import KDLosses
import KDModels
import KDTestSupport
@testable import KDTrain

/// The step's strategies as the trainer builds them: the gradient synchronisation chosen by the config,
/// the non-finite guard's one rollback path, and an observer receiving the loss inputs and the gather
/// ledger.
final class StepStrategyTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-step-") }

    override func tearDownWithError() throws { tmp?.remove() }

    /// Supervised resnet8 (BatchNorm, so running statistics are part of the state) on 16×16 images, SGD with
    /// momentum (optimizer state), global batch 8.
    func config(_ overrides: [String] = []) throws -> KDConfig {
        let yaml = """
        seed: 3
        mode: supervised
        data: {source: synthetic, classes: 5, image_size: 16, train_size: 64, eval_size: 8, global_batch: 8, \
        augment: false, prefetch: false}
        student: {model: resnet8, batch_norm: sync}
        optim: {kind: sgd, lr: 0.05, momentum: 0.9, schedule: constant}
        train: {steps: 4, log_every: 1}
        output: {dir: "\(dir)/out"}
        runtime: {conv_algorithm: direct}
        """
        return try KDConfig.parse(yaml: yaml, file: "step.yaml", overrides: overrides)
    }

    /// Parameters, running statistics and optimizer state, in a fixed order.
    static func state(_ t: Trainer) -> [[Float]] {
        (t.parameters + t.student.namedBuffers()).map { $0.1.array }
            + t.optimizer.stateTensors().sorted { $0.0 < $1.0 }.map { $0.1.array }
    }

    /// Graph accumulation outside deterministic mode (issue 27): the pass schedule follows `train.micro_batch`;
    /// with float gradient sums, bucketed or overlapped with backward (the hook on the last pass only), two
    /// passes of 2 samples per rank on 2 ranks take the one-pass step up to float reassociation: the
    /// parameter gradients are added over the chunks instead of over the whole share, a few float32 roundings
    /// of gradients O(1), well inside 1e-4 relative on the loss after 4 steps at lr 0.05.
    func testMicroBatchOutsideDeterministicModeFollowsTheOnePassStep() throws {
        let base = ["train.deterministic=false", "student.batch_norm=block", "train.block_size=2"]
        func losses(_ extra: [String]) throws -> [Double] {
            try InProcessWorld(size: 2).run { comm -> [Double] in
                let t = try runTrainer(try self.config(base + extra), comm: comm, steps: 4) { _, _, _ in }
                XCTAssertTrue(extra.contains("train.micro_batch=2") ? t.passes is MicroBatchSchedule
                                                                      : t.passes is OnePassSchedule)
                return t.lastRecord.map { [$0.loss] } ?? []
            }[0]
        }
        let one = try losses([])
        for extra in [["train.micro_batch=2"], ["train.micro_batch=2", "comm.overlap=true"]] {
            let two = try losses(extra)
            XCTAssertEqual(two.count, 1)
            XCTAssertEqual(two[0], one[0], accuracy: 1e-4 * abs(one[0]), "\(extra)")
        }
    }

    func testStrategiesFollowTheConfig() throws {
        _ = try InProcessWorld(size: 1).run { comm in
            let plain = try Trainer(config: self.config(["train.deterministic=false"]), comm: comm)
            XCTAssertTrue(plain.gradientSync is BucketedSync)
            XCTAssertEqual(plain.gradientSync.lossSharing, .rowShared)
            XCTAssertNil(plain.gradientSync.rowsPerBlock)
            XCTAssertTrue(try Trainer(config: self.config(["train.deterministic=false", "comm.overlap=true"]),
                                      comm: comm).gradientSync is OverlappedSync)
            // The default: deterministic.
            let exact = try Trainer(config: self.config(["train.block_size=2"]), comm: comm).gradientSync
            XCTAssertTrue(exact is ExactSync)
            XCTAssertEqual(exact.lossSharing, .exactBlocks)
            XCTAssertEqual(exact.rowsPerBlock, 2)
            XCTAssertNil(exact.onGradReady)
        }
    }

    /// A NaN loss at step 2 (the injected term) with `train.skip_nonfinite`: step 2 is not applied and
    /// leaves parameters, running statistics and optimizer state exactly as step 1 left them; step 3 trains.
    func testSkippedStepPutsEverythingBack() throws {
        setenv("KDGRAPH_NAN_STEP", "2", 1)
        defer { unsetenv("KDGRAPH_NAN_STEP") }
        let cfg = try config(["train.skip_nonfinite=true"])
        _ = try InProcessWorld(size: 1).run { comm in
            var states: [[[Float]]] = [], records: [StepRecord] = []
            try runTrainer(cfg, comm: comm, steps: 3) { t, record, _ in
                records.append(record); states.append(Self.state(t))
            }
            XCTAssertEqual(records.map(\.applied), [true, false, true])
            XCTAssertTrue(records[1].loss.isNaN)
            XCTAssertTrue(states[1] == states[0], "the skipped step changed no value")
            XCTAssertFalse(states[2] == states[1], "the next step trains")
        }
    }

    /// Without `train.skip_nonfinite` the same NaN stops the run at step 2, naming the term and the advice.
    func testNonFiniteStopsWithoutSkipping() throws {
        setenv("KDGRAPH_NAN_STEP", "2", 1)
        defer { unsetenv("KDGRAPH_NAN_STEP") }
        let cfg = try config()
        _ = try InProcessWorld(size: 1).run { comm in
            XCTAssertThrowsError(try runTrainer(cfg, comm: comm, steps: 3) { _, _, _ in }) {
                XCTAssertEqual("\($0)", "non-finite loss/injected_nan (nan) at step 2; stopped before the optimizer "
                               + "applied it: "
                               + "lower optim.lr (or the loss weights) or, for a rare overflow, set "
                               + "train.skip_nonfinite: true to skip such steps")
            }
        }
    }

    /// An update that made a value non-finite goes through the same rollback as a non-finite loss: the
    /// captured state comes back, and faults in a row are counted until a good step.
    func testAnUpdateFaultTakesTheSameRollback() throws {
        let cfg = try config(["train.skip_nonfinite=true"])
        _ = try InProcessWorld(size: 1).run { comm in
            let t = try Trainer(config: cfg, comm: comm)
            let guardian = t.nonFiniteGuard
            let before = Self.state(t)
            let (name, p) = t.parameters[0]
            guardian.capture()
            p.ptr[0] = .nan
            p.ptr[1] = .infinity
            let fault = try XCTUnwrap(guardian.inspectUpdate())
            XCTAssertEqual(fault.what, "the update made 2 value(s) of \(name) non-finite")
            XCTAssertEqual(fault.cause, .training)
            XCTAssertFalse(try guardian.settle(fault, step: 1))
            XCTAssertTrue(Self.state(t) == before, "the captured state is back")
            XCTAssertNil(guardian.inspectUpdate())
            XCTAssertFalse(try guardian.settle(fault, step: 2))
            XCTAssertEqual(guardian.consecutive, 2)
            XCTAssertTrue(try guardian.settle(nil, step: 3))
            XCTAssertEqual(guardian.consecutive, 0)
        }
    }

    /// Keeps what the trainer tells it.
    final class Recorder: StepObserver {
        var gathered: [(step: Int, logits: [Int], labels: Int)] = []
        var records: [StepRecord] = []
        func lossInputsGathered(_ inputs: LossInputs, step: Int) {
            gathered.append((step, inputs.studentLogits?.shape ?? [], inputs.labels?.count ?? 0))
        }
        func stepFinished(_ record: StepRecord) { records.append(record) }
    }

    /// On two ranks (4 samples each) an observer gets each step's gathered loss inputs (the cross-entropy
    /// reads the logits and labels of all 8 samples) and its record with the gather ledger: two gathers,
    /// one differentiable (5 logits × 4 bytes per sample), labels 8 bytes per sample, 4 × 5 floats received.
    func testObserverReceivesTheInputsAndTheLedger() throws {
        let cfg = try config()
        let seen = try InProcessWorld(size: 2).run { comm -> (Recorder, [StepRecord]) in
            let recorder = Recorder()
            var returned: [StepRecord] = []
            let t = try Trainer(config: cfg, comm: comm)
            t.observers.append(recorder)
            let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 2, depth: 1)
            defer { stream.shutdown() }
            while let b = try stream.next() { returned.append(try t.step(b)) }
            return (recorder, returned)
        }
        for (recorder, returned) in seen {
            XCTAssertEqual(recorder.gathered.map(\.step), [1, 2])
            XCTAssertEqual(recorder.gathered.map(\.logits), [[8, 5], [8, 5]])
            XCTAssertEqual(recorder.gathered.map(\.labels), [8, 8])
            XCTAssertEqual(recorder.records.map(\.step), returned.map(\.step))
            XCTAssertEqual(recorder.records.map(\.loss), returned.map(\.loss))
            for r in recorder.records {
                XCTAssertEqual(r.gathers.calls, 2)
                XCTAssertEqual(r.gathers.differentiableCalls, 1)
                XCTAssertEqual(r.gathers.differentiableBytesPerSample, 5 * 4)
                XCTAssertEqual(r.gathers.bytesPerSample, 5 * 4 + 8)
                XCTAssertEqual(r.gathers.bytesReceived, 4 * 5 * 4)
                XCTAssertGreaterThan(r.gathers.seconds, 0)
            }
        }
        XCTAssertEqual(seen[0].1.map(\.loss), seen[1].1.map(\.loss), "the ranks agree on the global loss")
    }

    /// Issue 24 item 6: an update that overflows (a step schedule multiplying the rate by 1e38 at step 2)
    /// turned every weight Inf; without `train.skip_nonfinite` the run logged on and died in the
    /// checkpoint writer. The guard stops it at that step, naming what the update made non-finite.
    func testAnOverflowingUpdateStopsTheRunWithoutSkipping() throws {
        var cfg = try config()
        cfg.optim.schedule = .step
        cfg.optim.milestones = [2]
        cfg.optim.gamma = 1e38
        cfg.optim.lr = 10
        _ = try InProcessWorld(size: 1).run { comm in
            XCTAssertThrowsError(try runTrainer(cfg, comm: comm, steps: 4) { _, _, _ in }) {
                let m = "\($0)"
                XCTAssertTrue(m.hasPrefix("at step 3 the update made "), m)
                XCTAssertTrue(m.contains("non-finite; stopped there (no checkpoint holds it): lower optim.lr"), m)
            }
        }
    }
}
