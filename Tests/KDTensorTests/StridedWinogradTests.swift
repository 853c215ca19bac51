import XCTest
import KDKernels512
@testable import KDTensor

/// Error budget of F(4×4, 2×2) over the phases (docs/ops.md, "Error bound"): as F(m×m, 3×3)'s
/// (`WinogradTests`), `|Δ| ≤ γ·K·u·S` with the sum's K = 4 phases × 4 taps × Cin terms (7 of 16 taps are
/// zero) and γ = (‖Aᵀ‖∞·‖Bᵀ‖∞·‖G‖∞)² = (11·6·1)² = 4356 (max row sums of |entries| of the
/// header's matrices). A worst case: a wrong transform (an O(1) error) fails it by orders of magnitude.
private func stridedErrorBound(cin: Int, absSum: Double) -> Double {
    0x1p-24 * 4356 * Double(16 * cin + 4) * absSum
}

final class StridedWinogradTests: XCTestCase {
    struct Shape { var n, h, w, cin, cout: Int }
    // Even and odd sizes (cropped last tiles, a last phase row past the image), tiles all in the border,
    // one output pixel, several panels, an empty batch; channels multiples of 8 (the path's condition).
    let shapes: [Shape] = [
        Shape(n: 2, h: 16, w: 16, cin: 16, cout: 32),
        Shape(n: 1, h: 9, w: 13, cin: 8, cout: 8),
        Shape(n: 3, h: 10, w: 6, cin: 24, cout: 40),
        Shape(n: 2, h: 20, w: 18, cin: 32, cout: 16),
        Shape(n: 1, h: 2, w: 3, cin: 8, cout: 16),
        Shape(n: 1, h: 1, w: 1, cin: 8, cout: 8),
        Shape(n: 0, h: 8, w: 8, cin: 8, cout: 8),
    ]

    func make(_ s: Shape, seed: UInt64) -> (Tensor, Tensor, Tensor) {
        (randomTensor([s.n, s.h, s.w, s.cin], seed: seed),
         randomTensor([s.cout, 3, 3, s.cin], seed: seed + 1000, std: 0.3),
         randomTensor([s.cout], seed: seed + 2000))
    }

