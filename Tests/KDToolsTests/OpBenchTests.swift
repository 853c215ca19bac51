import Foundation
import XCTest
@testable import KDTools

/// `OpBench` (`kdgraph bench --ops`), tiny cases.
final class OpBenchTests: XCTestCase {
    /// `kdgraph bench --ops` prints these lines: valid JSON with the agreed keys.
    func testOpBenchEmitsJSONLines() throws {
        let lines = OpBench.run(iterations: 1,
                                convs: [.init(batch: 2, size: 6, cin: 3, cout: 4, kernel: 3, stride: 1, padding: 1),
                                        .init(batch: 2, size: 6, cin: 3, cout: 4, kernel: 9, stride: 1, padding: 0)],
                                linears: [(4, 8, 5)], gemms: [(m: 7, k: 20, n: 18)],
                                teacherLayers: [.init(batch: 2, size: 5, cin: 8, cout: 16, kernel: 3, stride: 1,
                                                      padding: 1)],
                                stridedLayers: [.init(batch: 2, size: 9, cin: 8, cout: 16, kernel: 3, stride: 2,
                                                      padding: 1)],
                                fusedTeachers: [.init(network: "resnet8", batch: 3, size: 8),
                                                .init(network: "wrn_16_1", batch: 1, size: 8)],
                                includeOtherOps: false)
        // conv2d ×2, then the stride-1 3×3 case's Winograd lines (3 forward, 3 weight gradient, 2 forward +
        // backward), the teacher layer, the strided layer, the fused teachers, linear, the row-invariant GEMM.
        XCTAssertEqual(lines.count, 16)
        let ops = lines.compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["op"] as? String
        }
        XCTAssertEqual(ops, ["conv2d", "conv2d", "conv2d_fwd", "winograd2_fwd", "winograd4_fwd",
                             "conv2d_wgrad", "winograd2_wgrad", "winograd4_wgrad", "winograd2", "winograd4",
                             "teacher_layer_f4", "strided_layer_f4", "teacher_fused", "teacher_fused", "linear",
                             "row_invariant_gemm"])
        // The fused teacher, grouped and whole-batch; a network that is not a ResNet is reported, not crashed on.
        let fused = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[12].utf8)) as? [String: Any])
        XCTAssertEqual(fused["shape"] as? String, "resnet8 3x8x8x3")
        let grouped = try XCTUnwrap(fused["ms"] as? Double), whole = try XCTUnwrap(fused["whole_batch_ms"] as? Double)
        XCTAssertGreaterThan(grouped, 0.001)
        // Each figure is printed to 3 decimals (±0.0005): the ratio of the printed times can differ from the
        // printed ratio by at most that rounding of each time, plus the ratio's own.
        let bound = (whole + 0.0005) / (grouped - 0.0005) - whole / grouped + 0.0005
        XCTAssertEqual(try XCTUnwrap(fused["ratio"] as? Double), whole / grouped, accuracy: bound)
        let notResNet = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[13].utf8)) as? [String: Any])
        XCTAssertTrue((notResNet["error"] as? String)?.contains("wrn_16_1 is not a ResNet") == true, lines[13])
        // The strided layer: F(4×4, 2×2) beside direct, its error within F(4×4, 2×2)'s bound
        // (≈ 4356·(16·8 + 4)·u·S, S/|y| ≲ 10 at 8 channels: ≈ 3e-4 relative; 1e-2 leaves a wrong transform's
        // O(1) error far outside).
        let strided = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[11].utf8)) as? [String: Any])
        XCTAssertEqual(strided["shape"] as? String, "2x9x9x8->16 k3 s2 p1")
        for key in ["ms", "direct_ms", "ratio", "filter_bank_ms", "gflops"] {
            XCTAssertGreaterThan(strided[key] as? Double ?? 0, 0, key)
        }
        XCTAssertLessThan(Double(strided["max_rel_err"] as? String ?? "1") ?? 1, 1e-2, lines[11])
        // The teacher layer: its time split into the ξ GEMMs and the rest.
        let layer = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(lines[10].utf8)) as? [String: Any])
        let ms = try XCTUnwrap(layer["ms"] as? Double), gemm = try XCTUnwrap(layer["gemm_ms"] as? Double)
        XCTAssertEqual(try XCTUnwrap(layer["transform_ms"] as? Double), ms - gemm, accuracy: 2e-3, "3 decimals")
        XCTAssertGreaterThan(layer["gflops"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(layer["filter_bank_ms"] as? Double ?? 0, 0)
        XCTAssertGreaterThan(layer["flipped_bank_ms"] as? Double ?? 0, 0)
        for key in ["input_transform_ms", "output_transform_ms", "input_transform_cached_ms"] {
            XCTAssertGreaterThan(layer[key] as? Double ?? 0, 0, key)
        }
        for line in lines[2...7] {
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
            // Winograd on 3 channels, |x| ≲ 4: F(4×4)'s error bound ≈ 3.6e4·31·u·S/|y| stays well below 1e-2;
            // the weight gradient's sums of 2·36 outputs through γ = 62 500 too (≈ 62 500·76·u ≈ 3e-4).
            XCTAssertLessThan(obj["max_rel_err"] as? Double ?? 1, 1e-2, line)
        }
        for (i, line) in lines.enumerated() where !(10...13).contains(i) {
            let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], line)
            if i == 1 {   // a kernel larger than the image is reported, not crashed on
                XCTAssertTrue((obj["error"] as? String)?.contains("does not fit input 6×6") == true, line)
                continue
            }
            for key in ["op", "shape", "ms", "gflops", "sgemm_gflops", "ratio"] {
                XCTAssertNotNil(obj[key], "\(key) in \(line)")
            }
            XCTAssertGreaterThan(obj["gflops"] as? Double ?? 0, 0)
        }
    }
}
