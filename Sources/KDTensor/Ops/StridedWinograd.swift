import KDKernels512

/// The output tiles of a 3×3 stride-2 convolution with padding 1 over `h×w` images: `ho = ⌊(h − 1)/2⌋ + 1`,
/// likewise `wo`, cut into 4×4 tiles (the last row and column cropped); tile `t` of the batch is tile
/// `t % perImage` of image `t / perImage`, tiles row-major.
package struct StridedWinogradTiling {
    package let ho, wo, tilesW, perImage: Int

    package init(h: Int, w: Int) {
        ho = (h - 1) / 2 + 1; wo = (w - 1) / 2 + 1
        tilesW = (wo + 3) / 4
        perImage = ((ho + 3) / 4) * tilesW
    }
}

/// The filter bank of a 3×3 stride-2 convolution for Winograd F(4×4, 2×2) over the input's four phases
/// (`StridedWinogradTransforms512.swift`'s header, docs/ops.md "Strided Winograd convolution"):
/// `U_ξ[(2p + q)·Cin + c, o] = (G K_{pq} Gᵀ)[ξ]`, 25 matrices `[4·Cin, Cout]` written straight into the
/// row-invariant GEMM's panels, where the 2×2 kernel of phase pair (p, q) takes its taps from the 3×3 filter
/// `w[o, ·, ·, c]`: along each axis, phase 0 is `[0, w₁]` and phase 1 `[w₀, w₂]` (offsets −1, 0).
///
/// With `inputGradient` the bank of the input gradient's F(4×4, 2×2) over `dY`: `U_ξ[o, (2p + q)·Cin + c]`,
/// 25 matrices `[Cout, 4·Cin]`, along each axis phase 0 `[w₁, 0]` and phase 1 `[w₂, w₀]` (offsets 0, +1).
public struct StridedWinogradFilter: @unchecked Sendable {
    public let cin: Int, cout: Int
    /// Whether this is the input gradient's bank.
    public let inputGradient: Bool
    /// `U_ξ` packed for the row-invariant GEMM, one per transform position (ξ = 5k + l).
    public let panels: [RowInvariantGEMM.Packed]

    /// From an OHWI weight `[Cout, 3, 3, Cin]`. `G K Gᵀ` runs in Double on 8 of the bank's columns at once
    /// (the forward's output channels, read from the weight transposed first; the input gradient's 8 input
    /// channels of one phase, read from the weight itself), columns `t = G K` then rows `t Gᵀ`, each value
    /// rounded to Float once. A trained student makes both banks every step (`kdgraph bench --ops`,
    /// `strided_layer_f4`'s `filter_bank_ms`).
    public init(weight: UnsafePointer<Float>, cout: Int, cin: Int, inputGradient: Bool = false) {
        self.cin = cin; self.cout = cout; self.inputGradient = inputGradient
        let (k, n) = inputGradient ? (cout, 4 * cin) : (4 * cin, cout)
        let floats = RowInvariantGEMM.Packed.floats(k: k, n: n)
        let storage = (0..<25).map { _ in
            n % 16 == 0 ? Tensor(uninitializedShape: [floats]) : Tensor(shape: [floats], repeating: 0)
        }
        let out = storage.map { $0.ptr }
        // taps[row, a, b, col…col+7]: the forward's [cin, 3, 3, cout] (weight transposed), the input gradient's
        // the weight itself [cout, 3, 3, cin].
        let transposed = inputGradient ? nil : WinogradFilter.transposedFilters(weight, cout: cout, cin: cin)
        let taps = transposed.map { UnsafePointer($0.ptr) } ?? weight
        let cols = inputGradient ? cin : cout   // the taps' row length
        let t = UnsafeMutablePointer<WDVec>.allocate(capacity: 10)   // G K (5×2)
        defer { t.deallocate() }
        let zero = WDVec()
        // One panel (16 bank columns) at a time and, inside, the bank's rows in order, so that each of the 25
        // panels is written as one sequential stream.
        for panel0 in stride(from: 0, to: n, by: 16) {
            for row in 0..<k {
                for col0 in stride(from: panel0, to: min(panel0 + 16, n), by: 8) {
                    // The phase pair, and where its taps start: tapRow's 3×3 filters, lanes tapCol…tapCol + 7.
                    let (phase, tapRow, tapCol) = inputGradient ? (col0 / cin, row, col0 % cin)
                                                                : (row / cin, row % cin, col0)
                    let (p, q) = (phase / 2, phase % 2)
                    // K[du][dv]: tap row a(p, du), column b(q, dv); −1 where the phase has no tap.
                    func index(_ phase: Int, _ d: Int) -> Int {
                        inputGradient ? (phase == 0 ? (d == 0 ? 1 : -1) : (d == 0 ? 2 : 0))
                                      : (phase == 0 ? (d == 0 ? -1 : 1) : (d == 0 ? 0 : 2))
                    }
                    func tap(_ du: Int, _ dv: Int) -> WDVec {
                        let a = index(p, du), b = index(q, dv)
                        return a < 0 || b < 0 ? zero : WDVec(loadVec8(taps + (tapRow * 9 + a * 3 + b) * cols + tapCol))
                    }
                    for dv in 0..<2 {                                   // G K: column dv
                        let col = winogradG42(tap(0, dv), tap(1, dv))
                        t[dv] = col.0; t[2 + dv] = col.1; t[4 + dv] = col.2; t[6 + dv] = col.3; t[8 + dv] = col.4
                    }
                    let at = RowInvariantGEMM.Packed.offset(row: row, column: col0, k: k)
                    for kk in 0..<5 {                                   // (G K) Gᵀ: row kk
                        let r = winogradG42(t[2 * kk], t[2 * kk + 1]), u = 5 * kk
                        storeVec(WVec(r.0), out[u] + at, 8); storeVec(WVec(r.1), out[u + 1] + at, 8)
                        storeVec(WVec(r.2), out[u + 2] + at, 8); storeVec(WVec(r.3), out[u + 3] + at, 8)
                        storeVec(WVec(r.4), out[u + 4] + at, 8)
                    }
                }
            }
        }
        panels = storage.map { RowInvariantGEMM.Packed(k: k, n: n, panels: $0) }
    }

