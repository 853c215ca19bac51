import ArgumentParser
import XCTest
@testable import kdgraph

/// Options that cannot mean anything are refused when the command line is parsed, naming the option and
/// the value, before anything runs: a negative `--seed` had trapped converting to UInt64, `--steps 0` had
/// set up the whole trainer before finding nothing to measure, `models --out` without `--save` was
/// ignored, and `export-views --rounds 0` was reported as an error of the config file.
final class CommandLineTests: XCTestCase {
    /// The message `kdgraph` prints for `arguments`, or nil where they parse and validate.
    func refusal(_ arguments: [String]) -> String? {
        do { _ = try KDGraphCommand.parseAsRoot(arguments); return nil } catch {
            return KDGraphCommand.message(for: error)
        }
    }

    func testModelsOptionsAreChecked() {
        XCTAssertEqual(refusal(["models", "--classes", "0"]), "--classes must be ≥ 1, got 0")
        XCTAssertEqual(refusal(["models", "--channels", "0"]), "--channels must be ≥ 1, got 0")
        XCTAssertEqual(refusal(["models", "--save", "resnet8", "--out", "m.safetensors", "--seed=-1"]),
                       "--seed must be ≥ 0, got -1")
        XCTAssertEqual(refusal(["models", "--save", "resnet8"]), "--save needs --out PATH")
        XCTAssertEqual(refusal(["models", "--out", "m.safetensors"]),
                       "--out is where --save writes; give --save MODEL too")
        XCTAssertNil(refusal(["models", "--classes", "5", "--channels", "1"]))
        XCTAssertNil(refusal(["models", "--save", "resnet8", "--out", "m.safetensors", "--seed", "3"]))
        // An existing file (trained weights, say) is never replaced by a fresh initialisation.
        let existing = #filePath
        XCTAssertEqual(refusal(["models", "--save", "resnet8", "--out", existing]),
                       "--out \(existing) already exists; models --save writes a new file (choose another --out or "
                       + "delete it)")
    }

    /// `bench --ops` measures ops, not a step: the options of a step were ignored without a word. A --json-out
    /// whose folder is missing was found after the whole measurement.
    func testBenchOpsRefusesStepOptionsAndJSONOutIsCheckedFirst() {
        XCTAssertEqual(refusal(["bench", "--ops", "--set", "data.global_batch=8", "--steps", "3"]),
                       "--set, --steps apply to a training step (--config FILE), not to --ops")
        XCTAssertEqual(refusal(["bench", "--ops", "--pytorch", "on"]),
                       "--pytorch applies to a training step (--config FILE), not to --ops")
        XCTAssertNil(refusal(["bench", "--ops"]))
        let config = ["bench", "--config", "configs/bench-resnet8x4.yaml"]
        XCTAssertEqual(refusal(config + ["--json-out", "/nonexistent-kdgraph/b.json"]),
                       "--json-out /nonexistent-kdgraph/b.json: the folder /nonexistent-kdgraph does not exist")
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path
        XCTAssertEqual(refusal(config + ["--json-out", folder]), "--json-out \(folder) is a folder; name a file")
        XCTAssertNil(refusal(config + ["--json-out", "b.json", "--steps", "2", "--python", "python3"]))
    }

    /// export-data's limits are the generator's, per option, while parsing (one message for all before, and
    /// --size 4 or --classes 200 passed it to fail as "config data.image_size: …" in a command without a config).
    func testExportDataNamesTheOptionAndTheGeneratorsLimits() {
        let export = ["export-data", "--out", "d"]
        XCTAssertEqual(refusal(export + ["--classes", "200"]), "--classes must be in 2…120, got 200")
        XCTAssertEqual(refusal(export + ["--size", "4"]), "--size must be in 8…512, got 4")
        XCTAssertEqual(refusal(export + ["--train", "0"]), "--train must be ≥ 1, got 0")
        XCTAssertEqual(refusal(export + ["--test", "0"]), "--test must be ≥ 1, got 0")
        XCTAssertEqual(refusal(export + ["--seed=-1"]), "--seed must be ≥ 0, got -1")
        XCTAssertNil(refusal(export + ["--classes", "120", "--size", "8"]))
    }

