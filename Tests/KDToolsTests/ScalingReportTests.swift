import KDComm
import XCTest
import KDTestSupport
@testable import KDTools
import KDTrain

final class ScalingReportTests: XCTestCase {
    func testCostModelFitRecoversLatencyAndBandwidth() throws {
        let truth = AllReduceCostModel(latencySeconds: 5e-6, bandwidthBytesPerSecond: 3e9)
        var pts: [(ranks: Int, bytes: Double, seconds: Double)] = []
        for n in [2, 4, 8] {
            for b in [4096.0, 1_048_576.0, 16_777_216.0] { pts.append((n, b, truth.predict(ranks: n, bytes: b))) }
        }
        let fit = try XCTUnwrap(AllReduceCostModel.fit(pts))
        XCTAssertEqual(fit.latencySeconds, 5e-6, accuracy: 1e-9)
        XCTAssertEqual(fit.bandwidthBytesPerSecond / 3e9, 1, accuracy: 1e-6)
        XCTAssertEqual(truth.predict(ranks: 1, bytes: 1e9), 0)
        // 2(N−1)/N · bytes / bw + 2(N−1) · lat at N = 4, 1 MB
        XCTAssertEqual(truth.predict(ranks: 4, bytes: 1e6), 1.5 * 1e6 / 3e9 + 6 * 5e-6, accuracy: 1e-15)
        XCTAssertNil(AllReduceCostModel.fit([(1, 100, 1)]))
        // A ring all-gather of 1 MB in 3 calls at N = 4: (N−1)/N · bytes / bw + calls · (N−1) · lat.
        XCTAssertEqual(truth.predictRingCollective(ranks: 4, bytes: 1e6, calls: 3), 0.75 * 1e6 / 3e9 + 9 * 5e-6,
                       accuracy: 1e-15)
        XCTAssertEqual(truth.predictRingCollective(ranks: 1, bytes: 1e6, calls: 3), 0)
    }

    func point(_ n: Int, _ sps: Double) -> ScalingPoint {
        ScalingPoint(ranks: n, globalBatch: 64 * n, samplesPerSecond: sps, stepSeconds: 64 * Double(n) / sps,
                     phases: ["allreduce": 0.01, "backward": 0.3], bytesAllReduced: 4e6, bytesGathered: 1e5,
                     peakRSSBytes: 2e8)
    }

    func testEfficiencyAndTables() {
        let r = ScalingReport(mode: .weak, points: [point(2, 190), point(1, 100), point(4, 360)], configName: "c",
                              machine: "m", date: "d",
                              costModel: AllReduceCostModel(latencySeconds: 1e-5, bandwidthBytesPerSecond: 1e9))
        XCTAssertEqual(r.points.map { $0.ranks }, [1, 2, 4])
        XCTAssertEqual(r.efficiency(r.points[1]), 0.95, accuracy: 1e-12)
        XCTAssertEqual(r.efficiency(r.points[2]), 0.9, accuracy: 1e-12)
        XCTAssertTrue(r.markdown.contains("| 2 | 128 | 190.0 | 1.90 | 95.0% |"), r.markdown)
        XCTAssertTrue(r.markdown.contains("Efficiency(N) = throughput(N) / (N · throughput(1))"))
        let lines = r.csv.split(separator: "\n")
        XCTAssertEqual(lines.count, 4)
        XCTAssertTrue(lines[2].hasPrefix("2,128,190.0,1.9,0.95,"), String(lines[2]))
        XCTAssertTrue(r.svg.hasPrefix("<svg"))
        // ideal throughput, throughput, efficiency; dashed: ideal throughput, ideal efficiency, legend
        XCTAssertEqual(r.svg.components(separatedBy: "<polyline").count - 1, 3)
        XCTAssertEqual(r.svg.components(separatedBy: "stroke-dasharray").count - 1, 3)
        XCTAssertFalse(r.svg.contains("projected"))
        XCTAssertTrue(r.svg.contains(">4</text>") && r.svg.contains("log scale"))
    }