    /// `U_ξ[row, col]` (tests).
    func element(xi: Int, row: Int, col: Int) -> Float { panels[xi].element(row: row, column: col) }
}

/// `G` of F(4,2) on the 2 taps of a column or row:
/// `(½g₀, −½(g₀ + g₁), ⅙(g₁ − g₀), ⅙g₀ + ⅓g₁, g₁)`, the zero terms left out.
@inline(__always)
func winogradG42(_ g0: WDVec, _ g1: WDVec) -> (WDVec, WDVec, WDVec, WDVec, WDVec) {
    let half = 0.5, sixth = 1.0 / 6, third = 1.0 / 3
    return (half * g0, -half * g0 - half * g1, -sixth * g0 + sixth * g1, sixth * g0 + third * g1, g1)
}

/// A 3×3 stride-2 convolution with padding 1 by Winograd F(4×4, 2×2) over the input's phases, with a fused
/// epilogue, on raw NHWC buffers (no tape):
///
///     out[n, i, j, o] = act( Σ_{ki,kj,c} x[n, 2i − 1 + ki, 2j − 1 + kj, c] · w[o, ki, kj, c]
///                            + b[o] + r[n, i, j, o] )
///
/// `x` `[n, h, w, filter.cin]`, output `[n, ⌊(h − 1)/2⌋ + 1, ⌊(w − 1)/2⌋ + 1, filter.cout]`; `bias`,
/// `residual` (may alias `out`) and `relu` as in `winogradConvolve`. Per chunk of output tiles
/// (`stridedWinogradChunks`): the input transform of the four phases (`V`: 25 rows of 4·Cin per tile), 25 GEMMs
/// `M_ξ = V_ξ · U_ξ`, the output transform with the epilogue. Sixteen channels at a time where the CPU has
/// AVX-512 and the channels allow (`WinogradWorkspace.wideTransforms`; the same bits as eight).
public func stridedWinogradConvolve(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int,
                                    filter: StridedWinogradFilter, bias: UnsafePointer<Float>?,
                                    residual: UnsafePointer<Float>?, relu: Bool, out: UnsafeMutablePointer<Float>) {
    precondition(!filter.inputGradient, "stridedWinogradConvolve needs the forward's bank")
    let cin = filter.cin, cout = filter.cout
    let wideIn = WinogradWorkspace.wideTransforms && cin % 16 == 0
    let wideOut = WinogradWorkspace.wideTransforms && cout % 16 == 0
    stridedWinogradChunks(n: n, h: h, w: w, bank: filter) { tiling, tiles, v, row, scratch in
        if wideIn {
            stridedWinogradInputTransform16(x, h: h, w: w, cin: cin, tilesW: tiling.tilesW, perImage: tiling.perImage,
                                            tiles: tiles, into: v, row: row)
        } else {
            stridedWinogradInputTransform(x, h: h, w: w, cin: cin, tilesW: tiling.tilesW, perImage: tiling.perImage,
                                          tiles: tiles, into: v, row: row, scratch: scratch)
        }
    } output: { tiling, tiles, m, row, scratch in
        if wideOut {
            stridedWinogradOutputTransform16(m, row: row, cout: cout, ho: tiling.ho, wo: tiling.wo,
                                             tilesW: tiling.tilesW, perImage: tiling.perImage, tiles: tiles,
                                             bias: bias, residual: residual, relu: relu, out: out)
        } else {
            stridedWinogradOutputTransform(m, row: row, cout: cout, ho: tiling.ho, wo: tiling.wo,
                                           tilesW: tiling.tilesW, perImage: tiling.perImage, tiles: tiles,
                                           bias: bias, residual: residual, relu: relu ? reluVec : nil, out: out,
                                           tmp: scratch)
        }
    }
}

