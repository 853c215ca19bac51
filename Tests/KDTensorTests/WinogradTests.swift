import XCTest
import KDKernels512
@testable import KDTensor

/// Error budget (docs/ops.md, "Error bound"): with unit roundoff u = 2⁻²⁴, a float sum of K = 9·Cin
/// products in any order is within K·u·Σ|x·w| of the exact value. Winograd computes the same sum through
/// the transforms, whose rounding is amplified by the transforms' norms: every output is a combination
/// of α² GEMM results with |Aᵀ|-weights, each of those a Cin-term dot product of transformed values
/// whose magnitudes exceed |d|·|g| by at most ‖Bᵀ‖∞²·‖G‖∞² (row sums of |entries|). Hence
/// `|Δ| ≤ γ · K · u · S` with the amplification γ = (‖Aᵀ‖∞·‖Bᵀ‖∞·‖G‖∞)² bounded by
/// 3²·2²·1.5² = 81 for F(2,3) (‖Aᵀ‖∞ = 3, ‖Bᵀ‖∞ = 2, ‖G‖∞ = 1.5)
/// and (19·10·1)² ≈ 3.6·10⁴ for F(4,3). These are worst-case bounds (errors of random sign add
/// like √K, not K); the tests assert them as stated, which a wrong transform (an O(1) error) fails
/// by orders of magnitude.
private func winogradErrorBound(_ v: WinogradVariant, cin: Int, absSum: Double) -> Double {
    let u = 0x1p-24, gamma: Double = v == .f2 ? 81 : 36_100
    return gamma * Double(9 * cin + 4) * u * absSum
}

/// Reference weight gradient in Double,
/// `dW[o, ki, kj, c] = Σ_{n,i,j} dY[n, i, j, o]·x[n, i − p + ki, j − p + kj, c]`, and `S` = the largest
/// `Σ |dY·x|` of one entry (the scale of any summation order's rounding error).
private func referenceWeightGradient(_ x: Tensor, _ gy: Tensor, padding p: Int) -> (values: [Double], absSum: Double) {
    let (n, h, wd, cin) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (ho, wo, cout) = (gy.shape[1], gy.shape[2], gy.shape[3])
    var out = [Double](repeating: 0, count: cout * 9 * cin), abs = out
    for i in 0..<n { for oh in 0..<ho { for ow in 0..<wo { for o in 0..<cout {
        let dy = Double(gy.ptr[((i * ho + oh) * wo + ow) * cout + o])
        for ki in 0..<3 { for kj in 0..<3 {
            let ih = oh - p + ki, iw = ow - p + kj
            if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
            for c in 0..<cin {
                let t = dy * Double(x.ptr[((i * h + ih) * wd + iw) * cin + c])
                let e = ((o * 3 + ki) * 3 + kj) * cin + c
                out[e] += t; abs[e] += Swift.abs(t)
            }
        } }
    } } } }
    return (out, abs.max() ?? 0)
}

/// The weight gradient's error budget, as the forward's (`winogradErrorBound`) with the sum's K terms =
/// the outputs N·Ho·Wo and the transforms `A` (‖A‖∞ = 2 for F(2,3), 15 for F(4,3)), `Bᵀ` and `Gᵀ`
/// (‖Gᵀ‖∞ = 2 and 5/3): γ = (2·2·2)² = 64 and (15·10·5/3)² = 62 500.
private func winogradWeightGradientBound(_ v: WinogradVariant, outputs: Int, absSum: Double) -> Double {
    let u = 0x1p-24, gamma: Double = v == .f2 ? 64 : 62_500
    return gamma * Double(outputs + 4) * u * absSum
}

