import XCTest
@testable import KDTrain

final class ScalingReportTests: XCTestCase {
    func testCostModelFitRecoversLatencyAndBandwidth() throws {
        let truth = AllReduceCostModel(latencySeconds: 5e-6, bandwidthBytesPerSecond: 3e9)
        var pts: [(ranks: Int, bytes: Double, seconds: Double)] = []
        for n in [2, 4, 8] { for b in [4096.0, 1_048_576.0, 16_777_216.0] { pts.append((n, b, truth.predict(ranks: n, bytes: b))) } }
        let fit = try XCTUnwrap(AllReduceCostModel.fit(pts))
        XCTAssertEqual(fit.latencySeconds, 5e-6, accuracy: 1e-9)
        XCTAssertEqual(fit.bandwidthBytesPerSecond / 3e9, 1, accuracy: 1e-6)
        XCTAssertEqual(truth.predict(ranks: 1, bytes: 1e9), 0)
        // 2(N−1)/N · bytes / bw + 2(N−1) · lat at N = 4, 1 MB
        XCTAssertEqual(truth.predict(ranks: 4, bytes: 1e6), 1.5 * 1e6 / 3e9 + 6 * 5e-6, accuracy: 1e-15)
        XCTAssertNil(AllReduceCostModel.fit([(1, 100, 1)]))
    }

    func point(_ n: Int, _ sps: Double) -> ScalingPoint {
        ScalingPoint(ranks: n, globalBatch: 64 * n, samplesPerSecond: sps, stepSeconds: 64 * Double(n) / sps,
                     phases: ["allreduce": 0.01, "backward": 0.3], bytesAllReduced: 4e6, bytesGathered: 1e5, peakRSSBytes: 2e8)
    }

    func testEfficiencyAndTables() {
        let r = ScalingReport(mode: .weak, points: [point(2, 190), point(1, 100), point(4, 360)], configName: "c",
                              machine: "m", date: "d", costModel: AllReduceCostModel(latencySeconds: 1e-5, bandwidthBytesPerSecond: 1e9))
        XCTAssertEqual(r.points.map { $0.ranks }, [1, 2, 4])
        XCTAssertEqual(r.efficiency(r.points[1]), 0.95, accuracy: 1e-12)
        XCTAssertEqual(r.efficiency(r.points[2]), 0.9, accuracy: 1e-12)
        XCTAssertTrue(r.markdown.contains("| 2 | 128 | 190.0 | 1.90 | 95.0% |"), r.markdown)
        XCTAssertTrue(r.markdown.contains("Efficiency(N) = throughput(N) / (N · throughput(1))"))
        let lines = r.csv.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[2].hasPrefix("2,128,190.0,1.9,0.95,"), String(lines[2]))
        XCTAssertTrue(r.svg.hasPrefix("<svg"))
        XCTAssertEqual(r.svg.components(separatedBy: "<polyline").count - 1, 2)
        XCTAssertEqual(r.svg.components(separatedBy: "stroke-dasharray").count - 1, 3)
    }
}
