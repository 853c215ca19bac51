import XCTest
import KDLosses
@testable import KDTrain

final class ConfigTests: XCTestCase {
    func testDefaultsAndValues() throws {
        let c = try KDConfig.parse(yaml: """
        seed: 3
        mode: supervised
        data: {source: synthetic, classes: 5, global_batch: 64, views: 2}
        student: {model: resnet20}
        optim: {lr: 0.1, schedule: step, milestones: [10, 20]}
        train: {steps: 40}
        """, file: "a.yaml")
        XCTAssertEqual(c.seed, 3)
        XCTAssertEqual(c.data.classes, 5)
        XCTAssertEqual(c.data.globalBatch, 64)
        XCTAssertEqual(c.data.views, 2)
        XCTAssertEqual(c.student.model, "resnet20")
        XCTAssertEqual(c.optim.milestones, [10, 20])
        XCTAssertEqual(c.train.steps, 40)
        XCTAssertEqual(c.comm.bucketMB, 4)
    }

    func testUnknownKeyNamesKeyAndFile() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data:\n  global_batchh: 4\n", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: data.global_batchh: unknown key (line 2)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "sed: 1\n", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: sed: unknown key (line 1)")
        }
    }

    func testWrongTypeAndImpossibleValues() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: abc}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("c.yaml: data.global_batch: expected an integer, got 'abc'"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: 0}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("c.yaml: data.global_batch: must be ≥ 1, got 0"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: -8}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".contains("must be ≥ 1, got -8"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "comm:\n  link_probe_every: -1", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: comm.link_probe_every: must be ≥ 0, got -1 (line 2)")
        }
        XCTAssertEqual(try KDConfig.parse(yaml: "comm: {link_probe_every: 0}", file: "c.yaml").comm.linkProbeEvery, 0)
        XCTAssertEqual(try KDConfig.parse(yaml: "seed: 1", file: "c.yaml").comm.linkProbeEvery, 1000)
        XCTAssertThrowsError(try KDConfig.parse(yaml: "optim: {kind: lbfgs}", file: "c.yaml")) { e in
            XCTAssertTrue("\(e)".contains("optim.kind: must be one of sgd, adamw, got 'lbfgs'"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "mode: distill\nteacher: {kind: network}\nloss: [{kind: kd}]",
                                                file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: teacher.checkpoint: a network teacher needs a checkpoint "
                           + "(or teacher.init: random for benchmarks)")
        }
    }

    /// `train.micro_batch` (issue 27): sync and local BatchNorm are refused naming both keys (a pass sees
    /// fewer rows than they normalise over); the value must hold whole sample blocks; block BatchNorm and a
    /// student without BatchNorm (mlp) are accepted.
    func testMicroBatchNeedsBlockBatchNormAndWholeBlocks() throws {
        let base = "data: {global_batch: 256}\ntrain: {block_size: 16, micro_batch: 32}\n"
        for (bn, over) in [("sync", "the whole global batch"), ("local", "the rank's whole share")] {
            XCTAssertThrowsError(try KDConfig.parse(yaml: base + "student: {batch_norm: \(bn)}", file: "c.yaml")) {
                XCTAssertEqual("\($0)", "c.yaml: train.micro_batch: needs student.batch_norm: block (got \(bn)): a "
                               + "pass sees 32 samples of the rank and \(bn) BatchNorm normalises over \(over), so "
                               + "the two passes would not compute the one-pass step (line 2)")
            }
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: 256}\ntrain: {block_size: 16, "
                                                + "micro_batch: 24}\nstudent: {batch_norm: block}", file: "c.yaml")) {
            XCTAssertEqual("\($0)", "c.yaml: train.micro_batch: 24 must be a multiple of the block size 16 "
                           + "(train.block_size): a pass holds whole sample blocks (line 2)")
        }
        let block = try KDConfig.parse(yaml: base + "student: {batch_norm: block}", file: "c.yaml")
        XCTAssertEqual(block.train.microBatch, 32)
        XCTAssertNoThrow(try KDConfig.parse(yaml: base + "student: {model: mlp}", file: "c.yaml"))
        XCTAssertEqual(try KDConfig.parse(yaml: "", file: "c.yaml").train.microBatch, 0, "off by default")
    }

    /// `teacher.init` (issue 18 item 13): `checkpoint` by default, so a distillation config without a
    /// checkpoint is still refused; `random` only by name, for network teachers, and round-trips.
    func testTeacherInit() throws {
        let distill = "mode: distill\nloss: [{kind: kd}]\n"
        let loaded = try KDConfig.parse(yaml: distill + "teacher: {checkpoint: t.safetensors}")
        XCTAssertEqual(loaded.teacher.initialization, .checkpoint)
        let random = try KDConfig.parse(yaml: distill + "teacher: {kind: network, init: random}", file: "b.yaml")
        XCTAssertEqual(random.teacher.initialization, .random)
        XCTAssertEqual(random.teacher.checkpoint, "")
        XCTAssertTrue(random.resolvedYAML.contains("\n  init: random\n"), random.resolvedYAML)
        XCTAssertEqual(try KDConfig.parse(yaml: random.resolvedYAML, file: "b.yaml").teacher, random.teacher)
        XCTAssertThrowsError(try KDConfig.parse(yaml: distill + "teacher: {init: checkpoint}", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: teacher.checkpoint: a network teacher needs a checkpoint "
                           + "(or teacher.init: random for benchmarks)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: distill + "teacher: {init: zeros}", file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: teacher.init: must be one of checkpoint, random, got 'zeros' (line 3)")
        }
        let embeddings = "teacher: {kind: embeddings, embeddings: e.npy, init: random}"
        XCTAssertThrowsError(try KDConfig.parse(yaml: distill + embeddings, file: "c.yaml")) { e in
            XCTAssertEqual("\(e)", "c.yaml: teacher.init: 'random' applies to a network teacher; an embeddings "
                           + "teacher has no weights (line 3)")
        }
    }

    func testMalformedYAML() {
        XCTAssertThrowsError(try KDConfig.parse(yaml: "data: {global_batch: [1,\n", file: "bad.yaml")) { e in
            XCTAssertTrue("\(e)".hasPrefix("bad.yaml: malformed YAML"), "\(e)")
        }
    }

    func testOverrides() throws {
        let c = try KDConfig.parse(yaml: "data: {global_batch: 8}\nloss: [{kind: kd, weight: 1}]",
                                   overrides: ["data.global_batch=32", "train.steps=7", "loss.0.weight=2.5",
                                               "train.deterministic=false", "comm.overlap=true"])
        XCTAssertEqual(c.data.globalBatch, 32)
        XCTAssertEqual(c.train.steps, 7)
        XCTAssertEqual(c.loss[0].weight, 2.5)
        XCTAssertTrue(c.comm.overlap)
        XCTAssertThrowsError(try KDConfig.parse(yaml: "", overrides: ["data.bogus=1"])) { e in
            XCTAssertTrue("\(e)".contains("data.bogus: unknown key"), "\(e)")
        }
        XCTAssertThrowsError(try KDConfig.parse(yaml: "", overrides: ["novalue"])) { e in
            XCTAssertTrue("\(e)".contains("expected key=value"), "\(e)")
        }
    }

    func testResolvedYAMLRoundTrips() throws {
        var c = try KDConfig.parse(yaml: """
        mode: distill
        teacher: {kind: network, checkpoint: "t.safetensors"}
        loss: [{kind: prg, weight: 1, temperature: 4}, {kind: rkd, distance_weight: 25, input: embedding}]
        """, file: "x.yaml")
        let again = try KDConfig.parse(yaml: c.resolvedYAML, file: "x.yaml")
        c.file = again.file
        XCTAssertEqual(again, c)
    }
}

