import XCTest
@testable import KDTools
import KDTrain

/// `kdgraph bench --pytorch`: the config's step becomes the script's command line, a step the script
/// cannot reproduce is refused naming the key, and the side-by-side table shows both medians.
final class PyTorchComparisonTests: XCTestCase {
    func config(_ extra: String = "", batchNorm: String = "local",
                loss: String = "[{kind: kd, temperature: 3}, {kind: rkd, angle_weight: 0}]") throws -> KDConfig {
        try KDConfig.parse(yaml: """
        mode: distill
        data: {source: synthetic, classes: 100, image_size: 32, train_size: 256, eval_size: 64, global_batch: 128}
        teacher: {kind: network, model: resnet32x4, checkpoint: t.safetensors}
        student: {model: resnet8x4, batch_norm: \(batchNorm)}
        loss: \(loss)
        optim: {kind: sgd, lr: 0.1}
        \(extra)
        """, file: "bench.yaml")
    }

    func testArgumentsFollowTheConfig() throws {
        let args = try PyTorchComparison.arguments(config: try config(), ranks: 2, warmup: 1, steps: 4)
        XCTAssertEqual(args, [PyTorchComparison.script, "--teacher", "resnet32x4", "--student", "resnet8x4",
                              "--classes", "100", "--image-size", "32", "--per-rank", "64", "--ranks", "2",
                              "--kd", "1.0,3.0,0.0", "--rkd", "1.0,25.0,0.0", "--lr", "0.1", "--bn-block", "0",
                              "--warmup", "1", "--steps", "4"])
        // Block BatchNorm's twin: BatchNorm per block of train.block_size samples.
        let block = try PyTorchComparison.arguments(config: try config("train: {block_size: 8}", batchNorm: "block"),
                                                    ranks: 2, warmup: 1, steps: 4)
        XCTAssertEqual(block[block.firstIndex(of: "--bn-block")! + 1], "8")
    }

    func testStepsWithoutATwinAreRefusedNamingTheKey() throws {
        func refusal(_ c: KDConfig, ranks: Int = 1) -> String {
            do { _ = try PyTorchComparison.arguments(config: c, ranks: ranks, warmup: 1, steps: 1); return "" } catch {
                return "\(error)"
            }
        }
        XCTAssertTrue(refusal(try config(batchNorm: "sync")).contains("student.batch_norm: PyTorch's SyncBatchNorm"))
        XCTAssertTrue(refusal(try config(loss: "[{kind: prg}]")).contains("loss[0].kind: prg has no twin"))
        XCTAssertTrue(refusal(try config(loss: "[{kind: kd}, {kind: rkd, angle_anchors: 8}]"))
            .contains("loss[1].angle_anchors"))
        // 128 rows: a partner cap below them samples the angle (the script does not), at or above it is exact.
        XCTAssertTrue(refusal(try config(loss: "[{kind: rkd, angle_partners: 64}]"))
            .contains("loss[0].angle_partners: the script computes every triplet: set it to 0 or at least the 128"))
        XCTAssertEqual(refusal(try config(loss: "[{kind: rkd, angle_partners: 128}]")), "")
        XCTAssertEqual(refusal(try config(loss: "[{kind: rkd}]")), "")
        XCTAssertTrue(refusal(try config(), ranks: 3).contains("data.global_batch"))
    }

    func testTableShowsBothStepsAndTheRatio() throws {
        let p = PyTorchComparison.Result(
            framework: "pytorch 9.9", ranks: 1, memoryFormat: "channels_last", teacherMode: "inference_mode",
            perRankBatch: 64, globalBatch: 64, steps: 3,
            phasesMedianS: ["teacher": 1.2, "forward": 0.3, "backward": 0.5, "optimizer": 0.01],
            stepMedianS: 2.0, samplesPerS: 32, samplesPerSPerRank: 32)
        let k = BenchResult(
            samplesPerS: 64, samplesPerSPerRank: 64, ranks: 1, globalBatch: 64, views: 1, steps: 3, warmup: 1,
            student: "resnet8x4", teacher: "resnet32x4", stepMedianS: 1.0, stepP90S: 1.1,
            phases: ["teacher": .init(medianS: 0.5, p90S: 0.6), "student_forward": .init(medianS: 0.1, p90S: 0.1),
                     "gather_loss": .init(medianS: 0.05, p90S: 0.05)],
            commShare: 0, dataWaitShare: 0, bytesGatheredPerStep: 0, bytesAllreducedPerStep: 0, peakRssBytes: 0,
            peakRssBytesPerRank: [0], tensorPoolPeakBytes: 0, allreduceSweep: [], perRankBatch: 64,
            statisticsAllreducesPerStep: 0, statisticsBytesPerStep: 0, gathersPerStep: 0, gatheredBytesPerSample: 0,
            reduceScattersPerStep: 0, reduceScatteredBytesPerSample: 0, lossProjection: [], host: "h", cores: 2)
        let table = PyTorchComparison.table(kdgraph: k, pytorch: p).joined(separator: "\n")
        XCTAssertTrue(table.contains("teacher forward         500.0      1200.0"), table)
        XCTAssertTrue(table.contains("student fwd + loss      150.0       300.0"), table)
        XCTAssertTrue(table.contains("step                   1000.0      2000.0"), table)
        XCTAssertTrue(table.contains("KDGraph/PyTorch 2.00×"), table)
    }
}

/// The optional second comparison (`InferencePeers`): the teacher's command line from the config, the
/// script's JSON line read back (a runtime measured, one skipped with its reason), and the table's ratios.
final class InferencePeersTests: XCTestCase {
    func testArgumentsResultAndTable() throws {
        let cfg = try KDConfig.parse(yaml: """
        mode: distill
        data: {source: synthetic, classes: 100, image_size: 32, train_size: 256, eval_size: 64, global_batch: 128}
        teacher: {kind: network, model: resnet32x4, checkpoint: t.safetensors}
        student: {model: resnet8x4}
        loss: [{kind: kd}]
        """, file: "bench.yaml")
        XCTAssertEqual(InferencePeers.arguments(config: cfg, ranks: 2, warmup: 0, steps: 4),
                       [InferencePeers.script, "--teacher", "resnet32x4", "--classes", "100", "--image-size", "32",
                        "--batch", "64", "--warmup", "1", "--steps", "4"])
        var baseline = cfg
        baseline.mode = .supervised
        XCTAssertNil(InferencePeers.arguments(config: baseline, ranks: 1, warmup: 1, steps: 1))

        let peers = try InferencePeers.parse("""
            a line the script printed first
            {"peers": [{"framework": "onnxruntime 1.32.0", "threads": 1, "median_s": 1.5}, \
            {"framework": "openvino", "skipped": "cannot import openvino (No module named 'openvino')"}]}
            """)
        XCTAssertEqual(peers, [InferencePeers.Peer(framework: "onnxruntime 1.32.0", threads: 1, medianS: 1.5),
                               InferencePeers.Peer(framework: "openvino",
                                                   skipped: "cannot import openvino (No module named 'openvino')")])
        XCTAssertEqual(InferencePeers.table(teacherS: 0.6, batch: 64, peers: peers), [
            "teacher forward of 64 images, one thread: KDGraph 600.0 ms",
            "  onnxruntime 1.32.0: 1500.0 ms (KDGraph 2.50× faster)",
            "  openvino: skipped (cannot import openvino (No module named 'openvino'))"])
        XCTAssertThrowsError(try InferencePeers.parse("{\"peers\": 3}")) { e in
            XCTAssertTrue("\(e)".contains(InferencePeers.script), "\(e)")
        }
    }
}