final class WinogradTests: XCTestCase {
    struct Shape { var n, h, w, cin, cout, padding: Int }
    // Odd H/W (cropped last tiles), channels not multiples of 8 (vector tails), batch 1 and many,
    // padding 0, 1, 2, images smaller than one tile.
    let shapes: [Shape] = [
        Shape(n: 1, h: 5, w: 7, cin: 3, cout: 4, padding: 1),
        Shape(n: 3, h: 9, w: 6, cin: 10, cout: 13, padding: 1),
        Shape(n: 2, h: 8, w: 8, cin: 16, cout: 8, padding: 1),
        Shape(n: 1, h: 6, w: 5, cin: 5, cout: 3, padding: 0),
        Shape(n: 2, h: 3, w: 3, cin: 9, cout: 11, padding: 2),
        Shape(n: 5, h: 11, w: 13, cin: 17, cout: 24, padding: 1),
        Shape(n: 1, h: 2, w: 2, cin: 8, cout: 8, padding: 1),
        Shape(n: 0, h: 4, w: 4, cin: 8, cout: 8, padding: 1),
    ]

    func make(_ s: Shape, seed: UInt64) -> (Tensor, Tensor, Tensor) {
        (randomTensor([s.n, s.h, s.w, s.cin], seed: seed),
         randomTensor([s.cout, 3, 3, s.cin], seed: seed + 1000, std: 0.3),
         randomTensor([s.cout], seed: seed + 2000))
    }

    func testTransformsAreExactOnIntegers() throws {
        // Small integers and a filter of multiples of 1/8·…: every product and transform step is
        // exact in float for F(2,3) (entries ±1, ±½), so the result equals the integer convolution.
        let x = Tensor(shape: [1, 4, 5, 2], data: (0..<40).map { Float(($0 * 7) % 11) - 5 })
        let w = Tensor(shape: [3, 3, 3, 2], data: (0..<54).map { Float(($0 * 5) % 9) - 4 })
        let y = try winogradConv2d(x, weight: w, bias: nil, padding: 1, variant: .f2)
        let r = referenceConv(x, w, nil, stride: 1, padding: 1)
        XCTAssertEqual(y.shape, [1, 4, 5, 3])
        XCTAssertEqual(y.array, r.values.map(Float.init))
    }

