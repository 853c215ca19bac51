import KDKernels512

/// The output tiles of a 3×3 stride-2 convolution with padding 1 over `h×w` images: `ho = ⌊(h − 1)/2⌋ + 1`,
/// likewise `wo`, cut into 4×4 tiles (the last row and column cropped); tile `t` of the batch is tile
/// `t % perImage` of image `t / perImage`, tiles row-major.
package struct StridedWinogradTiling {
    package let h, w, ho, wo, tilesW, perImage: Int

    package init(h: Int, w: Int) {
        self.h = h; self.w = w
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

    /// Whether the strided F(4×4, 2×2) applies to a layer: 3×3 kernel, stride 2, padding 1, and input and
    /// output channels multiples of 8 (the transforms' vectors).
    public static func applies(kernelSize: Int, stride: Int, padding: Int, cin: Int, cout: Int) -> Bool {
        kernelSize == 3 && stride == 2 && padding == 1 && cin > 0 && cout > 0 && cin % 8 == 0 && cout % 8 == 0
    }

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

/// `G` of F(4,2) on the 2 taps of a column or row: `(½g₀, −½(g₀ + g₁), ⅙(g₁ − g₀), ⅙g₀ + ⅓g₁, g₁)`, the zero
/// terms left out.
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
/// `residual` (may alias `out`) and `relu` as in `winogradConvolve`. Per chunk of output tiles: the input
/// transform of the four phases (`V`: 25 rows of 4·Cin per tile), 25 GEMMs `M_ξ = V_ξ · U_ξ`
/// (`RowInvariantGEMM`: a tile's products do not depend on the other tiles of its chunk), the output
/// transform with the epilogue. Sixteen channels at a time where the CPU has AVX-512 and the channels allow
/// (`WinogradWorkspace.wideTransforms`; the same bits as eight).
public func stridedWinogradConvolve(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int,
                                    filter: StridedWinogradFilter, bias: UnsafePointer<Float>?,
                                    residual: UnsafePointer<Float>?, relu: Bool, out: UnsafeMutablePointer<Float>) {
    let tiling = StridedWinogradTiling(h: h, w: w)
    let cin = filter.cin, k = 4 * cin, cout = filter.cout
    guard n > 0, h > 0, w > 0 else { return }
    let total = n * tiling.perImage
    let chunk = WinogradWorkspace.tilesPerChunk(total: total, alpha: 5, cin: k, cout: cout)
    let pad = WinogradWorkspace.matrixPadding
    let vRow = 25 * k + pad, mRow = 25 * cout + pad
    let vBuf = Tensor(uninitializedShape: [chunk * vRow]), mBuf = Tensor(uninitializedShape: [chunk * mRow])
    let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 50)
    defer { scratch.deallocate() }
    let wideIn = WinogradWorkspace.wideTransforms && cin % 16 == 0
    let wideOut = WinogradWorkspace.wideTransforms && cout % 16 == 0
    for t0 in stride(from: 0, to: total, by: chunk) {
        let tiles = t0..<min(total, t0 + chunk)
        if wideIn {
            stridedWinogradInputTransform16(x, h: h, w: w, cin: cin, tilesW: tiling.tilesW, perImage: tiling.perImage,
                                            tiles: tiles, into: vBuf.ptr, row: vRow)
        } else {
            stridedWinogradInputTransform(x, h: h, w: w, cin: cin, tilesW: tiling.tilesW, perImage: tiling.perImage,
                                          tiles: tiles, into: vBuf.ptr, row: vRow, scratch: scratch)
        }
        for xi in 0..<25 {   // M_ξ[rows, Cout] = V_ξ[rows, 4·Cin] · U_ξ[4·Cin, Cout]
            RowInvariantGEMM.multiply(m: tiles.count, a: vBuf.ptr + xi * k, lda: vRow, b: filter.panels[xi],
                                      c: mBuf.ptr + xi * cout, ldc: mRow, accumulate: false)
        }
        if wideOut {
            stridedWinogradOutputTransform16(mBuf.ptr, row: mRow, cout: cout, ho: tiling.ho, wo: tiling.wo,
                                             tilesW: tiling.tilesW, perImage: tiling.perImage, tiles: tiles,
                                             bias: bias, residual: residual, relu: relu, out: out)
        } else {
            stridedWinogradOutputTransform(mBuf.ptr, row: mRow, cout: cout, ho: tiling.ho, wo: tiling.wo,
                                           tilesW: tiling.tilesW, perImage: tiling.perImage, tiles: tiles,
                                           bias: bias, residual: residual, relu: relu, out: out, tmp: scratch)
        }
    }
}

/// `stridedWinogradInputTransform16` eight channels at a time (`cin` a multiple of 8): the same loop and
/// tile arithmetic (`stridedWinogradInputTile`), so the same bits. `scratch` holds 50 vectors.
func stridedWinogradInputTransform(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int, tilesW: Int, perImage: Int,
                                   tiles: Range<Int>, into v: UnsafeMutablePointer<Float>, row: Int,
                                   scratch: UnsafeMutablePointer<WVec>) {
    let d = scratch, tmp = scratch + 25, xs = 4 * cin
    let dFloats = UnsafeRawPointer(d).assumingMemoryBound(to: Float.self)
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let ih0 = (r / tilesW) * 8 - 2, iw0 = (r % tilesW) * 8 - 2
        let xImage = x + img * h * w * cin, tileBase = v + (t - tiles.lowerBound) * row
        let inside = ih0 >= 0 && iw0 >= 0 && ih0 + 10 <= h && iw0 + 10 <= w
        for phase in 0..<4 {
            let rh = ih0 + phase / 2, rw = iw0 + phase % 2   // the phase's top-left input pixel (may be outside)
            // The 5×5 positions inside the image: rows rh + 2u for u in uLo..<uHi, columns likewise; the others
            // stay 0 for all the phase's channel groups (zeroed once).
            let uLo = max(0, (1 - rh) / 2), uHi = max(uLo, min(5, (h - rh + 1) / 2))
            let jLo = max(0, (1 - rw) / 2), jHi = max(jLo, min(5, (w - rw + 1) / 2))
            if !inside { d.update(repeating: WVec(), count: 25) }
            for c0 in stride(from: 0, to: cin, by: 8) {
                let dst = tileBase + phase * cin + c0
                if inside {
                    stridedWinogradInputTile(xImage + (rh * w + rw) * cin + c0, 2 * w * cin, 2 * cin, tmp, dst, xs)
                    continue
                }
                for u in uLo..<uHi {
                    let src = xImage + ((rh + 2 * u) * w + rw) * cin + c0
                    for j in jLo..<jHi { d[u * 5 + j] = loadVec8(src + 2 * j * cin) }
                }
                stridedWinogradInputTile(dFloats, 5 * 8, 8, tmp, dst, xs)
            }
        }
    }
}

