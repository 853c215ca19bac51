import Foundation
import KDTensor

/// AdamW (Loshchilov & Hutter), PyTorch `torch.optim.AdamW` semantics (bias-corrected, decoupled
/// weight decay, ε outside the square root):
///
///     p ← p · (1 − η·λ)                          (only where the decay rule applies)
///     m ← β₁·m + (1 − β₁)·g
///     v ← β₂·v + (1 − β₂)·g²
///     p ← p − η/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
///
/// with t the parameter's own step count (1 on its first update).
public final class AdamW: Optimizer {
    public let parameters: [(String, Tensor)]
    public var learningRate: Double
    public let beta1: Double, beta2: Double, eps: Double
    public let weightDecay: Double
    public private(set) var stepCount = 0
    let decay: [Bool]
    var expAvg: [Tensor?]
    var expAvgSq: [Tensor?]
    /// Per-parameter step counts (PyTorch keeps `state['step']` per parameter as a float tensor).
    var steps: [Int]

    public init(parameters: [(String, Tensor)], learningRate: Double = 1e-3, beta1: Double = 0.9,
                beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 1e-2,
                decayRule: WeightDecayRule = .skipBiasAndNorm) throws {
        guard learningRate >= 0, weightDecay >= 0, eps >= 0, (0..<1).contains(beta1), (0..<1).contains(beta2) else {
            throw ModelError.invalidArgument("AdamW: need lr ≥ 0, weight decay ≥ 0, eps ≥ 0, betas in [0, 1) "
                                             + "(got \(learningRate), \(weightDecay), \(eps), \(beta1), \(beta2))")
        }
        self.parameters = parameters
        self.learningRate = learningRate
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps
        self.weightDecay = weightDecay
        self.decay = AdamW.decayMask(parameters, decayRule)
        expAvg = Array(repeating: nil, count: parameters.count)
        expAvgSq = Array(repeating: nil, count: parameters.count)
        steps = Array(repeating: 0, count: parameters.count)
    }

    public func step() throws {
        let b1 = Float(beta1), b2 = Float(beta2), e = Float(eps)
        for (k, (_, p)) in parameters.enumerated() {
            guard let gT = p.grad else { continue }
            let n = p.count
            if expAvg[k] == nil {
                expAvg[k] = Tensor.zeros(p.shape)
                expAvgSq[k] = Tensor.zeros(p.shape)
            }
            steps[k] += 1
            let t = Double(steps[k])
            let bc1 = 1 - Foundation.pow(beta1, t), bc2 = 1 - Foundation.pow(beta2, t)
            let stepSize = Float(learningRate / bc1)
            let bc2Sqrt = Float(bc2.squareRoot())
            let w = p.ptr, g = gT.ptr, m = expAvg[k]!.ptr, v = expAvgSq[k]!.ptr
            if decay[k] && weightDecay != 0 {
                let f = Float(1 - learningRate * weightDecay)
                for i in 0..<n { w[i] *= f }
            }
            for i in 0..<n {
                let gi = g[i]
                m[i] = b1 * m[i] + (1 - b1) * gi
                v[i] = b2 * v[i] + (1 - b2) * gi * gi
                w[i] -= stepSize * m[i] / (v[i].squareRoot() / bc2Sqrt + e)
            }
        }
        stepCount += 1
    }

    public func stateTensors() -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (k, (name, _)) in parameters.enumerated() {
            guard let m = expAvg[k], let v = expAvgSq[k] else { continue }
            out.append(("\(name).step", Tensor(shape: [], data: [Float(steps[k])])))
            out.append(("\(name).exp_avg", m))
            out.append(("\(name).exp_avg_sq", v))
        }
        return out
    }

    public func loadState(_ tensors: [String: Tensor], stepCount: Int) throws {
        var m: [Tensor?] = [], v: [Tensor?] = [], s: [Int] = []
        for (name, p) in parameters {
            let a = try restoreSlot(tensors, "\(name).exp_avg", like: p)
            let b = try restoreSlot(tensors, "\(name).exp_avg_sq", like: p)
            let st = tensors["\(name).step"]
            if (a == nil) != (b == nil) || (a != nil && st == nil) {
                throw ModelError.stateMismatch("optimizer state: incomplete AdamW state for '\(name)' "
                                               + "(exp_avg, exp_avg_sq, step)")
            }
            if stepCount > 0 && a == nil {
                throw ModelError.stateMismatch("optimizer state: missing '\(name).exp_avg' for step \(stepCount)")
            }
            m.append(a); v.append(b); s.append(st.map { Int($0.ptr[0]) } ?? 0)
        }
        expAvg = m; expAvgSq = v; steps = s
        self.stepCount = stepCount
    }
}
