import Foundation

/// Turns a hang into an error: one background thread per process watches the blocking collective in
/// progress and, when it has run longer than `timeoutSeconds`, prints
/// `rank R: collective <name> did not complete within Ts of <setting> (step S); stalled: rank 2 (…)` and ends the
/// job through `onTimeout` (which calls `MPI_Abort`). The ranks named after `stalled:` are those the
/// `StallProbe` found outside the collective or silent; a world without it prints the first part only.
///
/// Time the process spent stopped (SIGSTOP, SIGTSTP, a suspended VM) does not count: a wake-up that
/// comes more than 2 s after it was due moves the collective's start forward by the gap. Otherwise
/// the stopped rank, resumed by mpirun's SIGCONT on the way to SIGKILL, would find its own collective
/// overdue and print the same message as the ranks that waited for it, hiding which rank stalled.
///
/// Cost per collective: `begin` and `end` each take one uncontended mutex and read the monotonic
/// clock (≈ 0.1 µs together); the name is a `StaticString` (no allocation, no reference counting).
/// The thread is created once, lazily, on the first `begin` with a positive timeout, and wakes every
/// `min(1 s, timeout / 10)` to look at the shared timestamp.
public final class Watchdog: @unchecked Sendable {
    /// The process-wide watchdog (MPI collectives are issued from one thread: `MPI_THREAD_FUNNELED`).
    public static let shared = Watchdog()

    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private var started = 0.0            // 0 = no collective in progress
    private var name: StaticString = ""
    private var step = -1
    private var timeout: Double
    /// What set `timeout`, named in the message so that the reader knows what to change.
    private var setting: String
    private var threadRunning = false
    private var fired = false
    private var lastWake = 0.0
    /// The last stop `noteWake` saw: when it was noticed, and for how long the process was stopped.
    private var stoppedAt = 0.0, stoppedFor = 0.0
    /// Blocking collectives begun (`begin(_:collective:)`), the `PeerState.sequence` peers compare.
    private var sequence = 0
    /// Asks the other ranks what they are doing when a collective overruns; nil: not asked (a world of
    /// one, MPI without `MPI_THREAD_MULTIPLE`, after `MPI_Finalize` began).
    private var probe: StallProbe?
    /// The rank printed in the timeout message.
    public var rank = 0
    /// Called (on the watchdog thread) with the message when a collective overruns; must not return.
    public var onTimeout: ((String) -> Never)?

    package init() {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        timeout = Watchdog.environmentTimeout() ?? 300
        setting = "KDGRAPH_COMM_TIMEOUT"
    }

    /// `KDGRAPH_COMM_TIMEOUT` (seconds, 0 disables) overrides the default of 300 s.
    static func environmentTimeout() -> Double? {
        guard let s = ProcessInfo.processInfo.environment["KDGRAPH_COMM_TIMEOUT"], let v = Double(s) else {
            return nil
        }
        return v
    }

    /// Seconds a blocking collective may take before the job is aborted; 0 or less disables the check.
    public var timeoutSeconds: Double {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return timeout
    }

    /// Sets `timeoutSeconds`, and the setting the message names as its source (`comm.timeout_s`; before a
    /// config is applied, `KDGRAPH_COMM_TIMEOUT` or its default of 300 s).
    public func setTimeout(_ seconds: Double, setting: String) {
        pthread_mutex_lock(lock); timeout = seconds; self.setting = setting; pthread_mutex_unlock(lock)
    }

    /// The training step named in the timeout message (-1: not in a step).
    public var currentStep: Int {
        get { pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return step }
        set { pthread_mutex_lock(lock); step = newValue; pthread_mutex_unlock(lock) }
    }

    /// The collective in progress, if any (for diagnostics).
    public var current: String? {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        return started > 0 ? "\(name)" : nil
    }

    /// What this rank tells a peer's stall probe.
    var state: PeerState {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        // A stop noticed in the last minute is reported: the peers asking may have been waiting that long.
        let recent = stoppedAt > 0 && monotonicSeconds() - stoppedAt < 60
        return PeerState(inCollective: started > 0, name: started > 0 ? "\(name)" : "", step: step,
                         sequence: sequence, stoppedSeconds: recent ? stoppedFor : 0)
    }

    /// Installs (or, with nil, removes) the stall probe and starts the thread, so that this rank answers
    /// its peers' queries from the start, even before its first collective.
    func setProbe(_ p: StallProbe?) {
        pthread_mutex_lock(lock)
        let old = probe
        probe = p
        let needThread = p != nil && !threadRunning && timeout > 0
        if needThread { threadRunning = true }
        pthread_mutex_unlock(lock)
        if p == nil { old?.close() }
        if needThread { startThread() }
    }

    /// Marks the start of a blocking call: a collective every rank issues in the same order (counted
    /// in `sequence`), or with `collective: false` a wait or `MPI_Finalize`, which ranks may skip.
    @inline(__always)
    public func begin(_ call: StaticString, collective: Bool = true) {
        let now = monotonicSeconds()
        pthread_mutex_lock(lock)
        started = now
        name = call
        if collective { sequence += 1 }
        let needThread = !threadRunning && timeout > 0
        if needThread { threadRunning = true }
        pthread_mutex_unlock(lock)
        if needThread { startThread() }
    }