/// `stridedWinogradOutputTransform16` eight channels at a time (`cout` a multiple of 8), the same bits.
/// `tmp` holds 20 vectors.
func stridedWinogradOutputTransform(_ m: UnsafePointer<Float>, row: Int, cout: Int, ho: Int, wo: Int, tilesW: Int,
                                    perImage: Int, tiles: Range<Int>, bias: UnsafePointer<Float>?,
                                    residual: UnsafePointer<Float>?, relu: Bool, out: UnsafeMutablePointer<Float>,
                                    tmp: UnsafeMutablePointer<WVec>) {
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let oh0 = (r / tilesW) * 4, ow0 = (r % tilesW) * 4
        let hi = min(4, ho - oh0), wi = min(4, wo - ow0)
        let base = out + ((img * ho + oh0) * wo + ow0) * cout, resBase = residual.map { $0 + (base - out) }
        for k0 in stride(from: 0, to: cout, by: 8) {
            let b = bias.map { loadVec8($0 + k0) } ?? WVec()
            stridedWinogradOutputTile(m + (t - tiles.lowerBound) * row + k0, cout, tmp, hi: hi) { i, j, y0 in
                guard j < wi else { return }
                let off = (i * wo + j) * cout + k0
                var y = y0 + b
                if let resBase { y += loadVec8(resBase + off) }
                if relu { y = reluVec(y) }
                storeVec(y, base + off, 8)
            }
        }
    }
}

