import Foundation
import KDLosses
import KDTensor

/// The test switches of the trainer, read from the environment once (docs/reliability.md); they act
/// from outside `Trainer.step`:
/// - `KDGRAPH_FAIL_RANK=r` (with `KDGRAPH_FAIL_STEP=s`, default 1): rank r throws before step s, to
///   exercise the abort path (`beforeStep`, called by the run loop);
/// - `KDGRAPH_NAN_STEP=s`: the objective gets one more term whose value is NaN at step s, to exercise the
///   numerical guard (`term`);
/// - `KDGRAPH_SECOND_PASS_MIRRORED=1`: with `train.micro_batch`, the second pass sees every image mirrored
///   (other augmented views than the first pass), to show that the exactness test can fail
///   (`secondPassImages`).
public struct FaultInjection: Sendable {
    public var failRank: Int?
    public var failStep = 1
    public var nanStep: Int?
    public var mirrorSecondPass = false

    public init(failRank: Int? = nil, failStep: Int = 1, nanStep: Int? = nil, mirrorSecondPass: Bool = false) {
        self.failRank = failRank; self.failStep = failStep; self.nanStep = nanStep
        self.mirrorSecondPass = mirrorSecondPass
    }

    public static func fromEnvironment() -> FaultInjection {
        let env = ProcessInfo.processInfo.environment
        return FaultInjection(failRank: env["KDGRAPH_FAIL_RANK"].flatMap(Int.init),
                              failStep: env["KDGRAPH_FAIL_STEP"].flatMap(Int.init) ?? 1,
                              nanStep: env["KDGRAPH_NAN_STEP"].flatMap(Int.init),
                              mirrorSecondPass: env["KDGRAPH_SECOND_PASS_MIRRORED"] == "1")
    }

    /// What replaces the second pass's images (`MicroBatchSchedule.secondPassImages`): each NHWC image
    /// mirrored left to right, or nil.
    var secondPassImages: ((Tensor) -> Tensor)? {
        guard mirrorSecondPass else { return nil }
        return { x in
            let out = Tensor(uninitializedShape: x.shape)
            guard x.rank == 4 else { out.ptr.update(from: x.ptr, count: x.count); return out }
            let (rows, w, c) = (x.shape[0] * x.shape[1], x.shape[2], x.shape[3])
            for r in 0..<rows {
                for j in 0..<w {
                    (out.ptr + (r * w + j) * c).update(from: x.ptr + (r * w + w - 1 - j) * c, count: c)
                }
            }
            return out
        }
    }

    /// Throws on the failing rank before its step `step` (1-based).
    public func beforeStep(_ step: Int, rank: Int) throws {
        if let failRank, failRank == rank, step == failStep {
            throw TrainError.invalid("injected failure at step \(step) (KDGRAPH_FAIL_RANK=\(rank))")
        }
    }

    /// The NaN term to append to the objective, if any.
    public var term: (any LossTerm)? { nanStep.map(InjectedNaNTerm.init) }
}

/// A term worth 0, or NaN at `step`; it reads nothing and logs nothing.
struct InjectedNaNTerm: LossTerm {
    let kind = "injected_nan"
    let weight: Float = 1
    var needs: LossNeeds { [] }
    let step: Int
    init(step: Int) { self.step = step }
    func evaluate(_ inputs: LossInputs) throws -> LossShare {
        LossShare(value: Tensor(shape: [], data: [inputs.step == step ? .nan : 0]), terms: [])
    }
}
