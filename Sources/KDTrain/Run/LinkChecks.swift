import KDComm
import KDCore

extension Trainer {
    /// Whether the link probe runs now: with `comm.link_probe_every` N > 0, at the start of the run
    /// (`first`, also a resumed one) and after every N-th step but the last. The same on every rank (a
    /// function of the step only): the probe is collective.
    func linkProbeDue(afterStep s: Int, first: Bool) -> Bool {
        let every = config.comm.linkProbeEvery
        guard every > 0, s < totalSteps else { return false }
        return first || s % every == 0
    }

    /// Runs the link probe (`LinkProbe`: nothing on one host) and keeps its result for the following
    /// step records; rank 0 logs it, as a warning when it names a straggler. Only a report: nothing the
    /// run computes depends on it.
    func probeLinks() throws {
        let hosts = try hostNames ?? LinkProbe.hostNames(comm)
        hostNames = hosts
        guard let report = try LinkProbe.run(comm, hosts: hosts) else { return }
        linkCheck = LinkCheck(afterStep: step, report: report)
        guard comm.rank == 0 else { return }
        let line = "link probe after step \(step) (\(report.hosts.count) hosts, "
            + String(format: "%.3f s): ", report.seconds) + report.summary
        if report.stragglers.isEmpty { log.info("\(line)") } else { log.warning("\(line)") }
    }
}
