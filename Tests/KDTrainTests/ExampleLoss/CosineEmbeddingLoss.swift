import KDLosses
import KDTensor

// The example of docs/losses.md, "Adding a loss": a new loss is this one file — the kernel, its
// term and its descriptor — plus one registry line (`LossRegistry.all` in the product; the test
// registers it in `LossRegistry.extra` instead, see AddingALossTests).

/// Cosine embedding distillation, one rank's share over the anchor rows `rows` of `n` gathered rows:
///
///     share = (1/n) Σ_{i∈rows} (1 − ŝ_i·t̂_i),   ŝ = s/‖s‖, t̂ = t/‖t‖
///
/// Backward: `∂/∂s_i = −(1/n)(t̂_i − (ŝ_i·t̂_i) ŝ_i) / ‖s_i‖` on the shard's rows, 0 elsewhere; `t` is
/// constant. Term: `cosine` (share, unweighted).
func cosineEmbeddingLoss(student s: Tensor, teacher t: Tensor, rows: Range<Int>) throws -> LossShare {
    guard s.rank == 2, t.shape == s.shape else {
        throw LossError.invalidArgument(loss: "cosine", message: "student \(s.shape) and teacher \(t.shape) must match")
    }
    let n = s.shape[0], d = s.shape[1]
    let grad: Tensor? = s.requiresGrad ? Tensor.zeros(s.shape) : nil
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
    let out = Tensor(shape: [], data: [Float(total / Double(n))])
    if let grad {
        Tape.record("cosine", inputs: [s], output: out) { g in s.accumulateGrad(grad.ptr, scale: g.ptr[0]) }
    }
    return LossShare(value: out, terms: [("cosine", total / Double(n))])
}

/// `cosine`: the student embedding against the teacher embedding, row by row.
struct CosineTerm: LossTerm {
    let kind = "cosine"
    var weight: Float
    var needs: LossNeeds { [.studentEmbedding, .teacherEmbedding] }
    func evaluate(_ x: LossInputs) throws -> LossShare {
        guard let s = x.studentEmbedding else { throw LossError.missingInput(loss: kind, input: "student embedding") }
        guard let t = x.teacherEmbedding else { throw LossError.missingInput(loss: kind, input: "teacher embedding") }
        let r = try cosineEmbeddingLoss(student: s, teacher: t, rows: x.shardRows)
        return LossShare(value: weightedScalarSum([(r.value, weight)]),
                         terms: [("loss/cosine", Double(weight) * r.terms[0].value)])
    }

    /// `{kind: cosine, weight: 1}`
    static let descriptor = LossDescriptor(kind: "cosine") { weight, _ in CosineTerm(weight: weight) }
}
