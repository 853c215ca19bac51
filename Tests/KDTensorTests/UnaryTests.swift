import XCTest
@testable import KDTensor

final class UnaryTests: XCTestCase {
    func testValues() {
        let x = Tensor(shape: [4], data: [-2, -0.5, 0, 4])
        XCTAssertEqual(relu(x).array, [0, 0, 0, 4])
        XCTAssertEqual(abs(x).array, [2, 0.5, 0, 4])
        XCTAssertEqual(neg(x).array, [2, 0.5, -0, -4])
        XCTAssertEqual(clamp(x, min: -1, max: 1).array, [-1, -0.5, 0, 1])
        XCTAssertEqual(clamp(x, min: 0).array, [0, 0, 0, 4])
        XCTAssertEqual(pow(x, 2).array, [4, 0.25, 0, 16])
        let p = Tensor(shape: [3], data: [1, 4, 9])
        assertClose(sqrt(p).array, [1, 2, 3])
        assertClose(log(p).array, [0, Float(Foundation.log(4.0)), Float(Foundation.log(9.0))])
        assertClose(exp(Tensor(shape: [2], data: [0, 1])).array, [1, Float(M_E)])
        assertClose(pow(p, 0.5).array, [1, 2, 3])
        assertClose(pow(p, -1).array, [1, 0.25, 1.0 / 9])
    }

    func testKinkGradients() {
        let x = Tensor(shape: [4], data: [-2, -0.5, 0, 4])
        XCTAssertEqual(gradOfSum(x) { relu($0) }, [0, 0, 0, 1])
        XCTAssertEqual(gradOfSum(x) { abs($0) }, [-1, -1, 0, 1])
        XCTAssertEqual(gradOfSum(x) { clamp($0, min: -0.5, max: 3) }, [0, 1, 1, 0])
    }

    func testGradients() {
        let x = awayFromZero([3, 4], seed: 21)
        let p = positiveTensor([3, 4], seed: 22)
        assertGradients([x], "relu") { relu($0[0]) }
        assertGradients([x], "abs") { abs($0[0]) }
        assertGradients([x], "neg") { neg($0[0]) }
        assertGradients([x], "exp") { exp($0[0]) }
        assertGradients([p], "log") { log($0[0]) }
        assertGradients([p], "sqrt") { sqrt($0[0]) }
        for e: Float in [2, 3, 0.5, -1, 1, 0] {
            assertGradients([p], "pow \(e)") { pow($0[0], e) }
        }
        assertGradients([x], "pow 2 of signed") { pow($0[0], 2) }
        // Clamp bounds chosen between the sampled values (none within 0.1 of a bound).
        let c = Tensor(shape: [6], data: [-1.5, -0.6, -0.2, 0.3, 0.8, 2])
        assertGradients([c], "clamp") { clamp($0[0], min: -0.4, max: 0.5) }
    }

    func testWhereValuesAndGradients() throws {
        let a = Tensor(shape: [2, 2], data: [1, 2, 3, 4]), b = Tensor(shape: [2, 2], data: [10, 20, 30, 40])
        let mask = [true, false, false, true]
        XCTAssertEqual(try `where`(mask, a, b).array, [1, 20, 30, 4])
        let tm = Tensor(shape: [2, 2], data: [0, 1, 0, -2])
        XCTAssertEqual(try `where`(tm, a, b).array, [10, 2, 30, 4])
        let x = randomTensor([2, 3], seed: 23), y = randomTensor([2, 3], seed: 24)
        let m6 = [true, true, false, false, true, false]
        assertGradients([x, y], "where bool") { try `where`(m6, $0[0], $0[1]) }
        let t6 = Tensor(shape: [2, 3], data: [1, 0, 0, 1, 1, 0])
        assertGradients([x, y], "where tensor") { try `where`(t6, $0[0] * $0[0], $0[1]) }
        XCTAssertEqual(try gradOfSum(x) { try `where`(m6, $0, y) }, [1, 1, 0, 0, 1, 0])
    }

    func testWhereErrors() {
        let a = Tensor.zeros([2, 2]), b = Tensor.zeros([2, 3])
        assertThrowsMessage("where: shape mismatch between [2, 2] and [2, 3]", try `where`([true], a, b))
        assertThrowsMessage("where: mask has 3 values, tensors of shape [2, 2] have 4",
                            try `where`([true, false, true], a, a))
        assertThrowsMessage("where (mask): shape mismatch between [4] and [2, 2]", try `where`(Tensor.zeros([4]), a, a))
    }

    /// `addReLU` is `relu(add(a, b))` bit for bit: output and both gradients, accumulating onto gradients
    /// already there and with one tensor as both operands; about half the sums are clamped, so both sides
    /// of the mask count. Another shape is refused naming both.
    func testAddReLUGivesTheBitsOfReLUOfAdd() throws {
        var rng = KDRandom(keys: 51)
        let av = Tensor.randn([4, 3, 5], rng: &rng).array, bv = Tensor.randn([4, 3, 5], rng: &rng).array
        let seed = Tensor.randn([4, 3, 5], rng: &rng)
        func run(_ fused: Bool, same: Bool) throws -> [[Float]] {
            let a = Tensor(shape: [4, 3, 5], data: av, requiresGrad: true)
            let b = same ? a : Tensor(shape: [4, 3, 5], data: bv, requiresGrad: true)
            b.grad = Tensor(shape: [4, 3, 5], data: av)          // a gradient already there: accumulated onto
            let y = fused ? try addReLU(a, b) : relu(try add(a, b))
            Tape.backward(y, seed: seed)
            return [y.array, a.grad!.array, b.grad!.array]
        }
        for same in [false, true] {
            let fused = try run(true, same: same), twoOps = try run(false, same: same)
            let clamped = fused[0].filter { $0 == 0 }.count
            XCTAssertTrue((10...50).contains(clamped), "\(clamped) of 60 clamped")
            for k in 0..<3 {
                XCTAssertEqual(fused[k].map(\.bitPattern), twoOps[k].map(\.bitPattern), "same \(same) part \(k)")
            }
        }
        XCTAssertThrowsError(try addReLU(Tensor.zeros([2, 3]), Tensor.zeros([3]))) { e in
            XCTAssertEqual("\(e)", "addReLU: shape mismatch between [2, 3] and [3]")
        }
    }

    /// Finite differences of `addReLU` (central, step 1e-2) at sums at least 0.1 from the kink (a step moves
    /// a sum by 0.01): 1e-2 max-norm relative, float32 central differences of a piecewise-linear function
    /// (exact up to rounding of the loss sum).
    func testAddReLUGradients() throws {
        var rng = KDRandom(keys: 52)
        let a = Tensor.randn([3, 4], rng: &rng)
        let sums = Tensor.randn([3, 4], rng: &rng).array.map { $0 < 0 ? $0 - 0.1 : $0 + 0.1 }
        let b = Tensor(shape: [3, 4], data: zip(sums, a.array).map { $0 - $1 })
        let r = try gradientCheck([a, b]) { try addReLU($0[0], $0[1]) }
        XCTAssertLessThan(r.maxRelativeError, 1e-2, "\(r)")
    }
}
