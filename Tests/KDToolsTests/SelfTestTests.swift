import XCTest
import KDComm
import KDTestSupport
@testable import KDTools

final class SelfTestTests: XCTestCase {
    func testSelfTestPassesOnAWorldOfOne() throws {
        let comm = try MPICommunicator.initialize()
        let line = try SelfTest.run(comm: comm, failRank: nil, timings: false)
        XCTAssertTrue(line.hasPrefix("{\"ok\": true, \"ranks\": 1, \"checks\": "), line)
        XCTAssertTrue(line.hasSuffix("\"failed\": [], \"timings_us\": {}}"), line)
        let data = try XCTUnwrap(line.data(using: .utf8))
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        XCTAssertGreaterThanOrEqual(obj["checks"] as? Int ?? 0, 60)
    }

    func testInjectedFailureThrowsOnThatRank() throws {
        let comm = try MPICommunicator.initialize()
        XCTAssertThrowsError(try SelfTest.run(comm: comm, failRank: 0, timings: false)) {
            XCTAssertEqual("\($0)", "injected failure on rank 0: KDGRAPH_FAIL_RANK=0: "
                               + "selftest stops on purpose after the all-reduce checks")
        }
        XCTAssertNoThrow(try SelfTest.run(comm: comm, failRank: 1, timings: false), "other ranks are unaffected")
    }

    func testClosedFormsOfTheBucketCheck() {
        // Rank r contributes (r+1)(p+1) + i mod 3; parameter 1 has no gradient on rank 0.
        XCTAssertEqual(SelfTest.expectedBucketSum(0, 4, size: 2), 1 + 1 + 2 + 1)
        XCTAssertEqual(SelfTest.expectedBucketSum(1, 0, size: 2), 4)
        XCTAssertEqual(SelfTest.expectedBucketSum(5, 0, size: 4), 0)
        XCTAssertEqual(SelfTest.unevenCounts(5, base: 2), [2, 0, 4, 5, 0])
        XCTAssertEqual(SelfTest.jsonString("a\"b\n"), "\"a\\\"b\\n\"")
    }

    /// The whole self-test of `kdgraph selftest` (every collective and element type against closed
    /// forms, the split and chunked paths, `allGatherRows`, buckets) passes on the in-process world.
    func testSelfTestPassesOnEveryRank() throws {
        for n in [2, 3, 4] {
            let lines = try InProcessWorld(size: n).run { comm in
                try SelfTest.run(comm: comm, failRank: nil, timings: false)
            }
            XCTAssertEqual(Set(lines).count, 1, "N = \(n): every rank reports the same line")
            XCTAssertTrue(lines[0].hasPrefix("{\"ok\": true, \"ranks\": \(n),"), "N = \(n): \(lines[0])")
        }
    }
}
