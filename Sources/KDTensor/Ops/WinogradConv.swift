import KDKernels512

/// The convolution algorithm of a 3×3 layer (`runtime.conv_algorithm`, docs/ops.md).
public enum ConvAlgorithm: String, Sendable, CaseIterable, Codable {
    /// im2col + `cblas_sgemm` (`conv2d`), any geometry.
    case direct
    /// Winograd F(2×2, 3×3) (stride 1).
    case winograd2
    /// Winograd F(4×4, 3×3) on a stride-1 layer; on a stride-2 layer with padding 1 and channels multiples of
    /// 8, F(4×4, 2×2) over the input's phases (`stridedWinogradConv2d`).
    case winograd4

    /// The Winograd variant, nil for `direct`.
    public var winogradVariant: WinogradVariant? {
        switch self {
        case .direct: return nil
        case .winograd2: return .f2
        case .winograd4: return .f4
        }
    }

    /// Whether Winograd applies to a layer: 3×3 kernel, stride 1, padding ≤ 2.
    public static func winogradApplies(kernelSize: Int, stride: Int, padding: Int) -> Bool {
        kernelSize == 3 && stride == 1 && padding >= 0 && padding <= 2
    }

    /// Whether the strided Winograd F(4×4, 2×2) applies (what `winograd4` runs on such a layer): 3×3 kernel,
    /// stride 2, padding 1, input and output channels multiples of 8 (the transforms' vectors).
    public static func stridedWinogradApplies(kernelSize: Int, stride: Int, padding: Int, cin: Int,
                                              cout: Int) -> Bool {
        kernelSize == 3 && stride == 2 && padding == 1 && cin > 0 && cout > 0 && cin % 8 == 0 && cout % 8 == 0
    }
}

/// Tuning of the Winograd workspace: the tiles are processed in chunks whose transformed input and
/// GEMM output (`α²·tiles·(Cin + Cout)` floats) stay near `targetElements` (cache-resident between the
/// transforms and the GEMMs) with at least `minTiles` GEMM rows.
public enum WinogradWorkspace {
    public nonisolated(unsafe) static var targetElements = 1 << 18
    public nonisolated(unsafe) static var minTiles = 128
    /// Floats appended to each block of the workspace (a ξ matrix, or for F(4×4) a tile's α²·C values).
    /// Without it the blocks start a multiple of 4 KiB apart (C and tiles powers of two; 36·256·4 bytes),
    /// so the interleaved streams (the transforms' α² matrices, or the GEMM's rows) map to the same L1
    /// sets and evict one another.
    public nonisolated(unsafe) static var matrixPadding = 16

    /// F(4×4) transforms sixteen channels at a time (module KDKernels512) where the CPU has AVX-512 and the
    /// channels are a multiple of 16 (the same bits as eight at a time); tests and benchmarks may turn it off.
    public nonisolated(unsafe) static var wideTransforms = CPUFeatures.hasAVX512

    /// Fewest tiles per chunk of the weight gradient (`winogradWeightGradient`), whose GEMMs' inner size
    /// is the chunk's tile count.
    public nonisolated(unsafe) static var weightGradientMinTiles = 256

    /// Tiles per chunk: near `targetElements` of transformed values, at least `fewest` (`minTiles`, or for the
    /// weight gradient `weightGradientMinTiles`), at most `total`.
    package static func tilesPerChunk(total: Int, alpha: Int, cin: Int, cout: Int, fewest: Int = minTiles) -> Int {
        let byCache = targetElements / max(1, alpha * alpha * (cin + cout))
        return max(1, min(total, max(byCache, fewest)))
    }
}

/// The m×m output tiles of a stride-1 3×3 convolution over `h×w` images with padding `p`: tile `t` of the
/// batch is tile `t % perImage` of image `t / perImage`, tiles row-major, the last row and column cropped.
package struct WinogradTiling {
    package let variant: WinogradVariant
    package let h, w, padding, ho, wo, tilesW, perImage: Int

    package init(variant: WinogradVariant, h: Int, w: Int, padding: Int) {
        self.variant = variant; self.h = h; self.w = w; self.padding = padding
        ho = h + 2 * padding - 2; wo = w + 2 * padding - 2
        let m = variant.m
        tilesW = (wo + m - 1) / m
        perImage = ((ho + m - 1) / m) * tilesW
    }

    /// The image of tile `t` and the output row and column of its top-left value.
    @inline(__always) func origin(ofTile t: Int) -> (image: Int, row: Int, col: Int) {
        let r = t % perImage, m = variant.m
        return (t / perImage, (r / tilesW) * m, (r % tilesW) * m)
    }
}

