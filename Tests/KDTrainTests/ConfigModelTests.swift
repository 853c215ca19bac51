import Foundation
import XCTest
import KDTestSupport
import KDData
@testable import KDTrain
import Yams

/// The config model (Config.swift, ConfigCoding.swift): the documented keys are the decoded keys, a
/// file that is not a mapping is refused, `--set` merges a mapping key by key and says what it replaced,
/// sizes are bounded, kinds are closed sets, and the resolved YAML is the encoder's and reads back.
final class ConfigModelTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "" } catch { return "\(error)" }
    }

    /// Every leaf key of the defaults' tree (`loss` is one key: a list of terms).
    static func decodedKeys() throws -> Set<String> {
        var keys: Set<String> = []
        func walk(_ n: Node, _ path: String) {
            guard let m = n.mapping else { keys.insert(path); return }
            for (k, v) in m { walk(v, path.isEmpty ? k.string! : "\(path).\(k.string!)") }
        }
        walk(try ConfigNodeEncoder.node(KDConfig()), "")
        return keys
    }

    /// The keys docs/config.md's table documents (first column, each key in backquotes).
    static func documentedKeys() throws -> Set<String> {
        let text = try String(contentsOf: root.appendingPathComponent("docs/config.md"), encoding: .utf8)
        var keys: Set<String> = []
        for line in text.split(separator: "\n") where line.hasPrefix("| `") {
            let cell = line.split(separator: "|", omittingEmptySubsequences: true)[0]
            for part in cell.split(separator: "`") where !part.trimmingCharacters(in: .whitespaces).isEmpty
                && !part.contains(",") {
                keys.insert(String(part))
            }
        }
        return keys
    }

    func testDocsDocumentExactlyTheKeysTheDecoderReads() throws {
        let decoded = try Self.decodedKeys(), documented = try Self.documentedKeys()
        XCTAssertGreaterThan(decoded.count, 50, "the walk sees every section")
        XCTAssertEqual(decoded.subtracting(documented).sorted(), [], "read by the decoder, missing from docs/config.md")
        XCTAssertEqual(documented.subtracting(decoded).sorted(), [], "in docs/config.md, not read by the decoder")
    }

    /// Issue 24 item 3: an empty file, a list, a number or a sentence trained on every default.
    func testAConfigThatIsNotAMappingIsRefusedNamingTheFile() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-config-model-")
        defer { tmp.remove() }
        let dir = tmp.path
        for (text, shown) in [("", "is empty"), ("\n  \n", "is empty"), ("# only a comment\n", "is empty"),
                              ("- 1\n", "got a list"), ("42\n", "got '42'"), ("hello world\n", "got 'hello world'")] {
            let path = dir + "/c.yaml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let m = message { _ = try KDConfig.load(path: path) }
            XCTAssertTrue(m.hasPrefix(path + ":") || m.hasPrefix(path + " (line 1):"), m)
            XCTAssertTrue(m.contains(shown), "\(text.debugDescription): \(m)")
            XCTAssertTrue(m.contains("seed, mode, data"), m)
        }
    }

    /// A file that does not parse is reported as malformed YAML, not as empty (the empty-file check had read
    /// every parse error as "no document"); a key given twice names the key and where its mapping starts.
    /// A key given a value the run does not read is named (a warning at start), never dropped without a word;
    /// one left at its default, or a resolved config.yaml run again, says nothing.
    /// `KDGRAPH_COMM_TIMEOUT` was silently replaced by `comm.timeout_s` (its default of 300 s too) once the
    /// trainer started; the watchdog's message now names the setting, and a replaced variable is named.
    func testACollectiveTimeoutFromTheEnvironmentThatTheConfigReplacesIsNamed() throws {
        let config = try KDConfig.parse(yaml: "comm: {timeout_s: 60}\n", file: "c.yaml")
        setenv("KDGRAPH_COMM_TIMEOUT", "600", 1)
        defer { unsetenv("KDGRAPH_COMM_TIMEOUT") }
        XCTAssertEqual(config.unusedKeyNotes, ["KDGRAPH_COMM_TIMEOUT=600 is set but not used: a run with a config "
                                               + "times its collectives out after comm.timeout_s (60.0 s)"])
        setenv("KDGRAPH_COMM_TIMEOUT", "60", 1)
        XCTAssertEqual(config.unusedKeyNotes, [], "the same value: nothing replaced")
        unsetenv("KDGRAPH_COMM_TIMEOUT")
        XCTAssertEqual(config.unusedKeyNotes, [])
        // The trainer applies comm.timeout_s before its first collective.
        let small = try KDConfig.parse(yaml: """
            data: {source: synthetic, classes: 4, image_size: 8, train_size: 16, eval_size: 8, global_batch: 8}
            student: {model: mlp, hidden: [8]}
            comm: {timeout_s: 7.5}
            """, file: "c.yaml")
        let seen = try InProcessWorld(size: 1, timeoutSeconds: 120).run { comm -> Double in
            _ = try Trainer(config: small, comm: comm)
            return comm.timeoutSeconds
        }
        XCTAssertEqual(seen, [7.5])
    }

    func testKeysTheRunDoesNotUseAreNamed() throws {
        let supervised = try KDConfig.parse(yaml: """
            mode: supervised
            data: {source: synthetic, path: runs/digits}
            teacher: {checkpoint: t.safetensors}
            loss: [{kind: kd}]
            optim: {kind: adamw, momentum: 0.5, milestones: [10]}
            """, file: "s.yaml")
        XCTAssertEqual(supervised.unusedKeyNotes, [
            "teacher is set but not used: a supervised run has no teacher (mode: supervised)",
            "loss is set but not used: a supervised run trains on cross-entropy with the labels (mode: supervised)",
            "data.path is set but not used: data.source: synthetic generates its images",
            "optim.momentum is set but not used: optim.kind: adamw has no momentum (it reads optim.betas and "
                + "optim.eps)",
            "optim.milestones is set but not used: optim.milestones and optim.gamma shape the step schedule only "
                + "(optim.schedule: cosine)",
        ])
        let files = try KDConfig.parse(yaml: "data: {source: npy, path: d, train_size: 100}\n"
                                       + "optim: {betas: [0.8, 0.99], schedule: step, gamma: 0.5}\n", file: "f.yaml")
        XCTAssertEqual(files.unusedKeyNotes, [
            "data.train_size is set but not used: data.source: npy takes its sample counts from the files",
            "optim.betas is set but not used: optim.betas and optim.eps are AdamW's (optim.kind: sgd reads "
                + "optim.momentum)",
        ])
        let network = try KDConfig.parse(yaml: "mode: distill\nteacher: {checkpoint: t.safetensors, "
                                         + "embeddings: e.npy, clip_scale: 50}\nloss: [{kind: kd}]\n"
                                         + "data: {augment: false, flip: false}\n", file: "n.yaml")
        let byNetwork = "a network teacher computes its own embeddings and logits (teacher.kind: network)"
        XCTAssertEqual(network.unusedKeyNotes, [
            "teacher.embeddings is set but not used: " + byNetwork,
            "teacher.clip_scale is set but not used: " + byNetwork,
            "data.flip is set but not used: data.augment: false turns training augmentation off",
        ])
        let embeddings = try KDConfig.parse(yaml: "mode: distill\nteacher: {kind: embeddings, embeddings: e.npy, "
                                            + "model: resnet20, clip_scale: 50}\nloss: [{kind: rkd}]\n",
                                            file: "e.yaml")
        XCTAssertEqual(embeddings.unusedKeyNotes, [
            "teacher.model is set but not used: an embeddings teacher is its file, not a network "
                + "(teacher.kind: embeddings)",
            "teacher.clip_scale is set but not used: it scales the prompt logits, and teacher.prompts is empty",
        ])
        // Views beyond those every term reads (vrm: views 0 and 1); a term that reads every view reads them.
        let vrm = "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: vrm}]\n"
        XCTAssertEqual(try KDConfig.parse(yaml: vrm + "data: {views: 3}\n", file: "v.yaml").unusedKeyNotes, [
            "data.views is 3, but the loss terms (vrm) read views 0 and 1 of each sample: view 2 is computed every "
                + "step and read by no term",
        ])
        XCTAssertEqual(try KDConfig.parse(yaml: vrm + "data: {views: 4}\n", file: "v.yaml").unusedKeyNotes.first?
            .hasSuffix("views 2 and 3 are computed every step and read by no term"), true)
        XCTAssertEqual(try KDConfig.parse(yaml: vrm + "data: {views: 2}\n", file: "v.yaml").unusedKeyNotes, [])
        let withRKD = "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: vrm}, {kind: rkd}]\n"
        XCTAssertEqual(try KDConfig.parse(yaml: withRKD + "data: {views: 3}\n", file: "v.yaml").unusedKeyNotes, [])
        // Inapplicable keys at their defaults (momentum 0.9 under adamw) and a run's resolved config: quiet.
        let quiet = try KDConfig.parse(yaml: "optim: {kind: adamw, momentum: 0.9}\n", file: "q.yaml")
        XCTAssertEqual(quiet.unusedKeyNotes, [])
        XCTAssertEqual(try KDConfig.parse(yaml: KDConfig().resolvedYAML, file: "config.yaml").unusedKeyNotes, [])
        // A supervised run's resolved config drops its teacher; what it keeps is named again.
        let rerun = try KDConfig.parse(yaml: supervised.resolvedYAML, file: "config.yaml").unusedKeyNotes
        XCTAssertEqual(rerun, Array(supervised.unusedKeyNotes.dropFirst()))
    }

    /// A distillation loss that cannot train the student is refused, naming the key (or the `--set` that zeroed
    /// it): every term of weight 0, or a term whose parts all weigh 0; a term of weight 0 beside others is
    /// allowed (it is still computed) and named in a warning.
    func testALossThatTrainsNothingIsRefused() throws {
        let head = "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss:\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: head + "  - {kind: kd, weight: 0}\n"
                                                          + "  - {kind: prg, weight: 0}\n", file: "z.yaml") },
                       "z.yaml: loss: every term has weight 0, so the student would learn nothing (give one a "
                       + "weight > 0) (line 4)")
        let kd = head + "  - {kind: kd}\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: kd, file: "z.yaml", overrides: ["loss.0.weight=0"]) },
                       "--set: loss.0.weight=0: loss.0.weight: every term has weight 0, so the student would learn "
                       + "nothing (give one a weight > 0)")
        let rkd = head + "  - {kind: kd}\n  - {kind: rkd, distance_weight: 0, angle_weight: 0}\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: rkd, file: "r.yaml") },
                       "r.yaml: loss.1: rkd: distance_weight and angle_weight are both 0, so the term computes "
                       + "nothing (drop the entry, or give one of them a value > 0) (line 5)")
        let rkdSet = head + "  - {kind: rkd, angle_weight: 0}\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: rkdSet, file: "r.yaml",
                                                          overrides: ["loss.0.distance_weight=0"]) },
                       "--set: loss.0.distance_weight=0: loss.0.distance_weight: rkd: distance_weight and "
                       + "angle_weight are both 0, so the term computes nothing (drop the entry, or give one of "
                       + "them a value > 0)")
        XCTAssertTrue(message { _ = try KDConfig.parse(yaml: head + "  - {kind: prg, node_weight: 0, edge_weight: 0, "
                                                        + "pseudo_label_weight: 0}\n", file: "p.yaml") }
            .contains("loss.0: prg: node_weight, edge_weight and pseudo_label_weight are all 0"))
        // One part left on, or one term of weight 0 beside another: a valid run; the zero weight is named.
        let monitored = try KDConfig.parse(yaml: head + "  - {kind: kd, weight: 0}\n"
                                           + "  - {kind: rkd, distance_weight: 0}\n", file: "m.yaml")
        XCTAssertEqual(monitored.unusedKeyNotes, ["loss.0.weight is 0: the kd term is computed every step but adds "
                                                  + "nothing to the loss the student trains on"])
        XCTAssertEqual(try KDConfig.parse(yaml: kd, file: "k.yaml").unusedKeyNotes, [])
    }

    /// mlp's widths for another model, the virtual view's augmentation with one view, and a block size nothing
    /// is shared by were ignored without a word.
    func testKeysOfAnotherModelViewOrBlockModeAreNamed() throws {
        let c = try KDConfig.parse(yaml: """
            mode: distill
            teacher: {checkpoint: t.safetensors, model: resnet20, hidden: [64]}
            student: {model: resnet8, hidden: [32], batch_norm: sync}
            data: {virtual_augment: standard}
            train: {deterministic: false, block_size: 8}
            loss: [{kind: kd}]
            """, file: "k.yaml")
        XCTAssertEqual(c.unusedKeyNotes, [
            "teacher.hidden is set but not used: the hidden widths are mlp's (teacher.model: resnet20)",
            "student.hidden is set but not used: the hidden widths are mlp's (student.model: resnet8)",
            "data.virtual_augment is set but not used: it augments the second (virtual) view, and data.views is 1",
            "train.block_size is set but not used: blocks are shared only with train.deterministic: true or "
                + "student.batch_norm: block",
        ])
        let used = try KDConfig.parse(yaml: """
            student: {model: mlp, hidden: [32], batch_norm: block}
            train: {deterministic: false, block_size: 8}
            """, file: "u.yaml")
        XCTAssertEqual(used.unusedKeyNotes, [])
    }

    /// `data.eval_fraction` where nothing is held out: a synthetic source (its own eval split, from the config)
    /// and a file source with a test file (known once the files are seen). Both were silent.
    func testAnEvalFractionNothingIsHeldOutByIsNamed() throws {
        let synthetic = try KDConfig.parse(yaml: "data: {eval_fraction: 0.2}\n", file: "s.yaml")
        XCTAssertEqual(synthetic.unusedKeyNotes, ["data.eval_fraction is set but not used: data.source: synthetic "
                                                  + "generates its evaluation split (data.eval_size)"])
        let files = try KDConfig.parse(yaml: "data: {source: npy, path: d, eval_fraction: 0.2}\n", file: "f.yaml")
        XCTAssertEqual(files.unusedKeyNotes, [])
        XCTAssertEqual(files.dataNotes(evalIsHeldOut: false, evalName: "d/test_images.npy"),
                       ["data.eval_fraction is set but not used: the evaluation split is the test file "
                        + "d/test_images.npy"])
        XCTAssertEqual(files.dataNotes(evalIsHeldOut: true, evalName: "d/train_images.npy (held-out part)"), [])
        let byDefault = try KDConfig.parse(yaml: "data: {source: npy, path: d}\n", file: "f.yaml")
        XCTAssertEqual(byDefault.dataNotes(evalIsHeldOut: false, evalName: "d/test_images.npy"), [])
    }

    /// `student.embed_dim` sizes the projection head, which only terms reading the student's embedding build:
    /// set for a run without one, it was ignored (a wrong size too).
    func testAProjectionHeadSizeNoTermReadsIsNamed() throws {
        let head = "student: {embed_dim: 64}\n"
        let why = "student.embed_dim is set but not used: no loss term reads the student's embedding, the "
            + "projection head's output (prg, spectral, rkd with input: embedding)"
        XCTAssertEqual(try KDConfig.parse(yaml: head).unusedKeyNotes, [why], "supervised")
        let distill = "mode: distill\nteacher: {checkpoint: t.safetensors}\n" + head
        XCTAssertEqual(try KDConfig.parse(yaml: distill + "loss: [{kind: kd}, {kind: rkd}]\n").unusedKeyNotes, [why])
        for reads in ["{kind: prg}", "{kind: spectral}", "{kind: rkd, input: embedding}"] {
            XCTAssertEqual(try KDConfig.parse(yaml: distill + "loss: [\(reads)]\n").unusedKeyNotes, [], reads)
        }
    }

    /// `comm.link_probe_every` measures the links between hosts: set for a run on one host it did nothing, silently.
    func testALinkProbePeriodOnOneHostIsNamed() throws {
        let set = try KDConfig.parse(yaml: "comm: {link_probe_every: 5}\n", file: "c.yaml")
        XCTAssertEqual(Trainer.linkProbeUnusedNote(config: set, hosts: ["h0", "h0"]),
                       "comm.link_probe_every is set but not used: the link probe measures the links between hosts, "
                       + "and every rank runs on h0")
        XCTAssertNil(Trainer.linkProbeUnusedNote(config: set, hosts: ["h0", "h1"]), "two hosts: probed")
        XCTAssertNil(Trainer.linkProbeUnusedNote(config: try KDConfig.parse(yaml: "seed: 1\n"), hosts: ["h0", "h0"]),
                     "the default period: nothing set, nothing to say")
    }

    /// A distillation config whose terms read nothing of the teacher (`loss: [{kind: ce}]`) ran the teacher every
    /// step for nothing, without a word: it is now not run, and the teacher section is named as unused.
    func testATeacherNoTermReadsIsNamedAndNotRun() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-unread-teacher-")
        defer { tmp.remove() }
        let yaml = """
            seed: 1
            mode: distill
            data: {source: synthetic, classes: 4, image_size: 8, train_size: 32, eval_size: 8, global_batch: 8}
            teacher: {kind: network, model: mlp, hidden: [8], init: random}
            student: {model: mlp, hidden: [8]}
            loss: [{kind: ce}]
            train: {steps: 1}
            output: {dir: "\(tmp.path)/run"}
            """
        let ce = try KDConfig.parse(yaml: yaml, file: "c.yaml")
        XCTAssertEqual(ce.unusedKeyNotes, ["teacher is set but not used: no loss term reads the teacher's outputs "
                                           + "(loss: ce), so the teacher does not run (mode: supervised trains on "
                                           + "the labels without one)"])
        let kd = try KDConfig.parse(yaml: yaml, file: "c.yaml", overrides: ["loss=[{kind: ce}, {kind: kd}]"])
        XCTAssertEqual(kd.unusedKeyNotes, [])
        for (config, runs) in [(ce, false), (kd, true)] {
            _ = try InProcessWorld(size: 1).run { comm in
                var config = config
                config.output.dir = tmp.file("run-" + config.loss.map(\.kind).joined(separator: "-"))
                let t = try Trainer(config: config, comm: comm)
                let stream = t.data.stream(t.sampler, from: SamplerPosition(epoch: 0, step: 0), steps: 1, depth: 1)
                defer { stream.shutdown() }
                let batch = try XCTUnwrap(try stream.next())
                XCTAssertEqual(try t.teacherOutputs(batch) != nil, runs, "\(config.loss.map(\.kind))")
                try t.step(batch)
            }
        }
    }

    /// A folder of feature rows takes none of the image keys: each set was ignored without a word.
    func testImageKeysOfAFeatureRowSourceAreNamed() throws {
        let c = try KDConfig.parse(yaml: "data: {source: npy, path: d, image_size: 32, mean: [0.5], std: [0.2], "
                                   + "flip: false, crop_padding: 2}\n", file: "f.yaml")
        let why = "d/train_features.npy holds feature rows, which are neither resized, normalised nor augmented"
        XCTAssertEqual(c.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy"),
                       ["data.image_size", "data.mean", "data.std", "data.flip", "data.crop_padding"]
                        .map { "\($0) is set but not used: \(why)" })
        XCTAssertEqual(c.dataNotes(evalIsHeldOut: true, evalName: ""), [], "images: every key read")
        // Without augmentation the augmentation's keys are named once, by unusedKeyNotes.
        var off = c; off.data.augment = false
        XCTAssertEqual(off.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy").count, 3)
        XCTAssertEqual(off.unusedKeyNotes.filter { $0.hasPrefix("data.flip") || $0.hasPrefix("data.crop") }.count, 2)
        let plain = try KDConfig.parse(yaml: "data: {source: npy, path: d}\n", file: "f.yaml")
        XCTAssertEqual(plain.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy"), [])
        var cached = plain; cached.teacher.cache.rounds = 3
        XCTAssertEqual(cached.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy"), [],
                       "supervised: no teacher")
        cached.mode = .distill
        XCTAssertEqual(cached.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy"),
                       ["teacher.cache.rounds is 3, but rounds of feature rows are all the same rows "
                        + "(d/train_features.npy is not augmented): 1 round holds every teacher output"])
        cached.teacher.kind = .embeddings
        XCTAssertEqual(cached.dataNotes(evalIsHeldOut: true, evalName: "", featureRows: "d/train_features.npy"), [],
                       "an embeddings file may hold other outputs per round")
    }

    /// Schedule settings the run never reaches are named once the steps are known (they were silent).
    func testScheduleSettingsPastTheRunAreNamed() throws {
        let c = try KDConfig.parse(yaml: "optim: {schedule: step, milestones: [100, 500, 900], warmup_steps: 600}\n")
        XCTAssertEqual(c.scheduleNotes(totalSteps: 600), [
            "optim.milestones [900] lie past the run's last step (600): the learning rate never decays there",
            "optim.warmup_steps 600 ≥ the run's 600 steps: the learning rate never reaches optim.lr",
        ])
        XCTAssertEqual(c.scheduleNotes(totalSteps: 900), [])
        // Milestones are the step schedule's only: under cosine they are an unused key (unusedKeyNotes), not this.
        let cosine = try KDConfig.parse(yaml: "optim: {schedule: cosine, milestones: [900]}\n")
        XCTAssertEqual(cosine.scheduleNotes(totalSteps: 600), [])
    }

    /// What a term reads must exist, found by `validate` (so `train --check` and the launch scripts catch it
    /// before mpirun starts the ranks; the views check ran in the trainer before, the prompts one nowhere: the
    /// step failed with "prg: missing input 'teacher logits'").
    func testWhatTheTermsReadMustExist() {
        let embeddings = "mode: distill\nteacher: {kind: embeddings, embeddings: e.npy}\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: embeddings + "loss: [{kind: prg}]\n", file: "e.yaml") },
                       "e.yaml: teacher.prompts: loss.0 (prg) needs the teacher's logits and class proxies, which an "
                       + "embeddings teacher gets from its prompt embeddings only: set teacher.prompts (a K×C×D .npy)")
        XCTAssertTrue(message { _ = try KDConfig.parse(yaml: embeddings + "loss: [{kind: rkd}, {kind: kd}]\n",
                                                       file: "e.yaml") }
            .contains("loss.1 (kd) needs the teacher's logits, which"))
        XCTAssertNoThrow(try KDConfig.parse(yaml: embeddings + "loss: [{kind: rkd}]\n", file: "e.yaml"))
        XCTAssertNoThrow(try KDConfig.parse(yaml: "mode: distill\nteacher: {kind: embeddings, embeddings: e.npy, "
                                            + "prompts: p.npy}\nloss: [{kind: prg}]\n", file: "e.yaml"))
        let network = "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: vrm}]\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: network, file: "v.yaml",
                                                          overrides: ["data.views=1"]) },
                       "--set: data.views=1: data.views: loss.0 (vrm) needs 2 views per sample (real + virtual), got 1")
        XCTAssertNoThrow(try KDConfig.parse(yaml: network + "data: {views: 2}\n", file: "v.yaml"))
        // A term's own limit on the graph (LossTerm.refusal): spectral's k at most the batch's rows.
        let spectral = "mode: distill\nteacher: {checkpoint: t.safetensors}\ndata: {global_batch: 16, views: 2}\n"
            + "loss: [{kind: spectral, k: 33}]\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: spectral, file: "s.yaml") },
                       "s.yaml: loss.0.k: 33 eigenvectors, but a batch's graph has 32 rows (data.global_batch × "
                       + "data.views), so at most 32 (line 4)")
        XCTAssertNoThrow(try KDConfig.parse(yaml: spectral, file: "s.yaml", overrides: ["loss.0.k=32"]))
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: spectral, file: "s.yaml",
                                                          overrides: ["data.global_batch=1", "data.views=1"]) },
                       "s.yaml: loss.0: spectral needs a graph of at least 2 rows, but a batch's graph has 1 row "
                       + "(data.global_batch × data.views) (line 4)")
        // rkd on fewer than 3 rows: NaN at the first step (1 row), or a loss of 0 whatever the student does (2).
        let rkd = "mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: ce}, {kind: rkd}]\n"
        for (batch, views) in [(1, 1), (2, 1), (1, 2)] {
            let yaml = rkd + "data: {global_batch: \(batch), views: \(views)}\n"
            XCTAssertEqual(message { _ = try KDConfig.parse(yaml: yaml, file: "r.yaml") },
                           "r.yaml: loss.1: rkd needs a graph of at least 3 rows (its distances are divided by their "
                           + "mean, the constant 1 for 2 rows, and an angle needs 3 points), but a batch's graph has "
                           + "\(batch * views) row\(batch * views == 1 ? "" : "s") (data.global_batch × data.views) "
                           + "(line 3)")
        }
        XCTAssertNoThrow(try KDConfig.parse(yaml: rkd + "data: {global_batch: 3}\n", file: "r.yaml"))
    }

    func testAMalformedFileIsNotReportedAsEmpty() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-config-model-")
        defer { tmp.remove() }
        let path = tmp.file("c.yaml")
        let cases = [
            ("seed: [1, 2\n", "\(path): malformed YAML: "),
            ("# a run\nseed: 0\ndata: {global_batch: 8}\nseed: 1\n",
             "\(path) (line 2): malformed YAML: the mapping that starts on this line gives 'seed' more than once; "
             + "a key may appear once"),
            ("data: {global_batch: 8, flip: true, global_batch: 4}\n",
             "\(path) (line 1): malformed YAML: the mapping that starts on this line gives 'global_batch' more "
             + "than once; a key may appear once"),
        ]
        for (text, expected) in cases {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            let m = message { _ = try KDConfig.load(path: path) }
            XCTAssertTrue(m.hasPrefix(expected), "\(text.debugDescription): \(m)")
            XCTAssertFalse(m.contains("is empty"), m)
        }
    }

    /// Issue 24 item 4: a mapping in `--set` merges key by key; a list replaces a list; notes say what.
    func testMappingOverridesMergeKeyByKey() throws {
        let file = "train: {steps: 9, log_every: 3, checkpoint_every: 5, sync_check_every: 7}\n"
            + "data: {global_batch: 32, flip: false}\nmode: distill\nteacher: {init: random}\n"
            + "loss: [{kind: kd}, {kind: rkd}]\n"
        let c = try KDConfig.parse(yaml: file, file: "f.yaml",
                                   overrides: ["train={steps: 3}", "data={}", "loss=[{kind: prg}]"])
        XCTAssertEqual(c.train.steps, 3)
        XCTAssertEqual([c.train.logEvery, c.train.checkpointEvery, c.train.syncCheckEvery], [3, 5, 7])
        XCTAssertEqual(c.data.globalBatch, 32)
        XCTAssertFalse(c.data.flip)
        XCTAssertEqual(c.loss.map(\.kind), ["prg"], "the loss list is replaced whole (documented)")
        XCTAssertEqual(c.overrideNotes, [
            "--set train={steps: 3}: replaces train.steps: 9",
            "--set train={steps: 3}: sets train.steps; the other train keys unchanged",
            "--set data={}: sets nothing (an empty mapping)",
            "--set loss=[{kind: prg}]: replaces the file's loss list (2 term(s)) with 1 term(s)",
        ])
        // A nested mapping merges too; an unknown key inside it is named at its override.
        let t = try KDConfig.parse(yaml: file, overrides: ["teacher={cache: {rounds: 2}}"])
        XCTAssertEqual(t.teacher.cache.rounds, 2)
        XCTAssertEqual(t.teacher.initialization, .random)
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: file, overrides: ["train={stepz: 3}"]) },
                       "--set: train={stepz: 3}: train.stepz: unknown key")
    }

    /// Issue 24 item 11: a bad value given by `--set` names the override, not "(line 1)" of the file.
    func testErrorsInOverridesNameTheOverride() {
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "seed: 1\n", file: "f.yaml",
                                                          overrides: ["data.global_batch=abc"]) },
                       "--set: data.global_batch=abc: data.global_batch: expected an integer, got 'abc'")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "seed: 1\n", file: "f.yaml",
                                                          overrides: ["data.global_batch=0"]) },
                       "--set: data.global_batch=0: data.global_batch: must be ≥ 1, got 0")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: "seed: 1\ndata: {global_batch: 0}\n", file: "f.yaml") },
                       "f.yaml: data.global_batch: must be ≥ 1, got 0 (line 2)")
        // One key of a loss entry given by `--set` (the entry itself from the file): the override is named,
        // where the loss entry's reader had named the file and the value's "(line 1)".
        let losses = "seed: 1\nmode: distill\nteacher: {init: random}\nloss:\n  - {kind: prg, weight: 1}\n"
        let cases = [
            ("loss.0.weight=x", "loss.0.weight: expected a number, got 'x'"),
            ("loss.0.foo=1", "loss.0.foo: unknown key"),
            ("loss.0.temperature=-1", "loss.0.temperature: must be > 0.0, got -1.0"),
            ("loss.0.kind=zz", "loss.0.kind: loss config: unknown loss kind 'zz' (known: "),
        ]
        for (override, shown) in cases {
            let m = message { _ = try KDConfig.parse(yaml: losses, file: "f.yaml", overrides: [override]) }
            XCTAssertTrue(m.hasPrefix("--set: \(override): \(shown)"), m)
        }
        // The same mistakes in the file name the file and the entry's line.
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: losses.replacingOccurrences(of: "weight: 1",
                                                                                         with: "weight: x"),
                                                        file: "f.yaml") },
                       "f.yaml: loss.0.weight: expected a number, got 'x' (line 5)")
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: losses.replacingOccurrences(of: "weight: 1",
                                                                                         with: "weight: 1, foo: 1"),
                                                        file: "f.yaml") },
                       "f.yaml: loss.0.foo: unknown key (line 5)")
    }

    /// Issue 24 items 7 and 10: every size key is bounded, values beyond float32 refused when read.
    func testBoundsOnSizesAndFloatValues() {
        let cases: [(String, String)] = [
            ("data: {train_size: 9223372036854775807}", "data.train_size: must be ≤ 100000000"),
            ("data: {train_size: 2000000000}", "data.train_size: must be ≤ 100000000"),
            ("runtime: {memory_limit_gb: 1e10}", "runtime.memory_limit_gb: must be ≤ 1000000.0"),
            ("teacher: {clip_scale: 1e39}", "teacher.clip_scale: must be ≤ 3.4028234663852886e+38, got 1e+39"),
            ("teacher: {cache: {rounds: 1000000}}", "teacher.cache.rounds: must be ≤ 10000"),
            ("optim: {lr: 1e39}", "optim.lr: must be ≤ 3.4028234663852886e+38"),
            ("data: {global_batch: 1e3}", "data.global_batch: expected an integer, got '1e3'"),
            ("student: {model: \(String(repeating: "x", count: 1_000_000))}", "student.model: unknown model 'xxx"),
        ]
        for (yaml, expected) in cases {
            let m = message { _ = try KDConfig.parse(yaml: yaml, file: "b.yaml") }
            XCTAssertTrue(m.contains(expected), "\(yaml): \(m)")
            XCTAssertTrue(m.hasPrefix("b.yaml: "), m)
            XCTAssertLessThanOrEqual(m.count, ConfigError.maxMessageLength + 200, "echoed values are cut")
        }
    }

    /// A `train.micro_batch` that holds every rank's whole share makes one chunk a step: named, with the share,
    /// which is whole blocks when the batch is shared in blocks (global batch 64 in blocks of 4: 16 blocks, 6 on
    /// the first of 3 ranks).
    func testAMicroBatchThatHoldsTheWholeShareIsNamed() throws {
        let c = try KDConfig.parse(yaml: "data: {global_batch: 64}\nstudent: {batch_norm: block}\n"
                                   + "train: {micro_batch: 32, block_size: 4}", file: "m.yaml")
        XCTAssertEqual(c.worldNotes(ranks: 1), [], "64 samples in passes of 32")
        XCTAssertEqual(c.worldNotes(ranks: 2), ["train.micro_batch 32 holds each rank's whole share of the global "
            + "batch (at most 32 samples: data.global_batch 64 on 2 ranks), so every step is one chunk and graph "
            + "accumulation only adds pass 1's forward; 0 turns it off"])
        var three = c
        three.train.microBatch = 16
        XCTAssertEqual(three.worldNotes(ranks: 3), [], "a share of 6 blocks is 24 samples: two chunks")
        three.train.microBatch = 24
        XCTAssertEqual(three.worldNotes(ranks: 3).first?.contains("at most 24 samples"), true)
        XCTAssertEqual(try KDConfig.parse(yaml: "data: {global_batch: 64}", file: "d.yaml").worldNotes(ranks: 64), [],
                       "off")
    }

    /// Text is not a number or a flag, however it is spelt: quoted, or tagged `!!str` (which Yams alone would read
    /// as the number), in the config's keys and in a loss entry's parameters alike.
    func testTextIsNotANumber() {
        let cases: [(String, String)] = [
            ("data: {global_batch: !!str 8}", "data.global_batch: expected an integer, got '8' (line 1)"),
            ("data: {global_batch: \"8\"}", "data.global_batch: expected an integer, got '8' (line 1)"),
            ("optim: {lr: !!str 0.1}", "optim.lr: expected a number, got '0.1' (line 1)"),
            ("data: {augment: !!str false}", "data.augment: expected true or false, got 'false' (line 1)"),
            ("data: {augment: 'false'}", "data.augment: expected true or false, got 'false' (line 1)"),
            ("mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: rkd, distance_weight: !!str 2}]",
             "loss.0.distance_weight: expected a number, got '2' (line 3)"),
            ("mode: distill\nteacher: {checkpoint: t.safetensors}\nloss: [{kind: spectral, k: !!str 4}]",
             "loss.0.k: expected an integer, got '4' (line 3)"),
        ]
        for (yaml, expected) in cases {
            XCTAssertEqual(message { _ = try KDConfig.parse(yaml: yaml, file: "t.yaml") }, "t.yaml: " + expected)
        }
        XCTAssertEqual(try? KDConfig.parse(yaml: "data: {global_batch: 8, augment: false}", file: "t.yaml")
            .data.globalBatch, 8, "plain scalars are numbers and flags")
    }

    /// `train.block_size: 0` (the default) picks the largest divisor of the global batch that is at most 64
    /// and at most a sixteenth of it — from the config alone; a set value is kept.
    func testAutomaticBlockSize() throws {
        for (batch, expected) in [(64, 4), (256, 16), (4096, 64), (16384, 64), (10, 1), (48, 3), (1, 1)] {
            let c = try KDConfig.parse(yaml: "data: {global_batch: \(batch)}", file: "b.yaml")
            XCTAssertEqual(c.samplesPerBlock, expected, "global batch \(batch)")
            XCTAssertEqual(c.data.globalBatch % c.samplesPerBlock, 0)
        }
        let set = try KDConfig.parse(yaml: "data: {global_batch: 64}\ntrain: {block_size: 8}", file: "b.yaml")
        XCTAssertEqual(set.samplesPerBlock, 8)
    }

    /// Kinds are closed sets: an unknown one is an error listing the allowed, never a fallback.
    func testUnknownKindsAreErrors() {
        let cases: [(String, String)] = [
            ("optim: {kind: lbfgs}", "optim.kind: must be one of sgd, adamw, got 'lbfgs' (line 1)"),
            ("optim: {schedule: linear}", "optim.schedule: must be one of cosine, step, constant, got 'linear'"),
            ("runtime: {conv_algorithm: fft}", "runtime.conv_algorithm: must be one of auto, timed, direct, "
                + "winograd2, winograd4, got 'fft'"),
            ("teacher: {kind: oracle}", "teacher.kind: must be one of network, embeddings, got 'oracle'"),
            ("data: {source: hdf5}", "data.source: must be one of synthetic, npy, cifar, got 'hdf5'"),
            ("teacher: {cache: {dtype: int8}}", "teacher.cache.dtype: must be one of float32, float16, got 'int8'"),
            ("mode: teach", "mode: must be one of supervised, distill, got 'teach'"),
            ("student: {batch_norm: ghost}", "student.batch_norm: must be one of sync, block, local, got 'ghost'"),
            // The key of earlier versions is refused naming its replacement, not ignored or read as unknown.
            ("student: {sync_bn: false}", "student.sync_bn: replaced by student.batch_norm: sync | block | local "
                + "(sync_bn: true was sync, false was local) (line 1)"),
        ]
        for (yaml, expected) in cases {
            let m = message { _ = try KDConfig.parse(yaml: yaml, file: "k.yaml") }
            XCTAssertTrue(m.contains(expected), "\(yaml): \(m)")
        }
    }

    /// The resolved YAML is the encoder's: it reads back to the same config, every key present.
    func testResolvedYAMLReadsBackToTheSameConfig() throws {
        let c = try KDConfig.parse(yaml: "mode: distill\nteacher: {init: random, model: resnet8}\n"
                                   + "loss: [{kind: kd, temperature: 4}, {kind: rkd}]\n"
                                   + "data: {mean: [0.4], std: [0.2]}\n"
                                   + "optim: {kind: adamw, schedule: step, milestones: [3]}", file: "r.yaml")
        let again = try KDConfig.parse(yaml: c.resolvedYAML, file: "r.yaml")
        XCTAssertEqual(again, c)
        XCTAssertEqual(again.resolvedYAML, c.resolvedYAML)
        let tree = try XCTUnwrap(try Yams.compose(yaml: c.resolvedYAML))
        for key in try Self.decodedKeys() {
            var node: Node? = tree
            for part in key.split(separator: ".") { node = node?.mapping?[String(part)] }
            XCTAssertNotNil(node, "\(key) in the resolved YAML")
        }
    }

    /// Issue 25 item 2: a PRG entry's `clip_scale` did nothing (the teacher reads `teacher.clip_scale`);
    /// it is refused naming the entry's key, its line and the one key that works.
    func testPRGClipScaleInTheLossEntryIsRefused() {
        let yaml = "mode: distill\nteacher: {init: random}\nloss:\n  - {kind: prg, clip_scale: 50}\n"
        XCTAssertEqual(message { _ = try KDConfig.parse(yaml: yaml, file: "p.yaml") },
                       "p.yaml: loss.0.clip_scale: is not a key of this loss: use teacher.clip_scale instead (line 4)")
    }

    /// Issue 29 item 10: the resolved config of an npy run listed the synthetic-only sizes, and a supervised
    /// run's showed a teacher. Both are left out; reading the YAML back gives the same run.
    func testTheResolvedConfigSaysWhatTheRunUses() throws {
        let npy = try KDConfig.parse(yaml: "data: {source: npy, path: d}\n", file: "n.yaml")
        XCTAssertFalse(npy.resolvedYAML.contains("train_size"), npy.resolvedYAML)
        XCTAssertFalse(npy.resolvedYAML.contains("teacher:"), "supervised: no teacher section")
        XCTAssertTrue(npy.resolvedYAML.contains("  path: \"d\"\n"), npy.resolvedYAML)
        XCTAssertEqual(try KDConfig.parse(yaml: npy.resolvedYAML, file: "n.yaml"), npy)
        let synthetic = try KDConfig.parse(yaml: "mode: distill\nteacher: {init: random}\nloss: [{kind: kd}]\n")
        XCTAssertTrue(synthetic.resolvedYAML.contains("  train_size: 8192\n"))
        XCTAssertTrue(synthetic.resolvedYAML.contains("teacher:\n  kind: network\n"))
    }
}
