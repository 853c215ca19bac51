import Foundation
import XCTest
import KDComm
import KDTestSupport
@testable import KDTools
import KDTrain

/// `kdgraph bench` measures the real step through the trainer's observers: the loss inputs of the last
/// measured step reach the loss timing and the projection, the gather ledger the collective counts.
final class StepBenchTests: XCTestCase {
    func testBenchKeepsTheLastStepsInputsThroughAnObserver() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-stepbench-")
        defer { tmp.remove() }
        let dir = tmp.path
        let cfg = try KDConfig.parse(yaml: """
            seed: 1
            mode: supervised
            data: {source: synthetic, classes: 4, image_size: 8, train_size: 32, eval_size: 8, global_batch: 8}
            student: {model: mlp, hidden: [16]}
            output: {dir: "\(dir)"}
            runtime: {conv_algorithm: direct}
            """, file: "bench.yaml")
        let result = try InProcessWorld(size: 1).run { comm in
            try StepBench.run(config: cfg, comm: comm, warmup: 1, steps: 2, projectRanks: [2], sweepBytes: [4096])
        }[0]
        XCTAssertEqual(result.steps, 2)
        XCTAssertNotNil(result.lossShareS, "the kept inputs were timed")
        XCTAssertEqual(result.lossProjection.map(\.ranks), [1, 2])
        XCTAssertEqual(result.gathersPerStep, 2, "logits and labels")
        XCTAssertEqual(result.gatheredBytesPerSample, 4 * 4 + 8)
        XCTAssertEqual(result.reduceScattersPerStep, 1)
    }
}
