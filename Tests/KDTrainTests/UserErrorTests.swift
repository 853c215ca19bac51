import Foundation
import XCTest
import KDData
import KDFormats
import KDModels
import KDTestSupport
@testable import KDTrain

/// Issue 18 items 6, 9 and 12: bad input gets a message that names the file or override, the key and
/// what to do; configs follow the data they point at.
final class UserErrorTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-user-errors-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    /// A small supervised run: an MLP on 8×8 synthetic images.
    func smallYAML(_ extra: String = "", out: String = "out") -> String {
        """
        seed: 1
        data: {source: synthetic, classes: 4, image_size: 8, train_size: 32, eval_size: 8, global_batch: 8}
        student: {model: mlp, hidden: [16]}
        train: {steps: 2, log_every: 1}
        output: {dir: "\(dir)/\(out)"}
        runtime: {conv_algorithm: direct}
        \(extra)
        """
    }

    // MARK: item 6: --set

    /// Before, `--set .=1` replaced the whole file by defaults (split dropped the empty segments).
    func testMalformedOverrideKeysAreRefusedNamingTheOverride() {
        let yaml = "data: {global_batch: 8}\n"
        func refused(_ o: String) -> String {
            message { _ = try KDConfig.parse(yaml: yaml, file: "c.yaml", overrides: [o]) }
        }
        let hint = " (expected key=value, e.g. data.global_batch=256)"
        XCTAssertEqual(refused(".=1"), "--set: .=1: empty key segment in '.'" + hint)
        XCTAssertEqual(refused("data..global_batch=4"),
                       "--set: data..global_batch=4: empty key segment in 'data..global_batch'" + hint)
        XCTAssertEqual(refused("data.=4"), "--set: data.=4: empty key segment in 'data.'" + hint)
        XCTAssertEqual(refused(".data.global_batch=4"),
                       "--set: .data.global_batch=4: empty key segment in '.data.global_batch'" + hint)
        XCTAssertEqual(refused("=4"), "--set: =4: no key before '='" + hint)
        XCTAssertEqual(refused("data.global_batch"), "--set: data.global_batch: no '='" + hint)
        let section = "'data' is a section; set one of its keys (or give a mapping of them)"
        XCTAssertEqual(refused("data=1"), "--set: data=1: " + section + hint)
        XCTAssertEqual(refused("data="), "--set: data=: " + section + hint)
        // Well-formed overrides still apply on top of the file.
        XCTAssertEqual(try KDConfig.parse(yaml: yaml, overrides: ["data.views=2"]).data.globalBatch, 8)
    }

    // MARK: item 9: messages

    func testBinaryConfigIsNotUTF8YAML() throws {
        let path = dir + "/garbage.yaml"
        try Data(Array("seed: 1\n".utf8) + [0xC3, 0x28, 0xFF]).write(to: URL(fileURLWithPath: path))
        XCTAssertEqual(message { _ = try KDConfig.load(path: path) },
                       "\(path): not a YAML config: the file is not UTF-8 text (invalid byte at offset 8); "
                       + "--config takes a YAML file such as configs/*.yaml")
        try Data([0x73, 0x00, 0x31]).write(to: URL(fileURLWithPath: path))
        XCTAssertTrue(message { _ = try KDConfig.load(path: path) }
            .contains("not UTF-8 text (invalid byte at offset 1)"))
    }

    /// 100 000 nested brackets: the parser quotes the whole line; the message stays short.
    func testDeepYAMLMessageIsBounded() {
        let m = message { _ = try KDConfig.parse(yaml: String(repeating: "[", count: 100_000), file: "deep.yaml") }
        XCTAssertTrue(m.hasPrefix("deep.yaml: malformed YAML"), String(m.prefix(200)))
        XCTAssertLessThanOrEqual(m.count, ConfigError.maxMessageLength + 40)
        XCTAssertTrue(m.contains("characters cut"), String(m.prefix(200)))
        XCTAssertEqual(abbreviated("abc", limit: 10), "abc")
        XCTAssertEqual(abbreviated(String(repeating: "x", count: 100), limit: 60),
                       String(repeating: "x", count: 14) + "… (72 characters cut) …"
                       + String(repeating: "x", count: 14))
    }

    func testBlankOutputDirAndUnwritableFolder() throws {
        let blank = "output.dir: is blank: name the folder the run writes to (e.g. runs/my-run), or leave the key "
            + "out for a fresh runs/c/version_N"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "output: {dir: ' '}", file: "c.yaml") },
                       "c.yaml: \(blank) (line 1)")
        // Set by an override: the override is named, not a line of the file.
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "", file: "c.yaml", overrides: ["output.dir=' '"]) },
                       "--set: output.dir=' ': \(blank)")
        // "" is the default: no folder named, the run gets the config's next version folder.
        let unnamed = try KDConfig.parse(yaml: "", file: "configs/c.yaml", overrides: ["output.dir="])
        XCTAssertEqual([unnamed.output.dir, unnamed.outputDir, unnamed.versionRoot], ["", "runs/c", "runs/c"])
        // config.yaml cannot be written (a folder stands in its way): the file and the OS reason, no
        // NSCocoaErrorDomain dump.
        try FileManager.default.createDirectory(atPath: dir + "/out/config.yaml/x", withIntermediateDirectories: true)
        let cfg = try KDConfig.parse(yaml: smallYAML(), file: "small.yaml")
        let m = message { _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm).run() } }
        XCTAssertTrue(m.hasSuffix("\(dir)/out/config.yaml: cannot write in output.dir: a folder of that name is in "
                                  + "the way"), m)
        XCTAssertFalse(m.contains("NSCocoaErrorDomain"), m)
        XCTAssertEqual(ioReason(CocoaError(.fileWriteNoPermission)), "permission denied")
    }

    func testEvalSizeZeroNamesTheKey() {
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "data: {eval_size: 0}", file: "c.yaml") },
                       "c.yaml: data.eval_size: must be ≥ 1, got 0 (line 1)")
        XCTAssertEqual(message { _ = try SyntheticDataset(count: 0, classes: 4, seed: 0, split: 1) },
                       "config data.eval_size: must be ≥ 1 (synthetic samples in the split), got 0")
    }

    /// A Float parameter beyond Float's range was a finite Double and became inf at step 1.
    func testFloatKeysMustBeFiniteAsFloat() {
        let head = "mode: distill\nteacher: {kind: network, checkpoint: t.safetensors}\n"
        func m(_ loss: String, _ overrides: [String] = []) -> String {
            message {
                _ = try KDConfig.parse(yaml: head + "loss: [" + loss + "]\n", file: "d.yaml", overrides: overrides)
            }
        }
        XCTAssertEqual(m("{kind: kd, temperature: 1e39}"),
                       "d.yaml: loss.0.temperature: must be ≤ 3.4028234663852886e+38, got 1e+39 (line 3)")
        XCTAssertEqual(m("{kind: rkd, weight: 1e39}"),
                       "d.yaml: loss.0.weight: must be ≤ 3.4028234663852886e+38, got 1e+39 (line 3)")
        // Given by `--set`, the error names the override (docs/config.md), not the file.
        XCTAssertTrue(m("{kind: kd}", ["loss.0.temperature=1e999"])
            .hasPrefix("--set: loss.0.temperature=1e999: loss.0.temperature: "))
        XCTAssertTrue(m("{kind: rkd}", ["loss.0.angle_weight=.nan"])
            .hasPrefix("--set: loss.0.angle_weight=.nan: loss.0.angle_weight: "))
        XCTAssertTrue(m("{kind: rkd}", ["loss.0.angle_weight=nan"])
            .hasPrefix("--set: loss.0.angle_weight=nan: loss.0.angle_weight: "))
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "optim: {lr: .inf}", file: "o.yaml") },
                       "o.yaml: optim.lr: must be finite, got inf (line 1)")
    }

    /// The checkpoint metadata records the run kind and the resolved config: say which kinds differ,
    /// and which keys.
    func testResumeAcrossRunKindsAndConfigDifferences() throws {
        let sup = try KDConfig.parse(yaml: smallYAML(), file: "sup.yaml")
        let ckpt = try InProcessWorld(size: 1).run { comm -> String in
            let t = try Trainer(config: sup, comm: comm)
            _ = try t.run()
            return t.checkpointDir + "/final.safetensors"
        }[0]
        let distill = try KDConfig.parse(yaml: smallYAML("""
        mode: distill
        teacher: {kind: network, model: mlp, hidden: [16], checkpoint: "\(ckpt)"}
        loss: [{kind: kd}]
        """, out: "out2"), file: "distill.yaml")
        let m = message { _ = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: distill, comm: comm).resume(from: ckpt)
        } }
        XCTAssertTrue(m.hasSuffix("\(ckpt): written by a supervised run (kdgraph.mode) but distill.yaml is a distill "
                                  + "config: --resume continues the same run. To distil from it, name it as "
                                  + "teacher.checkpoint."), m)
        // A config that builds another model or optimizer: the tensors' mismatch, and the keys that caused it.
        let wider = try KDConfig.parse(yaml: smallYAML(out: "out"), file: "sup.yaml",
                                       overrides: ["student.hidden=[24]", "optim.lr=0.1"])
        let w = message { _ = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: wider, comm: comm).resume(from: ckpt)
        } }
        XCTAssertTrue(w.contains("does not match the model: shape mismatch"), w)
        XCTAssertTrue(w.hasSuffix(" (this config differs from the checkpoint's: student.hidden: [16] → [24]; --resume "
                                  + "continues the same model and optimizer)"), w)
        let e = message { _ = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: wider, comm: comm).loadWeights(ckpt)
        } }
        XCTAssertTrue(e.hasSuffix(" (this config differs from the checkpoint's: student.hidden: [16] → [24]; the "
                                  + "weights fit the model of the checkpoint's own config)"), e)
        // A teacher checkpoint of another model: what the file holds, from its metadata, beside what is built.
        let wrongTeacher = try KDConfig.parse(yaml: smallYAML("""
        mode: distill
        teacher: {kind: network, model: mlp, hidden: [32], checkpoint: "\(ckpt)"}
        loss: [{kind: kd}]
        """, out: "out3"), file: "t.yaml")
        let t = message { _ = try InProcessWorld(size: 1).run { try Trainer(config: wrongTeacher, comm: $0) } }
        XCTAssertTrue(t.contains("t.yaml: teacher.checkpoint: checkpoint \(ckpt): does not match the model"), t)
        XCTAssertFalse(t.contains("; the file holds"), "same model name and classes: nothing to add: \(t)")
        let otherName = try KDConfig.parse(yaml: smallYAML("""
        mode: distill
        teacher: {kind: network, model: resnet8, checkpoint: "\(ckpt)"}
        loss: [{kind: kd}]
        """, out: "out4"), file: "t.yaml")
        let n = message { _ = try InProcessWorld(size: 1).run { try Trainer(config: otherName, comm: $0) } }
        XCTAssertTrue(n.contains("; the file holds a mlp of 4 classes (kdgraph.model, kdgraph.classes), the config "
                                 + "builds a resnet8 (teacher.model) of 4 (data.classes)"), n)
        var adam = sup
        adam.optim.kind = .adamw
        let a = message { _ = try InProcessWorld(size: 1).run { comm in
            try Trainer(config: adam, comm: comm).resume(from: ckpt)
        } }
        XCTAssertTrue(a.hasSuffix("optimizer state is for SGD, not AdamW (this config differs from the checkpoint's: "
                                  + "optim.kind: sgd → adamw; --resume continues the same model and optimizer)"), a)
        var other = sup
        other.data.globalBatch = 16
        other.optim.lr = 0.1
        XCTAssertEqual(KDConfig.differences(from: sup.resolvedYAML, to: other.resolvedYAML),
                       ["data.global_batch: 8 → 16", "optim.lr: 0.05 → 0.1"])
        var lossChanged = distill
        lossChanged.loss[0].params["temperature"] = "2"
        XCTAssertEqual(KDConfig.differences(from: distill.resolvedYAML, to: lossChanged.resolvedYAML),
                       ["loss.0.temperature: (none) → 2"])
    }

    /// The NaN guard's advice depends on where the value came from.
    func testNonFiniteAdvice() throws {
        XCTAssertEqual(NonFiniteCause.training.advice(skipping: false, consecutive: 1),
                       "lower optim.lr (or the loss weights) or, for a rare overflow, set train.skip_nonfinite: true "
                       + "to skip such steps")
        XCTAssertEqual(NonFiniteCause.training.advice(skipping: true, consecutive: 4),
                       "4 steps in a row were non-finite, so skipping them does not help: lower optim.lr (or the "
                       + "loss weights), or check the loss parameters")
        XCTAssertEqual(NonFiniteCause.data("x.npy").advice(skipping: true, consecutive: 1),
                       "the input batch holds NaN/Inf values: fix the data (x.npy); skipping steps would only drop "
                       + "these samples every epoch")
        XCTAssertFalse(NonFiniteCause.teacher("teacher.checkpoint t").advice(skipping: false, consecutive: 1)
            .contains("skip_nonfinite"))
        // Through the trainer: an injected NaN term at step 1 (the student's own step).
        setenv("KDGRAPH_NAN_STEP", "1", 1)
        defer { unsetenv("KDGRAPH_NAN_STEP") }
        let cfg = try KDConfig.parse(yaml: smallYAML(), file: "small.yaml")
        let m = message { _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm).run() } }
        XCTAssertTrue(m.contains("(nan) at step 1; stopped before the optimizer applied it: lower optim.lr (or the "
                                 + "loss weights) or, for a rare overflow, set train.skip_nonfinite: true"), m)
        unsetenv("KDGRAPH_NAN_STEP")
        // From the data: feature rows holding NaN (the loader does not scan them); skipping cannot help.
        let feat = dir + "/feat"
        try FileManager.default.createDirectory(atPath: feat, withIntermediateDirectories: true)
        let x: [Float] = (0..<(32 * 4)).map { $0 % 4 == 0 ? .nan : Float($0 % 7) }
        try NPYWriter.write(x, shape: [32, 4], to: feat + "/train_features.npy")
        try NPYWriter.write((0..<32).map { Int64($0 % 4) }, shape: [32], to: feat + "/train_labels.npy")
        let bad = try KDConfig.parse(yaml: smallYAML(), file: "small.yaml",
                                     overrides: ["data.source=npy", "data.path=\(feat)", "data.eval_fraction=0.25"])
        let d = message { _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: bad, comm: comm).run() } }
        XCTAssertTrue(d.contains("at step 1; stopped before the optimizer applied it: the input batch holds NaN/Inf "
                                 + "values: fix the data (\(feat)/train_features.npy); skipping steps would only "
                                 + "drop these samples every epoch"), d)
    }

    // MARK: item 12: configs follow the data

    /// Writes an npy folder of `n` train and `n / 2` test images, 28×28×1, 10 classes.
    func digitsFolder(_ n: Int = 32) throws -> String {
        let d = dir + "/digits"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        for (split, count) in [("train", n), ("test", n / 2)] {
            let px: [UInt8] = (0..<(count * 28 * 28)).map { (i: Int) -> UInt8 in UInt8((i * 7 + i / 784 * 13) % 256) }
            try NPYWriter.write(px, shape: [count, 28, 28, 1], to: "\(d)/\(split)_images.npy")
            try NPYWriter.write((0..<count).map { Int64($0 % 10) }, shape: [count], to: "\(d)/\(split)_labels.npy")
        }
        return d
    }

    /// configs/quickstart-teacher.yaml pointed at a folder of 28×28×1 digits: size, channels and
    /// normalisation come from the files; the resolved config and the checkpoint record them.
    func testQuickstartTeacherOnOneChannelDigits() throws {
        let folder = try digitsFolder()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let path = root.appendingPathComponent("configs/quickstart-teacher.yaml").path
        let sets = ["data.source=npy", "data.path=\(folder)", "data.global_batch=8", "train.steps=1",
                    "output.dir=\(dir)/digits-run", "data.flip=false", "data.crop_padding=2",
                    "runtime.conv_algorithm=direct"]
        let cfg = try KDConfig.load(path: path, overrides: sets)
        XCTAssertNil(cfg.data.imageSize)
        let (resolved, meta, policy) = try InProcessWorld(size: 1).run {
            comm -> (KDConfig, [String: String], AugmentPolicy) in
            let t = try Trainer(config: cfg, comm: comm)
            let summary = try t.run()
            let meta = try Checkpoint.read(path: try XCTUnwrap(summary.checkpoint)).metadata
            return (t.config, meta, t.data.policy)
        }[0]
        XCTAssertEqual(resolved.data.imageSize, 28)
        // Issue 29 item 1: unset, mean and std are the training files' own statistics (here computed
        // independently from the pixels digitsFolder wrote; Double sums of integers: the same values up
        // to the last bit of the final divisions, hence 1e-12).
        var pixels: [Double] = []
        for i in 0..<(32 * 784) { pixels.append(Double((i * 7 + i / 784 * 13) % 256) / 255) }
        let count = Double(pixels.count)
        let m = pixels.reduce(0, +) / count
        var squares = 0.0
        for p in pixels { squares += (p - m) * (p - m) }
        let sd = (squares / count).squareRoot()
        XCTAssertEqual(resolved.data.mean?.count, 1)
        XCTAssertEqual(resolved.data.mean?[0] ?? 0, m, accuracy: 1e-12)
        XCTAssertEqual(resolved.data.std?[0] ?? 0, sd, accuracy: 1e-12)
        XCTAssertNotEqual(sd, 0.25, accuracy: 1e-2, "the files' std, not the old default")
        XCTAssertEqual(meta["kdgraph.input_channels"], "1")
        XCTAssertEqual(meta["kdgraph.input_size"], "28,28")
        XCTAssertEqual(meta["kdgraph.mean"], "\(resolved.data.mean![0])")
        XCTAssertEqual(policy, AugmentPolicy(enabled: true, padding: 2, flip: false))
        XCTAssertTrue(try String(contentsOfFile: "\(dir)/digits-run/config.yaml", encoding: .utf8)
            .contains("  image_size: 28\n"))
        // What the user wrote explicitly must agree with the files.
        func refused(_ extra: [String]) -> String {
            message { _ = try InProcessWorld(size: 1).run { comm in
                try Trainer(config: try KDConfig.load(path: path, overrides: sets + extra), comm: comm)
            } }
        }
        XCTAssertTrue(refused(["data.image_size=32"]).hasSuffix(
            "\(folder)/train_images.npy: images are 28×28 but data.image_size is 32 (file sources take their size "
            + "from the files: remove data.image_size)"), refused(["data.image_size=32"]))
        // Found by the data, after the config was read: still named at the override that gave the key.
        XCTAssertTrue(refused(["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.2, 0.2, 0.2]"]).hasSuffix(
            ": --set: data.mean=[0.5, 0.5, 0.5]: data.mean: needs one entry per image channel (1 in "
            + "\(folder)/train_images.npy), got 3; remove it to use the files' own statistics"),
            refused(["data.mean=[0.5, 0.5, 0.5]", "data.std=[0.2, 0.2, 0.2]"]))
        // The data layer's own config errors too (they read "config data.image_size: …" and no --set before).
        let synthetic = try KDConfig.parse(yaml: smallYAML(), file: "s.yaml", overrides: ["data.image_size=4"])
        let tiny = message { _ = try InProcessWorld(size: 1).run { try Trainer(config: synthetic, comm: $0) } }
        XCTAssertTrue(tiny.hasSuffix("--set: data.image_size=4: data.image_size: synthetic images need at least 8×8, "
                                     + "got 4×4"), tiny)
        let few = try KDConfig.parse(yaml: smallYAML(), file: "s.yaml", overrides: ["data.train_size=5"])
        let batch = message { _ = try InProcessWorld(size: 1).run { try Trainer(config: few, comm: $0) } }
        XCTAssertTrue(batch.hasSuffix("s.yaml: data.global_batch: 8 exceeds the 5 training samples and "
                                      + "data.drop_last is true: no step per epoch"), batch)
    }

    /// spectral's `k` is checked against a full batch with the config; an epoch's last partial batch
    /// (`data.drop_last: false`) is a smaller graph, and a `k` above its rows failed at the end of the first epoch.
    func testALossThatCannotRunOnThePartialBatchIsRefusedAtTheStart() throws {
        // 36 samples in batches of 8: four full batches and one of 4 samples, the fifth step of each epoch.
        let yaml = smallYAML("""
        mode: distill
        teacher: {kind: network, model: mlp, hidden: [16], init: random}
        loss: [{kind: kd}, {kind: spectral, k: 5}]
        """).replacingOccurrences(of: "train_size: 32", with: "train_size: 36")
        var runs = 0
        func start(_ sets: [String]) throws {
            runs += 1
            let c = try KDConfig.parse(yaml: yaml, file: "s.yaml",
                                       overrides: ["data.drop_last=false", "output.dir=\(dir)/run\(runs)"] + sets)
            _ = try InProcessWorld(size: 1).run { comm in try Trainer(config: c, comm: comm).run() }
        }
        XCTAssertEqual(message { try start(["train.steps=5"]) },
                       "rank 0: s.yaml: loss.1.k: 5 eigenvectors, but the last batch of each epoch has 4 rows (36 "
                       + "training samples, data.global_batch 8: 4 samples × 1 view), so at most 4; data.drop_last: "
                       + "true skips that batch")
        // Runs that never reach that batch, or skip it, or whose k fits it, run (the last one through it).
        XCTAssertNoThrow(try start(["train.steps=4"]))
        XCTAssertNoThrow(try start(["train.steps=5", "data.drop_last=true"]))
        XCTAssertNoThrow(try start(["train.steps=5", "loss.1.k=4"]))
    }

    /// `eval --checkpoint` alone takes the training run's config from the checkpoint, data path included: data
    /// moved since was only "runs/digits: missing data folder (data.path)", without where that path came from.
    func testMovedDataOfACheckpointsConfigSaysWhereThePathCameFrom() {
        let moved = CheckpointConfig.explainingMovedData(DataError.missingFile(path: "runs/digits",
                                                                               what: "data folder (data.path)"),
                                                         checkpoint: "c/final.safetensors")
        XCTAssertEqual("\(moved)", "runs/digits: missing data folder (data.path): the path of the training run's "
                       + "config, recorded in c/final.safetensors (kdgraph.config); name where the data is now with "
                       + "--set data.path=DIR, or give --config")
        let other = DataError.labelOutOfRange(path: "l.npy", index: 1, value: 7, classes: 4)
        XCTAssertEqual("\(CheckpointConfig.explainingMovedData(other, checkpoint: "c"))", "\(other)")
    }

    func testAugmentationKeysParseAndAreRefusedWhenMalformed() throws {
        let c = try KDConfig.parse(yaml: "data: {flip: false, crop_padding: 0}")
        XCTAssertFalse(c.data.flip); XCTAssertEqual(c.data.cropPadding, 0); XCTAssertTrue(c.data.augment)
        let d = try KDConfig.parse(yaml: "")
        XCTAssertTrue(d.data.flip); XCTAssertEqual(d.data.cropPadding, 4)
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "data: {flip: sometimes}", file: "a.yaml") },
                       "a.yaml: data.flip: expected true or false, got 'sometimes' (line 1)")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "data: {crop_padding: -1}", file: "a.yaml") },
                       "a.yaml: data.crop_padding: must be ≥ 0, got -1 (line 1)")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "data: {crop_padding: 2.5}", file: "a.yaml") },
                       "a.yaml: data.crop_padding: expected an integer, got '2.5' (line 1)")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "data: {std: [0.2, 0]}", file: "a.yaml") },
                       "a.yaml: data.std: needs one positive entry per channel, got [0.2, 0.0] (line 1)")
    }
}
