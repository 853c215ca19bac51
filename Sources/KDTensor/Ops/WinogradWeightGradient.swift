// The weight gradient of a stride-1 3×3 convolution by Winograd F(m×m, 3×3) (Lavin & Gray 2016, §4):
// the forward `Y = Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A` is linear in `U = G g Gᵀ`, so with `V = Bᵀ d B` (the
// forward's input transform) and `dM = A dY Aᵀ` (the transpose of the output transform, on the m×m tile
// of `dY`, zeros where the tile is cropped)
//
//     dU_ξ[Cin, Cout] = Σ_tiles V_ξᵀ · dM_ξ            (α² GEMMs, inner size = tiles)
//     dW[o, ·, ·, c]  = Gᵀ dU[c, o] G                   (3×3 from α×α, in Double)
//
// α²/(9m²) of the direct weight gradient's multiplications (`dW = dYᵀ · im2col(x)`): 16/36 for F(2×2),
// 36/144 for F(4×4). Error growth as the forward's with `A` in place of `Aᵀ` and `Gᵀ` in place of
// `G` (docs/ops.md, "Error bound").

/// `A` of F(2,3) on the 2 values of a column or row of an output-gradient tile (the transpose of `Aᵀ`).
@inline(__always)
func winogradA2(_ y0: WVec, _ y1: WVec) -> (WVec, WVec, WVec, WVec) { (y0, y0 + y1, y0 - y1, -y1) }

/// `A` of F(4,3) on 4 values: rows 1, 2 are `(y0 + y2) ± (y1 + y3)`, rows 3, 4 `(y0 + 4y2) ± (2y1 + 8y3)`.
@inline(__always)
func winogradA4(_ y0: WVec, _ y1: WVec, _ y2: WVec, _ y3: WVec) -> (WVec, WVec, WVec, WVec, WVec, WVec) {
    let two: Float = 2, four: Float = 4, eight: Float = 8
    let s = y0 + y2, t = y1 + y3, u = y0 + four * y2, v = two * y1 + eight * y3
    return (y0, s + t, s - t, u + v, u - v, y3)
}

/// `Gᵀ` of F(m, 3) on α strided Double vectors `p[0], p[s], …`, 3 results to `q[0], q[t], q[2t]`:
/// row k is `Σ_ξ G[ξ][k]·p[ξ]` with the zero terms left out (G as in `Winograd.swift`'s header).
@inline(__always)
func winogradGT(_ v: WinogradVariant, _ p: UnsafePointer<WDVec>, _ s: Int, _ q: UnsafeMutablePointer<WDVec>,
                _ t: Int) {
    switch v {
    case .f2:
        let h = 0.5, x0 = p[0], x1 = p[s], x2 = p[2 * s], x3 = p[3 * s]
        q[0] = x0 + h * x1 + h * x2; q[t] = h * x1 - h * x2; q[2 * t] = h * x1 + h * x2 + x3
    case .f4:
        let sixth = 1.0 / 6, twelfth = 1.0 / 12, twentyFourth = 1.0 / 24
        let x0 = p[0], x1 = p[s], x2 = p[2 * s], x3 = p[3 * s], x4 = p[4 * s], x5 = p[5 * s]
        q[0] = 0.25 * x0 - sixth * x1 - sixth * x2 + twentyFourth * x3 + twentyFourth * x4
        q[t] = -sixth * x1 + sixth * x2 + twelfth * x3 - twelfth * x4
        q[2 * t] = -sixth * x1 - sixth * x2 + sixth * x3 + sixth * x4 + x5
    }
}

/// `dM = A dY Aᵀ` of one output-gradient tile: `dY[i][j]` is the 8 floats at `src + i·rs + j·cs` (all
/// m×m of them: the caller gathers cropped tiles into zeros), `dM[ξ]` goes to the first `cnt` lanes at
/// `dst + ξ·xs`. Columns `A dY` into `tmp` (α×m), rows `(A dY) Aᵀ` from `tmp` to `dst`.
@inline(__always)
func winogradOutputGradientTile(_ v: WinogradVariant, _ src: UnsafePointer<Float>, _ rs: Int, _ cs: Int,
                                _ tmp: UnsafeMutablePointer<WVec>, _ dst: UnsafeMutablePointer<Float>,
                                _ xs: Int, _ cnt: Int) {
    switch v {
    case .f2:
        for j in 0..<2 {
            let p = src + j * cs
            let r = winogradA2(loadVec8(p), loadVec8(p + rs))
            tmp[j] = r.0; tmp[2 + j] = r.1; tmp[4 + j] = r.2; tmp[6 + j] = r.3
        }
        for i in 0..<4 {
            let q = tmp + 2 * i, o = dst + 4 * i * xs
            let r = winogradA2(q[0], q[1])
            storeVec(r.0, o, cnt); storeVec(r.1, o + xs, cnt); storeVec(r.2, o + 2 * xs, cnt)
            storeVec(r.3, o + 3 * xs, cnt)
        }
    case .f4:
        for j in 0..<4 {
            let p = src + j * cs
            let r = winogradA4(loadVec8(p), loadVec8(p + rs), loadVec8(p + 2 * rs), loadVec8(p + 3 * rs))
            tmp[j] = r.0; tmp[4 + j] = r.1; tmp[8 + j] = r.2; tmp[12 + j] = r.3; tmp[16 + j] = r.4
            tmp[20 + j] = r.5
        }
        for i in 0..<6 {
            let q = tmp + 4 * i, o = dst + 6 * i * xs
            let r = winogradA4(q[0], q[1], q[2], q[3])
            storeVec(r.0, o, cnt); storeVec(r.1, o + xs, cnt); storeVec(r.2, o + 2 * xs, cnt)
            storeVec(r.3, o + 3 * xs, cnt); storeVec(r.4, o + 4 * xs, cnt); storeVec(r.5, o + 5 * xs, cnt)
        }
    }
}

