import XCTest
@testable import KDTensor

/// Issue 24 item 5: a NaN input must reach the output, as in PyTorch (`torch.relu(nan) = nan`;
/// `max_pool2d` returns NaN for a window holding one; `threshold_backward` passes the gradient of a
/// NaN input). A vector max that returns one operand when the other is NaN had mapped NaN to 0, so a
/// NaN image gave finite logits.
final class NaNPropagationTests: XCTestCase {
    func testReluPropagatesNaNAndPassesItsGradient() {
        let x = Tensor(shape: [5], data: [-1, .nan, 0, 2, -.infinity])
        let y = relu(x).array
        XCTAssertTrue(y[1].isNaN)
        XCTAssertEqual([y[0], y[2], y[3], y[4]], [0, 0, 2, 0])
        let g = gradOfSum(x) { relu($0) }
        XCTAssertEqual(g, [0, 1, 0, 1, 0], "threshold_backward: g where ¬(x ≤ 0)")
    }

    /// The fused epilogues (direct and Winograd convolutions): `reluInPlace` over 8-lane blocks and the tail.
    func testFusedReluKeepsNaNInVectorAndTail() {
        var values: [Float] = (0..<11).map { Float($0) - 5 }
        values[3] = .nan; values[9] = .nan   // one in the 8-lane body, one in the scalar tail
        values.withUnsafeMutableBufferPointer { reluInPlace($0.baseAddress!, $0.count) }
        XCTAssertTrue(values[3].isNaN && values[9].isNaN)
        XCTAssertEqual(values.enumerated().filter { ![3, 9].contains($0.offset) }.map(\.element),
                       [0, 0, 0, 0, 0, 1, 2, 3, 5])
    }

    func testMaxPoolPropagatesNaN() throws {
        for channels in [1, 9] {   // the scalar path and the 8-lane path with a tail
            for recording in [false, true] {
                var data = (0..<(16 * channels)).map { Float($0) }
                data[5 * channels] = .nan   // pixel (1, 1) of channel 0: in the first 2×2 window only
                let x = Tensor(shape: [1, 4, 4, channels], data: data, requiresGrad: recording)
                let y = try maxPool2d(x, kernel: 2, stride: 2)
                let first = y.array[0], others = (1..<4).map { y.array[$0 * channels] }
                XCTAssertTrue(first.isNaN, "channels \(channels), recording \(recording)")
                XCTAssertEqual(others, [7, 13, 15].map { Float($0 * channels) }, "other windows unaffected")
                if recording {
                    Tape.backward(y, seed: Tensor(shape: y.shape, data: [Float](repeating: 1, count: y.count)))
                    XCTAssertEqual(x.grad?.array[5 * channels], 1, "the NaN is the window's argmax")
                }
            }
        }
    }
}
