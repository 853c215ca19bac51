import CBLAS

/// Full Gram `G = X Xᵀ` of a row-major Float64 `[n, d]` matrix (`dsyrk` upper triangle, mirrored).
func dgemmGram(_ x: UnsafePointer<Double>, n: Int, d: Int, into g: UnsafeMutablePointer<Double>) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, Int32(n), Int32(d), 1, x, Int32(d), 0, g, Int32(n))
    for i in 0..<n { for j in 0..<i { g[i * n + j] = g[j * n + i] } }
}
