import KDTensor

/// One configured term of the objective. `evaluate` returns this rank's UNWEIGHTED share: `value`, a
/// scalar on the tape, and the term's sub-terms by their bare names (`distance`, `node`, …; none for a
/// term of one part) — all shares, so an all-reduce SUM over ranks gives the global values. The
/// objective applies `weight` and names the values (`LossObjective.evaluate`); a term never does.
public protocol LossTerm {
    /// The `kind:` it is configured by (`LossRegistry`).
    var kind: String { get }
    /// The term's weight in the objective (config key `weight`, default 1), applied by `LossObjective`.
    var weight: Float { get }
    /// What it reads from the step (the trainer gathers the union over the objective's terms).
    var needs: LossNeeds { get }
    /// This rank's unweighted share (see the protocol's comment).
    func evaluate(_ inputs: LossInputs) throws -> LossShare
}

/// `Σ_k w_k x_k` of scalar tensors, one node: backward `∂x_k += w_k · g`.
public func weightedScalarSum(_ parts: [(Tensor, Float)]) -> Tensor {
    var s = 0.0
    for (x, w) in parts { s += Double(w) * Double(x.ptr[0]) }
    let out = Tensor(shape: [], data: [Float(s)])
    Tape.record("weighted_sum", inputs: parts.map { $0.0 }, output: out) { g in
        for (x, w) in parts where x.requiresGrad { x.accumulateGrad([w * g.ptr[0]]) }
    }
    return out
}

/// A run's objective: the weighted sum of its configured terms (config `loss:` list).
public struct LossObjective {
    public let terms: [any LossTerm]
    public init(terms: [any LossTerm]) { self.terms = terms }

    /// Everything the terms read.
    public var needs: LossNeeds { terms.reduce(LossNeeds()) { $0.union($1.needs) } }

    /// This rank's share of the objective `Σ_t w_t L_t` (one scalar on the tape) and every term's share:
    /// `loss/<kind>` is the weighted share `w_t L_t`, `loss/<kind>/<sub>` its unweighted sub-terms; a kind
    /// listed again is named `<kind>#2`, `<kind>#3`, … The weights and the names are applied here, once.
    public func evaluate(_ inputs: LossInputs) throws -> LossShare {
        var parts: [(Tensor, Float)] = []
        var named: [(name: String, value: Double)] = []
        var seen: [String: Int] = [:]
        for t in terms {
            let r = try t.evaluate(inputs)
            seen[t.kind, default: 0] += 1
            let base = "loss/\(t.kind)" + (seen[t.kind]! > 1 ? "#\(seen[t.kind]!)" : "")
            let weighted = weightedScalarSum([(r.value, t.weight)])
            parts.append((weighted, 1))
            named.append((base, Double(weighted.item)))
            for (name, v) in r.terms { named.append((base + "/" + name, v)) }
        }
        return LossShare(value: weightedScalarSum(parts), terms: named)
    }
}