/// Where a chunk's transformed values sit: value ξ of channel `c` of the chunk's tile `t` at
/// `t·row + ξ·xi + c`, `count` floats in all (the GEMMs' `lda`/`ldc` = `row`, `xi` apart per ξ).
/// F(2×2): ξ-major, each ξ's `[tiles, C]` one contiguous matrix. F(4×4): tile-major, a tile's α²·C values
/// contiguous, so each transform reads and writes one stream instead of 36 (measured 4–9 % faster forward
/// for F(4×4) on the `bench --ops` layers, 1–5 % slower for F(2×2)). `WinogradWorkspace.matrixPadding`
/// floats follow each block.
package struct WinogradLayout {
    package let row, xi, count: Int

    package init(variant: WinogradVariant, tiles: Int, channels: Int) {
        let a2 = variant.alpha * variant.alpha, pad = WinogradWorkspace.matrixPadding
        if variant == .f4 {
            row = a2 * channels + pad; xi = channels; count = tiles * row
        } else {
            row = channels; xi = tiles * channels + pad; count = a2 * xi
        }
    }
}

/// Input transform `V = Bᵀ d B` of the batch's tiles `tiles` (`WinogradTiling` numbering) of the NHWC
/// images `x` (`cin` channels) into `v` (`layout`, the chunk's first tile at row 0). A tile inside the
/// image with 8 channels is read in place. F(4×4) reads the other tiles in place too
/// (`winograd4BorderInputTile`: zeros outside the image, the first `cnt` channels); F(2×2) gathers their
/// α×α channel vectors first into the first α² vectors of `scratch` (2·α² vectors): zeros (once per tile),
/// then the rows and columns of the tile that lie in the image (the first `cnt` channels).
package func winogradInputTransform(_ x: UnsafePointer<Float>, cin: Int, tiling: WinogradTiling, tiles: Range<Int>,
                                    into v: UnsafeMutablePointer<Float>, layout: WinogradLayout,
                                    scratch: UnsafeMutablePointer<WVec>) {
    let variant = tiling.variant, a = variant.alpha, a2 = a * a
    let h = tiling.h, w = tiling.w, p = tiling.padding
    if variant == .f4 && cin % 16 == 0 && WinogradWorkspace.wideTransforms {
        winograd4InputTransform16(x, h: h, w: w, cin: cin, padding: p, tilesW: tiling.tilesW,
                                  perImage: tiling.perImage, tiles: tiles, into: v, row: layout.row, xi: layout.xi)
        return
    }
    let d = scratch, tmp = scratch + a2
    let dFloats = UnsafeRawPointer(d).assumingMemoryBound(to: Float.self)
    let zero = WVec(repeating: 0)
    for t in tiles {
        let (img, oh0, ow0) = tiling.origin(ofTile: t)
        let ih0 = oh0 - p, iw0 = ow0 - p
        let xi = x + img * h * w * cin
        let inside = ih0 >= 0 && iw0 >= 0 && ih0 + a <= h && iw0 + a <= w
        let rows = tileSpan(origin: ih0, size: a, extent: h), cols = tileSpan(origin: iw0, size: a, extent: w)
        // F(2×2)'s gather: a border tile's positions outside the image stay 0 for all its channel groups,
        // zeroed once (a tail group's loads fill all 8 lanes, zeros past `cnt`).
        if !inside && variant == .f2 { d.update(repeating: zero, count: a2) }
        for c0 in stride(from: 0, to: cin, by: 8) {
            let cnt = min(8, cin - c0)
            let dst = v + (t - tiles.lowerBound) * layout.row + c0
            if inside && cnt == 8 {
                winogradInputTile(variant, xi + (ih0 * w + iw0) * cin + c0, w * cin, cin, tmp, dst, layout.xi, 8)
                continue
            }
            if variant == .f4 {
                winograd4BorderInputTile(xi + c0, (ih0 * w + iw0) * cin, w * cin, cin, rows: rows, cols: cols, tmp,
                                         dst, layout.xi, load: { loadVec($0, cnt) }, store: { storeVec($0, $1, cnt) })
                continue
            }
            for i in rows {
                let row = xi + ((ih0 + i) * w + iw0) * cin + c0
                for j in cols { d[i * a + j] = loadVec(row + j * cin, cnt) }
            }
            winogradInputTile(variant, dFloats, a * 8, 8, tmp, dst, layout.xi, cnt)
        }
    }
}

