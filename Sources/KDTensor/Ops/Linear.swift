/// Fully connected layer, PyTorch layout: `y = x · Wᵀ + b`.
///
/// `x` `[N, in]`, `weight` `[out, in]`, `bias` `[out]` or nil → `y` `[N, out]`,
/// `y[n, o] = b[o] + Σ_i x[n, i] · W[o, i]`.
///
/// Backward (one sgemm each): `dx = dY · W` `[N, in]`, `dW = dYᵀ · x` `[out, in]`,
/// `db = Σ_n dY[n, :]` (accumulated in Double).
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) throws -> Tensor {
    guard x.rank == 2, weight.rank == 2, x.shape[1] == weight.shape[1] else {
        throw TensorError.shapeMismatch(op: "linear", lhs: x.shape, rhs: weight.shape)
    }
    let n = x.shape[0], fin = x.shape[1], fout = weight.shape[0]
    if let bias, bias.shape != [fout] {
        throw TensorError.shapeMismatch(op: "linear (bias vs weight)", lhs: bias.shape, rhs: weight.shape)
    }
    let out = Tensor(uninitializedShape: [n, fout])
    if let bias { broadcastRows(bias.ptr, rows: n, cols: fout, into: out.ptr) }
    sgemm(transB: true, m: n, n: fout, k: fin, a: x.ptr, lda: fin, b: weight.ptr, ldb: fin,
          beta: bias == nil ? 0 : 1, c: out.ptr, ldc: fout)

    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("linear", inputs: inputs, output: out) { gy in
        if x.requiresGrad {      // dx[N, in] = dY[N, out] · W[out, in]
            let (gx, fresh) = x.gradBuffer()
            sgemm(m: n, n: fin, k: fout, a: gy.ptr, lda: fout, b: weight.ptr, ldb: fin,
                  beta: fresh ? 0 : 1, c: gx, ldc: fin)
        }
        if weight.requiresGrad { // dW[out, in] = dYᵀ · x
            let (gw, fresh) = weight.gradBuffer()
            sgemm(transA: true, m: fout, n: fin, k: n, a: gy.ptr, lda: fout, b: x.ptr, ldb: fin,
                  beta: fresh ? 0 : 1, c: gw, ldc: fin)
        }
        if let bias, bias.requiresGrad {
            let (gb, fresh) = bias.gradBuffer()
            accumulateColumnSums(gy.ptr, rows: n, cols: fout, into: gb, overwrite: fresh)
        }
    }
    return out
}
