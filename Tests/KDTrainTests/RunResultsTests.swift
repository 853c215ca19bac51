import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest
import KDCore
import KDTestSupport
@testable import KDTrain

/// Collects an XML document's element names and text (`XMLParser`: the document must be well formed).
final class XMLCollector: NSObject, XMLParserDelegate {
    var elements: [String] = []
    var texts: [String] = []
    var current = ""

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements.append(name); current = ""
    }
    func parser(_ parser: XMLParser, foundCharacters string: String) { current += string }
    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        if name == "text" { texts.append(current) }
        current = ""
    }

    /// Parses `text`; throws the parser's error when it is not well-formed XML.
    static func parse(_ text: String) throws -> XMLCollector {
        let parser = XMLParser(data: Data(text.utf8))
        let collector = XMLCollector()
        parser.delegate = collector
        guard parser.parse() else { throw parser.parserError ?? CheckFailure("XML parse failed") }
        return collector
    }
}

/// `summary.md`, `curves.svg`, the final log lines (`RunResults`) and the TensorBoard file of a run
/// (docs/training.md, "Results of a run").
final class RunResultsTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-results-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func testTicksAndLabels() {
        XCTAssertEqual(SVG.ticks(2, 6), [2, 3, 4, 5, 6])
        XCTAssertEqual(SVG.ticks(0, 1), [0, 0.5, 1])
        XCTAssertEqual(SVG.ticks(0.3, 2.5), [0, 1, 2, 3])
        XCTAssertEqual(SVG.ticks(5, 5), [4.5, 5, 5.5])
        XCTAssertEqual(SVG.ticks(0, 0), [-1, -0.5, 0, 0.5, 1])
        XCTAssertEqual(SVG.label(0.5, step: 0.5), "0.5")
        XCTAssertEqual(SVG.label(1000, step: 500), "1000")
        XCTAssertEqual(SVG.label(0.0002, step: 0.0001), "2.0e-04")
        XCTAssertEqual(SVG.label(0, step: 1), "0")
        XCTAssertEqual(SVG.escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;")
    }

    /// Three panels in two columns: 920 × (36 + 2 × 280) pixels; an empty panel (or one of non-finite
    /// values only) says "no data"; one point is a circle, not a line.
    func testSmallMultiplesLayout() throws {
        let panels = [
            SVG.Panel(title: "a<b", xLabel: "step", series: [SVG.Series(name: "x", color: "red",
                                                                         points: [(1, 1), (2, 4)])]),
            SVG.Panel(title: "empty", xLabel: "step", series: [SVG.Series(name: "y", color: "red",
                                                                           points: [(1, .nan)])]),
            SVG.Panel(title: "one", xLabel: "step", series: [SVG.Series(name: "z", color: "red", points: [(3, 2)])]),
        ]
        let text = SVG.smallMultiples(title: "t", panels: panels)
        XCTAssertTrue(text.hasPrefix("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"920\" height=\"596\" "), text)
        let svg = try XMLCollector.parse(text)
        XCTAssertEqual(svg.elements.filter { $0 == "g" }.count, 3)
        XCTAssertEqual(svg.elements.filter { $0 == "polyline" }.count, 1)
        XCTAssertEqual(svg.elements.filter { $0 == "circle" }.count, 1)
        XCTAssertEqual(svg.texts.filter { $0 == "no data" }.count, 1)
        XCTAssertTrue(svg.texts.contains("a<b"))
    }

