import Foundation
import KDTensor

/// Eigen-decomposition of the teacher Laplacian by the tensor engine's `symmetricEigen` (LAPACK
/// `dsyevd_`): eigenvalues ascending, eigenvectors as the columns of a column-major `n×n` array
/// (`vectors[j·n + i]` = component `i` of eigenvector `j`).
func spectralEigen(_ a: [Double], n: Int) throws -> (values: [Double], vectors: [Double]) {
    do {
        return try symmetricEigen(a, n: n)
    } catch {
        throw LossError.invalidArgument(loss: "spectral", message: "eigen-decomposition of the \(n)×\(n) "
                                        + "teacher Laplacian failed: \(error)")
    }
}

/// Spectral graph alignment (KDGraph's formulation after SEKD, Wang et al., arXiv 2405.08547;
/// `docs/losses.md` "Spectral"), one rank's share. Over the `n` gathered rows, with `u = n(x)`:
///
///     W_ij = exp(−‖u_i − u_j‖² / σ²),   σ² = Σ_{i≠j} ‖u_i − u_j‖² / (n(n−1)),   W_ii = 1
///     L = I − D^{-½} W D^{-½}
///     U = the k eigenvectors of L^T of smallest eigenvalue (dsyevd_, teacher only, constant)
///     L_SE = (1/k) trace(Uᵀ L^S U) − (1/k) Σ_{m≤k} λ^T_m
///
/// The student Laplacian is differentiable, `σ²` and the degrees included. With `Π = U Uᵀ`,
/// `trace(Uᵀ L U) = Σ_i Π_ii − Σ_ij d_i W_ij d_j Π_ij` (`d = deg^{-½}`). Backward:
/// `∂/∂W_ij = d_i d_j Π_ij − ½ d_i³ a_i` with `a_i = 2 Σ_j W_ij d_j Π_ij`, then through `exp`, `σ²`,
/// `‖u_i − u_j‖²` (one sgemm) and `n(·)`. The teacher eigenproblem couples all rows and is solved on
/// every rank anyway, so the loss is computed fully on every rank and this rank's share is the
/// fraction `|rows|/n`. Memory `O(n²)`. Term: `spectral` (share).
public func spectralLoss(student: Tensor, teacher: Tensor, k: Int, rows: Range<Int>? = nil) throws -> LossShare {
    let name = "spectral"
    try check2D(name, "student", student)
    let n = student.shape[0]
    try check2D(name, "teacher", teacher, rows: n)
    guard n >= 2 else { throw LossError.invalidArgument(loss: name, message: "needs at least 2 rows, got \(n)") }
    guard k >= 1 && k <= n else { throw LossError.invalidArgument(loss: name, message: "k = \(k) outside 1...\(n)") }
    let rows = rows ?? 0..<n
    try checkRows(name, rows, n)
    let frac = Double(rows.count) / Double(n)

    /// Normalised rows, squared distances, σ², affinities W (Float32 `[n, n]`) and d = deg^{-½}.
    func graph(_ x: Tensor) -> (u: Tensor, norms: Tensor, d2: Tensor, sigma2: Double, w: Tensor, dinv: [Double]) {
        let dim = x.shape[1]
        let u = Tensor(uninitializedShape: [n, dim]), norms = Tensor(uninitializedShape: [n])
        normalizeRows(x.ptr, rows: n, cols: dim, into: u.ptr, norms: norms.ptr)
        let d2 = Tensor(uninitializedShape: [n, n])
        squaredDistances(u.ptr, n: n, d: dim, into: d2.ptr)
        var s = 0.0
        for k in 0..<(n * n) { s += Double(d2.ptr[k]) }
        let sigma2 = s / Double(n * (n - 1))
        let w = Tensor(uninitializedShape: [n, n])
        var dinv = [Double](repeating: 0, count: n)
        for i in 0..<n {
            var deg = 0.0
            for j in 0..<n {
                let v = exp(-Double(d2.ptr[i * n + j]) / sigma2)
                w.ptr[i * n + j] = Float(v)
                deg += v
            }
            dinv[i] = 1 / deg.squareRoot()
        }
        return (u, norms, d2, sigma2, w, dinv)
    }

    // Teacher: Laplacian, its k lowest eigenvectors, Π = U Uᵀ, baseline.
    let (pi, base): (Tensor, Double) = try withNoGrad {
        let g = graph(teacher)
        guard g.sigma2 > 0 && g.sigma2.isFinite else {
            throw LossError.invalidArgument(loss: name, message: "teacher rows are all equal (σ² = \(g.sigma2))")
        }
        var lap = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n {
                lap[i * n + j] = (i == j ? 1 : 0) - g.dinv[i] * Double(g.w.ptr[i * n + j]) * g.dinv[j]
            }
        }
        let (values, vectors) = try spectralEigen(lap, n: n)
        let uk = Tensor(uninitializedShape: [n, k])       // row-major n×k
        for j in 0..<k { for i in 0..<n { uk.ptr[i * k + j] = Float(vectors[j * n + i]) } }
        let pi = Tensor(uninitializedShape: [n, n])
        sgemm(transA: false, transB: true, m: n, n: n, k: k, a: uk.ptr, lda: k, b: uk.ptr, ldb: k, c: pi.ptr, ldc: n)
        var b = 0.0
        for j in 0..<k { b += values[j] }
        return (pi, b / Double(k))
    }

    let g = graph(student)
    guard g.sigma2 > 0 && g.sigma2.isFinite else {
        throw LossError.invalidArgument(loss: name, message: "student rows are all equal (σ² = \(g.sigma2))")
    }
    var trace = 0.0, sTerm = 0.0
    var a = [Double](repeating: 0, count: n)
    for i in 0..<n {
        trace += Double(pi.ptr[i * n + i])
        var ai = 0.0
        for j in 0..<n { ai += Double(g.w.ptr[i * n + j]) * g.dinv[j] * Double(pi.ptr[i * n + j]) }
        a[i] = 2 * ai
        sTerm += g.dinv[i] * ai
    }
    let full = (trace - sTerm) / Double(k) - base
    let share = full * frac

    var grad: Tensor? = nil
    if needsGrad(student) && frac > 0 {
        let coef = -frac / Double(k)          // ∂share/∂S
        let gd2 = Tensor(uninitializedShape: [n, n])
        var gSigma = 0.0
        for i in 0..<n {
            let bi = -0.5 * g.dinv[i] * g.dinv[i] * g.dinv[i] * a[i]
            for j in 0..<n {
                let kk = i * n + j
                let gw = coef * (g.dinv[i] * g.dinv[j] * Double(pi.ptr[kk]) + bi)
                let wv = Double(g.w.ptr[kk])
                gSigma += gw * wv * Double(g.d2.ptr[kk])
                gd2.ptr[kk] = Float(-gw * wv / g.sigma2)
            }
        }
        gSigma /= g.sigma2 * g.sigma2
        let add = Float(gSigma / Double(n * (n - 1)))
        for i in 0..<n {
            for j in 0..<n { gd2.ptr[i * n + j] = i == j ? 0 : gd2.ptr[i * n + j] + add }
        }
        let dim = student.shape[1]
        let gu = Tensor.zeros([n, dim])
        squaredDistancesBackward(gd2.ptr, x: g.u.ptr, n: n, d: dim, into: gu.ptr)
        for i in 0..<n { normalizeBackward(gu.ptr + i * dim, u: g.u.ptr + i * dim, norm: g.norms.ptr[i], count: dim) }
        grad = gu
    }
    let out = scalarTensor(share)
    recordFused(name, output: out, inputs: [student], grads: [grad])
    return LossShare(value: out, terms: [("spectral", share)])
}