/// Winograd convolution with a fused epilogue, on raw NHWC buffers (no tape):
///
///     out[n, i, j, o] = act( Σ_{ki,kj,c} x[n, i − p + ki, j − p + kj, c] · w[o, ki, kj, c]
///                            + b[o] + r[n, i, j, o] )
///
/// `x` `[n, h, w, filter.cin]`, output `[n, h + 2p − 2, w + 2p − 2, filter.cout]`, `bias` `[cout]` or
/// nil, `residual` (same shape as the output, may alias `out`: each element is read before it is
/// written) or nil, `act` ReLU when `relu`. The output is cut into m×m tiles (the last row/column
/// of tiles cropped); per chunk of tiles: input transform `V = Bᵀ d B` (SIMD over channels),
/// α² GEMMs `M_ξ = V_ξ · U_ξ` (`RowInvariantGEMM`), output transform `Aᵀ M A` with the epilogue. For F(4×4)
/// on an AVX-512 CPU the transforms take 16 channels at a time where the channel count allows
/// (`WinogradWorkspace.wideTransforms`; the same bits).
public func winogradConvolve(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, padding p: Int,
                             filter: WinogradFilter, bias: UnsafePointer<Float>?,
                             residual: UnsafePointer<Float>?, relu: Bool, out: UnsafeMutablePointer<Float>) {
    let v = filter.variant, a = v.alpha, a2 = a * a
    let cin = filter.cin, cout = filter.cout
    let tiling = WinogradTiling(variant: v, h: h, w: w, padding: p)
    guard n > 0, tiling.ho > 0, tiling.wo > 0, cout > 0 else { return }
    let total = n * tiling.perImage
    let chunk = WinogradWorkspace.tilesPerChunk(total: total, alpha: a, cin: cin, cout: cout)
    let vLayout = WinogradLayout(variant: v, tiles: chunk, channels: cin)
    let mLayout = WinogradLayout(variant: v, tiles: chunk, channels: cout)
    let vBuf = Tensor(uninitializedShape: [vLayout.count]), mBuf = Tensor(uninitializedShape: [mLayout.count])
    let scratch = UnsafeMutablePointer<WVec>.allocate(capacity: 2 * a2)
    defer { scratch.deallocate() }

    for t0 in stride(from: 0, to: total, by: chunk) {
        let rows = min(chunk, total - t0)
        winogradInputTransform(x, cin: cin, tiling: tiling, tiles: t0..<(t0 + rows), into: vBuf.ptr,
                               layout: vLayout, scratch: scratch)
        // α² GEMMs: M_ξ[rows, Cout] = V_ξ[rows, Cin] · U_ξ[Cin, Cout].
        // Row-invariant GEMMs (docs/ops.md): a tile's products do not depend on the other tiles of the chunk.
        for xi2 in 0..<a2 {
            RowInvariantGEMM.multiply(m: rows, a: vBuf.ptr + xi2 * vLayout.xi, lda: max(vLayout.row, 1),
                                      b: filter.panels[xi2], c: mBuf.ptr + xi2 * mLayout.xi, ldc: mLayout.row,
                                      accumulate: false)
        }
        winogradOutputTransform(mBuf.ptr, cout: cout, tiling: tiling, tiles: t0..<(t0 + rows), layout: mLayout,
                                bias: bias, residual: residual, relu: relu, out: out, scratch: scratch + a2)
    }
}