    func run(_ x: Tensor, _ w: Tensor, _ b: Tensor?, residual: Tensor? = nil, relu: Bool = false) -> Tensor {
        let (n, h, wd, cin, cout) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0])
        let out = residual?.copy() ?? Tensor(uninitializedShape: [n, (h - 1) / 2 + 1, (wd - 1) / 2 + 1, cout])
        let f = StridedWinogradFilter(weight: w.ptr, cout: cout, cin: cin)
        stridedWinogradConvolve(x.ptr, n: n, h: h, w: wd, filter: f, bias: b?.ptr,
                                residual: residual == nil ? nil : out.ptr, relu: relu, out: out.ptr)
        return out
    }

    func testForwardMatchesReference() throws {
        for (i, s) in shapes.enumerated() {
            let (x, w, b) = make(s, seed: UInt64(i))
            let y = run(x, w, b)
            XCTAssertEqual(y.shape, [s.n, (s.h - 1) / 2 + 1, (s.w - 1) / 2 + 1, s.cout], "shape \(i)")
            let r = referenceConv(x, w, b, stride: 2, padding: 1)
            let bound = stridedErrorBound(cin: s.cin, absSum: r.absSum)
            var worst = 0.0
            for (a, e) in zip(y.array, r.values) { worst = max(worst, abs(Double(a) - e)) }
            XCTAssertLessThanOrEqual(worst, bound, "shape \(i): max |Δ| \(worst) > bound \(bound)")
            // Against the direct im2col convolution in float: both within their bounds of the exact sums.
            let direct = try conv2d(x, weight: w, bias: b, stride: 2, padding: 1)
            for (a, e) in zip(y.array, direct.array) {
                XCTAssertEqual(Double(a), Double(e), accuracy: 2 * bound, "shape \(i): against direct")
            }
        }
    }

    func testFilterBankMatchesScalarProduct() {
        // U = G K Gᵀ as the plain matrix product in Double (the header's G, K the phase's 2×2 taps), rounded
        // once: the vectorised bank does the same operations in the same order (its left-out zero terms add
        // exact zeros), so the banks agree exactly.
        let g: [[Double]] = [[0.5, 0], [-0.5, -0.5], [-1.0 / 6, 1.0 / 6], [1.0 / 6, 1.0 / 3], [0, 1]]
        for (cin, cout) in [(8, 8), (16, 24), (8, 40)] {
            let w = randomTensor([cout, 3, 3, cin], seed: UInt64(cin * 100 + cout), std: 0.3)
            let f = StridedWinogradFilter(weight: w.ptr, cout: cout, cin: cin)
            for o in 0..<cout { for c in 0..<cin { for p in 0..<2 { for q in 0..<2 {
                func tap(_ du: Int, _ dv: Int) -> Double {
                    let a = p == 0 ? (du == 0 ? -1 : 1) : (du == 0 ? 0 : 2)
                    let b = q == 0 ? (dv == 0 ? -1 : 1) : (dv == 0 ? 0 : 2)
                    return a < 0 || b < 0 ? 0 : Double(w.ptr[((o * 3 + a) * 3 + b) * cin + c])
                }
                for k in 0..<5 { for l in 0..<5 {
                    // (G K)[k][dv] first, then · G[l][dv], as the bank's column-then-row order.
                    func gk(_ dv: Int) -> Double { g[k][0] * tap(0, dv) + g[k][1] * tap(1, dv) }
                    let u = gk(0) * g[l][0] + gk(1) * g[l][1]
                    XCTAssertEqual(f.element(xi: 5 * k + l, row: (2 * p + q) * cin + c, col: o), Float(u),
                                   "cin \(cin) cout \(cout) o \(o) c \(c) ξ \(5 * k + l)")
                }
            } } } } }
        }
    }

    func testFusedEpilogue() {
        // out = relu(conv + b + residual), the residual aliasing the output buffer: the same transforms and
        // GEMMs, then (y + b) + r and max(·, 0) in float — one rounding of the residual add, ≤ u·|y + r|.
        let s = Shape(n: 2, h: 11, w: 9, cin: 16, cout: 24)
        let (x, w, b) = make(s, seed: 77)
        let res = randomTensor([2, 6, 5, 24], seed: 78)
        let plain = run(x, w, b)
        let out = run(x, w, b, residual: res, relu: true)
        for i in 0..<out.count {
            let e = max(plain.ptr[i] + res.ptr[i], 0)
            XCTAssertEqual(out.ptr[i], e, accuracy: 1e-6 * max(1, abs(e)), "element \(i)")
        }
    }

    func testSixteenLaneTransformsGiveTheSameBits() {
        // Where the CPU has AVX-512, channel counts that are multiples of 16 run 16 lanes wide: the same
        // operations per lane, so the same bits as 8 lanes (with bias, residual aliasing the output, ReLU,
        // border and cropped tiles).
        guard CPUFeatures.hasAVX512 else { XCTAssertFalse(WinogradWorkspace.wideTransforms); return }
        let saved = WinogradWorkspace.wideTransforms
        defer { WinogradWorkspace.wideTransforms = saved }
        for (i, s) in [Shape(n: 2, h: 17, w: 14, cin: 16, cout: 32), Shape(n: 1, h: 8, w: 8, cin: 32, cout: 48),
                       Shape(n: 3, h: 6, w: 10, cin: 48, cout: 16)].enumerated() {
            let (x, w, b) = make(s, seed: 900 + UInt64(i))
            let res = randomTensor([s.n, (s.h - 1) / 2 + 1, (s.w - 1) / 2 + 1, s.cout], seed: 950 + UInt64(i))
            var results: [[Float]] = []
            for wide in [false, true] {
                WinogradWorkspace.wideTransforms = wide
                results.append(run(x, w, b, residual: res, relu: true).array)
            }
            XCTAssertEqual(results[1], results[0], "shape \(i)")
        }
    }

    func testBorderTilesReadInPlaceGiveTheGatheredBits() {
        // A phase's 5×5 window that reaches past the image is read in place, zeros outside
        // (`stridedWinogradBorderInputTile`): the bits of the same window gathered into zeros first and
        // transformed whole, for every overhang and stride-2 sampling of the window, 8 and 16 lanes.
        func check<V: SIMD>(_: V.Type) where V.Scalar == Float {
            let lanes = V.scalarCount, h = 7, w = 9
            let image = randomTensor([h, w, lanes], seed: 61 + UInt64(lanes))
            let x = UnsafePointer(image.ptr)
            let tmp = UnsafeMutablePointer<V>.allocate(capacity: 25)
            let d = UnsafeMutablePointer<V>.allocate(capacity: 25)
            defer { tmp.deallocate(); d.deallocate() }
            var gathered = [Float](repeating: 0, count: 25 * lanes), inPlace = gathered
            for rh in -3...4 {
                for rw in -3...6 {
                    // Positions rh + 2u, rw + 2v (u, v < 5), as the forward's phases sample the input.
                    d.update(repeating: V(), count: 25)
                    for u in 0..<5 where rh + 2 * u >= 0 && rh + 2 * u < h {
                        for v in 0..<5 where rw + 2 * v >= 0 && rw + 2 * v < w {
                            d[u * 5 + v] = UnsafeRawPointer(x + ((rh + 2 * u) * w + rw + 2 * v) * lanes)
                                .loadUnaligned(as: V.self)
                        }
                    }
                    gathered.withUnsafeMutableBufferPointer { g in
                        stridedWinogradInputTile(UnsafeRawPointer(d).assumingMemoryBound(to: Float.self), 5 * lanes,
                                                 lanes, tmp, g.baseAddress!, lanes)
                    }
                    let uLo = max(0, (1 - rh) / 2), uHi = max(uLo, min(5, (h - rh + 1) / 2))
                    let vLo = max(0, (1 - rw) / 2), vHi = max(vLo, min(5, (w - rw + 1) / 2))
                    inPlace.withUnsafeMutableBufferPointer { o in
                        stridedWinogradBorderInputTile(x, (rh * w + rw) * lanes, 2 * w * lanes, 2 * lanes,
                                                       rows: uLo..<uHi, cols: vLo..<vHi, tmp, o.baseAddress!, lanes)
                    }
                    XCTAssertEqual(inPlace.map(\.bitPattern), gathered.map(\.bitPattern),
                                   "\(lanes) lanes, window origin (\(rh), \(rw))")
                }
            }
        }
        check(SIMD8<Float>.self)
        check(SIMD16<Float>.self)
    }

    func testRowInvariant() {
        // A tile's products do not depend on its chunk: each image alone gives the bits of the whole batch,
        // also with chunks of a few tiles.
        let s = Shape(n: 5, h: 16, w: 12, cin: 16, cout: 16)
        let (x, w, b) = make(s, seed: 5)
        let whole = run(x, w, b)
        let saved = WinogradWorkspace.minTiles, savedTarget = WinogradWorkspace.targetElements
        defer { WinogradWorkspace.minTiles = saved; WinogradWorkspace.targetElements = savedTarget }
        WinogradWorkspace.minTiles = 3; WinogradWorkspace.targetElements = 1
        let per = 16 * 12 * 16, outPer = 8 * 6 * 16
        for img in 0..<s.n {
            let one = Tensor(shape: [1, 16, 12, 16], data: Array(x.array[(img * per)..<((img + 1) * per)]))
            let y = run(one, w, b)
            XCTAssertEqual(y.array, Array(whole.array[(img * outPer)..<((img + 1) * outPer)]), "image \(img)")
        }
    }
}

