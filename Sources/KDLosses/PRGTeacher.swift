import KDTensor

/// The default `τ_clip` of `prgTeacher` (CLIP's logit scale).
public let prgDefaultClipScale: Float = 100

/// Teacher-side preprocessing of PRG for a foundation-model (CLIP-like) teacher with `K` text prompts
/// per class (`docs/losses.md` "PRG", teacher side; Xu et al., arXiv 2408.12248). No gradient (the teacher is frozen).
///
///     z_{k,i} = τ_clip · ⟨n(f_i), n(P_{k,c})⟩_c                      (prompt logits, K×n×C)
///     m_{k,i} = max_c σ(z_{k,i})_c,   w_{k,i} = m_{k,i} / Σ_k' m_{k',i}   (confidence weights)
///     z^T_i  = Σ_k w_{k,i} z_{k,i}                                    (task-relevant teacher logits)
///     p_c    = n(Σ_k n(P_{k,c}))                                      (class proxies)
///
/// `features` is `[n, D]`, `prompts` `[K, C, D]` (or `[C, D]` for `K = 1`: a network teacher's
/// classifier rows). Returns `logits` `[n, C]` and `proxies` `[C, D]`.
public func prgTeacher(features: Tensor, prompts: Tensor,
                       clipScale: Float = prgDefaultClipScale) throws -> (logits: Tensor, proxies: Tensor) {
    let name = "prg teacher"
    try check2D(name, "teacher features", features)
    let n = features.shape[0], d = features.shape[1]
    let k: Int, c: Int
    switch prompts.rank {
    case 2: k = 1; c = prompts.shape[0]
    case 3: k = prompts.shape[0]; c = prompts.shape[1]
    default:
        throw LossError.invalidArgument(loss: name,
                                        message: "prompt embeddings must be [K, C, D] or [C, D], got \(prompts.shape)")
    }
    guard prompts.shape[prompts.rank - 1] == d else {
        throw TensorError.shapeMismatch(op: "\(name) (features vs prompts)", lhs: features.shape, rhs: prompts.shape)
    }
    guard k > 0, c > 0 else {
        throw LossError.invalidArgument(loss: name, message: "empty prompt set \(prompts.shape)")
    }
    return withNoGrad {
        let nf = Tensor(uninitializedShape: [n, d]), nfNorm = Tensor(uninitializedShape: [n])
        normalizeRows(features.ptr, rows: n, cols: d, into: nf.ptr, norms: nfNorm.ptr)
        let np = Tensor(uninitializedShape: [k * c, d]), npNorm = Tensor(uninitializedShape: [k * c])
        normalizeRows(prompts.ptr, rows: k * c, cols: d, into: np.ptr, norms: npNorm.ptr)
        // Prompt logits for all K at once: [n, K·C].
        let zk = Tensor(uninitializedShape: [n, k * c])
        sgemm(transA: false, transB: true, m: n, n: k * c, k: d, alpha: clipScale, a: nf.ptr, lda: d,
              b: np.ptr, ldb: d, c: zk.ptr, ldc: k * c)
        let logits = Tensor.zeros([n, c])
        var m = [Double](repeating: 0, count: k)
        for i in 0..<n {
            let row = zk.ptr + i * k * c
            var msum = 0.0
            for p in 0..<k {
                let z = row + p * c
                m[p] = 1 / rowMaxExpSum(z, count: c, invT: 1).sum   // max_c softmax = e⁰ / Σ e^{z − max}
                msum += m[p]
            }
            let out = logits.ptr + i * c
            for j in 0..<c {
                var acc = 0.0
                for p in 0..<k { acc += m[p] / msum * Double(row[p * c + j]) }
                out[j] = Float(acc)
            }
        }
        let proxies = Tensor(uninitializedShape: [c, d])
        var sum = [Double](repeating: 0, count: d)
        for j in 0..<c {
            for q in 0..<d { sum[q] = 0 }
            for p in 0..<k { let r = np.ptr + (p * c + j) * d; for q in 0..<d { sum[q] += Double(r[q]) } }
            var s = 0.0
            for q in 0..<d { s += sum[q] * sum[q] }
            let inv = 1 / max(s.squareRoot(), Double(rowNormEpsilon))
            for q in 0..<d { proxies.ptr[j * d + q] = Float(sum[q] * inv) }
        }
        return (logits, proxies)
    }
}
