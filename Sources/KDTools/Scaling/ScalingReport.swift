import KDComm
import KDTrain

/// One world size's measurement, from `kdgraph bench` JSON.
public struct ScalingPoint: Equatable {
    public var ranks: Int
    public var globalBatch: Int
    public var samplesPerSecond: Double
    public var stepSeconds: Double
    /// Median seconds per phase (`Phase` names).
    public var phases: [String: Double]
    public var bytesAllReduced: Double
    public var bytesGathered: Double
    public var peakRSSBytes: Double
    /// The collectives of one step (from a bench that ran with `--project-ranks`).
    public var collectives: StepCollectives?
    /// One rank's loss share timed at other world sizes (`LossProjection`), by the same bench.
    public var lossProjection: [LossProjection.Point]
    /// One rank's loss share measured at this world size (`BenchResult.lossShareS`), when the bench has it.
    public var lossShareSeconds: Double? = nil
    /// Why this world size's measurement may not be trusted (`MachineLoad`); empty when the machine
    /// stayed quiet or the bench did not check.
    public var loadWarnings: [String] = []
    /// Graph accumulation's samples per rank per pass when the bench ran with `train.micro_batch`, else nil.
    public var microBatch: Int? = nil
    /// The bench's link probe across hosts (`LinkProbe`); nil on one host.
    public var linkProbe: LinkProbe.Report? = nil

    public init(ranks: Int, globalBatch: Int, samplesPerSecond: Double, stepSeconds: Double,
                phases: [String: Double], bytesAllReduced: Double, bytesGathered: Double, peakRSSBytes: Double,
                collectives: StepCollectives? = nil, lossProjection: [LossProjection.Point] = []) {
        self.ranks = ranks; self.globalBatch = globalBatch; self.samplesPerSecond = samplesPerSecond
        self.stepSeconds = stepSeconds; self.phases = phases; self.bytesAllReduced = bytesAllReduced
        self.bytesGathered = bytesGathered; self.peakRSSBytes = peakRSSBytes
        self.collectives = collectives; self.lossProjection = lossProjection
    }

    /// Communication share: gather+loss is partly compute, so only the all-reduce wait and the gather
    /// wait the bench reports separately count (`gather_wait` when present, else none of gather_loss).
    public var communicationSeconds: Double {
        (phases[Phase.allreduce.rawValue] ?? 0) + (phases[Phase.gatherWait] ?? 0)
    }
}

/// The collectives one training step issues besides the gradient all-reduce, per rank.
public struct StepCollectives: Equatable {
    /// Samples per rank.
    public var perRankBatch: Int
    /// SyncBN statistics all-reduces (forward and backward) and their total bytes.
    public var statisticsAllReduces: Int
    public var statisticsBytes: Double
    /// Row all-gathers and the bytes per sample they carry (all gathered tensors together).
    public var gathers: Int
    public var gatheredBytesPerSample: Double
    /// Reduce-scatters (the backward of the differentiable gathers) and their bytes per sample.
    public var reduceScatters: Int
    public var reduceScatteredBytesPerSample: Double

    public init(perRankBatch: Int, statisticsAllReduces: Int, statisticsBytes: Double, gathers: Int,
                gatheredBytesPerSample: Double, reduceScatters: Int, reduceScatteredBytesPerSample: Double) {
        self.perRankBatch = perRankBatch; self.statisticsAllReduces = statisticsAllReduces
        self.statisticsBytes = statisticsBytes; self.gathers = gathers
        self.gatheredBytesPerSample = gatheredBytesPerSample
        self.reduceScatters = reduceScatters; self.reduceScatteredBytesPerSample = reduceScatteredBytesPerSample
    }
}

/// One row of the weak-scaling projection (a model fed with measurements, not a measurement).
public struct ProjectedPoint: Equatable {
    public var ranks: Int
    public var globalBatch: Int
    /// One rank's loss share, forward + backward, timed on this machine at that global batch.
    public var lossSeconds: Double
    /// Gradient all-reduce + SyncBN all-reduces + gathers + reduce-scatters, from the cost model.
    public var communicationSeconds: Double
    public var stepSeconds: Double
    public var efficiency: Double
    /// The measured weak efficiency where that world size was also run.
    public var measuredEfficiency: Double?
    /// Where that world size was also run: one rank's loss share measured there on the step's real inputs
    /// (`ScalingPoint.lossShareSeconds`) — beside `lossSeconds`, the projection's error.
    public var measuredLossSeconds: Double? = nil
    /// The same step under the other pass schedule (`otherSchedule`): its projected seconds and efficiency.
    public var otherStepSeconds: Double = 0
    public var otherEfficiency: Double = 0
}

/// The pass schedule the projection's other columns model beside the measured one (docs/scaling.md).
public enum OtherSchedule: Equatable {
    /// The bench ran one pass: the columns add graph accumulation's extra student forward (`train.micro_batch`).
    case accumulated
    /// The bench ran with `train.micro_batch` (two student forwards per step): the columns take one away.
    case onePass

    /// The columns' name in report.md (projection.csv writes it with `_`).
    public var name: String { self == .accumulated ? "accumulated" : "one-pass" }
}