    /// The links section: only world sizes whose bench ran across hosts, each host's best link, the
    /// straggler in bold (or none); absent when no bench probed.
    func testLinksSectionNamesTheStraggler() {
        var slow = point(3, 250)
        slow.linkProbe = LinkProbe.Report(hosts: ["h0", "h1", "h2"], hostBytesPerSecond: [1.2e9, 1.2e9, 1.25e7],
                                          medianBytesPerSecond: 1.2e9, stragglers: ["h2"], seconds: 0.3)
        var even = point(2, 190)
        even.linkProbe = LinkProbe.Report(hosts: ["h0", "h1"], hostBytesPerSecond: [1e9, 1e9],
                                          medianBytesPerSecond: 1e9, stragglers: [], seconds: 0.01)
        let r = ScalingReport(mode: .weak, points: [point(1, 100), even, slow], configName: "c", machine: "m",
                              date: "d", costModel: nil)
        let md = r.markdown
        XCTAssertTrue(md.contains("## Links between hosts (link probe)"), md)
        XCTAssertTrue(md.contains("| 2 | 2 | h0 1.00 GB/s, h1 1.00 GB/s | 1.00 GB/s | none |\n"), md)
        XCTAssertTrue(md.contains("| 3 | 3 | h0 1.20 GB/s, h1 1.20 GB/s, h2 12.5 MB/s | 1.20 GB/s | **h2** |\n"), md)
        XCTAssertFalse(md.contains("| 1 | 1 |"))
        let plain = ScalingReport(mode: .weak, points: [point(1, 100)], configName: "c", machine: "m", date: "d",
                                  costModel: nil)
        XCTAssertFalse(plain.markdown.contains("Links between hosts"))
    }

    /// The projection by hand: base 1 rank, step 2.0 s of which the loss is 0.01 s; at 16 ranks the
    /// loss share takes 0.3 s and communication is the cost model's sum of the gradient all-reduce,
    /// the SyncBN all-reduces and the ring all-gathers / reduce-scatters.
    func testWeakProjectionArithmetic() throws {
        let collectives = StepCollectives(perRankBatch: 64, statisticsAllReduces: 20, statisticsBytes: 40_000,
                                          gathers: 5, gatheredBytesPerSample: 4000, reduceScatters: 3,
                                          reduceScatteredBytesPerSample: 2000)
        let base = ScalingPoint(ranks: 1, globalBatch: 64, samplesPerSecond: 32, stepSeconds: 2.0, phases: [:],
                                bytesAllReduced: 5e6, bytesGathered: 0, peakRSSBytes: 1e8, collectives: collectives,
                                lossProjection: [.init(ranks: 1, globalBatch: 64, seconds: 0.01),
                                                 .init(ranks: 2, globalBatch: 128, seconds: 0.02),
                                                 .init(ranks: 16, globalBatch: 1024, seconds: 0.3,
                                                       terms: ["rkd": 0.3], inputBytes: 3 * 1_048_576,
                                                       peakBytes: 2.5 * 1_048_576)])
        var two = ScalingPoint(ranks: 2, globalBatch: 128, samplesPerSecond: 62, stepSeconds: 128 / 62.0,
                               phases: [:],
                               bytesAllReduced: 5e6, bytesGathered: 1e5, peakRSSBytes: 1e8)
        two.lossShareSeconds = 0.021
        let m = AllReduceCostModel(latencySeconds: 5e-6, bandwidthBytesPerSecond: 4e9)
        let r = ScalingReport(mode: .weak, points: [two, base], configName: "c", machine: "m", date: "d", costModel: m)
        let proj = r.projection
        XCTAssertEqual(proj.map { $0.ranks }, [1, 2, 16])
        // comm(16) by the formula
        let N = 16.0
        let allreduce = 2 * (N - 1) / N * 5e6 / 4e9 + 2 * (N - 1) * 5e-6
        let stats = 20 * (2 * (N - 1) / N * 2000 / 4e9 + 2 * (N - 1) * 5e-6)
        let gathers = (N - 1) / N * (64 * 16 * 4000) / 4e9 + 5 * (N - 1) * 5e-6
        let scatters = (N - 1) / N * (64 * 16 * 2000) / 4e9 + 3 * (N - 1) * 5e-6
        let comm16 = allreduce + stats + gathers + scatters
        XCTAssertEqual(proj[2].communicationSeconds, comm16, accuracy: 1e-12)
        XCTAssertEqual(proj[2].stepSeconds, 2.0 - 0.01 + 0.3 + comm16, accuracy: 1e-12)
        XCTAssertEqual(proj[2].efficiency, 2.0 / (2.0 - 0.01 + 0.3 + comm16), accuracy: 1e-12)
        XCTAssertNil(proj[2].measuredEfficiency)
        // The base reproduces itself; the measured 2-rank efficiency stands beside the model.
        XCTAssertEqual(proj[0].stepSeconds, 2.0, accuracy: 1e-12)
        XCTAssertEqual(proj[0].efficiency, 1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(proj[1].measuredEfficiency), (62.0 / 2) / 32, accuracy: 1e-12)
        XCTAssertTrue(r.markdown.contains("Weak-scaling projection"), r.markdown)
        XCTAssertTrue(r.markdown.contains(String(format: "| 16 | 1024 | 300.0 | — | %.2f |", 1e3 * comm16)),
                      r.markdown)
        // The measured 2-rank loss share stands beside the projected 20 ms.
        XCTAssertEqual(try XCTUnwrap(proj[1].measuredLossSeconds), 0.021, accuracy: 1e-12)
        XCTAssertNil(proj[2].measuredLossSeconds)
        XCTAssertTrue(r.markdown.contains("| 2 | 128 | 20.0 | 21.0 |"), r.markdown)
        // The per-term table carries the loss's memory at each global batch (— where a point has none).
        XCTAssertTrue(r.markdown.contains("| 16 | 1024 | 300.0 | 3.0 | 2.5 |"), r.markdown)
        XCTAssertEqual(r.projectionCSV.split(separator: "\n").count, 4)
        // The plot adds the projected throughput and efficiency, dotted, a hollow marker pair at 16
        // (the only world size not measured) and a legend entry; the axis runs to 16.
        XCTAssertEqual(r.svg.components(separatedBy: "<polyline").count - 1, 5)
        XCTAssertEqual(r.svg.components(separatedBy: "stroke-dasharray=\"2 4\"").count - 1, 3)
        XCTAssertEqual(r.svg.components(separatedBy: "fill=\"white\" stroke=").count - 1, 2)
        XCTAssertTrue(r.svg.contains("projected (model)") && r.svg.contains(">16</text>"))
        // No projection in strong mode, nor without the base's loss timings.
        XCTAssertTrue(ScalingReport(mode: .strong, points: [two, base], configName: "c", machine: "m", date: "d",
                                    costModel: m).projection.isEmpty)
        XCTAssertTrue(ScalingReport(mode: .weak, points: [two], configName: "c", machine: "m", date: "d",
                                    costModel: m).projection.isEmpty)
        XCTAssertFalse(ScalingReport(mode: .weak, points: [two], configName: "c", machine: "m", date: "d",
                                     costModel: m).markdown.contains("projection"))
    }

