import Foundation
import KDComm
import KDCore
import KDTensor
import Logging

/// Process-wide set-up shared by every `kdgraph` command: MPI (a world of one without `mpirun`), one
/// BLAS thread per rank, logging on rank 0 only, and the SIGTERM/SIGINT flag.
public enum Runtime {
    nonisolated(unsafe) static var logConfigured = false

    /// Initialises MPI once and returns the world communicator.
    public static func start(blasThreads: Int = 1) throws -> MPICommunicator {
        let comm = try MPICommunicator.initialize(blasThreads: blasThreads)
        setBLASThreads(blasThreads)
        configureLogging(rank: comm.rank)
        return comm
    }

    /// Rank 0 logs at `info` to stderr; other ranks log errors only (their failures still reach
    /// stderr through the abort path with `rank R:` in front).
    public static func configureLogging(rank: Int) {
        guard !logConfigured else { return }
        logConfigured = true
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = rank == 0 ? .info : .error
            return h
        }
    }

    public static let logger = Logger(label: "kdgraph")

    // MARK: signals

    nonisolated(unsafe) static var stopSignal: sig_atomic_t = 0

    /// Under a bare `mpirun`, what a Ctrl-C costs: mpirun sends the ranks SIGTERM, then SIGKILL
    /// `odls_base_sigkill_timeout` seconds later (OpenMPI's default 1 s; the launch scripts set 30,
    /// docs/launch.md), so when that is shorter than a step plus a checkpoint write (taken here as two
    /// steps) the ranks are killed mid-step and the work since the last checkpoint is lost. Returns the
    /// warning rank 0 prints once after the first step, or nil (not under mpirun, or grace enough).
    public static func stopGraceWarning(stepSeconds: Double,
                                        environment: [String: String] = ProcessInfo.processInfo.environment)
        -> String? {
        guard environment["OMPI_COMM_WORLD_SIZE"] != nil else { return nil }
        let setting = environment["OMPI_MCA_odls_base_sigkill_timeout"].flatMap(Double.init)
        let grace = setting ?? 1
        guard grace < 2 * stepSeconds + 1 else { return nil }
        let suggested = max(30, Int((3 * stepSeconds).rounded(.up)))
        return String(format: "mpirun gives the ranks %g s between SIGTERM and SIGKILL (odls_base_sigkill_timeout%@) "
                      + "but a step took %.1f s, and a stop needs the step, its checkpoint and MPI's shutdown (taken "
                      + "as two steps and a second): a Ctrl-C would kill them mid-step and lose the work since the "
                      + "last checkpoint. Launch with launch/local.sh (KDGRAPH_STOP_GRACE) or mpirun --mca "
                      + "odls_base_sigkill_timeout %d for a safe stop (docs/launch.md)",
                      grace, setting == nil ? ", OpenMPI's default" : "", stepSeconds, suggested)
    }

    /// SIGTERM and SIGINT set a flag the trainer reads at the end of each step (finish the step,
    /// checkpoint, exit non-zero), instead of killing the process mid-step.
    public static func installSignalHandlers() {
        signal(SIGTERM) { sig in Runtime.stopSignal = sig }
        signal(SIGINT) { sig in Runtime.stopSignal = sig }
    }

    public static var pendingSignal: Int32 { Int32(stopSignal) }

    /// Peak resident set size of this process in bytes (Linux reports ru_maxrss in KiB).
    public static func peakRSSBytes() -> Int {
        var u = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &u)
        return Int(u.ru_maxrss) * 1024
    }
}
