import KDTensor

/// Errors raised by the losses: each names the loss (or file/field) and the offending values.
public enum LossError: Error, CustomStringConvertible, Equatable {
    /// A loss input is missing from `LossInputs` (e.g. PRG without proxies).
    case missingInput(loss: String, input: String)
    /// A value outside its domain (e.g. `temperature: 0`, a shard outside the batch).
    case invalidArgument(loss: String, message: String)
    /// A config entry is malformed or carries a key the loss does not know.
    case config(String)
    /// Every key weighing the term's parts (`LossDescriptor.parts`) is 0: the term would compute nothing.
    case vanishingTerm(kind: String, parts: [String])

    public var description: String {
        switch self {
        case let .missingInput(loss, input): return "\(loss): missing input '\(input)'"
        case let .invalidArgument(loss, message): return "\(loss): \(message)"
        case let .config(message): return "loss config: \(message)"
        case let .vanishingTerm(kind, parts):
            let listed = parts.dropLast().joined(separator: ", ") + " and " + parts.last!
            return "\(kind): \(listed) are \(parts.count == 2 ? "both" : "all") 0, so the term computes nothing "
                + "(drop the entry, or give one of them a value > 0)"
        }
    }
}

/// One rank's share of a loss: a scalar tensor on the tape plus named term values for logging.
///
/// `terms` are this rank's shares of each sub-term too: summing `value` and every term over the ranks
/// (all-reduce SUM) gives the one-process values.
public struct LossShare {
    public let value: Tensor
    public let terms: [(name: String, value: Double)]
    /// The objective's share only (`LossObjective.evaluate`): per loss block, the block's total and its
    /// values of `terms` in order — what deterministic training adds exactly over every block of every rank.
    public var blockValues: [[Double]] = []
    public init(value: Tensor, terms: [(name: String, value: Double)]) { self.value = value; self.terms = terms }

    /// The value of the term `name`, one the kernel documents (a name it lacks is a programming error).
    public func term(_ name: String) -> Double {
        guard let t = terms.first(where: { $0.name == name }) else { preconditionFailure("no term '\(name)'") }
        return t.value
    }
}

/// Sample shard → row range for `views` views per sample (sample-major rows: `row = sample·V + view`).
@inline(__always) package func rowRange(_ shard: Range<Int>, views: Int) -> Range<Int> {
    (shard.lowerBound * views)..<(shard.upperBound * views)
}

/// Checks a row range against `n` rows.
package func checkRows(_ loss: String, _ rows: Range<Int>, _ n: Int) throws {
    if rows.lowerBound < 0 || rows.upperBound > n {
        throw LossError.invalidArgument(loss: loss, message: "shard rows \(rows) outside 0..<\(n)")
    }
}

/// Checks that `t` is 2-D with `rows` rows (and `cols` columns when given).
package func check2D(_ loss: String, _ name: String, _ t: Tensor, rows: Int? = nil, cols: Int? = nil) throws {
    guard t.rank == 2 else {
        throw LossError.invalidArgument(loss: loss, message: "\(name) must be 2-D, got shape \(t.shape)")
    }
    if let rows, t.shape[0] != rows {
        throw TensorError.shapeMismatch(op: "\(loss) (\(name) rows)", lhs: t.shape, rhs: [rows, cols ?? t.shape[1]])
    }
    if let cols, t.shape[1] != cols {
        throw TensorError.shapeMismatch(op: "\(loss) (\(name) columns)", lhs: t.shape, rhs: [rows ?? t.shape[0], cols])
    }
}

/// Whether the fused op must produce a gradient for `t` (recording on and `t` requires grad).
@inline(__always) package func needsGrad(_ t: Tensor) -> Bool { GradMode.isEnabled && t.requiresGrad }

/// Records a fused loss node: `out` (scalar) with precomputed gradients `grads[k]` for `inputs[k]`
/// (nil = no gradient). The backward accumulates `gOut · grads[k]`.
package func recordFused(_ name: String, output out: Tensor, inputs: [Tensor], grads: [Tensor?]) {
    Tape.record(name, inputs: inputs, output: out) { gOut in
        let s = gOut.ptr[0]
        for (x, g) in zip(inputs, grads) where x.requiresGrad {
            if let g { x.accumulateGrad(g.ptr, scale: s) }
        }
    }
}

/// A fused loss's gradient with respect to some rows of an input: row `rows[r]` gets `values[r]`
/// (`values`: `[rows.count, width]`), every other row zero. A row-sharded term's gradient lives on its
/// shard's rows (and a sampled term's on its samples), so a loss block's node holds those rows only, and
/// so does the block's partial of the gathered rows (`Tensor.accumulateGradRows`).
package struct RowGradient {
    package var rows: [Int]
    package var values: Tensor
    package init(rows: [Int], values: Tensor) {
        precondition(values.rank >= 1 && values.shape[0] == rows.count, "row gradient: \(rows.count) rows, "
                     + "values \(values.shape)")
        self.rows = rows; self.values = values
    }
    package init(rows: Range<Int>, values: Tensor) { self.init(rows: Array(rows), values: values) }
}

/// Records a fused loss node whose gradients are given by rows: the backward adds `gOut · grads[k]` to the
/// rows of `inputs[k]` that `grads[k]` names (nil = no gradient).
package func recordFused(_ name: String, output out: Tensor, inputs: [Tensor], rowGrads: [RowGradient?]) {
    Tape.record(name, inputs: inputs, output: out) { gOut in
        let s = gOut.ptr[0]
        for (x, g) in zip(inputs, rowGrads) where x.requiresGrad {
            if let g { x.accumulateGradRows(g.rows, g.values.ptr, scale: s) }
        }
    }
}

/// Rows per tile of a row-sharded pairwise term over `n` columns: a tile's `[rows, n]` matrices hold at
/// most 2²² values (16 MiB) each, so the term's memory no longer grows with the shard (a shard of 8192
/// rows of a 16384-row batch in 32 tiles of 256 rows). A function of `n` only: the numbers never depend
/// on the machine or its load.
package func pairwiseTileRows(columns n: Int) -> Int { max(1, (1 << 22) / max(1, n)) }

/// `rows` cut into consecutive tiles of `tileRows` rows (nil: `pairwiseTileRows(columns:)`; tests give smaller).
package func pairwiseTiles(_ rows: Range<Int>, columns n: Int, tileRows: Int? = nil) -> [Range<Int>] {
    let t = max(1, tileRows ?? pairwiseTileRows(columns: n))
    return stride(from: rows.lowerBound, to: rows.upperBound, by: t).map { $0..<min(rows.upperBound, $0 + t) }
}

/// The share of a loss of the rows of `x` (`n × d`) whose gradient comes from the squared distances:
/// `∂x` from `∂q` (`n × n`, nil when no gradient is needed) by `squaredDistancesBackward`, recorded as
/// one fused tape node named `name`, the value reported as `term`.
func squaredDistanceShare(_ name: String, term: String, value: Double, x: Tensor, dq: Tensor?,
                          n: Int, d: Int) -> LossShare {
    var grad: Tensor? = nil
    if let dq {
        let g = Tensor.zeros([n, d])
        squaredDistancesBackward(dq.ptr, x: x.ptr, n: n, d: d, into: g.ptr)
        grad = g
    }
    let out = scalarTensor(value)
    recordFused(name, output: out, inputs: [x], grads: [grad])
    return LossShare(value: out, terms: [(term, value)])
}

/// The scalar output of a fused loss.
@inline(__always) package func scalarTensor(_ v: Double) -> Tensor { Tensor(shape: [], data: [Float(v)]) }
