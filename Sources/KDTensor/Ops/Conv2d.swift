/// Tuning of `conv2d`'s scratch memory.
///
/// The column matrix is processed in chunks of whole images: small enough that a chunk's `im2col`
/// output is still in cache when the GEMM reads it (and `dcol` when `col2im` reads it), large enough
/// (`minChunkRows` output pixels) that each GEMM runs at full speed, and never above
/// `maxColumnElements`.
public enum Conv2dWorkspace {
    /// Hard cap on the column-matrix scratch (floats). Default 2²⁵ floats (128 MiB).
    public nonisolated(unsafe) static var maxColumnElements = 1 << 25
    /// Cache-blocking target for one chunk's column matrix (floats).
    public nonisolated(unsafe) static var targetColumnElements = 1 << 17
    /// Fewest GEMM rows (output pixels) per chunk when the batch has them.
    public nonisolated(unsafe) static var minChunkRows = 256

    /// Images per chunk for geometry `g` (at least one).
    static func imagesPerChunk(_ g: ConvGeometry) -> Int {
        let perImage = max(1, g.pixelsPerImage * g.k)
        let byCache = targetColumnElements / perImage
        let byRows = (minChunkRows + g.pixelsPerImage - 1) / max(1, g.pixelsPerImage)
        let byCap = maxColumnElements / perImage
        return max(1, min(g.n, byCap, max(byCache, byRows)))
    }
}

