import XCTest
@testable import KDTensor

/// `SampleBlocks`: with blocks on, every parameter gradient that sums over a batch's rows arrives as one
/// partial per block (`blockGrad`), the partials add up to the ordinary gradient, and a block's partial
/// is the same bits wherever the block sits in the batch (computed alone, or as the last block of five
/// rows in blocks of 2). The input gradient is unchanged.
final class SampleBlocksTests: XCTestCase {
    /// An op under test: output from the input and the parameters.
    typealias Op = (Tensor, [Tensor]) throws -> Tensor

    /// Runs `op` on `x` with output gradient `dy` (rows of `x` and `dy` sliced to `rows`); returns the
    /// parameters' grads (blocks off) or block partials (on) and the input's grad.
    func run(_ op: Op, x: Tensor, params: [Tensor], dy: Tensor, rows: Range<Int>,
             rowsPerBlock: Int?) throws -> (params: [[Float]], x: [Float]) {
        let xs = try slice(x, axis: 0, range: rows).detached().copy()
        xs.requiresGrad = true
        for p in params { p.zeroGrad(); p.requiresGrad = true }
        try SampleBlocks.with(rowsPerBlock: rowsPerBlock) {
            let y = try op(xs, params)
            let g = try slice(dy, axis: 0, range: rows).detached().copy()
            precondition(g.shape == y.shape, "dy \(g.shape) vs y \(y.shape)")
            Tape.backward(y, seed: g)
        }
        let grads = params.map { p in (rowsPerBlock == nil ? p.grad : p.blockGrad)?.array ?? [] }
        return (grads, xs.grad?.array ?? [])
    }

    func check(_ label: String, _ op: Op, x: Tensor, params: [Tensor], outputShape: [Int],
               positionInvariant: Bool = true, sameInputGradient: Bool = true) throws {
        let dy = randomTensor(outputShape, seed: 77)
        let n = x.shape[0]
        let plain = try run(op, x: x, params: params, dy: dy, rows: 0..<n, rowsPerBlock: nil)
        let blocked = try run(op, x: x, params: params, dy: dy, rows: 0..<n, rowsPerBlock: 2)
        for (i, p) in params.enumerated() {
            let c = p.count, blocks = (n + 1) / 2
            XCTAssertEqual(blocked.params[i].count, blocks * c, "\(label): param \(i) has one partial per block")
            let summed = (0..<c).map { j in (0..<blocks).reduce(Float(0)) { $0 + blocked.params[i][$1 * c + j] } }
            // The block partials regroup the same float32 sums: n·u relative to Σ|terms| (n ≤ a few hundred
            // rows here), well inside 1e-4 of the largest gradient.
            let scale = max(plain.params[i].map(abs).max() ?? 1, 1e-3)
            assertClose(summed.map { $0 / scale }, plain.params[i].map { $0 / scale }, tol: 1e-4, "\(label) param \(i)")
            if positionInvariant {   // the last block (row 4) alone: the same bits as inside the batch
                let alone = try run(op, x: x, params: params, dy: dy, rows: 4..<5, rowsPerBlock: 2)
                XCTAssertEqual(alone.params[i], Array(blocked.params[i][(blocks - 1) * c..<blocks * c]),
                               "\(label): param \(i)'s partial of the last block does not depend on its position")
            }
        }
        // Graph accumulation's chunks: rows 0..<2 and 2..<5 run apart, each placed at its blocks
        // (`SampleBlocks.placing`), give the one batch's partials, bit for bit (for an op whose rows are
        // independent: a batch-statistics BatchNorm sees other rows in a chunk).
        for p in params { p.zeroGrad() }
        for (rows, first) in positionInvariant ? [(0..<2, 0), (2..<n, 1)] : [] {
            let xs = try slice(x, axis: 0, range: rows).detached().copy()
            try SampleBlocks.with(rowsPerBlock: 2) {
                try SampleBlocks.placing(first: first, of: (n + 1) / 2) {
                    let y = try op(xs, params)
                    Tape.backward(y, seed: try slice(dy, axis: 0, range: rows).detached().copy())
                }
            }
        }
        if positionInvariant {
            XCTAssertEqual(params.map { $0.blockGrad?.array ?? [] }, blocked.params, "\(label): chunks placed")
        }
        if sameInputGradient {
            XCTAssertEqual(blocked.x, plain.x, "\(label): the input gradient does not change")
        } else {
            assertClose(blocked.x, plain.x, tol: 1e-5, "\(label): input gradient")
        }
    }