    func testFilterTransformMatchesScalarProduct() {
        // U = G g Gᵀ as the plain matrix product in Double (the header's G), rounded once: the vectorised
        // transform does the same operations in the same order, so the banks agree exactly, for both
        // orientations and channel counts that leave vector tails, one panel (16 columns) or several; the
        // columns of the last panel past Cout are 0 (the GEMM reads them).
        let g2: [[Double]] = [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
        let g4: [[Double]] = [[0.25, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                              [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]
        for v in WinogradVariant.allCases {
            let gm = v == .f2 ? g2 : g4, a = v.alpha
            for (cout, cin) in [(11, 5), (3, 17), (16, 8), (40, 3)] {
                let w = randomTensor([cout, 3, 3, cin], seed: UInt64(cout * 100 + cin), std: 0.3)
                for flip in [false, true] {
                    let f = WinogradFilter(weight: w.ptr, cout: cout, cin: cin, variant: v, flipTransposed: flip)
                    let (inC, outC) = flip ? (cout, cin) : (cin, cout)
                    XCTAssertEqual([f.cin, f.cout], [inC, outC])
                    for o in 0..<cout { for c in 0..<cin {
                        // g[ki][kj] of the bank's filter (row, col) = (c, o), or (o, c) flipped.
                        let g = (0..<3).map { ki in (0..<3).map { kj in
                            Double(flip ? w.ptr[((o * 3 + 2 - ki) * 3 + 2 - kj) * cin + c]
                                        : w.ptr[((o * 3 + ki) * 3 + kj) * cin + c])
                        } }
                        let (row, col) = flip ? (o, c) : (c, o)
                        for i in 0..<a { for j in 0..<a {
                            let t = (0..<3).map { k in gm[i][0] * g[0][k] + gm[i][1] * g[1][k] + gm[i][2] * g[2][k] }
                            let e = Float(t[0] * gm[j][0] + t[1] * gm[j][1] + t[2] * gm[j][2])
                            XCTAssertEqual(f.element(xi: i * a + j, row: row, col: col), e,
                                           "\(v) flip \(flip) o \(o) c \(c) ξ \(i * a + j)")
                        } }
                    } }
                    for xi in 0..<(a * a) { for row in 0..<inC { for col in outC..<((outC + 15) / 16 * 16) {
                        XCTAssertEqual(f.element(xi: xi, row: row, col: col), 0, "\(v) flip \(flip) padding column")
                    } } }
                }
            }
        }
    }

    func testForwardMatchesReference() throws {
        for v in WinogradVariant.allCases {
            for (i, s) in shapes.enumerated() {
                let (x, w, b) = make(s, seed: UInt64(i))
                let y = try winogradConv2d(x, weight: w, bias: b, padding: s.padding, variant: v)
                let ho = s.h + 2 * s.padding - 2, wo = s.w + 2 * s.padding - 2
                XCTAssertEqual(y.shape, [s.n, ho, wo, s.cout], "\(v) shape \(i)")
                let r = referenceConv(x, w, b, stride: 1, padding: s.padding)
                let bound = winogradErrorBound(v, cin: s.cin, absSum: r.absSum)
                var worst = 0.0
                for (a, e) in zip(y.array, r.values) { worst = max(worst, abs(Double(a) - e)) }
                XCTAssertLessThanOrEqual(worst, bound, "\(v) shape \(i): max |Δ| \(worst) > bound \(bound)")
                // The direct im2col convolution on the same data, through the dispatching entry point.
                let alg: ConvAlgorithm = v == .f2 ? .winograd2 : .winograd4
                let y2 = try conv2d(x, weight: w, bias: b, stride: 1, padding: s.padding, algorithm: alg)
                XCTAssertEqual(y2.array, y.array, "\(v) shape \(i): dispatch")
            }
        }
    }

    func testFusedEpilogue() throws {
        // out = relu(conv + b + residual), the residual aliasing the output buffer.
        let s = Shape(n: 2, h: 7, w: 9, cin: 12, cout: 10, padding: 1)
        let (x, w, b) = make(s, seed: 77)
        let res = randomTensor([2, 7, 9, 10], seed: 78)
        for v in WinogradVariant.allCases {
            let plain = try winogradConv2d(x, weight: w, bias: b, padding: 1, variant: v)
            let out = res.copy()
            let f = WinogradFilter(weight: w.ptr, cout: 10, cin: 12, variant: v)
            winogradConvolve(x.ptr, n: 2, h: 7, w: 9, padding: 1, filter: f, bias: b.ptr, residual: out.ptr,
                             relu: true, out: out.ptr)
            // Same transform and GEMM, then (y + b) + r and max(·, 0) in float: one extra rounding of
            // the residual add, ≤ u·|y + r| ≤ 1e-6 relative at these O(1–10) magnitudes.
            for i in 0..<out.count {
                let e = max(plain.ptr[i] + res.ptr[i], 0)
                XCTAssertEqual(out.ptr[i], e, accuracy: 1e-6 * max(1, abs(e)), "\(v) element \(i)")
            }
        }
    }

    func testSixteenLaneTransformsGiveTheSameBits() throws {
        // Where the CPU has AVX-512, F(4×4) transforms of 16-channel multiples run 16 lanes wide
        // (KDKernels512): the same operations per lane, so the same bits as 8 lanes — with bias, residual
        // (aliasing the output) and ReLU, tiles in the padding and cropped, and through the backward's dx and
        // dW (which use the same transforms). Elsewhere the wide path is never taken.
        guard CPUFeatures.hasAVX512 else {
            XCTAssertFalse(WinogradWorkspace.wideTransforms)
            return
        }
        let saved = WinogradWorkspace.wideTransforms
        defer { WinogradWorkspace.wideTransforms = saved }
        for (i, s) in [Shape(n: 2, h: 9, w: 7, cin: 16, cout: 32, padding: 1),
                       Shape(n: 1, h: 8, w: 8, cin: 32, cout: 16, padding: 0),
                       Shape(n: 3, h: 5, w: 6, cin: 48, cout: 16, padding: 2)].enumerated() {
            let (x, w, b) = make(s, seed: 900 + UInt64(i))
            let ho = s.h + 2 * s.padding - 2, wo = s.w + 2 * s.padding - 2
            let res = randomTensor([s.n, ho, wo, s.cout], seed: 950 + UInt64(i))
            let gy = randomTensor([s.n, ho, wo, s.cout], seed: 970 + UInt64(i))
            var results: [[[Float]]] = []
            for wide in [false, true] {
                WinogradWorkspace.wideTransforms = wide
                let out = res.copy()
                let f = WinogradFilter(weight: w.ptr, cout: s.cout, cin: s.cin, variant: .f4)
                winogradConvolve(x.ptr, n: s.n, h: s.h, w: s.w, padding: s.padding, filter: f, bias: b.ptr,
                                 residual: out.ptr, relu: true, out: out.ptr)
                for t in [x, w] { t.requiresGrad = true; t.grad = nil }
                Tape.reset()
                let y = try winogradConv2d(x, weight: w, bias: nil, padding: s.padding, variant: .f4)
                Tape.backward(y, seed: gy)
                results.append([out.array, y.array, x.grad!.array, w.grad!.array])
            }
            XCTAssertEqual(results[1], results[0], "shape \(i)")
        }
    }

    func testBorderTilesReadInPlaceGiveTheGatheredBits() {
        // An F(4×4) tile reaching past the image reads the positions inside it in place and zeros for the
        // others (`winograd4BorderInputTile`); it must give the bits of the same tile gathered into zeros
        // first and transformed as a whole, for every overhang (top, left, bottom, right, corners, a tile
        // wider than the image), 8 and 16 lanes. A position read from the wrong place, or a column skipped
        // where it should be read, changes the bits.
        func check<V: SIMD>(_: V.Type) where V.Scalar == Float {
            let lanes = V.scalarCount, h = 5, w = 7
            let image = randomTensor([h, w, lanes], seed: 31 + UInt64(lanes))
            let x = UnsafePointer(image.ptr)
            let tmp = UnsafeMutablePointer<V>.allocate(capacity: 36)
            let d = UnsafeMutablePointer<V>.allocate(capacity: 36)
            defer { tmp.deallocate(); d.deallocate() }
            func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
            func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
                UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
            }
            var gathered = [Float](repeating: 0, count: 36 * lanes), inPlace = gathered
            for ih0 in -2...3 {
                for iw0 in -2...5 {
                    d.update(repeating: V(), count: 36)
                    for i in 0..<6 where ih0 + i >= 0 && ih0 + i < h {
                        for j in 0..<6 where iw0 + j >= 0 && iw0 + j < w {
                            d[i * 6 + j] = load(x + ((ih0 + i) * w + iw0 + j) * lanes)
                        }
                    }
                    gathered.withUnsafeMutableBufferPointer { g in
                        winograd4InputTile(UnsafeRawPointer(d).assumingMemoryBound(to: Float.self), 6 * lanes, lanes,
                                           tmp, g.baseAddress!, lanes, store: store)
                    }
                    let rows = tileSpan(origin: ih0, size: 6, extent: h)
                    let cols = tileSpan(origin: iw0, size: 6, extent: w)
                    inPlace.withUnsafeMutableBufferPointer { o in
                        winograd4BorderInputTile(x, (ih0 * w + iw0) * lanes, w * lanes, lanes, rows: rows, cols: cols,
                                                 tmp, o.baseAddress!, lanes, load: load, store: store)
                    }
                    XCTAssertEqual(inPlace.map(\.bitPattern), gathered.map(\.bitPattern),
                                   "\(lanes) lanes, tile origin (\(ih0), \(iw0))")
                }
            }
        }
        check(SIMD8<Float>.self)
        check(SIMD16<Float>.self)
    }

    func testGradientsFiniteDifference() throws {
        // Float forward with ε = 1e-2 central differences: truncation O(ε²·f''') vanishes (the op is
        // bilinear), rounding ≈ u·|L|/ε ≈ 1e-4 relative; 1e-2 is the suite's float gradient tolerance.
        let small = [Shape(n: 2, h: 5, w: 4, cin: 3, cout: 5, padding: 1),
                     Shape(n: 1, h: 6, w: 7, cin: 9, cout: 2, padding: 0),
                     Shape(n: 1, h: 3, w: 5, cin: 2, cout: 3, padding: 2)]
        for v in WinogradVariant.allCases {
            for (i, s) in small.enumerated() {
                let (x, w, b) = make(s, seed: 300 + UInt64(i))
                assertGradients([x, w, b], "\(v) shape \(i)") { t in
                    try winogradConv2d(t[0], weight: t[1], bias: t[2], padding: s.padding, variant: v)
                }
            }
        }
    }

    func testGradientsMatchDirect() throws {
        // dx through the flipped-filter Winograd convolution vs the direct conv2d's backward, same seed:
        // both compute the same sums, so they agree to the forward error bound scaled by |dY|·|W|.
        for v in WinogradVariant.allCases {
            for (i, s) in shapes.enumerated() where s.n > 0 {
                let (x, w, b) = make(s, seed: 500 + UInt64(i))
                func grads(_ alg: ConvAlgorithm) throws -> [[Float]] {
                    for t in [x, w, b] { t.requiresGrad = true; t.grad = nil }
                    Tape.reset()
                    let y = try conv2d(x, weight: w, bias: b, stride: 1, padding: s.padding, algorithm: alg)
                    Tape.backward(y, seed: randomTensor(y.shape, seed: 9))
                    return [x, w, b].map { $0.grad!.array }
                }
                let direct = try grads(.direct), wino = try grads(v == .f2 ? .winograd2 : .winograd4)
                // dx: a 9·Cout-term sum of |dY|·|W| ≤ 4·0.3·3 per term (|N(0,1)| ≲ 4, |w| ≲ 3σ):
                // the forward bound with S = 9·Cout·3.6.
                let bound = winogradErrorBound(v, cin: s.cout, absSum: 9 * Double(s.cout) * 3.6)
                for (a, e) in zip(wino[0], direct[0]) {
                    XCTAssertEqual(Double(a), Double(e), accuracy: bound, "\(v) shape \(i): dx")
                }
                // dW: the same Σ over N·Ho·Wo outputs of |dY|·|x| ≤ 4·4 per term.
                let dwBound = winogradWeightGradientBound(v, outputs: s.n * s.h * s.w,
                                                          absSum: 16 * Double(s.n * s.h * s.w))
                for (a, e) in zip(wino[1], direct[1]) {
                    XCTAssertEqual(Double(a), Double(e), accuracy: dwBound, "\(v) shape \(i): dW")
                }
                // db takes the same column sums in both paths.
                XCTAssertEqual(wino[2], direct[2], "\(v) shape \(i): db")
            }
        }
    }

    func testWeightGradientMatchesReference() throws {
        // dW = Gᵀ [Σ_tiles (Bᵀ d B) ⊙ (A dY Aᵀ)] G against the Double sum, on the forward's shapes (cropped
        // tiles, channel tails, padding 0–2, an image smaller than a tile), the chunks small enough that
        // several add up, and through the backward.
        let saved = WinogradWorkspace.weightGradientMinTiles
        defer { WinogradWorkspace.weightGradientMinTiles = saved }
        for minTiles in [3, saved] {
            WinogradWorkspace.weightGradientMinTiles = minTiles
            for v in WinogradVariant.allCases {
                for (i, s) in shapes.enumerated() {
                    let (x, w, b) = make(s, seed: 700 + UInt64(i))
                    let ho = s.h + 2 * s.padding - 2, wo = s.w + 2 * s.padding - 2
                    let gy = randomTensor([s.n, ho, wo, s.cout], seed: 800 + UInt64(i))
                    let alg: ConvAlgorithm = v == .f2 ? .winograd2 : .winograd4
                    let dw = try conv3x3WeightGradient(x, outputGradient: gy, padding: s.padding, algorithm: alg)
                    XCTAssertEqual(dw.shape, [s.cout, 3, 3, s.cin])
                    let r = referenceWeightGradient(x, gy, padding: s.padding)
                    let bound = winogradWeightGradientBound(v, outputs: s.n * ho * wo, absSum: r.absSum)
                    var worst = 0.0
                    for (a, e) in zip(dw.array, r.values) { worst = max(worst, abs(Double(a) - e)) }
                    XCTAssertLessThanOrEqual(worst, bound, "\(v) shape \(i) chunks of \(minTiles): max |Δ| \(worst)")
                    if s.n == 0 { XCTAssertEqual(dw.array, [Float](repeating: 0, count: dw.count)) }
                    // The backward (weight only) accumulates the same gradient onto an existing one.
                    w.requiresGrad = true; w.grad = Tensor(shape: w.shape, repeating: 1); x.requiresGrad = false
                    Tape.reset()
                    let y = try winogradConv2d(x, weight: w, bias: b, padding: s.padding, variant: v)
                    Tape.backward(y, seed: gy)
                    XCTAssertEqual(w.grad!.array, dw.array.map { 1 + $0 }, "\(v) shape \(i): accumulated")
                    w.grad = nil; w.requiresGrad = false; x.requiresGrad = true
                }
            }
        }
    }

    func testWeightGradientIsExactOnIntegers() throws {
        // Small integers: Bᵀ and A have integer entries, so V = Bᵀ d B and dM = A dY Aᵀ are integers (|V| ≤
        // ‖Bᵀ‖∞²·5 = 500, |dM| ≤ ‖A‖∞²·3 = 675 for F(4,3)) and dU sums at most 9 tiles of them
        // exactly (< 2²⁴); Gᵀ dU G (36 terms, coefficients ≤ 1) is then the exact integer dW up to Double
        // rounding, ≤ 36·2·2⁻⁵³·2²⁴ ≈ 1.3e-7, which the rounding to Float removes except on a zero. A
        // wrong transform entry is off by a multiple of 1/576 (G's denominators squared) or more. Shapes: cropped
        // tiles, channel tails, padding 0–2.
        for v in WinogradVariant.allCases {
            for (i, s) in [Shape(n: 2, h: 5, w: 4, cin: 3, cout: 2, padding: 1),
                           Shape(n: 1, h: 9, w: 7, cin: 10, cout: 11, padding: 2),
                           Shape(n: 1, h: 6, w: 7, cin: 9, cout: 8, padding: 0)].enumerated() {
                let ho = s.h + 2 * s.padding - 2, wo = s.w + 2 * s.padding - 2
                let x = Tensor(shape: [s.n, s.h, s.w, s.cin],
                               data: (0..<(s.n * s.h * s.w * s.cin)).map { Float(($0 * 7) % 11) - 5 })
                let gy = Tensor(shape: [s.n, ho, wo, s.cout],
                                data: (0..<(s.n * ho * wo * s.cout)).map { Float(($0 * 5) % 7) - 3 })
                let alg: ConvAlgorithm = v == .f2 ? .winograd2 : .winograd4
                let dw = try conv3x3WeightGradient(x, outputGradient: gy, padding: s.padding, algorithm: alg)
                let ref = referenceWeightGradient(x, gy, padding: s.padding).values
                for (j, (a, e)) in zip(dw.array, ref).enumerated() {
                    XCTAssertEqual(Double(a), e, accuracy: 1e-6, "\(v) shape \(i) entry \(j)")
                }
            }
        }
    }

    func testRejectsNon3x3AndBadPadding() {
        let x = randomTensor([1, 4, 4, 2], seed: 1)
        assertThrowsMessage("winogradConv2d (needs a 3×3 weight): "
                            + "shape mismatch between [1, 4, 4, 2] and [3, 1, 1, 2]",
                            try winogradConv2d(x, weight: randomTensor([3, 1, 1, 2], seed: 2), bias: nil,
                                               padding: 0, variant: .f2))
        assertThrowsMessage("winogradConv2d: padding 3 must be 0…2 and the 3×3 kernel must fit input 4×4",
                            try winogradConv2d(x, weight: randomTensor([3, 3, 3, 2], seed: 2), bias: nil,
                                               padding: 3, variant: .f4))
    }
}
