import KDTensor

/// One configured term of the objective. `evaluate` returns this rank's WEIGHTED share (a scalar
/// on the tape) and the term values for logging: `loss/<kind>` (the weighted share) and the unweighted
/// sub-terms `loss/<kind>/<sub>` — all shares, so an all-reduce SUM over ranks gives the global values.
public protocol LossTerm {
    /// The `kind:` it is configured by (`LossRegistry`).
    var kind: String { get }
    /// The term's weight in the objective (config key `weight`, default 1).
    var weight: Float { get }
    /// What it reads from the step (the trainer gathers the union over the objective's terms).
    var needs: LossNeeds { get }
    func evaluate(_ inputs: LossInputs) throws -> LossShare
}

/// Weighted contribution of a raw share: `(weight · value, terms)`, as one tape node.
func weighted(_ kind: String, weight: Float, _ parts: [(LossShare, Float, String?)]) -> LossShare {
    let out = weightedScalarSum(parts.map { ($0.0.value, weight * $0.1) })
    var terms: [(name: String, value: Double)] = [("loss/\(kind)", Double(out.item))]
    for (share, _, prefix) in parts {
        for t in share.terms { terms.append(("loss/\(kind)/\(prefix.map { $0 + "_" } ?? "")\(t.name)", t.value)) }
    }
    return LossShare(value: out, terms: terms)
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

    /// This rank's share of the objective (one scalar on the tape) and every term's share, named
    /// `loss/<kind>` (a kind repeated gets `#2`, `#3`, …) plus sub-terms.
    public func evaluate(_ inputs: LossInputs) throws -> LossShare {
        var parts: [(Tensor, Float)] = []
        var named: [(name: String, value: Double)] = []
        var seen: [String: Int] = [:]
        for t in terms {
            let r = try t.evaluate(inputs)
            parts.append((r.value, 1))
            seen[t.kind, default: 0] += 1
            let suffix = seen[t.kind]! > 1 ? "#\(seen[t.kind]!)" : ""
            for (name, v) in r.terms {
                let base = "loss/\(t.kind)"
                let renamed = name.hasPrefix(base) && !suffix.isEmpty
                    ? base + suffix + name.dropFirst(base.count) : name
                named.append((renamed, v))
            }
        }
        return LossShare(value: weightedScalarSum(parts), terms: named)
    }
}
