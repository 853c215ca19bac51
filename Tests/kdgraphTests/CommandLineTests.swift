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
    }

    func testExportViewsNeedsARound() {
        let line = ["export-views", "--config", "configs/quickstart-prg.yaml", "--out", "views"]
        XCTAssertEqual(refusal(line + ["--rounds", "0"]), "--rounds must be ≥ 1, got 0")
        XCTAssertNil(refusal(line + ["--rounds", "2"]))
    }
}