/// `conv2d` for a 3×3 stride-2 layer with padding 1 by the strided Winograd F(4×4, 2×2) (`algorithm:
/// .winograd4` on such a layer; the same contract and result as `conv2d` up to the transform's rounding,
/// docs/ops.md "Strided Winograd convolution"). Input and output channels must be multiples of 8
/// (`StridedWinogradFilter.applies`).
///
/// Backward: `db = Σ_rows dY`; `dW = dYᵀ · im2col(x)` as the direct convolution's (`convWeightGradient`); `dx`
/// by F(4×4, 2×2) over `dY` (`stridedWinogradInputGradient`).
public func stridedWinogradConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[1] == 3, weight.shape[2] == 3, weight.shape[3] == x.shape[3],
          StridedWinogradFilter.applies(kernelSize: 3, stride: 2, padding: 1, cin: x.shape[3], cout: weight.shape[0])
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

/// The input gradient of a 3×3 stride-2 convolution with padding 1, `dx[n, y, x, c] = Σ dY[n, i, j, o]·w[o, y −
/// 2i + 1, x − 2j + 1, c]`, by F(4×4, 2×2) over `dY` (`[n, ⌊(h − 1)/2⌋ + 1, ⌊(w − 1)/2⌋ + 1, Cout]`), `filter`
/// the input gradient's bank: per chunk of tiles of phase positions, the input transform of `dY`, 25 GEMMs
/// `M_ξ = V_ξ · U_ξ` (`[tiles, 4·Cin]`), the output transform scattered onto `dx` (`[n, h, w, Cin]`, written, or
/// added with `accumulate`). Every pixel of `dx` is one phase position of one tile, so writing covers it.
public func stridedWinogradInputGradient(_ gy: UnsafePointer<Float>, n: Int, h: Int, w: Int,
                                         filter: StridedWinogradFilter, accumulate: Bool,
                                         into gx: UnsafeMutablePointer<Float>) {
    precondition(filter.inputGradient, "stridedWinogradInputGradient needs the input gradient's bank")
    let tiling = StridedWinogradTiling(h: h, w: w)
    let cin = filter.cin, cout = filter.cout, k = 4 * cin
    guard n > 0, h > 0, w > 0 else { return }
    let total = n * tiling.perImage
    let chunk = WinogradWorkspace.tilesPerChunk(total: total, alpha: 5, cin: cout, cout: k)
    let pad = WinogradWorkspace.matrixPadding
    let vRow = 25 * cout + pad, mRow = 25 * k + pad
    let vBuf = Tensor(uninitializedShape: [chunk * vRow]), mBuf = Tensor(uninitializedShape: [chunk * mRow])
    let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 50)
    defer { scratch.deallocate() }
    let wideIn = WinogradWorkspace.wideTransforms && cout % 16 == 0
    let wideOut = WinogradWorkspace.wideTransforms && cin % 16 == 0
    for t0 in stride(from: 0, to: total, by: chunk) {
        let tiles = t0..<min(total, t0 + chunk)
        if wideIn {
            stridedWinogradGradientInputTransform16(gy, ho: tiling.ho, wo: tiling.wo, cout: cout, tilesW: tiling.tilesW,
                                                    perImage: tiling.perImage, tiles: tiles, into: vBuf.ptr, row: vRow)
        } else {
            stridedWinogradGradientInputTransform(gy, ho: tiling.ho, wo: tiling.wo, cout: cout, tilesW: tiling.tilesW,
                                                  perImage: tiling.perImage, tiles: tiles, into: vBuf.ptr, row: vRow,
                                                  scratch: scratch)
        }
        for xi in 0..<25 {   // M_ξ[rows, 4·Cin] = V_ξ[rows, Cout] · U_ξ[Cout, 4·Cin]
            RowInvariantGEMM.multiply(m: tiles.count, a: vBuf.ptr + xi * cout, lda: vRow, b: filter.panels[xi],
                                      c: mBuf.ptr + xi * k, ldc: mRow, accumulate: false)
        }
        if wideOut {
            stridedWinogradGradientOutputTransform16(mBuf.ptr, row: mRow, cin: cin, h: h, w: w, tilesW: tiling.tilesW,
                                                     perImage: tiling.perImage, tiles: tiles, accumulate: accumulate,
                                                     into: gx)
        } else {
            stridedWinogradGradientOutputTransform(mBuf.ptr, row: mRow, cin: cin, h: h, w: w, tilesW: tiling.tilesW,
                                                   perImage: tiling.perImage, tiles: tiles, accumulate: accumulate,
                                                   into: gx, tmp: scratch)
        }
    }
}

