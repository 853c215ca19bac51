import KDLosses
import KDTensor

// The example of docs/losses.md, "Adding a loss": a new loss is this one file — the kernel, its
// term and its descriptor — plus one registry line (`LossRegistry.all` in the product; the test
// registers it in `LossRegistry.extra` instead, see AddingALossTests). It is built from the package's
// loss helpers (`check2D`, `needsGrad`, `recordFused`, `scalarTensor`, `LossInputs.validate` and
// `require`), as the product's losses are.

/// Cosine embedding distillation, one rank's share over the anchor rows `rows` of `n` gathered rows:
///
///     share = (1/n) Σ_{i∈rows} (1 − ŝ_i·t̂_i),   ŝ = s/max(‖s‖, 1e-12), t̂ = t/max(‖t‖, 1e-12)
///
/// Backward: `∂/∂s_i = −(1/n)(t̂_i − (ŝ_i·t̂_i) ŝ_i) / ‖s_i‖` on the shard's rows, 0 elsewhere; `t` is
/// constant. Term: none (one part; the objective logs `loss/cosine`).
func cosineEmbeddingLoss(student s: Tensor, teacher t: Tensor, rows: Range<Int>) throws -> LossShare {
    let name = "cosine"
    try check2D(name, "student embedding", s)
    try check2D(name, "teacher embedding", t, rows: s.shape[0], cols: s.shape[1])
    let n = s.shape[0], d = s.shape[1]
    try checkRows(name, rows, n)
    let grad: Tensor? = needsGrad(s) ? Tensor.zeros(s.shape) : nil
    var total = 0.0
    for i in rows {
        let si = s.ptr + i * d, ti = t.ptr + i * d
        var ss = 0.0, tt = 0.0, st = 0.0
        for k in 0..<d { ss += Double(si[k] * si[k]); tt += Double(ti[k] * ti[k]); st += Double(si[k] * ti[k]) }
        let ns = max(ss.squareRoot(), 1e-12), nt = max(tt.squareRoot(), 1e-12)
        let c = st / (ns * nt)
        total += 1 - c
        if let grad {
            for k in 0..<d {
                let sh = Double(si[k]) / ns, th = Double(ti[k]) / nt
                grad.ptr[i * d + k] = Float(-(th - c * sh) / (ns * Double(n)))
            }
        }
    }
    let out = scalarTensor(total / Double(n))
    recordFused(name, output: out, inputs: [s], grads: [grad])
    return LossShare(value: out, terms: [])
}

/// `cosine`: the student embedding against the teacher embedding, row by row. Its share is unweighted:
/// the objective applies `weight`.
struct CosineTerm: LossTerm {
    let kind = "cosine"
    var weight: Float
    var needs: LossNeeds { [.studentEmbedding, .teacherEmbedding] }
    func evaluate(_ x: LossInputs) throws -> LossShare {
        try x.validate(kind)
        let s = try x.require(x.studentEmbedding, kind, "student embedding")
        let t = try x.require(x.teacherEmbedding, kind, "teacher embedding")
        return try cosineEmbeddingLoss(student: s, teacher: t, rows: x.shardRows)
    }

    /// `{kind: cosine, weight: 1}`: no parameters (a loss with some lists them here, each with its
    /// default and range, e.g. `parameters: [.number("margin", 0, min: 0)]`, and reads them in `make`).
    static let descriptor = LossDescriptor(kind: "cosine") { weight, _ in CosineTerm(weight: weight) }
}
