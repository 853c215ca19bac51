import KDKernels512

/// `C[m, n] = Aᵀ · B (+ β·C)`, β ∈ {0, 1}, with A `[k, m]` (`lda` ≥ m) and B `[k, n]` (`ldb` ≥ n)
/// row-major: the weight gradients' products, a sum over the pixels or tiles `k` (`dW = dYᵀ · im2col(x)`, the
/// Winograd `dU_ξ = V_ξᵀ · dM_ξ`, a 1×1 convolution's `dYᵀ · x`).
///
/// Where the CPU has AVX-512 (`RowInvariantGEMM.wideKernel`), the 12 × 32 blocks of C run
/// `transposedAKernel12x32` (module KDKernels512), reading A and B in place: K in chunks of `kc` (each
/// element's chain continues through C), for each 32-column strip of B every 12-row block of Aᵀ, so the strip
/// stays in L1 and the A chunk in L2; the rows and columns left over go to `cblas_sgemm`. Elsewhere all of it
/// is one `cblas_sgemm`. Either way a product depends on its operands' values and shapes only, so a sample
/// block's partial is computed the same way wherever the block sits (`SampleBlocks`).
public func weightGradientGEMM(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>,
                               ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    let m12 = m - m % 12, n32 = n - n % 32
    guard RowInvariantGEMM.wideKernel, m12 > 0, n32 > 0, k > 0 else {
        sgemm(transA: true, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
        return
    }
    let kc = RowInvariantGEMM.kc
    for k0 in stride(from: 0, to: k, by: kc) {
        let depth = min(kc, k - k0), startFromC = beta != 0 || k0 > 0
        for j0 in stride(from: 0, to: n32, by: 32) {
            for i0 in stride(from: 0, to: m12, by: 12) {
                transposedAKernel12x32(a + k0 * lda + i0, lda, b + k0 * ldb + j0, ldb, depth, c + i0 * ldc + j0, ldc,
                                       startFromC)
            }
        }
    }
    if m12 < m {   // the rows left over, every column
        sgemm(transA: true, m: m - m12, n: n, k: k, a: a + m12, lda: lda, b: b, ldb: ldb, beta: beta,
              c: c + m12 * ldc, ldc: ldc)
    }
    if n32 < n {   // the columns left over, the other rows
        sgemm(transA: true, m: m12, n: n - n32, k: k, a: a, lda: lda, b: b + n32, ldb: ldb, beta: beta, c: c + n32,
              ldc: ldc)
    }
}