/// Output transform `Y = Aᵀ M A` with the epilogue `act(Y + b + r)` of the batch's tiles `tiles` from `m`
/// (`layout`, the chunk's first tile at row 0) into `out` (`[n, ho, wo, cout]`, tiles cropped at the edges);
/// `bias`, `residual` and `relu` as in `winogradConvolve`. `scratch` holds α² vectors.
package func winogradOutputTransform(_ m: UnsafePointer<Float>, cout: Int, tiling: WinogradTiling, tiles: Range<Int>,
                                     layout: WinogradLayout, bias: UnsafePointer<Float>?,
                                     residual: UnsafePointer<Float>?, relu: Bool, out: UnsafeMutablePointer<Float>,
                                     scratch tmp: UnsafeMutablePointer<WVec>) {
    let v = tiling.variant, ho = tiling.ho, wo = tiling.wo
    if v == .f4 && cout % 16 == 0 && WinogradWorkspace.wideTransforms {
        winograd4OutputTransform16(m, row: layout.row, xi: layout.xi, cout: cout, ho: ho, wo: wo,
                                   tilesW: tiling.tilesW, perImage: tiling.perImage, tiles: tiles,
                                   bias: bias, residual: residual, relu: relu, out: out)
        return
    }
    let zero = WVec(repeating: 0)
    for t in tiles {
        let (img, oh0, ow0) = tiling.origin(ofTile: t)
        let hi = min(v.m, ho - oh0), wi = min(v.m, wo - ow0)
        let base = out + ((img * ho + oh0) * wo + ow0) * cout, resBase = residual.map { $0 + (base - out) }
        for k0 in stride(from: 0, to: cout, by: 8) {
            let cnt = min(8, cout - k0)
            let b = bias.map { loadVec($0 + k0, cnt) } ?? zero
            let src = m + (t - tiles.lowerBound) * layout.row + k0
            winogradOutputTile(v, src, layout.xi, cnt, tmp, hi: hi) { i, j, y0 in
                guard j < wi else { return }
                let off = (i * wo + j) * cout + k0
                var y = y0 + b
                if let resBase { y += loadVec(resBase + off, cnt) }
                if relu { y = reluVec(y) }
                storeVec(y, base + off, cnt)
            }
        }
    }
}

/// `conv2d` for a stride-1 3×3 layer by Winograd F(m×m, 3×3) (same contract and result as `conv2d`
/// up to the transform's rounding, docs/ops.md).
///
/// Backward: `db = Σ_rows dY`; `dx` is the Winograd convolution of `dY` with the flipped, transposed
/// filter `W'[c, ki, kj, o] = W[o, 2 − ki, 2 − kj, c]` and padding `2 − p` (see
/// `transposedBackwardGeometry`); `dW` by the same variant's weight gradient
/// (`winogradWeightGradient`: `Gᵀ [Σ_tiles (Bᵀ d B) ⊙ (A dY Aᵀ)] G`).
public func winogradConv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, padding: Int,
                           variant: WinogradVariant) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[1] == 3, weight.shape[2] == 3,
          weight.shape[3] == x.shape[3] else {
        throw TensorError.shapeMismatch(op: "winogradConv2d (needs a 3×3 weight)", lhs: x.shape, rhs: weight.shape)
    }
    let cout = weight.shape[0]
    if let bias, bias.shape != [cout] {
        throw TensorError.shapeMismatch(op: "winogradConv2d (bias vs weight)", lhs: bias.shape, rhs: weight.shape)
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3],
                         kh: 3, kw: 3, stride: 1, padding: padding)
    guard padding >= 0, padding <= 2, g.ho >= 1, g.wo >= 1 else {
        throw TensorError.invalidArgument(op: "winogradConv2d", message:
            "padding \(padding) must be 0…2 and the 3×3 kernel must fit input \(g.h)×\(g.w)")
    }
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, cout])
    let filter = WinogradFilter(weight: weight.ptr, cout: cout, cin: g.cin, variant: variant)
    winogradConvolve(x.ptr, n: g.n, h: g.h, w: g.w, padding: padding, filter: filter,
                     bias: bias?.ptr, residual: nil, relu: false, out: out.ptr)

    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("winogradConv2d", inputs: inputs, output: out) { gy in
        if let bias, bias.requiresGrad { convBiasGradient(gy.ptr, g, cout: cout, into: bias) }
        if weight.requiresGrad {
            winogradWeightGradient(x.ptr, gy.ptr, g, cout: cout, variant: variant, into: weight)
        }
        if x.requiresGrad {
            let (gx, fresh) = x.gradBuffer()
            let back = WinogradFilter(weight: weight.ptr, cout: cout, cin: g.cin, variant: variant,
                                      flipTransposed: true)
            winogradConvolve(gy.ptr, n: g.n, h: g.ho, w: g.wo, padding: 2 - padding, filter: back,
                             bias: nil, residual: fresh ? nil : gx, relu: false, out: gx)
        }
    }
    return out
}

