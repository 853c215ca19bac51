import XCTest
import KDComm
import KDCore
import KDTestSupport
@testable import KDTrain

/// Issue 18 item 5: a failed metrics write is a named error (the file and the OS reason), never a
/// crash, and never leaves a partial line behind.
final class MetricsWriterTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdmetrics-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func record(step: Int, loss: Double) -> MetricRecord {
        var r = MetricRecord()
        r.set("step", Double(step))
        r.set("loss", loss)
        return r
    }

    func lines(_ name: String) throws -> [String] {
        try String(contentsOfFile: dir + "/" + name, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map(String.init)
    }

    /// A step record after a link probe (`LinkCheck`): its numbers, and the straggler as a text field in
    /// JSON (a string) and CSV (a cell, quoted when it holds a comma); the run summary reads the line back.
    func testLinkProbeFieldsInTheStepRecord() throws {
        let report = LinkProbe.Report(hosts: ["h0", "h1", "h2"], hostBytesPerSecond: [1e9, 2e9, 1e7],
                                      medianBytesPerSecond: 1e9, stragglers: ["h2"], seconds: 0.1)
        var step = StepRecord(step: 3, plan: BatchPlan(globalSamples: 4), applied: true, stop: false, loss: 1,
                              terms: [], phases: [:], gathers: GatherLedger(), bytesAllReduced: 0)
        XCTAssertNil(MetricRecord(step, epoch: 0, learningRate: 0.1, samplesPerSecond: 1).text("link/straggler"))
        step.links = LinkCheck(afterStep: 2, report: report)
        let r = MetricRecord(step, epoch: 0, learningRate: 0.1, samplesPerSecond: 1)
        XCTAssertEqual(r["link/probe_step"], 2)
        XCTAssertEqual(r["link/min_host_bw"], 1e7)
        XCTAssertEqual(r["link/median_host_bw"], 1e9)
        XCTAssertEqual(r.text("link/straggler"), "h2")
        XCTAssertTrue(r.json.hasSuffix(#", "link/median_host_bw": 1000000000.0, "link/straggler": "h2"}"#), r.json)
        var two = MetricRecord()
        two.set("step", 1)
        two.set("link/straggler", text: #"a,"b""#)
        XCTAssertEqual(two.json, #"{"step": 1, "link/straggler": "a,\"b\""}"#)
        let w = try MetricsWriter(directory: dir, enabled: true)
        try w.write(two)
        w.close()
        XCTAssertEqual(try lines("metrics.csv")[1], #"1,"a,""b""",,,"#)
        XCTAssertEqual(RunResults.parse(Substring(two.json)), ["step": 1])
    }

    func testWritesBothFilesAndAppends() throws {
        let w = try MetricsWriter(directory: dir, enabled: true)
        try w.write(record(step: 1, loss: 2.5))
        try w.sync()
        w.close()
        let again = try MetricsWriter(directory: dir, enabled: true, resumedAtStep: 1)
        try again.write(record(step: 2, loss: .nan))
        again.close()
        XCTAssertEqual(try lines("metrics.jsonl"), [#"{"step": 1, "loss": 2.5}"#, #"{"step": 2, "loss": NaN}"#, ""])
        XCTAssertEqual(try lines("metrics.csv"),
                       ["step,loss,eval.top1,eval.top5,eval.loss", "1,2.5,,,", "2,NaN,,,", ""])
    }

    /// A run resumed from step 2's checkpoint writes steps 3 and 4 again: the first run's records of those
    /// steps move aside (none lost), so each step has one record in both files.
    func testResumingMovesTheLaterStepsRecordsAside() throws {
        let w = try MetricsWriter(directory: dir, enabled: true)
        for step in 1...4 { try w.write(record(step: step, loss: Double(step))) }
        var eval = MetricRecord()
        eval.set("step", 4); eval.set("eval.top1", 0.9)
        try w.write(eval)
        w.close()
        let resumed = try MetricsWriter(directory: dir, enabled: true, resumedAtStep: 2)
        XCTAssertEqual(resumed.notes, ["metrics.jsonl: 3 records of steps after 2 (from the run that went on from "
                                       + "this checkpoint) moved to metrics.superseded-after-step-2.jsonl; this run "
                                       + "writes those steps again"])
        try resumed.write(record(step: 3, loss: 30))
        resumed.close()
        XCTAssertEqual(try lines("metrics.jsonl"), [#"{"step": 1, "loss": 1.0}"#, #"{"step": 2, "loss": 2.0}"#,
                                                    #"{"step": 3, "loss": 30.0}"#, ""])
        XCTAssertEqual(try lines("metrics.csv"),
                       ["step,loss,eval.top1,eval.top5,eval.loss", "1,1.0,,,", "2,2.0,,,", "3,30.0,,,", ""])
        XCTAssertEqual(try lines("metrics.superseded-after-step-2.jsonl"),
                       [#"{"step": 3, "loss": 3.0}"#, #"{"step": 4, "loss": 4.0}"#, #"{"step": 4, "eval.top1": 0.9}"#,
                        ""])
        // Resumed at the last step: nothing moves, nothing said.
        XCTAssertEqual(try MetricsWriter(directory: dir, enabled: true, resumedAtStep: 3).notes, [])
    }

    /// A key the CSV's header lacks (a loss term a resumed run added) widens the header; the earlier rows
    /// get empty cells, and the value is not dropped.
    func testANewKeyWidensTheCSV() throws {
        let w = try MetricsWriter(directory: dir, enabled: true)
        try w.write(record(step: 1, loss: 1))
        var more = record(step: 2, loss: 2)
        more.set("loss/kd", 0.5)
        try w.write(more)
        try w.write(record(step: 3, loss: 3))
        w.close()
        XCTAssertEqual(try lines("metrics.csv"), ["step,loss,eval.top1,eval.top5,eval.loss,loss/kd", "1,1.0,,,,",
                                                  "2,2.0,,,,0.5", "3,3.0,,,,", ""])
        XCTAssertEqual(try lines("metrics.jsonl")[1], #"{"step": 2, "loss": 2.0, "loss/kd": 0.5}"#)
    }

    /// `/dev/full` fails every write with ENOSPC, as a full disk does.
    func testDiskFullIsANamedError() throws {
        try FileManager.default.createSymbolicLink(atPath: dir + "/metrics.jsonl", withDestinationPath: "/dev/full")
        let w = try MetricsWriter(directory: dir, enabled: true)
        XCTAssertThrowsError(try w.write(record(step: 1, loss: 1))) { e in
            XCTAssertEqual("\(e)",
                           "\(self.dir)/metrics.jsonl: metrics not written: \(String(cString: strerror(ENOSPC)))")
        }
    }

    /// When the CSV cannot be written, the JSON line just written is taken back: both files hold the
    /// same records.
    func testFailedCSVTakesBackTheJSONLine() throws {
        try FileManager.default.createSymbolicLink(atPath: dir + "/metrics.csv", withDestinationPath: "/dev/full")
        let w = try MetricsWriter(directory: dir, enabled: true)
        XCTAssertThrowsError(try w.write(record(step: 1, loss: 1))) { e in
            XCTAssertTrue("\(e)".hasPrefix("\(self.dir)/metrics.csv: metrics not written: "), "\(e)")
        }
        XCTAssertEqual(try lines("metrics.jsonl"), [""])
    }

    /// A write cut short (here by RLIMIT_FSIZE: the first bytes land, then EFBIG) is rolled back to
    /// the previous length, so the file keeps whole lines only.
    func testShortWriteLeavesNoPartialLine() throws {
        let w = try MetricsWriter(directory: dir, enabled: true)
        try w.write(record(step: 1, loss: 1))
        let size = try FileManager.default.attributesOfItem(atPath: dir + "/metrics.jsonl")[.size] as! Int
        var saved = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
        let oldHandler = signal(SIGXFSZ, SIG_IGN)
        var small = saved
        small.rlim_cur = rlim_t(size + 5)
        XCTAssertEqual(setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &small), 0)
        var thrown: Error?
        do { try w.write(record(step: 2, loss: 123.25)) } catch { thrown = error }
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &saved)
        signal(SIGXFSZ, oldHandler)
        XCTAssertTrue("\(thrown.map { "\($0)" } ?? "no error")".contains("metrics.jsonl: metrics not written"))
        XCTAssertEqual(try lines("metrics.jsonl"), [#"{"step": 1, "loss": 1.0}"#, ""])
    }

    func testDisabledWriterWritesNothing() throws {
        let w = try MetricsWriter(directory: dir + "/absent", enabled: false)
        try w.write(record(step: 1, loss: 1))
        try w.sync()
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/absent"))
    }
}
