import CBLAS

/// Symmetric eigendecomposition `A = V Λ Vᵀ` with LAPACK's divide-and-conquer `dsyevd` (`ssyevd` for the
/// Float variant) from OpenBLAS. A constant: no tape node, no gradient (the spectral loss uses it on
/// the teacher side only).
///
/// - `a`: the n×n matrix, n² values row-major. Only its upper triangle (row-major) is read, so a
///   slightly asymmetric input behaves as its upper triangle mirrored.
/// - `values`: the n eigenvalues in ascending order.
/// - `vectors`: n² values in LAPACK's column-major layout: eigenvector `j` (for `values[j]`) is the
///   contiguous run `vectors[j·n ..< (j+1)·n]`, i.e. component `i` of eigenvector `j` is
///   `vectors[j·n + i]`. Read as a row-major n×n matrix this is `Vᵀ` (row `j` = eigenvector `j`), so
///   the first `k` eigenvectors are the first `k·n` values: `Tensor(shape: [k, n], ...)` is `U_kᵀ`.
///   The eigenvectors are orthonormal; each one's sign is LAPACK's choice.
///
/// Workspace sizes come from a query call (`lwork = liwork = −1`) first. Throws for `a.count ≠ n²`,
/// non-finite entries, or LAPACK `info ≠ 0` (the message carries `info`).
public func symmetricEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
    try checkEigenInput(count: a.count, n: n, finite: a.allSatisfy { $0.isFinite })
    if n == 0 { return ([], []) }
    var m = a, w = [Double](repeating: 0, count: n)
    var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "L"))
    var nn = Int32(n), lda = Int32(n), info: Int32 = 0
    var lwork: Int32 = -1, liwork: Int32 = -1
    var wq = [Double](repeating: 0, count: 1), iwq = [Int32](repeating: 0, count: 1)
    dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &wq, &lwork, &iwq, &liwork, &info)
    guard info == 0 else { throw eigenError("dsyevd workspace query", info: info, n: n) }
    lwork = Int32(wq[0].rounded(.up)); liwork = iwq[0]
    var work = [Double](repeating: 0, count: Int(Swift.max(lwork, 1)))
    var iwork = [Int32](repeating: 0, count: Int(Swift.max(liwork, 1)))
    dsyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
    guard info == 0 else { throw eigenError("dsyevd", info: info, n: n) }
    return (w, m)
}

/// Float32 variant of `symmetricEigen` through `ssyevd` (same layout and ordering).
public func symmetricEigen(_ a: [Float], n: Int) throws -> (values: [Float], vectors: [Float]) {
    try checkEigenInput(count: a.count, n: n, finite: a.allSatisfy { $0.isFinite })
    if n == 0 { return ([], []) }
    var m = a, w = [Float](repeating: 0, count: n)
    var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "L"))
    var nn = Int32(n), lda = Int32(n), info: Int32 = 0
    var lwork: Int32 = -1, liwork: Int32 = -1
    var wq = [Float](repeating: 0, count: 1), iwq = [Int32](repeating: 0, count: 1)
    ssyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &wq, &lwork, &iwq, &liwork, &info)
    guard info == 0 else { throw eigenError("ssyevd workspace query", info: info, n: n) }
    lwork = Int32(wq[0].rounded(.up)); liwork = iwq[0]
    var work = [Float](repeating: 0, count: Int(Swift.max(lwork, 1)))
    var iwork = [Int32](repeating: 0, count: Int(Swift.max(liwork, 1)))
    ssyevd_(&jobz, &uplo, &nn, &m, &lda, &w, &work, &lwork, &iwork, &liwork, &info)
    guard info == 0 else { throw eigenError("ssyevd", info: info, n: n) }
    return (w, m)
}

private func checkEigenInput(count: Int, n: Int, finite: Bool) throws {
    guard n >= 0, count == n * n else {
        throw TensorError.invalidArgument(op: "symmetricEigen", message: "needs n² = \(n)² values, got \(count)")
    }
    guard finite else {
        throw TensorError.invalidArgument(op: "symmetricEigen", message: "matrix (n = \(n)) has non-finite entries")
    }
}

private func eigenError(_ routine: String, info: Int32, n: Int) -> TensorError {
    let why = info < 0 ? "argument \(-info) had an illegal value"
                       : "the divide-and-conquer iteration failed to converge"
    return .invalidArgument(op: "symmetricEigen", message: "\(routine) returned info = \(info) for n = \(n): \(why)")
}