/// `dW[Cout, K] (+)= dYᵀ · im2col(x)`, accumulated into `weight.grad` (per sample block into
/// `weight.blockGrad` with `SampleBlocks`), over chunks of whole images sized by `Conv2dWorkspace` for the
/// images summed together, so a block's partial is computed the same way wherever the block sits.
func convWeightGradient(_ x: UnsafePointer<Float>, _ gy: UnsafePointer<Float>, _ g: ConvGeometry, cout: Int,
                        into weight: Tensor) {
    let k = g.k, ppi = g.pixelsPerImage
    weight.accumulateRowSum(rows: g.n) { images, gw, overwrite in
        let part = ConvGeometry(n: images.count, h: g.h, w: g.w, cin: g.cin, kh: g.kh, kw: g.kw,
                                stride: g.stride, padding: g.padding)
        let chunk = Conv2dWorkspace.imagesPerChunk(part)
        let col = Tensor(uninitializedShape: [chunk * ppi * k])
        for n0 in stride(from: images.lowerBound, to: images.upperBound, by: chunk) {
            let n1 = min(images.upperBound, n0 + chunk)
            im2col(x, g, images: n0..<n1, into: col.ptr)
            weightGradientGEMM(m: cout, n: k, k: (n1 - n0) * ppi, a: gy + n0 * ppi * cout, lda: cout, b: col.ptr,
                               ldb: k, beta: (overwrite && n0 == images.lowerBound) ? 0 : 1, c: gw, ldc: k)
        }
    }
}

/// `dW[Cout, Cin] (+)= dYᵀ · x` for a 1×1 convolution whose input rows are `x` (the image itself, or the
/// strided pixels it samples), per sample block with `SampleBlocks`.
func pointwiseWeightGradient(_ x: UnsafePointer<Float>, _ gy: UnsafePointer<Float>, _ g: ConvGeometry, cout: Int,
                             into weight: Tensor) {
    let k = g.k, ppi = g.pixelsPerImage
    weight.accumulateRowSum(rows: g.n) { images, gw, overwrite in
        weightGradientGEMM(m: cout, n: k, k: images.count * ppi, a: gy + images.lowerBound * ppi * cout,
                           lda: cout, b: x + images.lowerBound * ppi * k, ldb: k, beta: overwrite ? 0 : 1, c: gw,
                           ldc: k)
    }
}

/// `db[Cout] (+)= Σ_rows dY` (per sample block with `SampleBlocks`; accumulated in Double).
func convBiasGradient(_ gy: UnsafePointer<Float>, _ g: ConvGeometry, cout: Int, into bias: Tensor) {
    let ppi = g.pixelsPerImage
    bias.accumulateRowSum(rows: g.n) { images, gb, overwrite in
        accumulateColumnSums(gy + images.lowerBound * ppi * cout, rows: images.count * ppi, cols: cout,
                             into: gb, overwrite: overwrite)
    }
}

/// `conv2d` by the chosen algorithm: Winograd where it applies (`ConvAlgorithm.winogradApplies`; for
/// `winograd4` also `stridedWinogradApplies`), the direct im2col + GEMM convolution otherwise.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int,
                   algorithm: ConvAlgorithm) throws -> Tensor {
    if let v = algorithm.winogradVariant, weight.rank == 4, weight.shape[1] == weight.shape[2],
       ConvAlgorithm.winogradApplies(kernelSize: weight.shape[1], stride: stride, padding: padding) {
        return try winogradConv2d(x, weight: weight, bias: bias, padding: padding, variant: v)
    }
    if algorithm == .winograd4, x.rank == 4, weight.rank == 4, weight.shape[1] == weight.shape[2],
       weight.shape[3] == x.shape[3],
       ConvAlgorithm.stridedWinogradApplies(kernelSize: weight.shape[1], stride: stride, padding: padding,
                                            cin: weight.shape[3], cout: weight.shape[0]) {
        return try stridedWinogradConv2d(x, weight: weight, bias: bias)
    }
    return try conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding)
}
