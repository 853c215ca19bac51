import XCTest
import KDTestSupport
@testable import KDTools

final class CommBenchmarkTests: XCTestCase {
    func testBenchmarkRowFigures() {
        let row = CommBenchmark.Row(variant: "blocking", bytes: 1_000_000, ranks: 4, microseconds: 1000)
        XCTAssertEqual(row.algorithmGBps, 1.0, accuracy: 1e-12)
        XCTAssertEqual(row.busGBps, 1.5, accuracy: 1e-12)
        XCTAssertEqual(row.json, "{\"op\": \"allreduce\", \"variant\": \"blocking\", \"bytes\": 1000000, \"ranks\": 4, "
                           + "\"us\": 1000.0, \"algbw_GBps\": 1.000, \"busbw_GBps\": 1.500}")
    }

    /// The exact sum's transport benchmark runs both transports on every rank and prints one line each, with
    /// its fields (2 in-process ranks, 1001 gradients in 3 tensors, 3 rounds).
    func testExactTransportsReportBoth() throws {
        let lines = try InProcessWorld(size: 2).run {
            try CommBenchmark.exactTransports($0, elements: 1001, parameters: 3, rounds: 3)
        }
        for rank in lines {
            XCTAssertEqual(rank.count, 2)
            let head = "{\"op\": \"exact_sum\", \"transport\": \"all_reduce\", \"elements\": 1001, \"ranks\": 2, "
            XCTAssertTrue(rank[0].hasPrefix(head + "\"median_ms\": "), rank[0])
            XCTAssertTrue(rank[1].contains("\"transport\": \"reduce_scatter_all_gather\""), rank[1])
            XCTAssertTrue(rank[1].contains("\"min_ms\": "), rank[1])
        }
    }
}
