import XCTest
@testable import KDTensor

/// Direct-loop reference convolution (NHWC, weights [Cout, kh, kw, Cin]) in Double.
private func naiveConv2d(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride s: Int,
                         padding p: Int) -> (shape: [Int], values: [Float]) {
    let (n, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (cout, kh, kw) = (w.shape[0], w.shape[1], w.shape[2])
    let ho = (h + 2 * p - kh) / s + 1, wo = (wd + 2 * p - kw) / s + 1
    var out = [Float](repeating: 0, count: n * ho * wo * cout)
    for i in 0..<n { for oh in 0..<ho { for ow in 0..<wo { for o in 0..<cout {
        var acc = Double(b?.ptr[o] ?? 0)
        for ki in 0..<kh { for kj in 0..<kw {
            let ih = oh * s - p + ki, iw = ow * s - p + kj
            if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
            for c in 0..<cin {
                acc += Double(x.ptr[((i * h + ih) * wd + iw) * cin + c])
                    * Double(w.ptr[((o * kh + ki) * kw + kj) * cin + c])
            }
        } }
        out[((i * ho + oh) * wo + ow) * cout + o] = Float(acc)
    } } } }
    return ([n, ho, wo, cout], out)
}

final class Conv2dTests: XCTestCase {
    struct Case { var n, h, w, cin, cout, kh, kw, stride, padding: Int; var bias: Bool }

    let cases: [Case] = [
        Case(n: 2, h: 5, w: 6, cin: 3, cout: 4, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        Case(n: 2, h: 7, w: 5, cin: 3, cout: 2, kh: 3, kw: 3, stride: 2, padding: 1, bias: true),
        Case(n: 1, h: 5, w: 5, cin: 4, cout: 3, kh: 1, kw: 1, stride: 1, padding: 0, bias: true),
        Case(n: 2, h: 5, w: 7, cin: 3, cout: 5, kh: 1, kw: 1, stride: 2, padding: 0, bias: false),
        Case(n: 1, h: 6, w: 5, cin: 2, cout: 3, kh: 2, kw: 3, stride: 2, padding: 0, bias: false),
        Case(n: 1, h: 3, w: 4, cin: 2, cout: 2, kh: 3, kw: 3, stride: 1, padding: 2, bias: true),
        Case(n: 2, h: 5, w: 4, cin: 2, cout: 3, kh: 3, kw: 3, stride: 1, padding: 0, bias: false),
        // Cin ≥ 16: stride-1 input gradient as a convolution of dY with the flipped kernel.
        Case(n: 2, h: 4, w: 3, cin: 16, cout: 8, kh: 3, kw: 3, stride: 1, padding: 1, bias: true),
        Case(n: 1, h: 5, w: 4, cin: 16, cout: 20, kh: 3, kw: 3, stride: 1, padding: 0, bias: false),
    ]

    func make(_ c: Case, seed: UInt64) -> (Tensor, Tensor, Tensor?) {
        var rng = KDRandom(keys: seed)
        let x = Tensor.randn([c.n, c.h, c.w, c.cin], rng: &rng)
        let w = Tensor.randn([c.cout, c.kh, c.kw, c.cin], std: 0.5, rng: &rng)
        let b = c.bias ? Tensor.randn([c.cout], rng: &rng) : nil
        return (x, w, b)
    }

    func testHandComputedSmallCase() throws {
        // 3×3 image 1..9, 2×2 kernel of ones, no padding: window sums.
        let x = Tensor(shape: [1, 3, 3, 1], data: (1...9).map(Float.init))
        let w = Tensor(shape: [1, 2, 2, 1], repeating: 1)
        let y = try conv2d(x, weight: w, bias: Tensor(shape: [1], data: [0.5]), stride: 1, padding: 0)
        XCTAssertEqual(y.shape, [1, 2, 2, 1])
        XCTAssertEqual(y.array, [12.5, 16.5, 24.5, 28.5])
        // Padding 1, stride 2: corners see 1 (x[0,0]), 2+3, 4+7, 5+6+8+9.
        let z = try conv2d(x, weight: w, bias: nil, stride: 2, padding: 1)
        XCTAssertEqual(z.shape, [1, 2, 2, 1])
        XCTAssertEqual(z.array, [1, 5, 11, 28])
    }

    func testMatchesDirectConvolution() throws {
        for (i, c) in cases.enumerated() {
            let (x, w, b) = make(c, seed: UInt64(i))
            let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
            let ref = naiveConv2d(x, w, b, stride: c.stride, padding: c.padding)
            XCTAssertEqual(y.shape, ref.shape, "case \(i)")
            for (a, r) in zip(y.array, ref.values) { XCTAssertEqual(a, r, accuracy: 1e-4, "case \(i)") }
        }
    }

    func testGradients() throws {
        for (i, c) in cases.enumerated() {
            let (x, w, b) = make(c, seed: 100 + UInt64(i))
            let inputs = b.map { [x, w, $0] } ?? [x, w]
            let r = try gradientCheck(inputs) { t in
                try conv2d(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil, stride: c.stride, padding: c.padding)
            }
            XCTAssertLessThan(r.maxRelativeError, 1e-2, "case \(i): \(r)")
        }
    }

    func testChunkedBatchMatchesSingleGEMM() throws {
        for stride in [1, 2] { try checkChunking(Case(n: 3, h: 5, w: 5, cin: 2, cout: 3, kh: 3, kw: 3,
                                                      stride: stride, padding: 1, bias: true)) }
        try checkChunking(Case(n: 3, h: 4, w: 3, cin: 16, cout: 8, kh: 3, kw: 3, stride: 1, padding: 1, bias: true))
    }

    func checkChunking(_ c: Case) throws {
        func run() throws -> [[Float]] {
            let (x, w, b) = make(c, seed: 9)
            x.requiresGrad = true; w.requiresGrad = true; b!.requiresGrad = true
            let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
            var rng = KDRandom(keys: 3)
            Tape.backward(y, seed: Tensor.randn(y.shape, rng: &rng))
            return [y.array, x.grad!.array, w.grad!.array, b!.grad!.array]
        }
        let whole = try run()
        let saved = Conv2dWorkspace.maxColumnElements
        Conv2dWorkspace.maxColumnElements = 1   // one image per chunk
        defer { Conv2dWorkspace.maxColumnElements = saved }
        let chunked = try run()
        for (u, v) in zip(whole, chunked) {
            for (a, b) in zip(u, v) { XCTAssertEqual(a, b, accuracy: 1e-5) }
        }
    }

    /// A second backward adds onto existing gradients (the non-fresh paths, incl. strided 1×1 col2im).
    func testGradientsAccumulateAcrossBackwardPasses() throws {
        for c in [cases[0], cases[1], cases[3], cases[2], cases[7]] {
            let (x, w, b) = make(c, seed: 12)
            x.requiresGrad = true; w.requiresGrad = true
            var rng = KDRandom(keys: 13)
            var first: [[Float]] = []
            for pass in 0..<2 {
                let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
                Tape.backward(y, seed: Tensor.randn(y.shape, rng: &rng))
                if pass == 0 { first = [x.grad!.array, w.grad!.array]; rng = KDRandom(keys: 13) }
            }
            for (a, f) in zip(x.grad!.array, first[0]) { XCTAssertEqual(a, 2 * f, accuracy: 1e-4) }
            for (a, f) in zip(w.grad!.array, first[1]) { XCTAssertEqual(a, 2 * f, accuracy: 1e-4) }
        }
    }

    /// After one warm-up step, forward + backward draws every buffer (scratch, output, gradients) from
    /// the pool: no fresh allocation.
    func testSteadyStateDoesNotAllocate() throws {
        for c in [cases[0], cases[3], cases[7]] {
            let (x, w, b) = make(c, seed: 14)
            x.requiresGrad = true; w.requiresGrad = true; b?.requiresGrad = true
            let seed = Tensor(shape: [c.n, (c.h + 2 * c.padding - c.kh) / c.stride + 1,
                                      (c.w + 2 * c.padding - c.kw) / c.stride + 1, c.cout], repeating: 0.5)
            var before = 0
            for step in 0..<3 {
                if step == 2 { before = BufferPool.shared.allocations }
                x.grad = nil; w.grad = nil; b?.grad = nil
                let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
                Tape.backward(y, seed: seed)
            }
            XCTAssertEqual(BufferPool.shared.allocations, before)
        }
    }

    /// An empty batch (a rank without rows) still records and gives zero parameter gradients.
    func testEmptyBatch() throws {
        for (k, s, p) in [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0)] {
            let x = Tensor(shape: [0, 5, 5, 2], data: [], requiresGrad: true)
            let w = Tensor(shape: [3, k, k, 2], repeating: 1, requiresGrad: true)
            let b = Tensor(shape: [3], repeating: 1, requiresGrad: true)
            let y = try conv2d(x, weight: w, bias: b, stride: s, padding: p)
            XCTAssertEqual(y.shape[0], 0)
            XCTAssertTrue(y.requiresGrad)
            Tape.backward(y, seed: Tensor(shape: y.shape, data: []))
            XCTAssertEqual(w.grad?.array, [Float](repeating: 0, count: w.count))
            XCTAssertEqual(b.grad?.array, [0, 0, 0])
        }
    }

    func testWeightGradientOnlyWhenInputIsData() throws {
        let c = cases[1]
        let (x, w, b) = make(c, seed: 4)
        w.requiresGrad = true
        let y = try conv2d(x, weight: w, bias: b, stride: c.stride, padding: c.padding)
        Tape.backward(y, seed: Tensor(shape: y.shape, repeating: 1))
        XCTAssertNil(x.grad)
        XCTAssertEqual(w.grad?.shape, w.shape)
    }

    func testShapeErrorsNameBothShapes() {
        let x = Tensor.zeros([1, 4, 4, 3])
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([2, 3, 3, 2]), bias: nil, stride: 1, padding: 0)) {
            XCTAssertEqual("\($0)", "conv2d: shape mismatch between [1, 4, 4, 3] and [2, 3, 3, 2]")
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([2, 3, 3, 3]), bias: Tensor.zeros([3]),
                                        stride: 1, padding: 0)) {
            XCTAssertEqual("\($0)", "conv2d (bias vs weight): shape mismatch between [3] and [2, 3, 3, 3]")
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([2, 5, 5, 3]), bias: nil, stride: 1, padding: 0)) {
            XCTAssertTrue("\($0)".hasPrefix("conv2d: kernel 5×5 with padding 0 does not fit input 4×4"), "\($0)")
        }
        XCTAssertThrowsError(try conv2d(x, weight: Tensor.zeros([2, 3, 3, 3]), bias: nil, stride: 0, padding: 0))
    }

    /// A sample's forward output and input gradient do not depend on the other samples of the batch,
    /// for every geometry and algorithm: their GEMMs are row-invariant (docs/ops.md). Exact equality.
    func testASamplesRowsDoNotDependOnItsBatchMates() throws {
        let cases: [(k: Int, stride: Int, padding: Int, alg: ConvAlgorithm)] = [
            (3, 1, 1, .direct), (3, 2, 1, .direct), (1, 1, 0, .direct), (1, 2, 0, .direct),
            (3, 1, 1, .winograd2), (3, 1, 1, .winograd4)]
        for c in cases {
            var rng = KDRandom(keys: 21, UInt64(c.k * 10 + c.stride))
            let x = Tensor.randn([5, 9, 9, 6], rng: &rng)
            let w = Tensor.randn([7, c.k, c.k, 6], rng: &rng), b = Tensor.randn([7], rng: &rng)
            func run(_ samples: [Int]) throws -> (y: [[Float]], dx: [[Float]]) {
                let per = 9 * 9 * 6
                let xs = Tensor(uninitializedShape: [samples.count, 9, 9, 6], requiresGrad: true)
                for (j, k) in samples.enumerated() { (xs.ptr + j * per).update(from: x.ptr + k * per, count: per) }
                Tape.reset()
                let y = try conv2d(xs, weight: w, bias: b, stride: c.stride, padding: c.padding, algorithm: c.alg)
                let outPer = y.count / samples.count
                let seed = Tensor(uninitializedShape: y.shape)
                for (j, k) in samples.enumerated() {   // dY of sample k: the same values wherever it sits
                    for t in 0..<outPer { seed.ptr[j * outPer + t] = Float((k * outPer + t) % 13) * 0.1 - 0.6 }
                }
                Tape.backward(sum(try mul(y, seed)))
                let gx = try XCTUnwrap(xs.grad)
                defer { Tape.reset() }
                let ys = samples.indices.map { Array(UnsafeBufferPointer(start: y.ptr + $0 * outPer, count: outPer)) }
                return (ys, samples.indices.map { Array(UnsafeBufferPointer(start: gx.ptr + $0 * per, count: per)) })
            }
            let all = try run([0, 1, 2, 3, 4])
            for order in [[3], [4, 1], [2, 0, 4, 1, 3]] {
                let sub = try run(order)
                for (j, k) in order.enumerated() {
                    XCTAssertEqual(sub.y[j], all.y[k], "\(c): output of sample \(k) at \(j) of \(order)")
                    XCTAssertEqual(sub.dx[j], all.dx[k], "\(c): dx of sample \(k) at \(j) of \(order)")
                }
            }
        }
    }
}