    /// A hand-written metrics file (a resumed run's: steps before this invocation, a NaN loss, a tie
    /// for the best top-1): the summary's rows, the log lines and the curves.
    func testSummaryOfAHandWrittenMetricsFile() throws {
        let lines = [
            #"{"step": 1, "epoch": 0, "loss": 3.0, "loss/rkd": 2.0, "loss/kd": 1.0, "lr": 0.1, "samples_per_s": 100}"#,
            #"{"step": 2, "epoch": 0, "eval.top1": 0.5, "eval.top5": 0.9, "eval.loss": 1.5}"#,
            #"{"step": 3, "epoch": 0, "loss": NaN, "loss/rkd": NaN, "loss/kd": 1.0, "lr": 0.05, "samples_per_s": 50}"#,
            #"{"step": 4, "epoch": 1, "loss": 1.5, "loss/rkd": 1.0, "loss/kd": 0.5, "lr": 0.0, "samples_per_s": 200}"#,
            #"{"step": 4, "epoch": 1, "eval.top1": 0.5, "eval.top5": 1.0, "eval.loss": 1.0}"#,
            "not json",
        ]
        try lines.joined(separator: "\n").write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
        let r = try RunResults(directory: dir, description: "distill resnet8 on 2 rank(s)", seconds: 125.4, steps: 4,
                               totalSteps: 10, stoppedBySignal: true,
                               checkpoint: dir + "/checkpoints/step_00000004.safetensors", tensorboard: false)
        XCTAssertEqual(r.curves.map(\.key), ["loss", "loss/kd", "loss/rkd", "lr", "samples_per_s"])
        XCTAssertEqual(r.curve("lr").map(\.y), [0.1, 0.05, 0.0])
        XCTAssertTrue(r.curve("loss")[1].y.isNaN)
        XCTAssertEqual(r.evalTop1.map(\.x), [2, 4])
        XCTAssertEqual(r.finalLoss?.step, 4); XCTAssertEqual(r.finalLoss?.value, 1.5)
        XCTAssertEqual(r.finalTop1?.step, 4); XCTAssertEqual(r.bestTop1?.step, 2)   // a tie keeps the first
        XCTAssertEqual(r.checkpoint, "checkpoints/step_00000004.safetensors")
        XCTAssertEqual(r.logLines, [
            "stopped after 2m 05s at step 4, loss 1.5",
            "eval top-1: final 0.5000 (step 4), best 0.5000 (step 2)",
            "results in \(dir)/: summary.md, curves.svg, config.yaml, metrics.jsonl, checkpoints/",
        ])
        XCTAssertEqual(r.unreadableWarning, "metrics.jsonl: 1 line(s) are not a metrics record (line 6); left out "
                       + "of summary.md and curves.svg")
        XCTAssertEqual(r.unreadableLines, [6], "the cut line is named, not silently dropped")
        let md = r.markdown
        for row in ["| ended | stopped by a signal at step 4 of 10 |", "| time | 2m 05s (this invocation) |",
                    "| final loss | 1.5 (step 4) |", "| final eval top-1 | 0.5000 (step 4) |",
                    "| best eval top-1 | 0.5000 (step 2) |", "| samples/s | 200.0 (last logged, step 4) |",
                    "last written: `checkpoints/step_00000004.safetensors`", "![training curves](curves.svg)",
                    "**Note:** metrics.jsonl: 1 line(s) are not a metrics record (line 6)"] {
            XCTAssertTrue(md.contains(row), row + "\n" + md)
        }
        XCTAssertFalse(md.contains("tensorboard/"))
        let svg = try XMLCollector.parse(r.svg)
        XCTAssertEqual(svg.elements.first, "svg")
        // loss and its 2 terms; lr, eval top-1, samples/s
        XCTAssertEqual(svg.elements.filter { $0 == "polyline" }.count, 3 + 3)
        for t in ["loss", "learning rate", "eval top-1", "samples/s", "loss/kd", "loss/rkd"] {
            XCTAssertTrue(svg.texts.contains(t), t)
        }
        XCTAssertEqual(RunResults.duration(4.24), "4.2 s")
        XCTAssertEqual(RunResults.duration(3723), "1h 02m 03s")
    }