/// Output-gradient transform `dM = A dY Aᵀ` of the batch's tiles `tiles` (`WinogradTiling` numbering) of
/// `dY` (`[n, ho, wo, cout]`) into `dm` (`layout`, the chunk's first tile at row 0). A whole tile with 8
/// channels is read in place; a cropped tile or a channel tail is gathered first into zeros in the
/// first m² vectors of `scratch` (m² + α·m vectors; `tmp` after them).
func winogradOutputGradientTransform(_ gy: UnsafePointer<Float>, cout: Int, tiling: WinogradTiling,
                                     tiles: Range<Int>, into dm: UnsafeMutablePointer<Float>,
                                     layout: WinogradLayout, scratch: UnsafeMutablePointer<WVec>) {
    let v = tiling.variant, m = v.m, ho = tiling.ho, wo = tiling.wo
    let d = scratch, tmp = scratch + m * m
    let dFloats = UnsafeRawPointer(d).assumingMemoryBound(to: Float.self)
    let zero = WVec(repeating: 0)
    for t in tiles {
        let (img, oh0, ow0) = tiling.origin(ofTile: t)
        let hi = min(m, ho - oh0), wi = min(m, wo - ow0)
        let base = gy + ((img * ho + oh0) * wo + ow0) * cout
        for k0 in stride(from: 0, to: cout, by: 8) {
            let cnt = min(8, cout - k0)
            let dst = dm + (t - tiles.lowerBound) * layout.row + k0
            if hi == m && wi == m && cnt == 8 {
                winogradOutputGradientTile(v, base + k0, wo * cout, cout, tmp, dst, layout.xi, 8)
                continue
            }
            d.update(repeating: zero, count: m * m)
            for i in 0..<hi { for j in 0..<wi { d[i * m + j] = loadVec(base + (i * wo + j) * cout + k0, cnt) } }
            winogradOutputGradientTile(v, dFloats, m * 8, 8, tmp, dst, layout.xi, cnt)
        }
    }
}

/// `dW[o, ki, kj, c] (+)= (Gᵀ dU[c, o] G)[ki][kj]` for every filter of the bank: `dU` is `[α², Cin, Cout]`
/// (row-major per ξ), `gw` the OHWI gradient `[Cout, 3, 3, Cin]`, written when `overwrite`, else added.
/// In Double on 8 output channels at once, each value rounded to Float once. In blocks of 16 input × 16
/// output channels: a block reads whole lines of `dU` (16 output channels of a row) and writes whole lines of
/// `dW` (16 input channels of a tap), where the loop over one input channel at a time wrote one float per line
/// across all of `dW` (a 256 × 256 layer's 2.4 MB, swept 256 times).
func winogradFilterGradient(_ du: UnsafePointer<Float>, cin: Int, cout: Int, variant: WinogradVariant,
                            into gw: UnsafeMutablePointer<Float>, overwrite: Bool) {
    let a = variant.alpha, a2 = a * a, plane = cin * cout
    let scratch = UnsafeMutablePointer<WDVec>.allocate(capacity: a2 + 3 * a + 9)
    defer { scratch.deallocate() }
    let x = scratch, t = scratch + a2, r = scratch + a2 + 3 * a
    for c0 in stride(from: 0, to: cin, by: 16) {
        for o16 in stride(from: 0, to: cout, by: 16) {
            for c in c0..<min(cin, c0 + 16) {
                for o0 in stride(from: o16, to: min(cout, o16 + 16), by: 8) {
                    let cnt = min(8, cout - o0)
                    for xi in 0..<a2 { x[xi] = WDVec(loadVec(du + xi * plane + c * cout + o0, cnt)) }
                    for j in 0..<a { winogradGT(variant, x + j, a, t + j, a) }       // t = Gᵀ dU (3×α)
                    for i in 0..<3 { winogradGT(variant, t + i * a, 1, r + i * 3, 1) } // r = t G (3×3)
                    for l in 0..<cnt {
                        let dst = gw + (o0 + l) * 9 * cin + c
                        for k in 0..<9 {
                            let value = Float(r[k][l])
                            dst[k * cin] = overwrite ? value : dst[k * cin] + value
                        }
                    }
                }
            }
        }
    }
}

