import CBLAS

/// Row-major GEMM on raw pointers: C = alpha · op(A) · op(B) + beta · C, with op(A) M×K, op(B) K×N.
@inline(__always)
public func sgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                  b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if gemmWithoutProducts(m: m, n: n, k: k, beta: beta, c: c, ldc: ldc) { return }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The Float64 sibling of `sgemm` (the spectral loss's iterative eigensolver).
@inline(__always)
public func dgemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Double = 1, a: UnsafePointer<Double>, lda: Int,
                  b: UnsafePointer<Double>, ldb: Int,
                  beta: Double = 0, c: UnsafeMutablePointer<Double>, ldc: Int) {
    if gemmWithoutProducts(m: m, n: n, k: k, beta: beta, c: c, ldc: ldc) { return }
    cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// The GEMMs BLAS is not called for: an empty C (nothing to do), or K = 0 (no products: C = 0 when
/// beta = 0, else left as it is). True when handled here.
@inline(__always)
func gemmWithoutProducts<T: FloatingPoint>(m: Int, n: Int, k: Int, beta: T, c: UnsafeMutablePointer<T>,
                                           ldc: Int) -> Bool {
    if m == 0 || n == 0 { return true }
    guard k == 0 else { return false }
    if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
    return true
}

/// Sets the number of OpenBLAS threads (KDGraph's default under MPI: 1 per rank).
public func setBLASThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }
public func blasThreads() -> Int { Int(openblas_get_num_threads()) }
/// The kernel set OpenBLAS chose for this CPU when it loaded (`Haswell`, `SkylakeX`, `Zen`, …).
public func blasCoreName() -> String { openblas_get_corename().map { String(cString: $0) } ?? "unknown" }

/// Matrix product `C = op(A) · op(B)` of 2-D tensors, `op` an optional transpose.
///
/// Backward (with `C = A·B`): `dA = dC · Bᵀ`, `dB = Aᵀ · dC`; the transposed cases follow by
/// transposing those identities, so every case is one sgemm per input.
public func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) throws -> Tensor {
    guard a.rank == 2, b.rank == 2 else {
        throw TensorError.shapeMismatch(op: "matmul (needs 2-D)", lhs: a.shape, rhs: b.shape)
    }
    let m = transposeA ? a.shape[1] : a.shape[0]
    let k = transposeA ? a.shape[0] : a.shape[1]
    let kb = transposeB ? b.shape[1] : b.shape[0]
    let n = transposeB ? b.shape[0] : b.shape[1]
    guard k == kb else { throw TensorError.shapeMismatch(op: "matmul", lhs: a.shape, rhs: b.shape) }
    let out = Tensor(uninitializedShape: [m, n])
    sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k,
          a: a.ptr, lda: a.shape[1], b: b.ptr, ldb: b.shape[1], c: out.ptr, ldc: n)
    Tape.record("matmul", inputs: [a, b], output: out) { g in
        if a.requiresGrad {
            let (ga, fresh) = a.gradBuffer()
            if !transposeA {   // dA[m,k] = dC[m,n] · op(B)ᵀ
                sgemm(transA: false, transB: !transposeB, m: m, n: k, k: n,
                      a: g.ptr, lda: n, b: b.ptr, ldb: b.shape[1], beta: fresh ? 0 : 1, c: ga, ldc: k)
            } else {           // dA[k,m] = op(B) · dCᵀ
                sgemm(transA: transposeB, transB: true, m: k, n: m, k: n,
                      a: b.ptr, lda: b.shape[1], b: g.ptr, ldb: n, beta: fresh ? 0 : 1, c: ga, ldc: m)
            }
        }
        if b.requiresGrad {
            let (gb, fresh) = b.gradBuffer()
            if !transposeB {   // dB[k,n] = op(A)ᵀ · dC
                sgemm(transA: !transposeA, transB: false, m: k, n: n, k: m,
                      a: a.ptr, lda: a.shape[1], b: g.ptr, ldb: n, beta: fresh ? 0 : 1, c: gb, ldc: n)
            } else {           // dB[n,k] = dCᵀ · op(A)
                sgemm(transA: true, transB: transposeA, m: n, n: k, k: m,
                      a: g.ptr, lda: n, b: a.ptr, ldb: a.shape[1], beta: fresh ? 0 : 1, c: gb, ldc: k)
            }
        }
    }
    return out
}