    /// Issue 27 item 5: beside the measured schedule, the projection models the other one. A one-pass
    /// bench gets accumulated columns (one more student forward, F = the measured `student_forward`); a bench
    /// that accumulated (`micro_batch`, two forwards measured) gets one-pass columns (F = half of it).
    func testProjectionModelsTheOtherPassSchedule() throws {
        let collectives = StepCollectives(perRankBatch: 64, statisticsAllReduces: 0, statisticsBytes: 0,
                                          gathers: 2, gatheredBytesPerSample: 1000, reduceScatters: 1,
                                          reduceScatteredBytesPerSample: 500)
        var base = ScalingPoint(ranks: 1, globalBatch: 64, samplesPerSecond: 32, stepSeconds: 2.0,
                                phases: [Phase.studentForward.rawValue: 0.4], bytesAllReduced: 5e6,
                                bytesGathered: 0, peakRSSBytes: 1e8, collectives: collectives,
                                lossProjection: [.init(ranks: 1, globalBatch: 64, seconds: 0.01),
                                                 .init(ranks: 64, globalBatch: 4096, seconds: 0.5)])
        let m = AllReduceCostModel(latencySeconds: 5e-6, bandwidthBytesPerSecond: 4e9)
        var r = ScalingReport(mode: .weak, points: [base], configName: "c", machine: "m", date: "d", costModel: m)
        XCTAssertEqual(r.otherSchedule, .accumulated)
        var p = try XCTUnwrap(r.projection.last)
        XCTAssertEqual(p.otherStepSeconds, p.stepSeconds + 0.4, accuracy: 1e-12)
        XCTAssertEqual(p.otherEfficiency, 2.4 / (p.stepSeconds + 0.4), accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(r.projection.first).otherEfficiency, 1, accuracy: 1e-12)
        XCTAssertGreaterThan(p.otherEfficiency, p.efficiency, "a fixed extra forward dilutes the loss's growth")
        XCTAssertTrue(r.markdown.contains("accumulated step (ms) | accumulated efficiency"), r.markdown)
        XCTAssertTrue(r.markdown.contains("one more student forward over the rank's share (400.0 ms"), r.markdown)
        XCTAssertTrue(r.projectionCSV.hasPrefix("ranks,global_batch,loss_share_s,predicted_comm_s,projected_step_s,"
                                                + "projected_efficiency,measured_efficiency,accumulated_step_s,"
                                                + "accumulated_efficiency\n"), r.projectionCSV)
        base.microBatch = 16
        r = ScalingReport(mode: .weak, points: [base], configName: "c", machine: "m", date: "d", costModel: m)
        XCTAssertEqual(r.otherSchedule, .onePass)
        p = try XCTUnwrap(r.projection.last)
        XCTAssertEqual(p.otherStepSeconds, p.stepSeconds - 0.2, accuracy: 1e-12)
        XCTAssertEqual(p.otherEfficiency, 1.8 / (p.stepSeconds - 0.2), accuracy: 1e-12)
        XCTAssertTrue(r.markdown.contains("`train.micro_batch 16`: two student forwards per step"), r.markdown)
        XCTAssertTrue(r.markdown.contains("one-pass step (ms) | one-pass efficiency"), r.markdown)
    }

