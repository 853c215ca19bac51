import Foundation

/// A learning-rate schedule: the rate for optimizer step `step` (0-based).
public protocol LRSchedule {
    func learningRate(at step: Int) -> Double
}

/// Linear warm-up shared by every schedule: for `step < warmupSteps` the rate is
/// `base · (step + 1) / warmupSteps`, reaching `base` on the last warm-up step.
@inline(__always)
func warmup(_ base: Double, _ step: Int, _ warmupSteps: Int) -> Double? {
    step < warmupSteps ? base * Double(step + 1) / Double(warmupSteps) : nil
}

/// `η(s) = η₀` (after an optional linear warm-up).
public struct ConstantSchedule: LRSchedule, Sendable {
    public let base: Double, warmupSteps: Int
    public init(base: Double, warmupSteps: Int = 0) { self.base = base; self.warmupSteps = max(0, warmupSteps) }
    public func learningRate(at step: Int) -> Double { warmup(base, step, warmupSteps) ?? base }
}

/// Cosine decay after linear warm-up `w` steps, over `T` total steps, to `η_min`:
///
///     η(s) = η_min + ½ (η₀ − η_min) (1 + cos(π · (s − w) / (T − w)))     for w ≤ s < T
///
/// and `η_min` from step `T` on.
public struct CosineSchedule: LRSchedule, Sendable {
    public let base: Double, warmupSteps: Int, totalSteps: Int, minimum: Double
    public init(base: Double, totalSteps: Int, warmupSteps: Int = 0, minimum: Double = 0) {
        self.base = base; self.totalSteps = totalSteps; self.warmupSteps = max(0, warmupSteps); self.minimum = minimum
    }
    public func learningRate(at step: Int) -> Double {
        if let w = warmup(base, step, warmupSteps) { return w }
        let span = totalSteps - warmupSteps
        guard span > 0, step < totalSteps else { return minimum }
        let progress = Double(step - warmupSteps) / Double(span)
        return minimum + 0.5 * (base - minimum) * (1 + cos(Double.pi * progress))
    }
}

/// Step decay: `η(s) = η₀ · γ^{#{m ∈ milestones : m ≤ s}}` (after an optional linear warm-up),
/// as PyTorch `MultiStepLR` stepped once per optimizer step.
public struct StepSchedule: LRSchedule, Sendable {
    public let base: Double, milestones: [Int], gamma: Double, warmupSteps: Int
    public init(base: Double, milestones: [Int], gamma: Double = 0.1, warmupSteps: Int = 0) {
        self.base = base; self.milestones = milestones.sorted(); self.gamma = gamma
        self.warmupSteps = max(0, warmupSteps)
    }
    public func learningRate(at step: Int) -> Double {
        if let w = warmup(base, step, warmupSteps) { return w }
        let passed = milestones.reduce(0) { $0 + ($1 <= step ? 1 : 0) }
        return base * pow(gamma, Double(passed))
    }
}