final class StridedWinogradGradientTests: XCTestCase {
    func testGradientsFiniteDifference() throws {
        // Float forward with ε = 1e-2 central differences: truncation O(ε²·f''') vanishes (the op is bilinear),
        // rounding ≈ u·|L|/ε ≈ 1e-4 relative; 1e-2 is the suite's float gradient tolerance.
        for (i, (n, h, w, cin, cout)) in [(2, 5, 6, 8, 8), (1, 8, 3, 16, 8)].enumerated() {
            let x = randomTensor([n, h, w, cin], seed: 300 + UInt64(i))
            let wt = randomTensor([cout, 3, 3, cin], seed: 310 + UInt64(i), std: 0.3)
            let b = randomTensor([cout], seed: 320 + UInt64(i))
            assertGradients([x, wt, b], "shape \(i)") { t in try stridedWinogradConv2d(t[0], weight: t[1], bias: t[2]) }
        }
    }

    /// `dx[n, y, x, c] = Σ dY[n, i, j, o]·w[o, y − 2i + 1, x − 2j + 1, c]` in Double, and `S` = the largest
    /// `Σ |dY·w|` of one entry.
    func referenceInputGradient(_ gy: Tensor, _ w: Tensor, h: Int, w wd: Int) -> (values: [Double], absSum: Double) {
        let (n, ho, wo, cout) = (gy.shape[0], gy.shape[1], gy.shape[2], gy.shape[3]), cin = w.shape[3]
        var out = [Double](repeating: 0, count: n * h * wd * cin), abs = out
        for i in 0..<n { for oh in 0..<ho { for ow in 0..<wo { for o in 0..<cout {
            let dy = Double(gy.ptr[((i * ho + oh) * wo + ow) * cout + o])
            for ki in 0..<3 { for kj in 0..<3 {
                let ih = 2 * oh - 1 + ki, iw = 2 * ow - 1 + kj
                if ih < 0 || ih >= h || iw < 0 || iw >= wd { continue }
                for c in 0..<cin {
                    let t = dy * Double(w.ptr[((o * 3 + ki) * 3 + kj) * cin + c])
                    let e = ((i * h + ih) * wd + iw) * cin + c
                    out[e] += t; abs[e] += Swift.abs(t)
                }
            } }
        } } } }
        return (out, abs.max() ?? 0)
    }

