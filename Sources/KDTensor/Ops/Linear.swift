/// Fully connected layer, PyTorch layout: `y = x · Wᵀ + b`.
///
/// `x` `[N, in]`, `weight` `[out, in]`, `bias` `[out]` or nil → `y` `[N, out]`,
/// `y[n, o] = b[o] + Σ_i x[n, i] · W[o, i]`.
///
/// Backward (one sgemm each): `dx = dY · W` `[N, in]`, `dW = dYᵀ · x` `[out, in]`,
/// `db = Σ_n dY[n, :]` (accumulated in Double). With `SampleBlocks` on, `dW` and `db` are per sample
/// block and the forward and `dx` GEMMs are row-invariant (`RowInvariantGEMM`).
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
    // With sample blocks (deterministic training) a row's output must not depend on the other rows.
    let rowInvariant = SampleBlocks.rowsPerBlock != nil
    if rowInvariant {
        rowInvariantGEMM(transB: true, m: n, n: fout, k: fin, a: x.ptr, lda: fin, b: weight.ptr, ldb: fin,
                         accumulate: bias != nil, c: out.ptr, ldc: fout)
    } else {
        sgemm(transB: true, m: n, n: fout, k: fin, a: x.ptr, lda: fin, b: weight.ptr, ldb: fin,
              beta: bias == nil ? 0 : 1, c: out.ptr, ldc: fout)
    }

    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    Tape.record("linear", inputs: inputs, output: out) { gy in
        if x.requiresGrad {      // dx[N, in] = dY[N, out] · W[out, in]
            let (gx, fresh) = x.gradBuffer()
            if rowInvariant {
                rowInvariantGEMM(m: n, n: fin, k: fout, a: gy.ptr, lda: fout, b: weight.ptr, ldb: fin,
                                 accumulate: !fresh, c: gx, ldc: fin)
            } else {
                sgemm(m: n, n: fin, k: fout, a: gy.ptr, lda: fout, b: weight.ptr, ldb: fin,
                      beta: fresh ? 0 : 1, c: gx, ldc: fin)
            }
        }
        if weight.requiresGrad { // dW[out, in] = dYᵀ · x (per sample block with `SampleBlocks`)
            weight.accumulateRowSum(rows: n) { r, gw, overwrite in
                sgemm(transA: true, m: fout, n: fin, k: r.count, a: gy.ptr + r.lowerBound * fout, lda: fout,
                      b: x.ptr + r.lowerBound * fin, ldb: fin, beta: overwrite ? 0 : 1, c: gw, ldc: fin)
            }
        }
        if let bias, bias.requiresGrad {
            bias.accumulateRowSum(rows: n) { r, gb, overwrite in
                accumulateColumnSums(gy.ptr + r.lowerBound * fout, rows: r.count, cols: fout, into: gb,
                                     overwrite: overwrite)
            }
        }
    }
    return out
}
