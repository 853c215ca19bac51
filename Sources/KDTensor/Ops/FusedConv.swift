/// An inference-only convolution with its epilogue fused: `out = act(conv(x; W) + b + residual)`,
/// on raw NHWC buffers, no tape (docs/ops.md, "Fused inference"). The weight is fixed at
/// construction (typically BatchNorm folded in, see `FusedResNet`), so a Winograd filter transform is
/// computed once here and reused by every call.
public final class FusedConv: @unchecked Sendable {
    public let weight: Tensor, bias: Tensor
    public let cin: Int, cout: Int, kernelSize: Int, stride: Int, padding: Int
    /// The algorithm actually run (`direct` where Winograd does not apply).
    public let algorithm: ConvAlgorithm
    let filter: WinogradFilter?
    /// The bank of the strided Winograd F(4×4, 2×2) (`winograd4` on a stride-2 layer where it applies).
    let stridedFilter: StridedWinogradFilter?
    /// The weight as `Wᵀ` `[K, Cout]` panels for the direct algorithm's row-invariant GEMM.
    let packed: RowInvariantGEMM.Packed?

    /// `weight` `[Cout, k, k, Cin]`, `bias` `[Cout]` (both copied).
    public init(weight: Tensor, bias: Tensor, stride: Int, padding: Int, algorithm: ConvAlgorithm) {
        precondition(weight.rank == 4 && weight.shape[1] == weight.shape[2] && bias.shape == [weight.shape[0]],
                     "FusedConv: weight \(weight.shape), bias \(bias.shape)")
        self.weight = weight.copy(); self.bias = bias.copy()
        cout = weight.shape[0]; kernelSize = weight.shape[1]; cin = weight.shape[3]
        self.stride = stride; self.padding = padding
        if let v = algorithm.winogradVariant,
           ConvAlgorithm.winogradApplies(kernelSize: kernelSize, stride: stride, padding: padding) {
            self.algorithm = algorithm
            filter = WinogradFilter(weight: weight.ptr, cout: cout, cin: cin, variant: v)
            stridedFilter = nil
            packed = nil
        } else if algorithm == .winograd4,
                  ConvAlgorithm.stridedWinogradApplies(kernelSize: kernelSize, stride: stride, padding: padding,
                                                       cin: cin, cout: cout) {
            self.algorithm = .winograd4
            filter = nil
            stridedFilter = StridedWinogradFilter(weight: weight.ptr, cout: cout, cin: cin)
            packed = nil
        } else {
            self.algorithm = .direct
            filter = nil
            stridedFilter = nil
            let k = kernelSize * kernelSize * cin
            packed = RowInvariantGEMM.Packed(self.weight.ptr, k: k, n: cout, ldb: k, transposed: true)
        }
    }

    /// Output spatial size for an `h×w` input.
    public func outputSize(h: Int, w: Int) -> (h: Int, w: Int) {
        ((h + 2 * padding - kernelSize) / stride + 1, (w + 2 * padding - kernelSize) / stride + 1)
    }

    /// `out[n, i, j, o] = act(Σ x·W + b[o] + residual[n, i, j, o])` for `x` `[n, h, w, Cin]`; `residual`
    /// may alias `out`, not `x`; `scratch` is reused column-matrix memory (grown when too small).
    public func run(_ x: UnsafePointer<Float>, n: Int, h: Int, w: Int, residual: UnsafePointer<Float>?,
                    relu: Bool, out: UnsafeMutablePointer<Float>, scratch: inout Tensor?) {
        if let filter {
            winogradConvolve(x, n: n, h: h, w: w, padding: padding, filter: filter, bias: bias.ptr,
                             residual: residual, relu: relu, out: out)
            return
        }
        if let stridedFilter {
            stridedWinogradConvolve(x, n: n, h: h, w: w, filter: stridedFilter, bias: bias.ptr, residual: residual,
                                    relu: relu, out: out)
            return
        }
        let g = ConvGeometry(n: n, h: h, w: w, cin: cin, kh: kernelSize, kw: kernelSize, stride: stride,
                             padding: padding)
        let rowsTotal = n * g.pixelsPerImage
        // C = residual + b (or b), then C += col · Wᵀ (each element's chain starts from it), then ReLU.
        var p = out
        for r in 0..<rowsTotal {
            if let residual {
                let q = residual + r * cout
                for o in 0..<cout { p[o] = q[o] + bias.ptr[o] }
            } else {
                p.update(from: bias.ptr, count: cout)
            }
            p += cout
        }
        // Row-invariant GEMMs (docs/ops.md): a sample's output does not depend on its batch mates.
        let wt = packed!
        if g.isPointwise {
            RowInvariantGEMM.multiply(m: rowsTotal, a: x, lda: cin, b: wt, c: out, ldc: cout, accumulate: true)
        } else {
            let chunk = Conv2dWorkspace.imagesPerChunk(g), k = g.k
            let need = chunk * g.pixelsPerImage * k
            if (scratch?.count ?? 0) < need { scratch = Tensor(uninitializedShape: [need]) }
            let col = scratch!.ptr
            for n0 in Swift.stride(from: 0, to: n, by: chunk) {
                let n1 = min(n, n0 + chunk), rows = (n1 - n0) * g.pixelsPerImage
                im2col(x, g, images: n0..<n1, into: col)
                RowInvariantGEMM.multiply(m: rows, a: col, lda: k, b: wt, c: out + n0 * g.pixelsPerImage * cout,
                                          ldc: cout, accumulate: true)
            }
        }
        if relu { reluInPlace(out, rowsTotal * cout) }
    }
}

/// `p[i] = max(p[i], 0)` for `i < count`, eight lanes at a time; NaN stays NaN (`reluVec`).
func reluInPlace(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
    var i = 0
    while i + 8 <= count {
        storeVec(reluVec(loadVec(p + i, 8)), p + i, 8)
        i += 8
    }
    while i < count { if p[i] < 0 { p[i] = 0 }; i += 1 }
}