final class ShippedConfigTests: XCTestCase {
    /// Every config under configs/ and Tests/mpi/configs/ passes strict validation.
    func testShippedConfigsParse() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        var seen = 0
        for dir in ["configs", "Tests/mpi/configs"] {
            let folder = root.appendingPathComponent(dir)
            for name in try FileManager.default.contentsOfDirectory(atPath: folder.path) where name.hasSuffix(".yaml") {
                let c = try KDConfig.load(path: folder.appendingPathComponent(name).path)
                XCTAssertGreaterThan(c.data.globalBatch, 0, name)
                seen += 1
            }
        }
        XCTAssertGreaterThanOrEqual(seen, 10)
        // Benchmark configs run on a fresh clone: their teacher needs no file (docs/scaling.md).
        let benchFile = root.appendingPathComponent("configs/bench-distill-resnet32x4-resnet8x4.yaml")
        let bench = try KDConfig.load(path: benchFile.path)
        XCTAssertEqual(bench.teacher.initialization, .random)
        XCTAssertEqual(bench.teacher.checkpoint, "")
    }
}

final class LossConfigReaderTests: XCTestCase {
    /// A loss term's unknown or out-of-range key is reported when the config is read — before any
    /// teacher file is opened — with the file, the term's index, the key and the line, by the same
    /// reader as every other key (the kind's `LossRegistry` descriptor asks for its keys).
    func testLossKeysAreReadStrictlyByTheConfigReader() throws {
        let views = "data: {views: 2}\n"   // vrm's two views (after the entries: their lines stay 4 and 5)
        let head = "mode: distill\n"
            + "teacher: {kind: network, model: resnet8, checkpoint: does-not-exist.safetensors}\nloss:\n"
        func message(_ entries: String) -> String {
            do { _ = try KDConfig.parse(yaml: head + entries + views, file: "t.yaml"); return "no error" } catch {
                return "\(error)"
            }
        }
        XCTAssertEqual(message("  - {kind: kd}\n  - {kind: rkd, distance_wieght: 25}\n"),
                       "t.yaml: loss.1.distance_wieght: unknown key (line 5)")
        XCTAssertEqual(message("  - {kind: kd, temperature: 0}\n"),
                       "t.yaml: loss.0.temperature: must be > 0.0, got 0.0 (line 4)")
        XCTAssertEqual(message("  - {kind: rkd, angle_anchors: 0}\n"),
                       "t.yaml: loss.0.angle_anchors: must be ≥ 1, got 0 (line 4)")
        XCTAssertEqual(message("  - {kind: vrm, q: 2}\n"), "t.yaml: loss.0.q: must be ≤ 1.0, got 2.0 (line 4)")
        XCTAssertEqual(message("  - {kind: rkd, input: logits}\n"),
                       "t.yaml: loss.0.input: must be one of features, embedding, got 'logits' (line 4)")
        XCTAssertTrue(message("  - {kind: crd}\n")
            .hasPrefix("t.yaml: loss.0.kind: loss config: unknown loss kind 'crd'"))
        let c = try KDConfig.parse(yaml: head + "  - {kind: rkd, angle_weight: 0, input: embedding}\n  - {kind: vrm}\n"
                                   + views)
        let rkd = try XCTUnwrap(c.loss[0].term as? RKDTerm)
        XCTAssertEqual(rkd.angleWeight, 0); XCTAssertTrue(rkd.useEmbedding); XCTAssertEqual(rkd.distanceWeight, 25)
        XCTAssertEqual(LossObjective(terms: c.loss.map(\.term)).needs,
                       [.studentEmbedding, .teacherEmbedding, .studentLogits, .teacherLogits, .twoViews])
    }
}