    /// A short in-process run (6 steps, logged every 2, evaluated at 3 and at the end) with
    /// `output.tensorboard`: summary.md and curves.svg agree with metrics.jsonl; one event file holds
    /// the same losses and evaluations.
    func testARunLeavesItsSummaryCurvesAndEvents() throws {
        let yaml = """
        seed: 1
        data: {source: synthetic, classes: 4, image_size: 8, train_size: 32, eval_size: 8, global_batch: 8}
        student: {model: mlp, hidden: [16]}
        train: {steps: 6, log_every: 2, eval_every: 3}
        output: {dir: "\(dir)/out", tensorboard: true}
        runtime: {conv_algorithm: direct}
        """
        let cfg = try KDConfig.parse(yaml: yaml, file: "results.yaml")
        let summary = try InProcessWorld(size: 1).run { comm in try Trainer(config: cfg, comm: comm).run() }[0]
        let out = dir + "/out"

        let records = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
            .map { try XCTUnwrap(JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
            .map { $0.compactMapValues { ($0 as? NSNumber)?.doubleValue } }
        let steps = records.filter { $0["loss"] != nil }, evals = records.filter { $0["eval.top1"] != nil }
        XCTAssertEqual(steps.map { $0["step"] }, [2, 4, 6])
        XCTAssertEqual(evals.map { $0["step"] }, [3, 6])
        let top1 = evals.map { $0["eval.top1"]! }
        XCTAssertEqual(top1[1], try XCTUnwrap(summary.eval?.top1), accuracy: 1e-12)
        // JSONSerialization may round the last bit; RunResults reads the file exactly.
        XCTAssertEqual(try XCTUnwrap(steps[2]["loss"]), summary.finalLoss, accuracy: 1e-12)
        let results = try RunResults(directory: out, description: "", seconds: 0, steps: 6, totalSteps: 6,
                                     stoppedBySignal: false, checkpoint: nil, tensorboard: true)
        XCTAssertEqual(results.finalLoss?.value, summary.finalLoss)
        XCTAssertEqual(results.finalTop1?.value, summary.eval?.top1)
        let best = top1[0] >= top1[1] ? (3, top1[0]) : (6, top1[1])

        let md = try String(contentsOfFile: out + "/summary.md", encoding: .utf8)
        for row in ["# Run summary: \(out)\n", "supervised mlp on 1 rank(s), global batch 8, 6 steps",
                    "| ended | finished, step 6 of 6 |",
                    String(format: "| final loss | %.6g (step 6) |", summary.finalLoss),
                    String(format: "| final eval top-1 | %.4f (step 6) |", top1[1]),
                    String(format: "| best eval top-1 | %.4f (step %d) |", best.1, best.0),
                    "| `tensorboard/` |", "last written: `checkpoints/final.safetensors`"] {
            XCTAssertTrue(md.contains(row), row + "\n" + md)
        }

        let svg = try XMLCollector.parse(try String(contentsOfFile: out + "/curves.svg", encoding: .utf8))
        let terms = steps[0].keys.filter { $0.hasPrefix("loss/") }.sorted()
        XCTAssertFalse(terms.isEmpty)
        XCTAssertEqual(svg.elements.filter { $0 == "polyline" }.count, 1 + terms.count + 3)
        for t in ["loss", "learning rate", "eval top-1", "samples/s", "step", "2", "4", "6"] + terms {
            XCTAssertTrue(svg.texts.contains(t), t)
        }

        let files = try FileManager.default.contentsOfDirectory(atPath: out + "/tensorboard")
        XCTAssertEqual(files.count, 1)
        let events = try EventFileReader.events(path: out + "/tensorboard/" + files[0])
        XCTAssertEqual(events.first?.fileVersion, "brain.Event:2")
        let losses = events.filter { $0.scalars["loss"] != nil }
        XCTAssertEqual(losses.map(\.step), [2, 4, 6])
        XCTAssertEqual(losses.map { $0.scalars["loss"]! }, steps.map { Float($0["loss"]!) })
        XCTAssertEqual(losses.map { $0.scalars["lr"]! }, steps.map { Float($0["lr"]!) })
        let evalEvents = events.filter { $0.scalars["eval.top1"] != nil }
        XCTAssertEqual(evalEvents.map(\.step), [3, 6])
        XCTAssertEqual(evalEvents.map { $0.scalars["eval.top1"]! }, top1.map { Float($0) })
    }
}