/// `stridedWinogradGradientInputTransform16` eight channels at a time (`cout` a multiple of 8), the same bits.
/// `scratch` holds 50 vectors.
func stridedWinogradGradientInputTransform(_ gy: UnsafePointer<Float>, ho: Int, wo: Int, cout: Int, tilesW: Int,
                                           perImage: Int, tiles: Range<Int>, into v: UnsafeMutablePointer<Float>,
                                           row: Int, scratch: UnsafeMutablePointer<WVec>) {
    let d = scratch, tmp = scratch + 25
    let dFloats = UnsafeRawPointer(d).assumingMemoryBound(to: Float.self)
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let r0 = (r / tilesW) * 4, s0 = (r % tilesW) * 4
        let image = gy + img * ho * wo * cout, dstTile = v + (t - tiles.lowerBound) * row
        let uHi = min(5, ho - r0), jHi = min(5, wo - s0), inside = uHi == 5 && jHi == 5
        if !inside { d.update(repeating: WVec(), count: 25) }   // positions past the edge stay 0 for every group
        for c0 in stride(from: 0, to: cout, by: 8) {
            let src = image + (r0 * wo + s0) * cout + c0
            if inside {
                stridedWinogradInputTile(src, wo * cout, cout, tmp, dstTile + c0, cout)
                continue
            }
            for u in 0..<uHi { for j in 0..<jHi { d[u * 5 + j] = loadVec8(src + (u * wo + j) * cout) } }
            stridedWinogradInputTile(dFloats, 5 * 8, 8, tmp, dstTile + c0, cout)
        }
    }
}

/// `stridedWinogradGradientOutputTransform16` eight channels at a time (`cin` a multiple of 8), the same bits.
/// `tmp` holds 20 vectors.
func stridedWinogradGradientOutputTransform(_ m: UnsafePointer<Float>, row: Int, cin: Int, h: Int, w: Int,
                                            tilesW: Int, perImage: Int, tiles: Range<Int>, accumulate: Bool,
                                            into gx: UnsafeMutablePointer<Float>, tmp: UnsafeMutablePointer<WVec>) {
    let xs = 4 * cin
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let k0 = (r / tilesW) * 4, l0 = (r % tilesW) * 4
        let image = gx + img * h * w * cin, src0 = m + (t - tiles.lowerBound) * row
        for phase in 0..<4 {
            let p = phase / 2, q = phase % 2
            let hi = max(0, min(4, (h - p + 1) / 2 - k0)), wi = min(4, (w - q + 1) / 2 - l0)
            guard hi > 0, wi > 0 else { continue }
            for c0 in stride(from: 0, to: cin, by: 8) {
                stridedWinogradOutputTile(src0 + phase * cin + c0, xs, tmp, hi: hi) { i, j, y in
                    guard j < wi else { return }
                    let dst = image + ((2 * (k0 + i) + p) * w + 2 * (l0 + j) + q) * cin + c0
                    storeVec(accumulate ? loadVec8(dst) + y : y, dst, 8)
                }
            }
        }
    }
}