    func testConvolutionsLinearAndBatchNormGiveBlockPartials() throws {
        let w3 = randomTensor([8, 3, 3, 16], seed: 2, std: 0.2), b8 = randomTensor([8], seed: 3)
        try check("conv 3×3 stride 1 (dx by the transposed convolution)", { x, p in
            try conv2d(x, weight: p[0], bias: p[1], stride: 1, padding: 1)
        }, x: randomTensor([5, 6, 6, 16], seed: 1), params: [w3, b8], outputShape: [5, 6, 6, 8])
        try check("conv 3×3 stride 2 (dcol + col2im)", { x, p in
            try conv2d(x, weight: p[0], bias: nil, stride: 2, padding: 1)
        }, x: randomTensor([5, 7, 7, 3], seed: 4), params: [randomTensor([6, 3, 3, 3], seed: 5)],
           outputShape: [5, 4, 4, 6])
        try check("conv 1×1", { x, p in try conv2d(x, weight: p[0], bias: p[1], stride: 1, padding: 0) },
                  x: randomTensor([5, 4, 4, 16], seed: 6), params: [randomTensor([8, 1, 1, 16], seed: 7), b8],
                  outputShape: [5, 4, 4, 8])
        try check("conv 1×1 stride 2 (gathered pixels)", { x, p in
            try conv2d(x, weight: p[0], bias: nil, stride: 2, padding: 0)
        }, x: randomTensor([5, 6, 6, 16], seed: 8), params: [randomTensor([8, 1, 1, 16], seed: 9)],
           outputShape: [5, 3, 3, 8])
        try check("Winograd F(2×2)", { x, p in
            try winogradConv2d(x, weight: p[0], bias: p[1], padding: 1, variant: .f2)
        }, x: randomTensor([5, 6, 6, 16], seed: 10), params: [w3, b8], outputShape: [5, 6, 6, 8])
        try check("Winograd F(4×4), cropped tiles", { x, p in
            try winogradConv2d(x, weight: p[0], bias: p[1], padding: 1, variant: .f4)
        }, x: randomTensor([5, 7, 6, 16], seed: 17), params: [w3, b8], outputShape: [5, 7, 6, 8])
        try check("strided Winograd F(4×4, 2×2), cropped tiles", { x, p in
            try stridedWinogradConv2d(x, weight: p[0], bias: p[1])
        }, x: randomTensor([5, 9, 7, 16], seed: 18), params: [w3, b8], outputShape: [5, 5, 4, 8])
        // linear: with blocks the forward and dx GEMMs are row-invariant (another summation order).
        try check("linear", { x, p in try linear(x, weight: p[0], bias: p[1]) },
                  x: randomTensor([5, 12], seed: 11),
                  params: [randomTensor([7, 12], seed: 12), randomTensor([7], seed: 13)], outputShape: [5, 7],
                  sameInputGradient: false)
        // BatchNorm: the statistics couple the rows, so a block alone has other partials; the per-block
        // statistics regroup the same Double sums (x's gradient within float32 rounding).
        let rm = Tensor.zeros([6]), rv = Tensor(shape: [6], repeating: 1)
        try check("batchNorm (training)", { x, p in
            try batchNorm(x, gamma: p[0], beta: p[1], runningMean: rm, runningVar: rv, training: true)
        }, x: randomTensor([5, 3, 3, 6], seed: 14),
           params: [positiveTensor([6], seed: 15), randomTensor([6], seed: 16)], outputShape: [5, 3, 3, 6],
           positionInvariant: false, sameInputGradient: false)
    }

