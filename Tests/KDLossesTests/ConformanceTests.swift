import XCTest
import KDTensor
@testable import KDLosses
import KDLossTesting
import KDTestSupport


final class ConformanceTests: XCTestCase {
    func fixturesDirectory() throws -> String {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil),
                                "Fixtures resource missing")
        return url.path
    }

    /// Every bundled case (one per loss) matches the float64 PyTorch reference.
    func testBundledFixturesConform() throws {
        let (report, ok) = try Conformance.run(directory: try fixturesDirectory())
        for line in report { print(line) }
        XCTAssertTrue(ok, report.joined(separator: "\n"))
        XCTAssertEqual(report.count, 7)   // six cases and the summary
        for kind in ["kd", "rkd_distance", "rkd_angle", "prg", "vrm", "spectral"] {
            XCTAssertTrue(report.contains { $0.contains("\"case\":\"\(kind)\"") && $0.contains("\"ok\":true") }, kind)
        }
    }

    /// Extra case sets made with the reference's `make_fixtures.py` (other seeds, odd batch sizes,
    /// duplicated rows): every case of each conforms.
    func testExtraFixtureSetsConform() throws {
        let root = try fixturesDirectory()
        for name in ["seed1_b17", "seed2_b8_dup", "seed3_b32", "seed4_b13_dup"] {
            let (report, ok) = try Conformance.run(directory: root + "/" + name)
            for line in report { print(name, line) }
            XCTAssertTrue(ok, "\(name):\n" + report.joined(separator: "\n"))
            XCTAssertEqual(report.count, 7, name)
        }
    }

    /// A loss far off the expected value fails the case with its error in the report.
    func testWrongExpectationFails() throws {
        let tmp = try TemporaryDirectory(prefix: "kdlosses-conf-")
        defer { tmp.remove() }
        let dir = tmp.url
        let src = URL(fileURLWithPath: try fixturesDirectory())
        for f in ["kd.student_logits.npy", "kd.teacher_logits.npy", "kd.grad_student_logits.npy"] {
            try FileManager.default.copyItem(at: src.appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        let manifest = """
        {"cases": {"kd_bad": {"inputs": {"student_logits": "kd.student_logits.npy", \
        "teacher_logits": "kd.teacher_logits.npy"},
          "expected": {"loss": 7.7, "grad_student_logits": "kd.grad_student_logits.npy"}, \
        "params": {"temperature": 4.0}}}}
        """
        try manifest.write(to: dir.appendingPathComponent("manifest.json"), atomically: true, encoding: .utf8)
        let (report, ok) = try Conformance.run(directory: dir.path)
        XCTAssertFalse(ok)
        XCTAssertTrue(report[0].contains("\"ok\":false"), report[0])
        XCTAssertTrue(report[0].contains("grad_student_logits_rel_err"), report[0])
    }

    func testMissingManifestThrows() {
        XCTAssertThrowsError(try Conformance.run(directory: "/nonexistent-kdgraph-dir")) { e in
            let expected = "cannot read /nonexistent-kdgraph-dir/manifest.json: the folder /nonexistent-kdgraph-dir "
                + "does not exist"
            XCTAssertTrue("\(e)".hasSuffix(expected), "\(e)")
        }
    }

    /// A manifest that is not JSON, has no case or the wrong shape is refused, naming the file and what is wrong;
    /// an empty `cases` would pass while checking nothing.
    func testMalformedManifestsAreRefused() throws {
        let tmp = try TemporaryDirectory(prefix: "kdlosses-conf-")
        defer { tmp.remove() }
        let path = tmp.file("manifest.json")
        let cases = [
            ("garbage", "not valid JSON ("),
            ("[1, 2]", "not a JSON object (expected {\"cases\": …})"),
            ("{}", "no 'cases' object"),
            ("{\"cases\": [1]}", "'cases' is not an object of named cases"),
            ("{\"cases\": {}}", "'cases' is empty: nothing to check"),
        ]
        for (text, expected) in cases {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Conformance.run(directory: tmp.path), text) { e in
                XCTAssertTrue("\(e)".contains("\(path): " + expected), "\(text): \(e)")
            }
        }
    }
}
