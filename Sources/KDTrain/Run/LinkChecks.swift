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

    /// Why a `comm.link_probe_every` the user set does nothing, when every rank of `hosts` is on one host, or nil.
    static func linkProbeUnusedNote(config: KDConfig, hosts: [String]) -> String? {
        guard Set(hosts).count == 1, config.comm.linkProbeEvery != KDConfig().comm.linkProbeEvery else { return nil }
        return "comm.link_probe_every is set but not used: the link probe measures the links between hosts, and every "
            + "rank runs on \(hosts[0])"
    }

    /// Runs the link probe (`LinkProbe`: nothing on one host) and keeps its result for the following
    /// step records; rank 0 logs it, as a warning when it names a straggler. Only a report: nothing the
    /// run computes depends on it. `first`: the probe at the start of the run (a resumed one too).
    func probeLinks(first: Bool) throws {
        let hosts = try hostNames ?? LinkProbe.hostNames(comm)
        hostNames = hosts
        guard let report = try LinkProbe.run(comm, hosts: hosts) else {
            // One host: nothing to probe. A period the user set is named at the first probe, not dropped
            // without a word.
            if first && comm.rank == 0, let note = Self.linkProbeUnusedNote(config: config, hosts: hosts) {
                log.warning("\(config.file): \(note)")
            }
            return
        }
        linkCheck = LinkCheck(afterStep: step, report: report)
        guard comm.rank == 0 else { return }
        let line = "link probe after step \(step) (\(report.hosts.count) hosts, "
            + String(format: "%.3f s): ", report.seconds) + report.summary
        if report.stragglers.isEmpty { log.info("\(line)") } else { log.warning("\(line)") }
    }
}
