import Foundation

/// Loss primitives: cross-entropy, KL divergence (PyTorch `kl_div`), smooth-L1 and Huber.
/// Values accumulate in Double; every loss's backward sits right after its forward.

/// How a loss reduces its per-element values `ℓ` (PyTorch names):
/// `none` keeps them (same shape as the input), `sum` = `Σℓ`, `mean` = `Σℓ / count`,
/// `batchMean` = `Σℓ / shape[0]` (sum over the other dims, mean over rows).
public enum LossReduction: String, Sendable {
    case none, sum, mean, batchMean
}

/// Output tensor and the factor that turns `Σℓ` into the reduced loss.
private func reducedOutput(_ shape: [Int], _ reduction: LossReduction) -> (Tensor, Double) {
    let count = shape.reduce(1, *)
    switch reduction {
    case .none: return (Tensor(uninitializedShape: shape), 1)
    case .sum: return (Tensor(uninitializedShape: []), 1)
    case .mean: return (Tensor(uninitializedShape: []), 1 / Double(Swift.max(count, 1)))
    case .batchMean: return (Tensor(uninitializedShape: []), 1 / Double(Swift.max(shape.first ?? 1, 1)))
    }
}

/// The upstream gradient of element `i` is `gp[i · stride] · scale`: stride 1 for `none`, 0 (the one
/// scalar gradient) otherwise.
private func upstream(_ g: Tensor, _ reduction: LossReduction, _ scale: Double) -> (UnsafeMutablePointer<Float>, Int, Float) {
    reduction == .none ? (g.ptr, 1, 1) : (g.ptr, 0, Float(scale))
}

// MARK: - Cross-entropy

/// `L = (1/N) Σᵢ (logΣ_c e^{z_ic} − z_{i,yᵢ})` for logits `z` [N, C] and class labels `y` (mean over rows,
/// log-sum-exp stabilised by the row max). Backward: `gz_ic = g · (softmax(z)_ic − [c = yᵢ]) / N`.
/// Throws when `logits` is not 2-D, when the label count is not N, or for a label outside `0..<C`
/// (the message names the label's index and value).
public func crossEntropy(logits: Tensor, labels: [Int]) throws -> Tensor {
    guard logits.rank == 2 else {
        throw TensorError.invalidArgument(op: "crossEntropy", message: "logits must be [N, C], got shape \(logits.shape)")
    }
    let n = logits.shape[0], c = logits.shape[1]
    guard labels.count == n else {
        throw TensorError.invalidArgument(op: "crossEntropy", message: "\(labels.count) labels for logits of shape \(logits.shape)")
    }
    guard n > 0 else { throw TensorError.invalidArgument(op: "crossEntropy", message: "empty batch (logits \(logits.shape))") }
    for (i, y) in labels.enumerated() where y < 0 || y >= c {
        throw TensorError.invalidArgument(op: "crossEntropy", message: "label at index \(i) is \(y), outside 0..<\(c)")
    }
    let zp = logits.ptr
    var rowMax = [Float](repeating: 0, count: n), logZ = [Float](repeating: 0, count: n)
    var total = 0.0
    for i in 0..<n {
        let row = zp + i * c
        (rowMax[i], logZ[i]) = logSumExpLine(row, n: c, stride: 1)
        total += Double(rowMax[i] - row[labels[i]]) + Double(logZ[i])   // lse − z_y, without rounding lse
    }
    let out = Tensor(uninitializedShape: [])
    out.ptr[0] = Float(total / Double(n))
    Tape.record("crossEntropy", inputs: [logits], output: out) { g in
        let s = g.ptr[0] / Float(n)
        let (ga, fresh) = logits.gradBuffer()
        for i in 0..<n {
            let row = zp + i * c, grow = ga + i * c, m = rowMax[i], lz = logZ[i]
            for k in 0..<c {
                let v = s * Foundation.exp((row[k] - m) - lz)
                if fresh { grow[k] = v } else { grow[k] += v }
            }
            grow[labels[i]] -= s
        }
    }
    return out
}

// MARK: - KL divergence