    /// With blocks on, `linear` runs the row-invariant GEMM: a row's output has the same bits alone or
    /// among 12 others (with sgemm it need not: OpenBLAS rounds by the row's position, docs/ops.md).
    func testLinearRowsDoNotDependOnTheirBatchMates() throws {
        let w = randomTensor([7, 300], seed: 1), b = randomTensor([7], seed: 3), x = randomTensor([13, 300], seed: 2)
        try SampleBlocks.with(rowsPerBlock: 1) {
            let all = try withNoGrad { try linear(x, weight: w, bias: b) }
            for i in [0, 5, 12] {
                let row = try slice(x, axis: 0, range: i..<(i + 1)).detached().copy()
                let one = try withNoGrad { try linear(row, weight: w, bias: b) }
                XCTAssertEqual(one.array, Array(all.array[(i * 7)..<((i + 1) * 7)]), "row \(i)")
            }
        }
    }

    func testARankWithoutRowsReportsNoPartials() throws {
        let w = randomTensor([4, 3], seed: 1)
        w.requiresGrad = true
        let x = Tensor(uninitializedShape: [0, 3], requiresGrad: true)
        try SampleBlocks.with(rowsPerBlock: 4) {
            let y = try linear(x, weight: w, bias: nil)
            Tape.backward(y, seed: Tensor(uninitializedShape: [0, 4]))
        }
        XCTAssertEqual(w.blockGrad?.shape, [0, 12])
        XCTAssertNil(w.grad)
        XCTAssertNil(SampleBlocks.rowsPerBlock, "the setting is restored")
    }
}

/// `LossBlockPartials`, the per-block gradients of a tensor that keeps its loss blocks apart: row
/// gradients store the rows written, a dense write turns the block into all rows with them moved in.
final class LossBlockPartialsTests: XCTestCase {
    override func tearDown() { Tape.reset() }

    func testRowsWrittenAreStoredAndDenseWritesKeepThem() throws {
        let x = Tensor.zeros([5, 3], requiresGrad: true)
        x.keepLossBlocksApart(2)
        let row = Tensor(shape: [1, 3], data: [1, 2, 3]), rows = Tensor(shape: [2, 3], data: [1, 1, 1, 2, 2, 2])
        // Block 0 writes row 4 twice (added, scaled); block 1 rows 0 and 2, then a dense op adds 1 everywhere.
        for (block, body) in [(0, { x.accumulateGradRows([4], row.ptr, scale: 2) }),
                              (0, { x.accumulateGradRows([4], row.ptr) }),
                              (1, { x.accumulateGradRows([0, 2], rows.ptr) }),
                              (1, { x.accumulateGrad([Float](repeating: 1, count: 15)) })] {
            let out = Tensor(shape: [], data: [0])
            LossBlocks.recording(block) { Tape.record("probe", inputs: [x], output: out) { _ in body() } }
            out.backward()
            Tape.reset()
        }
        let p = try XCTUnwrap(x.lossBlockGrad)
        XCTAssertEqual(p.storedValues, 1 * 3 + 5 * 3)                 // block 0: row 4; block 1: every row
        let all = p.allRows().array
        XCTAssertEqual(Array(all[0..<15]), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 6, 9])
        XCTAssertEqual(Array(all[15..<30]), [2, 2, 2, 1, 1, 1, 3, 3, 3, 1, 1, 1, 1, 1, 1])
        XCTAssertEqual(p.entries.count, 1 + 5)
        XCTAssertNil(x.grad)                                          // nothing outside the blocks
        // Without blocks kept apart, the rows add into `grad` (zeros elsewhere).
        let y = Tensor.zeros([3, 2], requiresGrad: true)
        y.accumulateGradRows([2, 0], Tensor(shape: [2, 2], data: [1, 2, 3, 4]).ptr)
        XCTAssertEqual(y.grad?.array, [3, 4, 0, 0, 1, 2])
    }
}