/// `dW[Cout, 3, 3, Cin] (+)= ∂L/∂W` of a stride-1 3×3 convolution (`g`, padding ≤ 2) by Winograd (the
/// formulas above), accumulated into `weight.grad` (per sample block into `weight.blockGrad` with
/// `SampleBlocks`). The tiles of the images summed together are taken in chunks counted from their first
/// image (`WinogradWorkspace.weightGradientMinTiles`), so a block's partial is computed the same way wherever
/// the block sits; `dU` adds the chunks in order (`weightGradientGEMM`, β = 1).
func winogradWeightGradient(_ x: UnsafePointer<Float>, _ gy: UnsafePointer<Float>, _ g: ConvGeometry, cout: Int,
                            variant: WinogradVariant, into weight: Tensor) {
    let tiling = WinogradTiling(variant: variant, h: g.h, w: g.w, padding: g.padding)
    let a = variant.alpha, a2 = a * a, cin = g.cin, plane = cin * cout
    weight.accumulateRowSum(rows: g.n) { images, gw, overwrite in
        let total = images.count * tiling.perImage, first = images.lowerBound * tiling.perImage
        let chunk = WinogradWorkspace.tilesPerChunk(total: total, alpha: a, cin: cin, cout: cout,
                                                    fewest: WinogradWorkspace.weightGradientMinTiles)
        let vLayout = WinogradLayout(variant: variant, tiles: chunk, channels: cin)
        let mLayout = WinogradLayout(variant: variant, tiles: chunk, channels: cout)
        let vBuf = Tensor(uninitializedShape: [vLayout.count]), mBuf = Tensor(uninitializedShape: [mLayout.count])
        let du = Tensor(uninitializedShape: [a2 * plane])
        let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 2 * a2)
        defer { scratch.deallocate() }
        for t0 in stride(from: 0, to: total, by: chunk) {
            let rows = min(chunk, total - t0), tiles = (first + t0)..<(first + t0 + rows)
            winogradInputTransform(x, cin: cin, tiling: tiling, tiles: tiles, into: vBuf.ptr, layout: vLayout,
                                   scratch: scratch)
            winogradOutputGradientTransform(gy, cout: cout, tiling: tiling, tiles: tiles, into: mBuf.ptr,
                                            layout: mLayout, scratch: scratch)
            for xi in 0..<a2 {   // dU_ξ[Cin, Cout] (+)= V_ξᵀ · dM_ξ
                weightGradientGEMM(m: cin, n: cout, k: rows, a: vBuf.ptr + xi * vLayout.xi, lda: vLayout.row,
                                   b: mBuf.ptr + xi * mLayout.xi, ldb: mLayout.row, beta: t0 == 0 ? 0 : 1,
                                   c: du.ptr + xi * plane, ldc: cout)
            }
        }
        winogradFilterGradient(du.ptr, cin: cin, cout: cout, variant: variant, into: gw, overwrite: overwrite)
    }
}

/// The weight gradient `[Cout, 3, 3, Cin]` of a stride-1 3×3 convolution of `x` (`[N, H, W, Cin]`) whose
/// output gradient is `gy` (`[N, Ho, Wo, Cout]`), alone: by the direct GEMM (`.direct`) or Winograd, as
/// the convolutions' backward computes it (`kdgraph bench --ops` times and compares them).
public func conv3x3WeightGradient(_ x: Tensor, outputGradient gy: Tensor, padding: Int,
                                  algorithm: ConvAlgorithm) throws -> Tensor {
    guard x.rank == 4, gy.rank == 4, padding >= 0, padding <= 2 else {
        throw TensorError.shapeMismatch(op: "conv3x3WeightGradient", lhs: x.shape, rhs: gy.shape)
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3], kh: 3, kw: 3, stride: 1,
                         padding: padding)
    guard gy.shape == [g.n, g.ho, g.wo, gy.shape[3]] else {
        throw TensorError.shapeMismatch(op: "conv3x3WeightGradient (output gradient)", lhs: x.shape,
                                        rhs: gy.shape)
    }
    let cout = gy.shape[3], weight = Tensor.zeros([cout, 3, 3, g.cin])
    if let v = algorithm.winogradVariant {
        winogradWeightGradient(x.ptr, gy.ptr, g, cout: cout, variant: v, into: weight)
    } else {
        convWeightGradient(x.ptr, gy.ptr, g, cout: cout, into: weight)
    }
    return weight.grad ?? Tensor.zeros(weight.shape)
}
