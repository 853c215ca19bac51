/// Tuning of `conv2d`'s scratch memory.
public enum Conv2dWorkspace {
    /// Largest column matrix (floats) one GEMM works on. A batch whose `N·Ho·Wo × kh·kw·Cin` column
    /// matrix is bigger is processed in chunks of whole images. Default 2²⁵ floats (128 MiB).
    public nonisolated(unsafe) static var maxColumnElements = 1 << 25

    /// Images per chunk for geometry `g` (at least one).
    static func imagesPerChunk(_ g: ConvGeometry) -> Int {
        let perImage = max(1, g.pixelsPerImage * g.k)
        return max(1, min(g.n, maxColumnElements / perImage))
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
/// - backward `dW = dYᵀ · col`, `db = Σ_rows dY`, `dcol = dY · W`, `dx = col2im(dcol)` (accumulate).
///
/// The whole batch is one GEMM (chunks of whole images when the column matrix would exceed
/// `Conv2dWorkspace.maxColumnElements`). A 1×1 stride-1 unpadded convolution uses `x` itself as
/// `col` (no copy). Backward recomputes `col` instead of keeping it alive from forward, and reuses the
/// same scratch for `dcol`; scratch comes from the `BufferPool`.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: Int, padding: Int) throws -> Tensor {
    guard x.rank == 4, weight.rank == 4, weight.shape[3] == x.shape[3] else {
        throw TensorError.shapeMismatch(op: "conv2d", lhs: x.shape, rhs: weight.shape)
    }
    let cout = weight.shape[0]
    if let bias, bias.shape != [cout] {
        throw TensorError.shapeMismatch(op: "conv2d (bias vs weight)", lhs: bias.shape, rhs: weight.shape)
    }
    guard stride >= 1, padding >= 0 else {
        throw TensorError.invalidArgument(op: "conv2d", message: "stride \(stride) must be ≥ 1 and padding \(padding) ≥ 0")
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3],
                         kh: weight.shape[1], kw: weight.shape[2], stride: stride, padding: padding)
    guard g.kh >= 1, g.kw >= 1, g.ho >= 1, g.wo >= 1 else {
        throw TensorError.invalidArgument(op: "conv2d", message:
            "kernel \(g.kh)×\(g.kw) with padding \(padding) does not fit input \(g.h)×\(g.w) (input \(x.shape), weight \(weight.shape))")
    }
    let k = g.k, m = g.n * g.pixelsPerImage
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, cout])
    if m == 0 || cout == 0 { return out }

    if g.isPointwise {
        if let bias { broadcastRows(bias.ptr, rows: m, cols: cout, into: out.ptr) }
        sgemm(transB: true, m: m, n: cout, k: k, a: x.ptr, lda: k, b: weight.ptr, ldb: k,
              beta: bias == nil ? 0 : 1, c: out.ptr, ldc: cout)
    } else {
        let chunk = Conv2dWorkspace.imagesPerChunk(g)
        let col = Tensor(uninitializedShape: [chunk * g.pixelsPerImage * k])
        for n0 in Swift.stride(from: 0, to: g.n, by: chunk) {
            let n1 = min(g.n, n0 + chunk), rows = (n1 - n0) * g.pixelsPerImage
            let y = out.ptr + n0 * g.pixelsPerImage * cout
            im2col(x.ptr, g, images: n0..<n1, into: col.ptr)
            if let bias { broadcastRows(bias.ptr, rows: rows, cols: cout, into: y) }
            sgemm(transB: true, m: rows, n: cout, k: k, a: col.ptr, lda: k, b: weight.ptr, ldb: k,
                  beta: bias == nil ? 0 : 1, c: y, ldc: cout)
        }
    }

    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("conv2d", inputs: inputs, output: out) { gy in
        if let bias, bias.requiresGrad {
            let (gb, fresh) = bias.gradBuffer()
            accumulateColumnSums(gy.ptr, rows: m, cols: cout, into: gb, overwrite: fresh)
        }
        let needW = weight.requiresGrad, needX = x.requiresGrad
        if !needW && !needX { return }
        if g.isPointwise {
            if needW {   // dW[Cout, Cin] = dYᵀ · x
                let (gw, fresh) = weight.gradBuffer()
                sgemm(transA: true, m: cout, n: k, k: m, a: gy.ptr, lda: cout, b: x.ptr, ldb: k,
                      beta: fresh ? 0 : 1, c: gw, ldc: k)
            }
            if needX {   // dx[M, Cin] = dY · W
                let (gx, fresh) = x.gradBuffer()
                sgemm(m: m, n: k, k: cout, a: gy.ptr, lda: cout, b: weight.ptr, ldb: k,
                      beta: fresh ? 0 : 1, c: gx, ldc: k)
            }
            return
        }
        let chunk = Conv2dWorkspace.imagesPerChunk(g)
        let col = Tensor(uninitializedShape: [chunk * g.pixelsPerImage * k])
        var gw: UnsafeMutablePointer<Float>? = nil, wFresh = false
        if needW { (gw, wFresh) = weight.gradBuffer() }
        var gx: UnsafeMutablePointer<Float>? = nil
        if needX {
            let (p, fresh) = x.gradBuffer()
            if fresh { p.update(repeating: 0, count: x.count) }
            gx = p
        }
        for n0 in Swift.stride(from: 0, to: g.n, by: chunk) {
            let n1 = min(g.n, n0 + chunk), rows = (n1 - n0) * g.pixelsPerImage
            let dy = gy.ptr + n0 * g.pixelsPerImage * cout
            if let gw {  // dW[Cout, K] += dYᵀ · col
                im2col(x.ptr, g, images: n0..<n1, into: col.ptr)
                sgemm(transA: true, m: cout, n: k, k: rows, a: dy, lda: cout, b: col.ptr, ldb: k,
                      beta: (wFresh && n0 == 0) ? 0 : 1, c: gw, ldc: k)
            }
            if let gx {  // dcol[rows, K] = dY · W, then scatter-add onto dx
                sgemm(m: rows, n: k, k: cout, a: dy, lda: cout, b: weight.ptr, ldb: k,
                      beta: 0, c: col.ptr, ldc: k)
                col2imAccumulate(col.ptr, g, images: n0..<n1, into: gx)
            }
        }
    }
    return out
}