/// `spectral`: spectral graph alignment of the student embedding (or features) to the teacher
/// embedding's Laplacian, over all `B·V` rows. Without `k` it uses the class count (from the logits)
/// capped at half the rows.
public struct SpectralTerm: LossTerm {
    public let kind = "spectral"
    public var weight: Float, k: Int?, useFeatures: Bool
    public var needs: LossNeeds {
        let inputs: LossNeeds = [useFeatures ? .studentFeatures : .studentEmbedding, .teacherEmbedding]
        return k == nil ? inputs.union(.studentLogits) : inputs
    }
    public func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(useFeatures ? x.studentFeatures : x.studentEmbedding, kind,
                              useFeatures ? "student features" : "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        let n = x.rowCount
        let kk: Int
        if let k { kk = k } else {
            guard let c = x.studentLogits?.shape.last ?? x.proxies?.shape.first else {
                throw LossError.invalidArgument(loss: kind, message: "k not set and the class count is unknown "
                                                + "(no logits or proxies)")
            }
            kk = max(1, min(c, n / 2))
        }
        let r = try spectralLoss(student: s, teacher: t, k: kk, rows: x.shardRows)
        return LossShare(value: weightedScalarSum([(r.value, weight)]),
                         terms: [("loss/spectral", Double(weight) * r.terms[0].value)])
    }

    /// `{kind: spectral, weight: 1, k: (classes, at most rows/2), input: embedding | features}`
    public static let descriptor = LossDescriptor(kind: "spectral", fixtures: [("spectral", runFixture)]) { weight, p in
        SpectralTerm(weight: weight, k: try p.optionalInteger("k", min: 1),
                     useFeatures: try p.choice("input", "embedding", ["embedding", "features"]) == "features")
    }

    /// Fixture `spectral`: inputs `student`, `teacher`; parameter `k` (required).
    static func runFixture(_ f: any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)]) {
        let s = try f.input("student"), t = try f.input("teacher")
        guard f.hasParameter("k") else {
            throw LossError.invalidArgument(loss: "spectral", message: "the case needs params.k")
        }
        s.requiresGrad = true
        let r = try spectralLoss(student: s, teacher: t, k: Int(f.parameter("k", 1)))
        r.value.backward()
        return (Double(r.value.item), [("grad_student", s.grad ?? Tensor.zeros(s.shape))])
    }
}
