import KDComm
import KDCore

/// What one training step did, returned by `Trainer.step`: the metrics line, the progress line, the
/// benchmark and the loss projection observe it; the step itself keeps no counters.
public struct StepRecord {
    /// The optimizer step this was (1-based; `Trainer.step` after it).
    public var step: Int
    /// The global batch it trained on.
    public var plan: BatchPlan
    /// False when the step was skipped (non-finite, `train.skip_nonfinite`).
    public var applied: Bool
    /// Some rank asked to stop (SIGTERM/SIGINT); identical on every rank.
    public var stop: Bool
    /// The global loss and its terms (sums of the ranks' shares; identical on every rank).
    public var loss: Double
    public var terms: [(name: String, value: Double)]
    /// Wall-clock seconds of each phase run inside the step (`.data` is the caller's: waiting for the batch).
    public var phases: [Phase: Double]
    /// The all-gathers of the step.
    public var gathers: GatherLedger
    /// Bytes of gradients all-reduced.
    public var bytesAllReduced: Int
    /// The run's last link probe (`comm.link_probe_every`), nil before one ran or on one host.
    public var links: LinkCheck? = nil

    public var seconds: Double { phases.values.reduce(0, +) }
}

/// The all-gathers of one step: counts, bytes, and the time spent inside them (waiting for the
/// slowest rank included). A differentiable gather's backward is a reduce-scatter of the same size.
public struct GatherLedger: Equatable {
    public var calls = 0, differentiableCalls = 0
    /// Bytes received from the other ranks.
    public var bytesReceived = 0
    /// Bytes per sample of all gathered rows (student and teacher tensors, all views, labels), and of
    /// the differentiable (student) ones: what one more rank adds to every rank's gathers.
    public var bytesPerSample = 0, differentiableBytesPerSample = 0
    public var seconds = 0.0

    public init() {}
}

/// One link probe of a run (`LinkProbe`, docs/scaling.md, "A straggler link"): after which step it ran
/// (0: before the first step of the run) and what it found.
public struct LinkCheck: Equatable {
    public var afterStep: Int
    public var report: LinkProbe.Report
}

extension MetricRecord {
    /// The metrics line of a step: step, epoch, loss and its terms, learning rate, throughput, the
    /// phases' seconds, the time waiting in gathers, the bytes all-reduced and gathered, and after a link
    /// probe across hosts its figures: `link/probe_step` (the step it ran after), `link/min_host_bw` and
    /// `link/median_host_bw` (bytes/s each way of the slowest and the median host's best link), and the
    /// text `link/straggler`, the hosts the probe named (comma-separated; "" when none).
    public init(_ r: StepRecord, epoch: Int, learningRate: Double, samplesPerSecond: Double) {
        self.init()
        set("step", Double(r.step))
        set("epoch", Double(epoch))
        set("loss", r.loss)
        for (k, v) in r.terms { set(k, v) }
        set("lr", learningRate)
        set("samples_per_s", samplesPerSecond)
        for p in Phase.allCases { set("time/\(p.rawValue)", r.phases[p] ?? 0) }
        set("time/\(Phase.gatherWait)", r.gathers.seconds)
        set("bytes/allreduce", Double(r.bytesAllReduced))
        set("bytes/gathered", Double(r.gathers.bytesReceived))
        if let l = r.links {
            set("link/probe_step", Double(l.afterStep))
            set("link/min_host_bw", l.report.hostBytesPerSecond.min() ?? 0)
            set("link/median_host_bw", l.report.medianBytesPerSecond)
            set("link/straggler", text: l.report.stragglers.joined(separator: ","))
        }
    }
}