    func testInputGradientMatchesReference() throws {
        // dx by F(4×4, 2×2) over dY: within the forward's bound with the sum's K = 4·Cout terms (an entry of dx
        // sums at most 4 taps × Cout outputs) and the same γ; written when fresh, added onto an existing
        // gradient otherwise; every pixel covered (odd sizes: the last phase row and column past the image).
        for (i, (n, h, w, cin, cout)) in [(2, 16, 16, 16, 32), (1, 9, 13, 8, 8), (3, 10, 6, 24, 40),
                                          (1, 1, 1, 8, 8), (2, 5, 7, 16, 16)].enumerated() {
            let gy = randomTensor([n, (h - 1) / 2 + 1, (w - 1) / 2 + 1, cout], seed: 600 + UInt64(i))
            let wt = randomTensor([cout, 3, 3, cin], seed: 610 + UInt64(i), std: 0.3)
            let bank = StridedWinogradFilter(weight: wt.ptr, cout: cout, cin: cin, inputGradient: true)
            let gx = Tensor(shape: [n, h, w, cin], repeating: .nan)   // every value must be written
            stridedWinogradInputGradient(gy.ptr, n: n, h: h, w: w, filter: bank, accumulate: false, into: gx.ptr)
            let r = referenceInputGradient(gy, wt, h: h, w: w)
            let bound = 0x1p-24 * 4356 * Double(4 * cout + 4) * r.absSum
            var worst = 0.0
            for (a, e) in zip(gx.array, r.values) { worst = max(worst, abs(Double(a) - e)) }
            XCTAssertLessThanOrEqual(worst, bound, "shape \(i): max |Δ| \(worst) > bound \(bound)")
            let base = randomTensor([n, h, w, cin], seed: 620 + UInt64(i)), sum = base.copy()
            stridedWinogradInputGradient(gy.ptr, n: n, h: h, w: w, filter: bank, accumulate: true, into: sum.ptr)
            for j in 0..<sum.count { XCTAssertEqual(sum.ptr[j], base.ptr[j] + gx.ptr[j], "shape \(i) accumulate \(j)") }
        }
    }

    func testInputGradientBankMatchesScalarProduct() {
        // The input gradient's bank, U = G K' Gᵀ with K' the phase's taps at offsets 0, +1 (phase 0: [w₁, 0],
        // phase 1: [w₂, w₀]), as the plain product in Double rounded once: exactly the bank's values.
        let g: [[Double]] = [[0.5, 0], [-0.5, -0.5], [-1.0 / 6, 1.0 / 6], [1.0 / 6, 1.0 / 3], [0, 1]]
        let (cin, cout) = (16, 8)
        let w = randomTensor([cout, 3, 3, cin], seed: 42, std: 0.3)
        let f = StridedWinogradFilter(weight: w.ptr, cout: cout, cin: cin, inputGradient: true)
        for o in 0..<cout { for c in 0..<cin { for p in 0..<2 { for q in 0..<2 {
            func index(_ phase: Int, _ d: Int) -> Int { phase == 0 ? (d == 0 ? 1 : -1) : (d == 0 ? 2 : 0) }
            func tap(_ du: Int, _ dv: Int) -> Double {
                let a = index(p, du), b = index(q, dv)
                return a < 0 || b < 0 ? 0 : Double(w.ptr[((o * 3 + a) * 3 + b) * cin + c])
            }
            for k in 0..<5 { for l in 0..<5 {
                func gk(_ dv: Int) -> Double { g[k][0] * tap(0, dv) + g[k][1] * tap(1, dv) }
                let u = gk(0) * g[l][0] + gk(1) * g[l][1]
                XCTAssertEqual(f.element(xi: 5 * k + l, row: o, col: (2 * p + q) * cin + c), Float(u), "o \(o) c \(c)")
            } }
        } } } }
    }

