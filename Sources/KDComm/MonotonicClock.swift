import Foundation

/// Monotonic wall-clock time in seconds (`CLOCK_MONOTONIC`: never steps back, unaffected by clock
/// changes), the one clock of the watchdog, the phase timers and the benchmarks.
@inline(__always)
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}