/// The chunk loop of both strided passes over `n` images of `h×w` (nothing for an empty batch or image): the
/// tiles of `StridedWinogradTiling` in chunks sized as the Winograd convolution's (`WinogradWorkspace
/// .tilesPerChunk`, α = 5), per chunk `input(tiling, tiles, V, row, scratch)` writes each tile's 25 rows of
/// `bank`'s inner size, 25 GEMMs `M_ξ = V_ξ · U_ξ` (`RowInvariantGEMM`: a tile's products do not depend on the
/// other tiles of its chunk), and `output(tiling, tiles, M, row, scratch)` reads each tile's 25 rows of the
/// bank's width. `scratch`: 25 eight-lane vectors for the transforms.
func stridedWinogradChunks(n: Int, h: Int, w: Int, bank: StridedWinogradFilter,
                           input: (StridedWinogradTiling, Range<Int>, UnsafeMutablePointer<Float>, Int,
                                   UnsafeMutablePointer<WVec>) -> Void,
                           output: (StridedWinogradTiling, Range<Int>, UnsafePointer<Float>, Int,
                                    UnsafeMutablePointer<WVec>) -> Void) {
    guard n > 0, h > 0, w > 0 else { return }
    let tiling = StridedWinogradTiling(h: h, w: w), total = n * tiling.perImage
    let inner = bank.panels[0].k, width = bank.panels[0].n
    let chunk = WinogradWorkspace.tilesPerChunk(total: total, alpha: 5, cin: inner, cout: width)
    let pad = WinogradWorkspace.matrixPadding
    let vRow = 25 * inner + pad, mRow = 25 * width + pad
    let vBuf = Tensor(uninitializedShape: [chunk * vRow]), mBuf = Tensor(uninitializedShape: [chunk * mRow])
    let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 25)
    defer { scratch.deallocate() }
    for t0 in stride(from: 0, to: total, by: chunk) {
        let tiles = t0..<min(total, t0 + chunk)
        input(tiling, tiles, vBuf.ptr, vRow, scratch)
        for xi in 0..<25 {
            RowInvariantGEMM.multiply(m: tiles.count, a: vBuf.ptr + xi * inner, lda: vRow, b: bank.panels[xi],
                                      c: mBuf.ptr + xi * width, ldc: mRow, accumulate: false)
        }
        output(tiling, tiles, mBuf.ptr, mRow, scratch)
    }
}