    func testBenchmarksMeasureAtLeastOneStep() {
        let config = ["--config", "configs/bench-resnet8x4.yaml"]
        XCTAssertEqual(refusal(["bench"] + config + ["--steps", "0"]),
                       "--steps must be ≥ 1 (the measured steps), got 0")
        XCTAssertEqual(refusal(["bench"] + config + ["--warmup=-1"]), "--warmup must be ≥ 0, got -1")
        XCTAssertNil(refusal(["bench"] + config + ["--warmup", "0", "--steps", "1"]))
        let scaling = ["scaling"] + config + ["--out", "report"]
        XCTAssertEqual(refusal(scaling + ["--steps", "0"]), "--steps must be ≥ 1 (the measured steps), got 0")
        XCTAssertEqual(refusal(scaling + ["--warmup=-2"]), "--warmup must be ≥ 0, got -2")
        XCTAssertEqual(refusal(scaling + ["--per-rank-batch=0"]), "--per-rank-batch must be ≥ 1, got 0")
        XCTAssertNil(refusal(scaling + ["--per-rank-batch", "16"]))
        // The scaling options are checked while parsing (--mode, --ranks and --project were checked after the
        // config was loaded), and the weak-only ones refused under strong scaling instead of ignored.
        XCTAssertEqual(refusal(scaling + ["--mode", "wide"]),
                       "The value 'wide' is invalid for '--mode <mode>'. Please provide one of 'weak' and 'strong'.")
        XCTAssertEqual(refusal(scaling + ["--ranks", ","]), "--ranks: give at least one world size")
        XCTAssertEqual(refusal(scaling + ["--project", "4,x"]),
                       "--project: bad entry 'x' (expected positive integers separated by commas)")
        XCTAssertEqual(refusal(scaling + ["--mode", "strong", "--per-rank-batch", "8"]),
                       "--per-rank-batch applies to --mode weak")
        XCTAssertEqual(refusal(scaling + ["--mode", "strong", "--project", "4"]), "--project applies to --mode weak")
        XCTAssertNil(refusal(scaling + ["--mode", "strong", "--ranks", "1,2,4"]))
    }

    /// `eval` and `predict` run the checkpoint's student, `teacher-cache` the teacher, `export-views` no network:
    /// a `--set` of a section that plays no part in them would be ignored without a word, so it is refused;
    /// `teacher` and `mode`, which a distillation config's validation reads, and keys of no section (the
    /// config's own error) pass.
    func testEvalAndPredictRefuseSectionsTheyDoNotUse() {
        let eval = ["eval", "--checkpoint", "final.safetensors"]
        XCTAssertEqual(refusal(eval + ["--set", "train.steps=5"]),
                       "--set train.steps=5: eval does not use the train section (train, optim, loss play no part "
                       + "in it)")
        XCTAssertEqual(refusal(eval + ["--set", "optim={lr: 1}"]),
                       "--set optim={lr: 1}: eval does not use the optim section (train, optim, loss play no part "
                       + "in it)")
        XCTAssertNil(refusal(eval + ["--set", "data.eval_size=64", "--set", "runtime.conv_algorithm=direct",
                                     "--set", "output.dir=runs/x", "--set", "teacher.checkpoint=t.safetensors"]))
        XCTAssertNil(refusal(eval + ["--set", "dta.path=x"]), "an unknown section is the config's error")
        let predict = ["predict", "--checkpoint", "final.safetensors", "--images", "x.npy", "--out", "y.npy"]
        XCTAssertEqual(refusal(predict + ["--config", "c.yaml", "--set", "runtime.conv_algorithm=direct"]),
                       "--set runtime.conv_algorithm=direct: predict does not use the runtime section (train, "
                       + "optim, loss, output, comm, runtime play no part in it)")
        XCTAssertEqual(refusal(predict + ["--set", "data.path=d"]), "--set needs --config")
        XCTAssertEqual(refusal(predict + ["--batch", "0"]), "--batch must be ≥ 1, got 0")
        XCTAssertNil(refusal(predict + ["--config", "c.yaml", "--set", "student.model=resnet8"]))
        let cache = ["teacher-cache", "--config", "c.yaml"]
        XCTAssertEqual(refusal(cache + ["--set", "optim.lr=0.1"]),
                       "--set optim.lr=0.1: teacher-cache does not use the optim section (student, loss, optim, "
                       + "output play no part in it)")
        XCTAssertNil(refusal(cache + ["--set", "train.block_size=8", "--set", "teacher.cache.rounds=2",
                                      "--set", "data.views=2", "--set", "runtime.conv_algorithm=direct"]))
        let views = ["export-views", "--config", "c.yaml", "--rounds", "2", "--out", "v"]
        XCTAssertEqual(refusal(views + ["--set", "train.steps=5"]),
                       "--set train.steps=5: export-views does not use the train section (student, loss, optim, "
                       + "train, output play no part in it)")
        XCTAssertNil(refusal(views + ["--set", "data.crop_padding=2", "--set", "seed=3"]))
    }

    func testExportViewsNeedsARound() {
        let line = ["export-views", "--config", "configs/quickstart-prg.yaml", "--out", "views"]
        XCTAssertEqual(refusal(line + ["--rounds", "0"]), "--rounds must be ≥ 1, got 0")
        XCTAssertNil(refusal(line + ["--rounds", "2"]))
    }
}
