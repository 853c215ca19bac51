import Foundation

/// Turns a hang into an error: one background thread per process watches the blocking collective in
/// progress and, when it has run longer than `timeoutSeconds`, prints
/// `rank R: collective <name> did not complete within Ts (step S)` and ends the job through
/// `onTimeout` (which calls `MPI_Abort`).
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
    private var threadRunning = false
    private var fired = false
    /// The rank printed in the timeout message.
    public var rank = 0
    /// Called (on the watchdog thread) with the message when a collective overruns; must not return.
    public var onTimeout: ((String) -> Never)?

    package init() {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        timeout = Watchdog.environmentTimeout() ?? 300
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
        get { pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }; return timeout }
        set { pthread_mutex_lock(lock); timeout = newValue; pthread_mutex_unlock(lock) }
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

    /// Marks the start of a blocking collective.
    @inline(__always)
    public func begin(_ collective: StaticString) {
        let now = monotonicSeconds()
        pthread_mutex_lock(lock)
        started = now
        name = collective
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
            if let message = overdueMessage(now: monotonicSeconds()) {
                if let onTimeout { onTimeout(message) }
                fputs("rank \(rank): \(message)\n", stderr)
                fflush(stderr)
                exit(70)
            }
        }
    }

    /// The timeout message when the collective in progress has overrun at time `now`, else nil.
    /// Fires at most once.
    func overdueMessage(now: Double) -> String? {
        pthread_mutex_lock(lock); defer { pthread_mutex_unlock(lock) }
        guard !fired, timeout > 0, started > 0, now - started > timeout else { return nil }
        fired = true
        return Watchdog.message(name: "\(name)", timeout: timeout, step: step)
    }

    /// `collective <name> did not complete within Ts (step S)`.
    static func message(name: String, timeout: Double, step: Int) -> String {
        let t = timeout == timeout.rounded() ? String(Int(timeout)) : String(timeout)
        return "collective \(name) did not complete within \(t)s (step \(step))"
    }
}