    func testInputGradientSixteenLanesGiveTheSameBits() {
        guard CPUFeatures.hasAVX512 else { return }
        let saved = WinogradWorkspace.wideTransforms
        defer { WinogradWorkspace.wideTransforms = saved }
        let gy = randomTensor([2, 9, 7, 32], seed: 1), wt = randomTensor([32, 3, 3, 16], seed: 2, std: 0.3)
        let bank = StridedWinogradFilter(weight: wt.ptr, cout: 32, cin: 16, inputGradient: true)
        var results: [[Float]] = []
        for wide in [false, true] {
            WinogradWorkspace.wideTransforms = wide
            let gx = randomTensor([2, 17, 14, 16], seed: 3)
            stridedWinogradInputGradient(gy.ptr, n: 2, h: 17, w: 14, filter: bank, accumulate: true, into: gx.ptr)
            results.append(gx.array)
        }
        XCTAssertEqual(results[1], results[0])
    }

    func testDispatchAndBackward() throws {
        // `conv2d(…, algorithm: .winograd4)` on a stride-2 3×3 layer runs the strided Winograd convolution; its
        // weight and bias gradients are the direct convolution's (the same bits), its input gradient F(4×4, 2×2)
        // over dY (within the bound above of the direct's). F(2×2) does not apply at stride 2: direct, bit for bit.
        let x = randomTensor([3, 10, 7, 16], seed: 1), w = randomTensor([24, 3, 3, 16], seed: 2, std: 0.3)
        let b = randomTensor([24], seed: 3), gy = randomTensor([3, 5, 4, 24], seed: 4)
        func run(_ alg: ConvAlgorithm?) throws -> [[Float]] {
            for t in [x, w, b] { t.requiresGrad = true; t.grad = nil }
            Tape.reset()
            let y = try alg.map { try conv2d(x, weight: w, bias: b, stride: 2, padding: 1, algorithm: $0) }
                ?? stridedWinogradConv2d(x, weight: w, bias: b)
            Tape.backward(y, seed: gy)
            return [y.array, x.grad!.array, w.grad!.array, b.grad!.array]
        }
        let strided = try run(nil), dispatched = try run(.winograd4)
        let direct = try run(.direct), f2 = try run(.winograd2)
        XCTAssertEqual(dispatched, strided)
        XCTAssertEqual(Array(strided[2...]), Array(direct[2...]), "dW and db: the direct backward's")
        XCTAssertNotEqual(strided[0], direct[0], "the forward is not the direct one")
        XCTAssertNotEqual(strided[1], direct[1], "nor the input gradient")
        let r = referenceInputGradient(gy, w, h: 10, w: 7)
        let bound = 0x1p-24 * 4356 * Double(4 * 24 + 4) * r.absSum
        for (a, e) in zip(strided[1], direct[1]) { XCTAssertEqual(Double(a), Double(e), accuracy: 2 * bound) }
        XCTAssertEqual(f2, direct)
        // Channels not multiples of 8: winograd4 falls back to direct.
        let x3 = randomTensor([1, 6, 6, 3], seed: 5), w3 = randomTensor([8, 3, 3, 3], seed: 6)
        XCTAssertEqual(try conv2d(x3, weight: w3, bias: nil, stride: 2, padding: 1, algorithm: .winograd4).array,
                       try conv2d(x3, weight: w3, bias: nil, stride: 2, padding: 1).array)
        XCTAssertThrowsError(try stridedWinogradConv2d(x3, weight: w3, bias: nil))
    }
}