    /// `readBench` takes the projection fields of a bench JSON file; a file without them gives a
    /// point without projection, and a missing field of a projected bench is an error naming it.
    func testReadBenchProjectionFields() throws {
        let dir = try TemporaryDirectory(prefix: "kdg-scaling-")
        defer { dir.remove() }
        let spread = BenchResult.Spread(medianS: 1.8, p90S: 1.9)
        var bench = BenchResult(
            samplesPerS: 23, samplesPerSPerRank: 23, ranks: 1, globalBatch: 64, views: 1, steps: 10, warmup: 3,
            student: "resnet8x4", teacher: "resnet32x4", stepMedianS: 2.78, stepP90S: 2.9, phases: ["teacher": spread],
            commShare: 0.01, dataWaitShare: 0, bytesGatheredPerStep: 0, bytesAllreducedPerStep: 5197328,
            peakRssBytes: 486539264, peakRssBytesPerRank: [486539264], tensorPoolPeakBytes: 1 << 20,
            allreduceSweep: [BenchResult.SweepPoint(bytes: 4096, seconds: 1e-6)], perRankBatch: 64,
            statisticsAllreducesPerStep: 20, statisticsBytesPerStep: 44112, gathersPerStep: 5,
            gatheredBytesPerSample: 3872,
            reduceScattersPerStep: 3, reduceScatteredBytesPerSample: 2448,
            lossProjection: [LossProjection.Point(ranks: 1, globalBatch: 64, seconds: 0.002),
                             LossProjection.Point(ranks: 16, globalBatch: 1024, seconds: 0.29)],
            host: "h", cores: 2)
        let a = dir.file("a.json"), b = dir.file("b.json"), c = dir.file("c.json")
        let json = try bench.json()
        XCTAssertTrue(json.contains("\"samples_per_s_per_rank\":23") && json.contains("\"p90_s\":1.9"), json)
        try json.write(toFile: a, atomically: true, encoding: .utf8)
        XCTAssertEqual(try BenchResult.read(a), bench)
        bench.lossProjection = []
        try bench.json().write(toFile: b, atomically: true, encoding: .utf8)
        try json.replacingOccurrences(of: "\"gathers_per_step\":5,", with: "")
            .write(toFile: c, atomically: true, encoding: .utf8)
        let (p, sweep) = try ScalingRunner.readBench(a)
        XCTAssertEqual(sweep.count, 1)
        XCTAssertEqual(p.phases["teacher"], 1.8)
        XCTAssertEqual(p.collectives, StepCollectives(perRankBatch: 64, statisticsAllReduces: 20,
                                                      statisticsBytes: 44112, gathers: 5,
                                                      gatheredBytesPerSample: 3872, reduceScatters: 3,
                                                      reduceScatteredBytesPerSample: 2448))
        XCTAssertEqual(p.lossProjection.map { $0.ranks }, [1, 16])
        XCTAssertEqual(p.lossProjection.last?.seconds, 0.29)
        let (plain, _) = try ScalingRunner.readBench(b)
        XCTAssertNil(plain.collectives)
        XCTAssertTrue(plain.lossProjection.isEmpty)
        XCTAssertThrowsError(try ScalingRunner.readBench(c)) { e in
            XCTAssertTrue("\(e)".contains("gathers_per_step") && "\(e)".contains("c.json"), "\(e)")
        }
    }

    /// The bench line of the smallest world size asks for the projection (measured sizes included).
    func testCommandLineAsksForProjectionAtTheBase() {
        var runner = ScalingRunner(configPath: "c.yaml", overrides: [], ranks: [1, 2], mode: .weak, outDir: "o",
                                   warmup: 1, steps: 2,
                                   executable: "kdgraph", perRankBatch: 64, machine: "m")
        runner.projectRanks = [16, 4]
        let one = runner.commandLine(ranks: 1, jsonOut: "o/bench_1.json")
        XCTAssertEqual(Array(one.suffix(2)), ["--project-ranks", "1,2,4,16"])
        XCTAssertFalse(runner.commandLine(ranks: 2, jsonOut: "o/bench_2.json").contains("--project-ranks"))
        runner.mode = .strong
        XCTAssertFalse(runner.commandLine(ranks: 1, jsonOut: "o/bench_1.json").contains("--project-ranks"))
    }
}
