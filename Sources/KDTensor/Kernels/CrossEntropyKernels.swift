import Foundation

/// Cross-entropy of one row of logits and the rank of its label: the one implementation behind the
/// supervised loss, KD's and PRG's cross-entropy terms (KDLosses) and the evaluation's loss and
/// top-k accuracy (`Trainer.evaluate`). `docs/ops.md` ("Kernels").

/// `ℓ = −ln σ(z)_y = (m + ln s) − z_y` for one row `z` of `count` logits and the label `y`, through
/// `rowLogSoftmax` (Float64, temperature 1); `scratch` (`count` doubles) receives `ln σ(z)`. With
/// `grad`, adds `Float(scale · (σ(z)_j − [j = y]))` to `grad[j]` (`∂ℓ/∂z_j = σ(z)_j − [j = y]`).
/// `y` must lie in `0..<count` (the callers check it and name the row).
@inlinable
public func rowCrossEntropy(_ z: UnsafePointer<Float>, count c: Int, label y: Int, scale: Double,
                            grad: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Double>) -> Double {
    rowLogSoftmax(z, count: c, invT: 1, into: scratch)
    if let grad {
        for j in 0..<c { grad[j] += Float(scale * (exp(scratch[j]) - (j == y ? 1 : 0))) }
    }
    return -scratch[y]
}

/// The rank of label `y` in the row `z`: the number of classes `j` ahead of it, `z_j > z_y`, or
/// `z_j = z_y` with `j < y` (ties go to the lower index, as `torch.topk`/`argmax` do). The row is
/// top-`k` correct iff the rank is `< k` (top-1: rank 0, i.e. `argmax z = y`).
@inlinable
public func rowLabelRank(_ z: UnsafePointer<Float>, count c: Int, label y: Int) -> Int {
    let zy = z[y]
    var ahead = 0
    for j in 0..<c where z[j] > zy || (z[j] == zy && j < y) { ahead += 1 }
    return ahead
}

/// The index of the largest value of the row, the lowest index on ties (`torch.argmax`); 0 for an
/// empty row.
@inlinable
public func rowArgmax(_ z: UnsafePointer<Float>, count c: Int) -> Int {
    var y = 0
    for j in 1..<max(c, 1) where z[j] > z[y] { y = j }
    return y
}