/// PyTorch `kl_div(logQ, p)`: `ℓ = p · (ln p − logQ)` elementwise, `ℓ = 0` where `p = 0`; `logQ` are the
/// student's log-probabilities (e.g. `logSoftmax`), `p` the target probabilities. The default
/// `batchMean` gives `KL(p ‖ q)` summed over classes and averaged over rows (dim 0), PyTorch's
/// `reduction='batchmean'`; `.mean` divides by the element count as PyTorch's `'mean'` does.
/// Backward: `g_logQ = −p · g`, `g_p = (ln p + 1 − logQ) · g` (0 where `p = 0`).
public func klDivergence(logQ: Tensor, p: Tensor, reduction: LossReduction = .batchMean) throws -> Tensor {
    try checkSameShape("klDivergence", logQ, p)
    let (out, scale) = reducedOutput(logQ.shape, reduction)
    let qp = logQ.ptr, pp = p.ptr, yp = out.ptr, n = logQ.count
    var total = 0.0
    for i in 0..<n {
        let l: Float = pp[i] == 0 ? 0 : pp[i] * (Foundation.log(pp[i]) - qp[i])
        if reduction == .none { yp[i] = l } else { total += Double(l) }
    }
    if reduction != .none { yp[0] = Float(total * scale) }
    Tape.record("klDivergence", inputs: [logQ, p], output: out) { g in
        let (gp, gs, sc) = upstream(g, reduction, scale)
        if logQ.requiresGrad {
            let (ga, fresh) = logQ.gradBuffer()
            if fresh { for i in 0..<n { ga[i] = -pp[i] * gp[i * gs] * sc } }
            else { for i in 0..<n { ga[i] -= pp[i] * gp[i * gs] * sc } }
        }
        if p.requiresGrad {
            let (gb, fresh) = p.gradBuffer()
            for i in 0..<n {
                let v: Float = pp[i] == 0 ? 0 : (Foundation.log(pp[i]) + 1 - qp[i]) * gp[i * gs] * sc
                if fresh { gb[i] = v } else { gb[i] += v }
            }
        }
    }
    return out
}

// MARK: - Smooth L1 and Huber

/// Shared by smoothL1 and Huber: `ℓ(d) = ½d²/w` for `|d| < t`, else `k(|d| − ½t)`, with derivative
/// `d/w` inside and `k · sign(d)` outside, `d = a − b`.
private func robustLoss(_ name: String, _ a: Tensor, _ b: Tensor, t: Float, w: Float, k: Float,
                        reduction: LossReduction) throws -> Tensor {
    try checkSameShape(name, a, b)
    let (out, scale) = reducedOutput(a.shape, reduction)
    let ap = a.ptr, bp = b.ptr, yp = out.ptr, n = a.count
    var total = 0.0
    for i in 0..<n {
        let d = ap[i] - bp[i], ad = Swift.abs(d)
        let l = ad < t ? 0.5 * d * d / w : k * (ad - 0.5 * t)
        if reduction == .none { yp[i] = l } else { total += Double(l) }
    }
    if reduction != .none { yp[0] = Float(total * scale) }
    Tape.record(name, inputs: [a, b], output: out) { g in
        let (gp, gs, sc) = upstream(g, reduction, scale)
        @inline(__always) func deriv(_ i: Int) -> Float {
            let d = ap[i] - bp[i]
            let dl: Float = Swift.abs(d) < t ? d / w : (d > 0 ? k : (d < 0 ? -k : 0))
            return dl * gp[i * gs] * sc
        }
        if a.requiresGrad {
            let (ga, fresh) = a.gradBuffer()
            if fresh { for i in 0..<n { ga[i] = deriv(i) } } else { for i in 0..<n { ga[i] += deriv(i) } }
        }
        if b.requiresGrad {
            let (gb, fresh) = b.gradBuffer()
            if fresh { for i in 0..<n { gb[i] = -deriv(i) } } else { for i in 0..<n { gb[i] -= deriv(i) } }
        }
    }
    return out
}

/// PyTorch `smooth_l1_loss(a, b, beta)`: `ℓ = ½d²/β` if `|d| < β` else `|d| − ½β`, `d = a − b`
/// (`β = 0` is plain L1), reduced by `reduction` (default mean). Backward: `∂ℓ/∂a = d/β` inside,
/// `sign(d)` outside; `∂ℓ/∂b = −∂ℓ/∂a`.
public func smoothL1(_ a: Tensor, _ b: Tensor, beta: Float = 1, reduction: LossReduction = .mean) throws -> Tensor {
    guard beta >= 0 else { throw TensorError.invalidArgument(op: "smoothL1", message: "beta must be ≥ 0, got \(beta)") }
    return try robustLoss("smoothL1", a, b, t: beta, w: beta, k: 1, reduction: reduction)
}

/// `Huber_δ(d) = ½d²` if `|d| ≤ δ` else `δ(|d| − ½δ)`, `d = a − b` (PyTorch `huber_loss`; equal to
/// `δ · smoothL1` with `β = δ`), reduced by `reduction` (default mean). Backward: `∂ℓ/∂a = d` inside,
/// `δ · sign(d)` outside; `∂ℓ/∂b = −∂ℓ/∂a`.
public func huber(_ a: Tensor, _ b: Tensor, delta: Float = 1, reduction: LossReduction = .mean) throws -> Tensor {
    guard delta > 0 else { throw TensorError.invalidArgument(op: "huber", message: "delta must be > 0, got \(delta)") }
    return try robustLoss("huber", a, b, t: delta, w: 1, k: delta, reduction: reduction)
}
