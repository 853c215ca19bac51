import XCTest
@testable import KDTensor

final class LossOpsTests: XCTestCase {
    func testCrossEntropyValues() throws {
        let z = Tensor(shape: [2, 2], data: [0, 0, 1e4, 0])
        // Row 0: ln 2; row 1: label 1 with a margin of 1e4 → 1e4.
        XCTAssertEqual(try crossEntropy(logits: z, labels: [0, 1]).item, (Float(Foundation.log(2.0)) + 1e4) / 2, accuracy: 1e-2)
        let y = Tensor(shape: [1, 3], data: [1, 2, 3])
        let ref = Foundation.log(exp(1.0) + exp(2.0) + exp(3.0)) - 2
        XCTAssertEqual(try crossEntropy(logits: y, labels: [1]).item, Float(ref), accuracy: 1e-6)
        XCTAssertEqual(try crossEntropy(logits: y, labels: [1]).shape, [])
    }

    func testCrossEntropyGradients() {
        let z = randomTensor([4, 5], seed: 51, std: 2)
        assertGradients([z], "crossEntropy") { try crossEntropy(logits: $0[0], labels: [0, 4, 2, 2]) }
        let big = Tensor(shape: [2, 3], data: [1e4, 1e4 + 0.5, 1e4 - 1, -1e4, -1e4 + 1, -1e4 - 0.5])
        assertGradients([big], eps: 1.0 / 64, "crossEntropy ±1e4") { try crossEntropy(logits: $0[0], labels: [1, 0]) }
    }

    func testCrossEntropyErrors() {
        let z = Tensor.zeros([2, 3])
        assertThrowsMessage("crossEntropy: label at index 1 is 5, outside 0..<3", try crossEntropy(logits: z, labels: [0, 5]))
        assertThrowsMessage("crossEntropy: label at index 0 is -1, outside 0..<3", try crossEntropy(logits: z, labels: [-1, 0]))
        assertThrowsMessage("crossEntropy: 3 labels for logits of shape [2, 3]", try crossEntropy(logits: z, labels: [0, 1, 2]))
        assertThrowsMessage("crossEntropy: logits must be [N, C], got shape [6]", try crossEntropy(logits: Tensor.zeros([6]), labels: [0]))
    }

    func testKLDivergenceValuesAndReductions() throws {
        // KL([½, ½] ‖ [¼, ¾]) = ½ ln 2 + ½ ln(2/3); second row KL([1, 0] ‖ [½, ½]) = ln 2 (0·log 0 = 0).
        let p = Tensor(shape: [2, 2], data: [0.5, 0.5, 1, 0])
        let logQ = log(Tensor(shape: [2, 2], data: [0.25, 0.75, 0.5, 0.5]))
        let r0 = 0.5 * Foundation.log(2.0) + 0.5 * Foundation.log(2.0 / 3), r1 = Foundation.log(2.0)
        XCTAssertEqual(try klDivergence(logQ: logQ, p: p).item, Float((r0 + r1) / 2), accuracy: 1e-6)
        XCTAssertEqual(try klDivergence(logQ: logQ, p: p, reduction: .sum).item, Float(r0 + r1), accuracy: 1e-6)
        XCTAssertEqual(try klDivergence(logQ: logQ, p: p, reduction: .mean).item, Float((r0 + r1) / 4), accuracy: 1e-6)
        let none = try klDivergence(logQ: logQ, p: p, reduction: .none)
        XCTAssertEqual(none.shape, [2, 2])
        assertClose(none.array, [Float(0.5 * Foundation.log(2.0)), Float(0.5 * Foundation.log(2.0 / 3)), Float(r1), 0])
    }

    func testKLDivergenceGradients() throws {
        let logQ = try logSoftmax(randomTensor([3, 4], seed: 52))
        let p = positiveTensor([3, 4], seed: 53, lo: 0.2, hi: 1)
        for red in [LossReduction.batchMean, .sum, .mean, .none] {
            assertGradients([logQ.detached(), p], "kl \(red)") { try klDivergence(logQ: $0[0], p: $0[1], reduction: red) }
        }
        // Through logSoftmax, as the KD loss uses it.
        let z = randomTensor([3, 4], seed: 54)
        let target = try softmax(randomTensor([3, 4], seed: 55))
        assertGradients([z], "kl∘logSoftmax") { try klDivergence(logQ: try logSoftmax($0[0]), p: target) }
    }

    func testKLDivergenceShapeError() {
        assertThrowsMessage("klDivergence: shape mismatch between [2, 3] and [3, 2]",
                            try klDivergence(logQ: Tensor.zeros([2, 3]), p: Tensor.zeros([3, 2])))
    }

    func testSmoothL1AndHuberValues() throws {
        let a = Tensor(shape: [3], data: [0.5, 2, -3]), b = Tensor.zeros([3])
        // smoothL1 β=1: [0.125, 1.5, 2.5]; Huber δ=2: [0.125, 2, 2·(3 − 1) = 4].
        XCTAssertEqual(try smoothL1(a, b).item, (0.125 + 1.5 + 2.5) / 3, accuracy: 1e-6)
        XCTAssertEqual(try smoothL1(a, b, beta: 1, reduction: .sum).item, 4.125, accuracy: 1e-6)
        XCTAssertEqual(try smoothL1(a, b, beta: 0).item, 5.5 / 3, accuracy: 1e-6)
        XCTAssertEqual(try huber(a, b, delta: 2, reduction: .none).array, [0.125, 2, 4])
        XCTAssertEqual(try huber(a, b).item, (0.125 + 1.5 + 2.5) / 3, accuracy: 1e-6)
        // smoothL1 with β = 2 is Huber_2 / 2.
        assertClose(try smoothL1(a, b, beta: 2, reduction: .none).array, [0.0625, 1, 2])
    }

    func testSmoothL1AndHuberGradients() {
        let a = Tensor(shape: [2, 4], data: [0.3, -0.4, 1.7, -2.5, 0.05, 0.9, -1.3, 3])
        let b = Tensor(shape: [2, 4], data: [0, 0.2, -0.1, 0.4, 0, -0.5, 0.6, -0.2])
        for red in [LossReduction.mean, .sum, .none] {
            assertGradients([a, b], "smoothL1 \(red)") { try smoothL1($0[0], $0[1], beta: 1, reduction: red) }
            assertGradients([a, b], "huber \(red)") { try huber($0[0], $0[1], delta: 1, reduction: red) }
            assertGradients([a, b], "huber δ=0.5 \(red)") { try huber($0[0], $0[1], delta: 0.5, reduction: red) }
        }
    }

    func testSmoothL1Errors() {
        assertThrowsMessage("smoothL1: shape mismatch between [2] and [3]", try smoothL1(Tensor.zeros([2]), Tensor.zeros([3])))
        assertThrowsMessage("huber: shape mismatch between [2] and [3]", try huber(Tensor.zeros([2]), Tensor.zeros([3])))
        assertThrowsMessage("huber: delta must be > 0, got 0.0", try huber(Tensor.zeros([2]), Tensor.zeros([2]), delta: 0))
    }
}