/// `conv2d` for a 3×3 stride-2 layer with padding 1 by the strided Winograd F(4×4, 2×2) (`algorithm:
/// .winograd4` on such a layer; the same contract and result as `conv2d` up to the transform's rounding,
/// docs/ops.md "Strided Winograd convolution"). Input and output channels must be multiples of 8
/// (`ConvAlgorithm.stridedWinogradApplies`).
///
/// Backward: `db = Σ_rows dY`; `dW = dYᵀ · im2col(x)` as the direct convolution's (`convWeightGradient`); `dx`
/// by F(4×4, 2×2) over `dY` (`stridedWinogradInputGradient`).
public func stridedWinogradConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[1] == 3, weight.shape[2] == 3, weight.shape[3] == x.shape[3],
          ConvAlgorithm.stridedWinogradApplies(kernelSize: 3, stride: 2, padding: 1, cin: x.shape[3],
                                               cout: weight.shape[0])
    else {
        throw TensorError.shapeMismatch(op: "stridedWinogradConv2d (needs a 3×3 weight, channels multiples of 8)",
                                        lhs: x.shape, rhs: weight.shape)
    }
    let cout = weight.shape[0]
    if let bias, bias.shape != [cout] {
        throw TensorError.shapeMismatch(op: "stridedWinogradConv2d (bias vs weight)", lhs: bias.shape,
                                        rhs: weight.shape)
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3], kh: 3, kw: 3, stride: 2,
                         padding: 1)
    guard g.h >= 1, g.w >= 1 else {
        throw TensorError.invalidArgument(op: "stridedWinogradConv2d", message: "empty image \(g.h)×\(g.w)")
    }
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, cout])
    let filter = StridedWinogradFilter(weight: weight.ptr, cout: cout, cin: g.cin)
    stridedWinogradConvolve(x.ptr, n: g.n, h: g.h, w: g.w, filter: filter, bias: bias?.ptr, residual: nil,
                            relu: false, out: out.ptr)
    // An empty batch (a rank with no rows) still records, so every rank runs the same backward.
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("stridedWinogradConv2d", inputs: inputs, output: out) { gy in
        if let bias, bias.requiresGrad { convBiasGradient(gy.ptr, g, cout: cout, into: bias) }
        if weight.requiresGrad { convWeightGradient(x.ptr, gy.ptr, g, cout: cout, into: weight) }
        if x.requiresGrad {
            let (gx, fresh) = x.gradBuffer()
            let back = StridedWinogradFilter(weight: weight.ptr, cout: cout, cin: g.cin, inputGradient: true)
            stridedWinogradInputGradient(gy.ptr, n: g.n, h: g.h, w: g.w, filter: back, accumulate: !fresh, into: gx)
        }
    }
    return out
}

/// The input gradient of a 3×3 stride-2 convolution with padding 1,
/// `dx[n, y, x, c] = Σ dY[n, i, j, o]·w[o, y − 2i + 1, x − 2j + 1, c]`, by F(4×4, 2×2) over `dY`
/// (`[n, ⌊(h − 1)/2⌋ + 1, ⌊(w − 1)/2⌋ + 1, Cout]`), `filter` the input gradient's bank: per chunk of tiles
/// of phase positions, the input transform of `dY`, 25 GEMMs `M_ξ = V_ξ · U_ξ` (`[tiles, 4·Cin]`), the output
/// transform scattered onto `dx` (`[n, h, w, Cin]`, written, or added with `accumulate`). Every pixel of `dx`
/// is one phase position of one tile, so writing covers it.
public func stridedWinogradInputGradient(_ gy: UnsafePointer<Float>, n: Int, h: Int, w: Int,
                                         filter: StridedWinogradFilter, accumulate: Bool,
                                         into gx: UnsafeMutablePointer<Float>) {
    precondition(filter.inputGradient, "stridedWinogradInputGradient needs the input gradient's bank")
    let cin = filter.cin, cout = filter.cout
    let wideIn = WinogradWorkspace.wideTransforms && cout % 16 == 0
    let wideOut = WinogradWorkspace.wideTransforms && cin % 16 == 0
    stridedWinogradChunks(n: n, h: h, w: w, bank: filter) { tiling, tiles, v, row, scratch in
        if wideIn {
            stridedWinogradGradientInputTransform16(gy, ho: tiling.ho, wo: tiling.wo, cout: cout, tilesW: tiling.tilesW,
                                                    perImage: tiling.perImage, tiles: tiles, into: v, row: row)
        } else {
            stridedWinogradGradientInputTransform(gy, ho: tiling.ho, wo: tiling.wo, cout: cout, tilesW: tiling.tilesW,
                                                  perImage: tiling.perImage, tiles: tiles, into: v, row: row,
                                                  scratch: scratch)
        }
    } output: { tiling, tiles, m, row, scratch in
        if wideOut {
            stridedWinogradGradientOutputTransform16(m, row: row, cin: cin, h: h, w: w, tilesW: tiling.tilesW,
                                                     perImage: tiling.perImage, tiles: tiles, accumulate: accumulate,
                                                     into: gx)
        } else {
            stridedWinogradGradientOutputTransform(m, row: row, cin: cin, h: h, w: w, tilesW: tiling.tilesW,
                                                   perImage: tiling.perImage, tiles: tiles, accumulate: accumulate,
                                                   into: gx, tmp: scratch)
        }
    }
}
