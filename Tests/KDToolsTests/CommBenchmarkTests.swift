import XCTest
@testable import KDTools

final class CommBenchmarkTests: XCTestCase {
    func testBenchmarkRowFigures() {
        let row = CommBenchmark.Row(variant: "blocking", bytes: 1_000_000, ranks: 4, microseconds: 1000)
        XCTAssertEqual(row.algorithmGBps, 1.0, accuracy: 1e-12)
        XCTAssertEqual(row.busGBps, 1.5, accuracy: 1e-12)
        XCTAssertEqual(row.json, "{\"op\": \"allreduce\", \"variant\": \"blocking\", \"bytes\": 1000000, \"ranks\": 4, "
                           + "\"us\": 1000.0, \"algbw_GBps\": 1.000, \"busbw_GBps\": 1.500}")
    }
}
