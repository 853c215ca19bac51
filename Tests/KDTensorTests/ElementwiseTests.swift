import XCTest
@testable import KDTensor

final class ElementwiseTests: XCTestCase {
    static let ops: [(Tensor, Tensor) throws -> Tensor] = [add, sub, mul, div]

    func testBroadcastShapeRules() {
        XCTAssertEqual(broadcastShape([3, 4], [4]), [3, 4])
        XCTAssertEqual(broadcastShape([3, 1], [1, 4]), [3, 4])
        XCTAssertEqual(broadcastShape([2, 1, 5], [3, 1]), [2, 3, 5])
        XCTAssertEqual(broadcastShape([], [2, 3]), [2, 3])
        XCTAssertNil(broadcastShape([3, 4], [3]))
    }

    func testAddRowBiasValues() throws {
        let a = Tensor(shape: [2, 2], data: [1, 2, 3, 4])
        let b = Tensor(shape: [2], data: [10, 20])
        let y = try a + b
        XCTAssertEqual(y.shape, [2, 2])
        XCTAssertEqual(y.array, [11, 22, 13, 24])
        XCTAssertEqual(try (b - a).array, [9, 18, 7, 16])
    }

    func testOuterBroadcastValues() throws {
        let a = Tensor(shape: [3, 1], data: [1, 2, 3])
        let b = Tensor(shape: [1, 4], data: [1, 10, 100, 1000])
        let y = try a * b
        XCTAssertEqual(y.shape, [3, 4])
        XCTAssertEqual(y.array, [1, 10, 100, 1000, 2, 20, 200, 2000, 3, 30, 300, 3000])
        let q = try div(b, a)
        assertClose(q.array, [1, 10, 100, 1000, 0.5, 5, 50, 500, 1.0 / 3, 10.0 / 3, 100.0 / 3, 1000.0 / 3])
    }

    func testMiddleAxisBroadcastValues() throws {
        let a = Tensor(shape: [2, 3, 2], data: (0..<12).map(Float.init))
        let b = Tensor(shape: [2, 1, 2], data: [100, 200, 300, 400])
        XCTAssertEqual(try (a + b).array, [100, 201, 102, 203, 104, 205, 306, 407, 308, 409, 310, 411])
    }

    func testScalarTensorAndFloatOperators() throws {
        let a = Tensor(shape: [3], data: [1, 2, 4])
        let s = Tensor.scalar(2)
        XCTAssertEqual(try (a * s).array, [2, 4, 8])
        XCTAssertEqual(try (s - a).shape, [3])
        XCTAssertEqual((a + 1).array, [2, 3, 5])
        XCTAssertEqual((1 + a).array, [2, 3, 5])
        XCTAssertEqual((a - 1).array, [0, 1, 3])
        XCTAssertEqual((1 - a).array, [0, -1, -3])
        XCTAssertEqual((a * 3).array, [3, 6, 12])
        XCTAssertEqual((3 * a).array, [3, 6, 12])
        XCTAssertEqual((a / 2).array, [0.5, 1, 2])
        XCTAssertEqual((4 / a).array, [4, 2, 1])
        XCTAssertEqual((-a).array, [-1, -2, -4])
    }

    func testSameShapeGradients() {
        for (k, op) in Self.ops.enumerated() {
            let a = randomTensor([3, 4], seed: 1), b = positiveTensor([3, 4], seed: 2)
            assertGradients([a, b], "op \(k)") { try op($0[0], $0[1]) }
        }
    }

    func testRowVectorBroadcastGradients() {
        for (k, op) in Self.ops.enumerated() {
            let a = randomTensor([3, 4], seed: 3), b = positiveTensor([4], seed: 4)
            assertGradients([a, b], "[3,4]∘[4] op \(k)") { try op($0[0], $0[1]) }
            assertGradients([b, a], "[4]∘[3,4] op \(k)") { try op($0[0], $0[1] * $0[1] + 1) }
        }
    }

    func testOuterBroadcastGradients() {
        for (k, op) in Self.ops.enumerated() {
            let a = randomTensor([3, 1], seed: 5), b = positiveTensor([1, 4], seed: 6)
            assertGradients([a, b], "[3,1]∘[1,4] op \(k)") { try op($0[0], $0[1]) }
        }
    }

    func testScalarBroadcastGradients() {
        for (k, op) in Self.ops.enumerated() {
            let a = randomTensor([2, 3], seed: 7), s = positiveTensor([], seed: 8), s1 = positiveTensor([1], seed: 9)
            assertGradients([a, s], "tensor∘scalar op \(k)") { try op($0[0], $0[1]) }
            assertGradients([s1, a], "[1]∘tensor op \(k)") { try op($0[0], $0[1] * $0[1] + 1) }
        }
    }

    func testMixedBroadcastGradients() {
        let a = randomTensor([2, 3, 1, 2], seed: 10), b = positiveTensor([3, 4, 1], seed: 11)
        for (k, op) in Self.ops.enumerated() {
            assertGradients([a, b], "4-D op \(k)") { try op($0[0], $0[1]) }
        }
    }

    func testFloatScalarGradients() {
        let a = positiveTensor([2, 3], seed: 12)
        assertGradients([a], "a+s") { $0[0] + 1.5 }
        assertGradients([a], "s+a") { 1.5 + $0[0] }
        assertGradients([a], "a-s") { $0[0] - 1.5 }
        assertGradients([a], "s-a") { 1.5 - $0[0] }
        assertGradients([a], "a*s") { $0[0] * -2 }
        assertGradients([a], "s*a") { -2 * $0[0] }
        assertGradients([a], "a/s") { $0[0] / 3 }
        assertGradients([a], "s/a") { 3 / $0[0] }
        assertGradients([a], "-a") { -$0[0] }
    }

    func testSameInputOnBothSides() {
        let a = randomTensor([3, 2], seed: 13)
        assertGradients([a], "a*a") { try $0[0] * $0[0] }
        assertGradients([a], "a-a*2") { try $0[0] - $0[0] * 2 }
    }

    func testShapeErrorsNameBothShapes() {
        let a = Tensor.zeros([3, 4]), b = Tensor.zeros([3])
        assertThrowsMessage("add: shape mismatch between [3, 4] and [3]", try a + b)
        assertThrowsMessage("sub: shape mismatch between [3, 4] and [3]", try sub(a, b))
        assertThrowsMessage("mul: shape mismatch between [3] and [3, 4]", try b * a)
        assertThrowsMessage("div: shape mismatch between [2, 3] and [3, 2]",
                            try Tensor.zeros([2, 3]) / Tensor.zeros([3, 2]))
    }

    func testNoTapeNodesWithoutGrad() throws {
        Tape.reset()
        let a = randomTensor([2, 2], seed: 14)
        a.requiresGrad = true
        _ = try withNoGrad { try a * a + 1 }
        XCTAssertEqual(Tape.current.nodeCount, 0)
        _ = try a * a
        XCTAssertEqual(Tape.current.nodeCount, 1)
        Tape.reset()
    }
}
