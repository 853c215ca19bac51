import Foundation
import KDComm

/// Rank 0's progress display: a live line redrawn in place on a terminal, plain periodic lines
/// otherwise (CI logs, batch jobs).
public final class ProgressLine {
    let enabled: Bool
    let live: Bool
    let total: Int
    let start = monotonicSeconds()
    var lastDraw = 0.0
    var out: (String) -> Void

    public init(total: Int, enabled: Bool, forcePlain: Bool = false,
                out: @escaping (String) -> Void = { fputs($0, stderr) }) {
        self.total = total
        self.enabled = enabled
        self.live = !forcePlain && isatty(STDERR_FILENO) == 1
        self.out = out
    }

    static func clock(_ s: Double) -> String {
        guard s.isFinite, s >= 0 else { return "--:--" }
        let t = Int(s.rounded())
        return t >= 3600 ? String(format: "%d:%02d:%02d", t / 3600, t / 60 % 60, t % 60)
                         : String(format: "%02d:%02d", t / 60, t % 60)
    }

    public func text(step: Int, loss: Double, samplesPerSecond: Double, startStep: Int) -> String {
        let elapsed = monotonicSeconds() - start
        let done = step - startStep
        let eta = done > 0 ? elapsed / Double(done) * Double(total - step) : .infinity
        return String(format: "step %d/%d  loss %.4f  %.1f samples/s  elapsed %@  ETA %@",
                      step, total, loss, samplesPerSecond, ProgressLine.clock(elapsed), ProgressLine.clock(eta))
    }

    /// Live mode redraws at most 10 times a second; plain mode prints when `logged` is true.
    public func update(step: Int, loss: Double, samplesPerSecond: Double, startStep: Int, logged: Bool) {
        guard enabled else { return }
        if live {
            let now = monotonicSeconds()
            guard now - lastDraw > 0.1 || step == total else { return }
            lastDraw = now
            out("\r\u{1B}[K" + text(step: step, loss: loss, samplesPerSecond: samplesPerSecond, startStep: startStep))
        } else if logged {
            out(text(step: step, loss: loss, samplesPerSecond: samplesPerSecond, startStep: startStep) + "\n")
        }
    }

    /// Ends the live line before other output.
    public func finish() { if enabled && live { out("\n") } }
}