    /// Marks the end of the blocking collective started by `begin`.
    @inline(__always)
    public func end() {
        pthread_mutex_lock(lock)
        started = 0
        pthread_mutex_unlock(lock)
    }

    private func startThread() {
        let t = Thread { [unowned self] in self.loop() }
        t.name = "kdgraph-comm-watchdog"
        t.stackSize = 1 << 18
        t.start()
    }

    private func loop() {
        while true {
            pthread_mutex_lock(lock)
            let t = timeout
            pthread_mutex_unlock(lock)
            let interval = t > 0 ? Swift.min(1.0, Swift.max(0.01, t / 10)) : 1.0
            usleep(UInt32(interval * 1e6))
            noteWake(now: monotonicSeconds(), interval: interval)
            pthread_mutex_lock(lock)
            let probe = self.probe
            pthread_mutex_unlock(lock)
            probe?.serve { state }
            if var message = overdueMessage(now: monotonicSeconds()) {
                if let probe {
                    // Peers answer on their own wake-ups (at most `interval` apart): wait a few of them.
                    let grace = Swift.max(2.0, 3 * interval)
                    let me = state
                    let answers = probe.ask(grace: grace) { state }
                    message += "; " + Watchdog.stallReport(me, rank: rank, size: probe.size, answers: answers,
                                                           grace: grace, hosts: probe.hosts)
                }
                if let onTimeout { onTimeout(message) }
                fputs("rank \(rank): \(message)\n", stderr)
                fflush(stderr)
                exit(70)
            }
        }
    }

    /// Records a wake-up of the watchdog thread at `now`, due `interval` after the previous one. A gap
    /// over `interval + 2` s means the process was stopped: the collective in progress is credited the
    /// excess, so only time this process ran counts against the timeout, and the stop is reported to
    /// the peers that ask (`PeerState.stoppedSeconds`).
    func noteWake(now: Double, interval: Double) {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        let gap = now - lastWake
        if lastWake > 0, gap > interval + 2 {
            stoppedAt = now
            stoppedFor = gap - interval
            if started > 0 { started = Swift.min(now, started + gap - interval) }
        }
        lastWake = now
    }

    /// The timeout message when the collective in progress has overrun at time `now`, else nil.
    /// Fires at most once.
    func overdueMessage(now: Double) -> String? {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        guard !fired, timeout > 0, started > 0, now - started > timeout else { return nil }
        fired = true
        return Watchdog.message(name: "\(name)", timeout: timeout, setting: setting, step: step)
    }

    /// The stall probe's verdict, appended to the timeout message, from the other ranks' `answers` (by
    /// rank) to the call `me` is in. `stalled:` the ranks that did not answer within `grace` seconds or
    /// were stopped (SIGSTOP) in the last minute, and
    /// those outside any call that have not got this far (a smaller `sequence`, or the same one: a rank
    /// that had left this collective would have begun its next one within the timeout). `waiting in an
    /// earlier collective:` ranks blocked in a collective this rank has left: not a cause but a victim
    /// (a stalled rank's neighbour in the algorithm), or a sign the ranks took different paths. A rank in
    /// this collective or past it is not named; when none is named, every rank has reached it.
    /// When the ranks run on more than one host (`hosts`, by rank), each named rank is followed by
    /// `on host NAME`: the host to look at, e.g. the one whose link went down.
    static func stallReport(_ me: PeerState, rank: Int, size: Int, answers: [Int: PeerState],
                            grace: Double, hosts: [String] = []) -> String {
        let g = grace == grace.rounded() ? String(Int(grace)) : String(grace)
        let named = hosts.count == size && Set(hosts).count > 1
        func on(_ r: Int) -> String { named ? " on host \(hosts[r])" : "" }
        var stalled: [String] = [], earlier: [String] = []
        for r in 0..<size where r != rank {
            guard let a = answers[r] else {
                stalled.append("rank \(r) (no answer within \(g)s: stopped, hung outside MPI, or gone)\(on(r))")
                continue
            }
            if a.stoppedSeconds > 0 {   // resumed (e.g. by mpirun's SIGCONT) after stalling everyone
                stalled.append("rank \(r) (was stopped for \(Int(a.stoppedSeconds.rounded()))s)\(on(r))")
                continue
            }
            if a.sequence > me.sequence || (a.sequence == me.sequence && a.inCollective) { continue }
            if a.inCollective {
                earlier.append("rank \(r) (\(a.name) at step \(a.step))\(on(r))")
            } else {
                stalled.append("rank \(r) (not in a collective, at step \(a.step))\(on(r))")
            }
        }
        var parts: [String] = []
        if !stalled.isEmpty { parts.append("stalled: " + stalled.joined(separator: ", ")) }
        if !earlier.isEmpty { parts.append("waiting in an earlier collective: " + earlier.joined(separator: ", ")) }
        return parts.isEmpty ? "every rank has reached it (suspect the network or MPI, not a rank)"
                             : parts.joined(separator: "; ")
    }

    /// `collective <name> did not complete within Ts of <setting> (step S)`.
    static func message(name: String, timeout: Double, setting: String, step: Int) -> String {
        let t = timeout == timeout.rounded() ? String(Int(timeout)) : String(timeout)
        return "collective \(name) did not complete within \(t)s of \(setting) (step \(step))"
    }
}
