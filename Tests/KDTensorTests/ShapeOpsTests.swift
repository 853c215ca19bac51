import XCTest
@testable import KDTensor

final class ShapeOpsTests: XCTestCase {
    let m = Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])

    func testReshapeIsAViewWithGradient() throws {
        let r = try reshape(m, [3, -1])
        XCTAssertEqual(r.shape, [3, 2])
        XCTAssertTrue(r.storage === m.storage)
        XCTAssertEqual(try reshape(m, [6]).array, m.array)
        let x = randomTensor([2, 3, 2], seed: 81)
        assertGradients([x], "reshape") { try reshape($0[0], [4, 3]) }
        assertGradients([x], "reshape then op") {
            try sum(try reshape($0[0], [6, 2]) * Tensor(shape: [2], data: [1, -2]), axes: [1])
        }
    }

    func testReshapeErrors() {
        assertThrowsMessage("reshape: cannot view [2, 3] (6 elements) as [4, 2]", try reshape(m, [4, 2]))
        assertThrowsMessage("reshape: cannot view [2, 3] (6 elements) as [-1, 4]", try reshape(m, [-1, 4]))
        assertThrowsMessage("reshape: cannot view [2, 3] (6 elements) as [-1, -1]", try reshape(m, [-1, -1]))
    }

    func testTransposeAndPermuteValues() throws {
        let t = try transpose(m)
        XCTAssertEqual(t.shape, [3, 2]); XCTAssertEqual(t.array, [1, 4, 2, 5, 3, 6])
        let x = Tensor(shape: [2, 3, 4], data: (0..<24).map(Float.init))
        let p = try permute(x, [2, 0, 1])
        XCTAssertEqual(p.shape, [4, 2, 3])
        // p[i, j, k] = x[j, k, i]
        for i in 0..<4 { for j in 0..<2 { for k in 0..<3 {
            XCTAssertEqual(p.ptr[(i * 2 + j) * 3 + k], x.ptr[(j * 3 + k) * 4 + i])
        } } }
        XCTAssertEqual(try permute(x, [0, 1, 2]).array, x.array)
    }

    func testTiledTransposeMatchesNaive() throws {
        // 37×19 is not a multiple of the 16×16 tile; [3, 19, 37] → [3, 37, 19] runs the tiles per batch.
        let x = randomTensor([3, 19, 37], seed: 90)
        let y = try permute(x, [0, 2, 1])
        for b in 0..<3 { for i in 0..<19 { for j in 0..<37 {
            XCTAssertEqual(y.ptr[(b * 37 + j) * 19 + i], x.ptr[(b * 19 + i) * 37 + j])
        } } }
        let g = try gradOfSum(x) { sum(try permute($0, [0, 2, 1]) * y) }
        XCTAssertEqual(g, x.array)   // ∂/∂x Σ permute(x)·permute(x)₀ = x
        let t = try transpose(try reshape(x, [57, 37]))
        XCTAssertEqual(t.shape, [37, 57])
        XCTAssertEqual(t.ptr[5 * 57 + 40], x.ptr[40 * 37 + 5])
    }

    func testTransposeAndPermuteGradients() {
        assertGradients([randomTensor([3, 4], seed: 82)], "transpose") { try transpose($0[0]) }
        let x3 = randomTensor([2, 3, 4], seed: 83)
        for axes in [[2, 0, 1], [1, 0, 2], [0, 2, 1], [2, 1, 0]] {
            assertGradients([x3], "permute \(axes)") { try permute($0[0], axes) }
        }
        let x4 = randomTensor([2, 3, 2, 2], seed: 84)
        for axes in [[0, 3, 1, 2], [0, 2, 3, 1], [3, 2, 1, 0]] {   // NHWC ↔ NCHW and full reversal
            assertGradients([x4], "permute \(axes)") { try permute($0[0], axes) }
        }
    }

    func testPermuteErrors() {
        assertThrowsMessage("permute: axes [0, 0] are not a permutation of 0..<2 (shape [2, 3])",
                            try permute(m, [0, 0]))
        assertThrowsMessage("transpose: needs a 2-D tensor, got shape [6]", try transpose(Tensor.zeros([6])))
    }

    func testSliceValuesGradientsErrors() throws {
        XCTAssertEqual(try slice(m, axis: 1, range: 1..<3).array, [2, 3, 5, 6])
        XCTAssertEqual(try slice(m, axis: 0, range: 1..<2).array, [4, 5, 6])
        XCTAssertEqual(try gradOfSum(m) { try slice($0, axis: 1, range: 0..<2) }, [1, 1, 0, 1, 1, 0])
        let x = randomTensor([3, 4, 2], seed: 85)
        assertGradients([x], "slice axis 1") { try slice($0[0], axis: 1, range: 1..<3) }
        assertGradients([x], "slice axis -1") { try slice($0[0], axis: -1, range: 0..<1) }
        assertThrowsMessage("slice: range 2..<4 out of bounds for axis 1 of shape [2, 3]",
                            try slice(m, axis: 1, range: 2..<4))
    }

    func testConcatValuesGradientsErrors() throws {
        let b = Tensor(shape: [2, 1], data: [7, 8])
        XCTAssertEqual(try concat([m, b], axis: 1).array, [1, 2, 3, 7, 4, 5, 6, 8])
        XCTAssertEqual(try concat([m, m], axis: 0).shape, [4, 3])
        let x = randomTensor([2, 3], seed: 86), y = randomTensor([2, 2], seed: 87), z = randomTensor([1, 3], seed: 88)
        assertGradients([x, y], "concat axis 1") { try concat([$0[0], $0[1]], axis: 1) }
        assertGradients([x, z], "concat axis 0") { try concat([$0[0], $0[1], $0[0]], axis: 0) }
        assertThrowsMessage("concat (axis 1): shape mismatch between [2, 3] and [3, 3]",
                            try concat([m, Tensor.zeros([3, 3])], axis: 1))
        assertThrowsMessage("concat: no tensors to concatenate", try concat([], axis: 0))
    }

    func testGatherValuesGradientsErrors() throws {
        XCTAssertEqual(try gather(m, indices: [1, 1, 0]).array, [4, 5, 6, 4, 5, 6, 1, 2, 3])
        XCTAssertEqual(try gather(m, indices: [2, 0], axis: 1).array, [3, 1, 6, 4])
        // Repeated indices accumulate in the backward scatter-add.
        XCTAssertEqual(try gradOfSum(m) { try gather($0, indices: [1, 1, 0]) }, [1, 1, 1, 2, 2, 2])
        let x = randomTensor([4, 3], seed: 89)
        assertGradients([x], "gather rows") { try gather($0[0], indices: [3, 0, 3, 3, 1]) }
        assertGradients([x], "gather cols") { try gather($0[0], indices: [2, 2, 0], axis: 1) }
        assertThrowsMessage("gather: index 2 at position 1 out of range 0..<2 for axis 0 of shape [2, 3]",
                            try gather(m, indices: [0, 2]))
    }
}
