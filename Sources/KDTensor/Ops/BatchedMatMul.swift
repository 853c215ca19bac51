/// Batched matrix product `C_b = op(A_b) · op(B_b)` for 3-D tensors: `op(A)` [B, M, K], `op(B)` [B, K, N]
/// → `C` [B, M, N], `op` an optional transpose of each matrix (A stored [B, K, M] when `transposeA`,
/// B stored [B, N, K] when `transposeB`). One sgemm per batch entry (this OpenBLAS has no
/// `cblas_sgemm_batch`).
///
/// Backward per batch entry, as for `matmul`: `dA = dC · op(B)ᵀ` (or `op(B) · dCᵀ` when A is stored
/// transposed) and `dB = op(A)ᵀ · dC` (or `dCᵀ · op(A)`), one sgemm each.
public func batchedMatmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
    guard a.rank == 3, b.rank == 3 else {
        throw TensorError.shapeMismatch(op: "batchedMatmul (needs 3-D)", lhs: a.shape, rhs: b.shape)
    }
    let batch = a.shape[0]
    let m = transposeA ? a.shape[2] : a.shape[1]
    let k = transposeA ? a.shape[1] : a.shape[2]
    let kb = transposeB ? b.shape[2] : b.shape[1]
    let n = transposeB ? b.shape[1] : b.shape[2]
    guard b.shape[0] == batch, k == kb else {
        throw TensorError.shapeMismatch(op: "batchedMatmul", lhs: a.shape, rhs: b.shape)
    }
    let lda = a.shape[2], ldb = b.shape[2]
    let aStride = m * k, bStride = k * n, cStride = m * n
    let out = Tensor(uninitializedShape: [batch, m, n])
    for t in 0..<batch {
        sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k,
              a: a.ptr + t * aStride, lda: lda, b: b.ptr + t * bStride, ldb: ldb, c: out.ptr + t * cStride, ldc: n)
    }
    Tape.record("batchedMatmul", inputs: [a, b], output: out) { g in
        if a.requiresGrad {
            let (ga, fresh) = a.gradBuffer()
            for t in 0..<batch {
                let gc = g.ptr + t * cStride, bp = b.ptr + t * bStride, dst = ga + t * aStride
                if !transposeA {   // dA[m,k] = dC[m,n] · op(B)ᵀ
                    sgemm(transA: false, transB: !transposeB, m: m, n: k, k: n,
                          a: gc, lda: n, b: bp, ldb: ldb, beta: fresh ? 0 : 1, c: dst, ldc: k)
                } else {           // dA[k,m] = op(B) · dCᵀ
                    sgemm(transA: transposeB, transB: true, m: k, n: m, k: n,
                          a: bp, lda: ldb, b: gc, ldb: n, beta: fresh ? 0 : 1, c: dst, ldc: m)
                }
            }
        }
        if b.requiresGrad {
            let (gb, fresh) = b.gradBuffer()
            for t in 0..<batch {
                let gc = g.ptr + t * cStride, ap = a.ptr + t * aStride, dst = gb + t * bStride
                if !transposeB {   // dB[k,n] = op(A)ᵀ · dC
                    sgemm(transA: !transposeA, transB: false, m: k, n: n, k: m,
                          a: ap, lda: lda, b: gc, ldb: n, beta: fresh ? 0 : 1, c: dst, ldc: n)
                } else {           // dB[n,k] = dCᵀ · op(A)
                    sgemm(transA: true, transB: transposeA, m: n, n: k, k: m,
                          a: gc, lda: n, b: ap, ldb: lda, beta: fresh ? 0 : 1, c: dst, ldc: k)
                }
            }
        }
    }
    return out
}
