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
    /// This rank's share as one share per loss block of `inputs` (`inputs.lossBlocks`), each block's ops
    /// recorded as that block's (`LossBlocks.recording`); one share when `inputs.exact` is off. The
    /// default runs `evaluate` on each block's samples; a term that combines sums between ranks
    /// evaluates all its blocks at once instead (its collectives must match on every rank, whatever
    /// the rank's number of blocks), forming each sum per block with `inputs.blockSums`.
    func evaluateBlocks(_ inputs: LossInputs) throws -> [LossShare]
    /// Why the term cannot run on graphs of `rows` rows, naming its key (nil: the entry as a whole), or nil:
    /// `spectral`'s `k` beyond the rows, `rkd` on fewer than 3. `graph` says which graph, e.g. "a batch's
    /// graph has 64 rows (data.global_batch × data.views)". Checked with the config for a full batch, and
    /// when the run starts for an epoch's last partial batch.
    func refusal(rows: Int, graph: String) -> (key: String?, message: String)?
    /// How many of each sample's views it reads (views `0 ..< n`), or nil: every view (the default). `vrm`
    /// reads 2 (real and virtual); with only such terms, further views are named as unused.
    var viewsRead: Int? { get }
}

extension LossTerm {
    public func evaluateBlocks(_ inputs: LossInputs) throws -> [LossShare] { try evaluateEachBlock(inputs) }
    public func refusal(rows: Int, graph: String) -> (key: String?, message: String)? { nil }
    public var viewsRead: Int? { nil }

    /// `evaluate` on each loss block's samples, recorded as that block's (one share when not `exact`).
    public func evaluateEachBlock(_ inputs: LossInputs) throws -> [LossShare] {
        guard inputs.exact else { return [try evaluate(inputs)] }
        return try inputs.lossBlocks.enumerated().map { b, samples in
            try LossBlocks.recording(b) { try evaluate(inputs.restricted(to: samples)) }
        }
    }
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
    /// With `inputs.exact` each term is evaluated per loss block (`LossTerm.evaluateBlocks`) and the share
    /// also carries every block's values (`LossShare.blockValues`), which the trainer adds exactly.
    public func evaluate(_ inputs: LossInputs) throws -> LossShare {
        if inputs.exact && inputs.lossBlocks.isEmpty {
            throw LossError.invalidArgument(loss: "objective", message: "this rank holds no loss block of the "
                + "batch (samples \(inputs.shard)); deterministic training gives every rank at least one block")
        }
        var parts: [(Tensor, Float)] = []
        var names: [String] = [], weightedIndices: [Int] = []   // `loss/<kind>` entries among `names`
        var blockValues: [[Double]] = []     // per block: the weighted term shares and sub-terms, in `names` order
        var seen: [String: Int] = [:]
        for t in terms {
            let shares = try t.evaluateBlocks(inputs)
            if blockValues.isEmpty { blockValues = Array(repeating: [], count: shares.count) }
            guard shares.count == blockValues.count else {
                throw LossError.invalidArgument(loss: t.kind, message: "\(shares.count) block shares, the "
                                                + "objective's other terms \(blockValues.count)")
            }
            seen[t.kind, default: 0] += 1
            let base = "loss/\(t.kind)" + (seen[t.kind]! > 1 ? "#\(seen[t.kind]!)" : "")
            weightedIndices.append(names.count)
            names.append(base)
            names += shares[0].terms.map { base + "/" + $0.name }
            for (b, r) in shares.enumerated() {
                let weighted = weightedScalarSum([(r.value, t.weight)])
                parts.append((weighted, 1))
                blockValues[b].append(Double(weighted.item))
                blockValues[b] += r.terms.map(\.value)
            }
        }
        var share = LossShare(value: weightedScalarSum(parts), terms: names.indices.map { i in
            (names[i], blockValues.reduce(0) { $0 + $1[i] })
        })
        share.blockValues = blockValues.map { v in [weightedIndices.reduce(0) { $0 + v[$1] }] + v }
        return share
    }
}