/// 2-D cross-correlation over NHWC images (PyTorch's `conv2d`, zero padding, no dilation/groups).
///
/// `x` `[N, H, W, Cin]`, `weight` `[Cout, kh, kw, Cin]`, `bias` `[Cout]` or nil →
/// `y[n, i, j, o] = b[o] + Σ_{ki,kj,c} x[n, i·s − p + ki, j·s − p + kj, c] · w[o, ki, kj, c]`
/// with out-of-range input taken as zero; `Ho = (H + 2p − kh)/s + 1`, likewise `Wo`.
///
/// As GEMMs over the column matrix `col = im2col(x)` `[M = N·Ho·Wo, K = kh·kw·Cin]` and
/// `W` viewed as `[Cout, K]`:
/// - forward  `Y[M, Cout] = col · Wᵀ (+ b)`
/// - backward `dW = dYᵀ · col`, `db = Σ_rows dY` (per sample block with `SampleBlocks`),
///   `dcol = dY · W`, `dx = col2im(dcol)` (accumulate);
///   for stride 1, a square kernel and Cin ≥ max(16, Cout/2) `dx` is instead the convolution of `dY`
///   with the flipped, transposed kernel (`dx = im2col(dY) · W'ᵀ`, one GEMM with inner size
///   `k²·Cout`, no col2im).
///
/// The GEMMs run over chunks of whole images sized by `Conv2dWorkspace` (cache-resident column
/// matrix, at least `minChunkRows` rows per GEMM). A 1×1 stride-1 unpadded convolution uses `x` itself as
/// `col` (no copy); a strided unpadded 1×1 gathers the sampled pixels once (whole batch, kept for
/// backward, where the buffer is reused for `dcol`). Otherwise backward recomputes `col` instead of
/// keeping it alive from forward, and reuses the same scratch for `dcol`. Scratch comes from the
/// `BufferPool`.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[3] == x.shape[3] else {
        throw TensorError.shapeMismatch(op: "conv2d", lhs: x.shape, rhs: weight.shape)
    }
    let cout = weight.shape[0]
    if let bias, bias.shape != [cout] {
        throw TensorError.shapeMismatch(op: "conv2d (bias vs weight)", lhs: bias.shape, rhs: weight.shape)
    }
    guard stride >= 1, padding >= 0 else {
        throw TensorError.invalidArgument(op: "conv2d",
                                          message: "stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3],
                         kh: weight.shape[1], kw: weight.shape[2], stride: stride, padding: padding)
    guard g.kh >= 1, g.kw >= 1, g.ho >= 1, g.wo >= 1 else {
        throw TensorError.invalidArgument(op: "conv2d", message:
            "kernel \(g.kh)×\(g.kw) with padding \(padding) does not fit input \(g.h)×\(g.w) "
                + "(input \(x.shape), weight \(weight.shape))")
    }
    let k = g.k, m = g.n * g.pixelsPerImage
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, cout])
    // An empty batch (a rank with no rows) still records, so every rank runs the same backward.

    // Unpadded strided 1×1 while recording: the gathered pixels (x/s² floats) are kept for backward,
    // where they feed dW and then serve as the dcol scratch.
    let stridedPointwise = g.kh == 1 && g.kw == 1 && g.padding == 0 && !g.isPointwise
    let recording = GradMode.isEnabled && (x.requiresGrad || weight.requiresGrad)
    var gathered: Tensor? = nil
    if g.isPointwise || (stridedPointwise && recording) {
        var a = x.ptr
        if !g.isPointwise {
            let t = Tensor(uninitializedShape: [m * k])
            im2col(x.ptr, g, images: 0..<g.n, into: t.ptr)
            gathered = t; a = t.ptr
        }
        if let bias { broadcastRows(bias.ptr, rows: m, cols: cout, into: out.ptr) }
        rowInvariantGEMM(transB: true, m: m, n: cout, k: k, a: a, lda: k, b: weight.ptr, ldb: k,
                         accumulate: bias != nil, c: out.ptr, ldc: cout)
    } else {
        // Forward GEMMs are row-invariant (docs/ops.md): a sample's output does not depend on its batch.
        let packed = RowInvariantGEMM.Packed(weight.ptr, k: k, n: cout, ldb: k, transposed: true)
        let chunk = Conv2dWorkspace.imagesPerChunk(g)
        let col = Tensor(uninitializedShape: [chunk * g.pixelsPerImage * k])
        for n0 in Swift.stride(from: 0, to: g.n, by: chunk) {
            let n1 = min(g.n, n0 + chunk), rows = (n1 - n0) * g.pixelsPerImage
            let y = out.ptr + n0 * g.pixelsPerImage * cout
            im2col(x.ptr, g, images: n0..<n1, into: col.ptr)
            if let bias { broadcastRows(bias.ptr, rows: rows, cols: cout, into: y) }
            RowInvariantGEMM.multiply(m: rows, a: col.ptr, lda: k, b: packed, c: y, ldc: cout,
                                      accumulate: bias != nil)
        }
    }

    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("conv2d", inputs: inputs, output: out) { gy in
        if let bias, bias.requiresGrad { convBiasGradient(gy.ptr, g, cout: cout, into: bias) }
        let needW = weight.requiresGrad, needX = x.requiresGrad
        if !needW && !needX { return }
        if g.isPointwise {
            if needW { pointwiseWeightGradient(x.ptr, gy.ptr, g, cout: cout, into: weight) }   // dW = dYᵀ · x
            if needX {   // dx[M, Cin] = dY · W
                let (gx, fresh) = x.gradBuffer()
                rowInvariantGEMM(m: m, n: k, k: cout, a: gy.ptr, lda: cout, b: weight.ptr, ldb: k,
                                 accumulate: !fresh, c: gx, ldc: k)
            }
            return
        }
        if let gathered {
            if needW { pointwiseWeightGradient(gathered.ptr, gy.ptr, g, cout: cout, into: weight) }
            if needX {   // dcol = dY · W into the gathered buffer, then one pass over dx
                let (gx, fresh) = x.gradBuffer()
                rowInvariantGEMM(m: m, n: k, k: cout, a: gy.ptr, lda: cout, b: weight.ptr, ldb: k,
                                 accumulate: false, c: gathered.ptr, ldc: k)
                col2imStridedPointwise(gathered.ptr, g, images: 0..<g.n, into: gx, overwrite: fresh)
            }
            return
        }
        if needW { convWeightGradient(x.ptr, gy.ptr, g, cout: cout, into: weight) }   // dW = dYᵀ · im2col(x)
        guard needX else { return }
        let chunk = Conv2dWorkspace.imagesPerChunk(g)
        // Stride 1: dx is itself a convolution of dY (see `transposedBackwardGeometry`), one GEMM
        // straight into dx. Otherwise dcol = dY · W and col2im.
        let tg = transposedBackwardGeometry(g, cout: cout)
        let scratch = max(chunk * g.pixelsPerImage * k, tg.map { chunk * $0.pixelsPerImage * $0.k } ?? 0)
        let col = Tensor(uninitializedShape: [scratch])
        let (gx, xFresh) = x.gradBuffer()
        if xFresh && tg == nil { gx.update(repeating: 0, count: x.count) }   // col2im adds
        // dx's GEMM operand, packed once for every chunk: for stride 1 the flipped, transposed weights
        // W'[c, ki, kj, o] = W[o, kh−1−ki, kw−1−kj, c] as W'ᵀ; otherwise W itself (dcol = dY · W).
        let dxPacked: RowInvariantGEMM.Packed
        if let tg {
            let f = Tensor(uninitializedShape: [g.cin, g.kh, g.kw, cout])
            for o in 0..<cout { for ki in 0..<g.kh { for kj in 0..<g.kw {
                let src = weight.ptr + ((o * g.kh + ki) * g.kw + kj) * g.cin
                let dst = f.ptr + ((g.kh - 1 - ki) * g.kw + (g.kw - 1 - kj)) * cout + o
                let cStride = g.kh * g.kw * cout
                for c in 0..<g.cin { dst[c * cStride] = src[c] }
            } } }
            dxPacked = RowInvariantGEMM.Packed(f.ptr, k: tg.k, n: g.cin, ldb: tg.k, transposed: true)
        } else {
            dxPacked = RowInvariantGEMM.Packed(weight.ptr, k: cout, n: k, ldb: k)
        }
        for n0 in Swift.stride(from: 0, to: g.n, by: chunk) {
            let n1 = min(g.n, n0 + chunk), rows = (n1 - n0) * g.pixelsPerImage
            let dy = gy.ptr + n0 * g.pixelsPerImage * cout
            if let tg {  // dx[rows_in, Cin] = im2col(dY) · W'ᵀ
                let inRows = (n1 - n0) * g.h * g.w
                im2col(gy.ptr, tg, images: n0..<n1, into: col.ptr)
                RowInvariantGEMM.multiply(m: inRows, a: col.ptr, lda: tg.k, b: dxPacked,
                                          c: gx + n0 * g.h * g.w * g.cin, ldc: g.cin, accumulate: !xFresh)
            } else {      // dcol[rows, K] = dY · W, then scatter-add onto dx
                RowInvariantGEMM.multiply(m: rows, a: dy, lda: cout, b: dxPacked, c: col.ptr, ldc: k,
                                          accumulate: false)
                col2imAccumulate(col.ptr, g, images: n0..<n1, into: gx)
            }
        }
    }
    return out
}