/// Weak or strong scaling (definitions in docs/scaling.md, "Measuring").
public enum ScalingMode: String, CaseIterable { case weak, strong }

/// The scaling report: Markdown table, CSV and an SVG plot, with the efficiency definitions written in.
public struct ScalingReport {
    public var mode: ScalingMode
    public var points: [ScalingPoint]
    public var configName: String
    public var machine: String
    public var date: String
    public var costModel: AllReduceCostModel?

    public init(mode: ScalingMode, points: [ScalingPoint], configName: String, machine: String, date: String,
                costModel: AllReduceCostModel?) {
        self.mode = mode; self.points = points.sorted { $0.ranks < $1.ranks }; self.configName = configName
        self.machine = machine; self.date = date; self.costModel = costModel
    }

    var base: ScalingPoint? { points.first }

    /// Speed-up relative to the smallest world size measured (normally 1 rank).
    public func speedup(_ p: ScalingPoint) -> Double {
        guard let b = base, b.samplesPerSecond > 0 else { return 0 }
        return p.samplesPerSecond / b.samplesPerSecond
    }

    /// Weak: throughput(N) / (N · throughput(1)). Strong: speed-up(N) / N. (Both normalised to the
    /// smallest world size measured, `N₀`: efficiency = speed-up · N₀ / N.)
    public func efficiency(_ p: ScalingPoint) -> Double {
        guard let b = base else { return 0 }
        return speedup(p) * Double(b.ranks) / Double(p.ranks)
    }

    /// Predicted communication of one step at `n` ranks by the fitted model: the gradient all-reduce,
    /// the SyncBN all-reduces, and the all-gathers and reduce-scatters as ring collectives.
    public func predictedCommunication(ranks n: Int, point p: ScalingPoint, model m: AllReduceCostModel) -> Double {
        guard n > 1, let c = p.collectives else { return 0 }
        var t = m.predict(ranks: n, bytes: p.bytesAllReduced)
        if c.statisticsAllReduces > 0 {
            t += Double(c.statisticsAllReduces)
                * m.predict(ranks: n, bytes: c.statisticsBytes / Double(c.statisticsAllReduces))
        }
        let samples = Double(c.perRankBatch * n)
        t += m.predictRingCollective(ranks: n, bytes: samples * c.gatheredBytesPerSample, calls: c.gathers)
        t += m.predictRingCollective(ranks: n, bytes: samples * c.reduceScatteredBytesPerSample,
                                     calls: c.reduceScatters)
        return t
    }

    /// Weak scaling projected from the smallest world measured, `R`, which must carry a loss
    /// projection: the networks' share of the step stays, the loss share is the one timed at `N`,
    /// communication comes from the cost model (zero without one):
    ///
    ///     step(N) = step(R) − loss(R) − comm(R) + loss(N) + comm(N),   efficiency(N) = step(R) / step(N)
    ///
    /// Beside it, the same step under the other pass schedule (`otherSchedule`): graph accumulation
    /// (`train.micro_batch`) runs the student's forward once more per step over the rank's share and changes
    /// nothing else (the loss and the collectives are the same), so with `F` one student forward over the
    /// share — the bench's `student_forward` phase, or half of it when the bench itself accumulated —
    ///
    ///     accumulated(N) = step(N) + F,   one-pass(N) = step(N) − F,   efficiency = the same ratio to N = R.
    public var projection: [ProjectedPoint] {
        guard mode == .weak, let b = base, b.collectives != nil,
              let own = b.lossProjection.first(where: { $0.ranks == b.ranks }) else { return [] }
        func comm(_ n: Int) -> Double { costModel.map { predictedCommunication(ranks: n, point: b, model: $0) } ?? 0 }
        let fixed = b.stepSeconds - own.seconds - comm(b.ranks)
        let delta = otherScheduleSeconds, otherBase = b.stepSeconds + delta
        return b.lossProjection.map { lp in
            let c = comm(lp.ranks), step = fixed + lp.seconds + c
            let run = points.first(where: { $0.ranks == lp.ranks })
            return ProjectedPoint(ranks: lp.ranks, globalBatch: lp.globalBatch, lossSeconds: lp.seconds,
                                  communicationSeconds: c, stepSeconds: step,
                                  efficiency: step > 0 ? b.stepSeconds / step : 0,
                                  measuredEfficiency: run.map { efficiency($0) },
                                  measuredLossSeconds: run?.lossShareSeconds,
                                  otherStepSeconds: step + delta,
                                  otherEfficiency: step + delta > 0 ? otherBase / (step + delta) : 0)
        }
    }

    /// Which schedule the projection's other columns model: the one the base bench did not run.
    public var otherSchedule: OtherSchedule { base?.microBatch == nil ? .accumulated : .onePass }

    /// Seconds the other schedule adds to the measured step (negative: takes away): ± one student forward.
    var otherScheduleSeconds: Double {
        guard let b = base else { return 0 }
        let forward = b.phases[Phase.studentForward.rawValue] ?? 0
        return otherSchedule == .accumulated ? forward : -forward / 2
    }
}