/// For a stride-1 convolution with square kernel and `padding ≤ k − 1`, the input gradient is a
/// convolution of `dY` (`[N, Ho, Wo, Cout]`) with the flipped, transposed kernel
/// `W'[c, ki, kj, o] = W[o, k−1−ki, k−1−kj, c]` and padding `k − 1 − p`:
/// `dx[n, i, j, c] = Σ_{ki,kj,o} dY[n, i + p − ki, j + p − kj, o] · W[o, ki, kj, c]`.
/// Returns that convolution's geometry (over `dY`), or nil when the identity does not apply.
package func transposedBackwardGeometry(_ g: ConvGeometry, cout: Int) -> ConvGeometry? {
    // Worth it when the dY columns (k²·Cout per input pixel) are not much wider than the dcol rows
    // (k²·Cin per output pixel) and the GEMM's output width Cin is not tiny (a 3-channel stem conv
    // keeps dcol + col2im).
    guard g.stride == 1, g.kh == g.kw, g.kh > 1, g.padding <= g.kh - 1,
          g.cin >= 16, 2 * g.cin >= cout else { return nil }
    let t = ConvGeometry(n: g.n, h: g.ho, w: g.wo, cin: cout, kh: g.kh, kw: g.kw, stride: 1,
                         padding: g.kh - 1 - g.padding)
    return t.ho == g.h && t.wo == g.w ? t : nil
}
