import Foundation
import KDCore

/// Names a host whose network link is much slower than the others' (a straggler link, issue 28).
///
/// A slow link slows every collective that crosses it, so every rank waits as long in each all-reduce
/// and the per-rank wait times cannot say which host it is; a per-pair measurement can. One rank per host
/// (its lowest rank, the host's "leader") exchanges a fixed message of `messageBytes` each way with every
/// other host's leader (`Communicator.sendReceive`), host pairs in rounds of disjoint pairs (the circle
/// method, `schedule`), the whole schedule `repetitions` times. Ranks sharing a host exchange nothing
/// (their links are shared memory); every rank joins the barrier before each round (`quietBarrier`) and
/// the final all-gather of the times.
///
/// - Each round starts with a barrier whose waiting ranks sleep instead of spinning in MPI: the ranks
///   that sit a round out (the bye of an odd count, a host's other ranks) then leave the cores to the
///   pairs that exchange. Without it a rank that had finished its exchange spun in its next one, waiting
///   for a partner still busy; on a node with fewer cores than ranks it took the core a timed exchange
///   needed, and a host of unshaped links was misnamed (docs/scaling.md, "A straggler link").
///
/// - A pair's time is the fastest of its 2 · `repetitions` timings (each end times each exchange): the
///   ends leave the round's barrier a little apart (the one that leaves second measures the transfer
///   alone), and a repetition may meet a scheduling hiccup or the connection's set-up; the minimum keeps
///   the transfer.
/// - A link's bandwidth: `messageBytes / time` (bytes per second each way; both ways run at once).
/// - A host's bandwidth: its best link's. A host whose own link is slow has only slow links; another
///   host keeps at least one fast link (to any host but the slow one).
/// - A host the rule names is measured again before it is named (`run`): the schedule runs another
///   `repetitions` times, each pair's time becomes the fastest over both passes, and the rule judges
///   again. A slow link stays slow; a hiccup of a few milliseconds (another job's burst, a descheduled
///   rank) does not name a host. So is a host below the median / `recheckFactor` (2) that the rule does
///   not name: fast links measured slow in every timing of the first pass lower the median, and the
///   faster times of the second keep them from hiding a slow one. The second pass costs time only then.
/// - The rule (`stragglers`): with at least 3 hosts, a host is named when its bandwidth is below the
///   median host's divided by `stragglerFactor`. With 2 hosts both have the same single link, so no
///   host can be told from the other: none is named (the link's bandwidth is still reported). When half
///   the hosts or more are slow, the median is slow and none is named: a straggler is a minority.
///
/// Cost: `repetitions` × (hosts − 1, or hosts when odd) rounds of a barrier and one `messageBytes`
/// exchange per leader (twice that when the first pass names a host or finds one below the median / 2),
/// and one all-gather of `ranks × hosts` doubles: on 10 Gbit/s links ≈ 0.3 ms per round (3 hosts: 9
/// rounds, a few ms), none at all on one host. Only a report: nothing the run computes depends on it.
public enum LinkProbe {
    /// Bytes each way per exchange: large enough that a fast link's transfer (≈ 0.2 ms at 10 Gbit/s)
    /// outweighs MPI's latency (10–50 µs over TCP), small enough that a link at 100 Mbit/s takes 21 ms.
    public static let messageBytes = 256 << 10
    /// Times the whole schedule runs (the fastest of each pair's timings counts).
    public static let repetitions = 3
    /// A host is named when its best link carries less than the median host's divided by this: its
    /// ring all-reduces then take ≥ 4× the others' time on the bytes. Smaller differences (a 10 against
    /// a 25 Gbit/s card: 2.5×) are left to the cost model. Measured over the namespace hosts of
    /// Tests/mpi/multihost.sh (docs/scaling.md, "A straggler link"): unshaped, every host within 2× of the
    /// median; a host whose link is shaped to 100 Mbit/s, ≥ 10× under it.
    public static let stragglerFactor = 4.0
    /// A host below the median host's divided by this, but not by `stragglerFactor`, is measured again as a
    /// named one is (`run`): the fast links measured slow (a busy core, a hiccup over all of a pair's
    /// timings) lower the median and could hide a straggler. Unshaped, the namespace hosts of
    /// Tests/mpi/multihost.sh stay within 1.4× of the median on a quiet machine (3.5× with both cores busy:
    /// then the probe costs a second pass and still names none).
    public static let recheckFactor = 2.0

    /// What one probe found.
    public struct Report: Codable, Equatable {
        /// The hosts, in the order of their lowest rank.
        public var hosts: [String]
        /// Each host's best link, bytes per second each way (same order).
        public var hostBytesPerSecond: [Double]
        /// The median of `hostBytesPerSecond`.
        public var medianBytesPerSecond: Double
        /// The hosts the rule names (`LinkProbe.stragglers`), slowest first; empty: none.
        public var stragglers: [String]
        /// Seconds the probe took on rank 0 (its cost to the run).
        public var seconds: Double

        public init(hosts: [String], hostBytesPerSecond: [Double], medianBytesPerSecond: Double,
                    stragglers: [String], seconds: Double) {
            self.hosts = hosts; self.hostBytesPerSecond = hostBytesPerSecond
            self.medianBytesPerSecond = medianBytesPerSecond; self.stragglers = stragglers; self.seconds = seconds
        }

        /// `kdg-h0 1.21 GB/s, kdg-h1 1.19 GB/s, kdg-h2 0.012 GB/s; straggler: kdg-h2` (one line for the log).
        public var summary: String {
            let each = zip(hosts, hostBytesPerSecond).map { "\($0) \(LinkProbe.rate($1))" }.joined(separator: ", ")
            let verdict = stragglers.isEmpty
                ? "no straggler" : "straggler: \(stragglers.joined(separator: ", ")) (below the median "
                    + "\(LinkProbe.rate(medianBytesPerSecond)) / \(Int(LinkProbe.stragglerFactor)))"
            return "\(each); \(verdict)"
        }
    }

    /// `1.21 GB/s`, `12.3 MB/s`.
    public static func rate(_ bytesPerSecond: Double) -> String {
        bytesPerSecond >= 1e9 ? String(format: "%.2f GB/s", bytesPerSecond / 1e9)
                              : String(format: "%.1f MB/s", bytesPerSecond / 1e6)
    }

    /// This machine's host name (`gethostname`, what OpenMPI's `MPI_Get_processor_name` returns on Linux).
    public static func localHostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, 255) == 0 else { return "unknown" }
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Every rank's host name, by rank (collective: two all-gathers).
    public static func hostNames(_ comm: Communicator, local: String = localHostName()) throws -> [String] {
        let lengths = try comm.allGatherCounts(local.utf8.count)
        let bytes = try comm.allGatherV(Array(local.utf8), counts: lengths)
        var out: [String] = [], offset = 0
        for n in lengths {
            out.append(String(decoding: bytes[offset..<(offset + n)], as: UTF8.self))
            offset += n
        }
        return out
    }

    /// Rounds of disjoint pairs in which every pair of `hosts` hosts meets exactly once (the circle method:
    /// host 0 stays, the others rotate; with an odd count one host sits each round out).
    public static func schedule(hosts n: Int) -> [[(Int, Int)]] {
        guard n >= 2 else { return [] }
        let m = n % 2 == 0 ? n : n + 1   // host m - 1 == n: the bye
        var ring = Array(0..<m)
        var rounds: [[(Int, Int)]] = []
        for _ in 0..<(m - 1) {
            var pairs: [(Int, Int)] = []
            for k in 0..<(m / 2) {
                let a = ring[k], b = ring[m - 1 - k]
                if a < n && b < n { pairs.append((Swift.min(a, b), Swift.max(a, b))) }
            }
            rounds.append(pairs)
            ring.insert(ring.removeLast(), at: 1)
        }
        return rounds
    }

    /// The pair times of one pass over the schedule: `measure`'s signature (a parameter of `run` so that
    /// tests can hand it passes of their choosing).
    public typealias Pass = (_ comm: Communicator, _ hosts: [String], _ names: [String], _ bytes: Int,
                             _ repetitions: Int) throws -> [Double]

    /// The probe over `comm`, whose ranks run on `hosts` (by rank, e.g. `hostNames`); nil on one host
    /// (nothing to measure, nothing sent). Collective: every rank calls it. When the first pass names a
    /// host, or finds one below the median / `recheckFactor`, a second pass judges again (the type's
    /// comment); both passes' pair times are the same on every rank, so every rank takes the same decision.
    public static func run(_ comm: Communicator, hosts: [String], bytes: Int = messageBytes,
                           repetitions: Int = repetitions, pass: Pass = measure) throws -> Report? {
        let start = monotonicSeconds()
        var names: [String] = []
        for h in hosts where !names.contains(h) { names.append(h) }
        guard names.count >= 2 else { return nil }
        var seconds = try pass(comm, hosts, names, bytes, repetitions)
        var report = judge(hosts: names, pairSeconds: seconds, bytes: bytes)
        // Below the median / `recheckFactor`: every host the rule names, and those near it.
        if !stragglers(report.hostBytesPerSecond, factor: recheckFactor).isEmpty {
            let again = try pass(comm, hosts, names, bytes, repetitions)
            seconds = zip(seconds, again).map { Swift.min($0, $1) }
            report = judge(hosts: names, pairSeconds: seconds, bytes: bytes)
        }
        report.seconds = monotonicSeconds() - start
        return report
    }

    /// Microseconds a rank waiting in `quietBarrier` sleeps between two looks at the barrier: short against
    /// a round (≥ 0.2 ms), long enough that a waiting rank uses a few percent of a core.
    static let quietPollMicroseconds: UInt32 = 50

    /// A barrier whose waiting ranks sleep (`usleep`) between `test()`s of a one-element non-blocking
    /// all-reduce instead of spinning in MPI. After 1 s it waits in the watched `wait()`, so a rank that
    /// never arrives still ends the job after `comm.timeoutSeconds` (the hang rule of docs/reliability.md).
    static func quietBarrier(_ comm: Communicator) throws {
        var token: Int32 = 0
        try withUnsafeMutablePointer(to: &token) { p in
            let request = try comm.allReduceAsync(p, count: 1, op: .sum)
            let start = monotonicSeconds()
            while try !request.test() {
                if monotonicSeconds() - start > 1 { return try request.wait() }
                usleep(quietPollMicroseconds)
            }
        }
    }

    /// The pair times (seconds, `names.count`² entries, row-major; 0 on the diagonal): the fastest timing
    /// of each pair of hosts, the same on every rank.
    public static func measure(_ comm: Communicator, hosts: [String], names: [String], bytes: Int,
                               repetitions: Int) throws -> [Double] {
        guard hosts.count == comm.size else {
            throw CommError.invalidArgument(op: "LinkProbe", message: "needs \(comm.size) host names (one per "
                                            + "rank), got \(hosts.count)")
        }
        let n = names.count
        let leaders = names.map { name in hosts.firstIndex(of: name)! }
        var mine = [Double](repeating: .infinity, count: n)   // this rank's best time to each host
        let me = leaders.firstIndex(of: comm.rank)   // nil: not its host's leader, exchanges nothing
        let send = [UInt8](repeating: UInt8(truncatingIfNeeded: comm.rank), count: me == nil ? 0 : bytes)
        var recv = [UInt8](repeating: 0, count: send.count)
        let rounds = schedule(hosts: n)
        for _ in 0..<repetitions {
            for round in rounds {
                try quietBarrier(comm)
                guard let me, let pair = round.first(where: { $0.0 == me || $0.1 == me }) else { continue }
                let other = pair.0 == me ? pair.1 : pair.0
                let t0 = monotonicSeconds()
                try send.withUnsafeBufferPointer { s in
                    try recv.withUnsafeMutableBufferPointer { r in
                        try comm.sendReceive(s.baseAddress!, count: bytes, to: leaders[other],
                                             into: r.baseAddress!, from: leaders[other])
                    }
                }
                mine[other] = Swift.min(mine[other], monotonicSeconds() - t0)
            }
        }
        let all = try comm.allGatherV(mine, counts: [Int](repeating: n, count: comm.size))
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n where j != i {
                out[i * n + j] = Swift.min(all[leaders[i] * n + j], all[leaders[j] * n + i])
            }
        }
        return out
    }

    /// The report of pair times `pairSeconds` (row-major, `hosts.count`²) for messages of `bytes`.
    public static func judge(hosts: [String], pairSeconds: [Double], bytes: Int) -> Report {
        let n = hosts.count
        let perHost = (0..<n).map { i in
            (0..<n).filter { $0 != i }.map { Double(bytes) / pairSeconds[i * n + $0] }.max() ?? 0
        }
        let named = stragglers(perHost)
        return Report(hosts: hosts, hostBytesPerSecond: perHost, medianBytesPerSecond: median(perHost),
                      stragglers: named.map { hosts[$0] }, seconds: 0)
    }

    /// The rule: with at least 3 hosts, the hosts whose bandwidth (their best link's) is below the median
    /// host's divided by `factor`, slowest first; none with fewer hosts (see the type's comment).
    public static func stragglers(_ hostBytesPerSecond: [Double], factor: Double = stragglerFactor) -> [Int] {
        guard hostBytesPerSecond.count >= 3 else { return [] }
        let limit = median(hostBytesPerSecond) / factor
        return hostBytesPerSecond.indices.filter { hostBytesPerSecond[$0] < limit }
            .sorted { hostBytesPerSecond[$0] < hostBytesPerSecond[$1] }
    }

    /// The median (the mean of the two middle values for an even count; 0 for none).
    static func median(_ xs: [Double]) -> Double {
        guard !xs.isEmpty else { return 0 }
        let s = xs.sorted(), m = s.count / 2
        return s.count % 2 == 1 ? s[m] : (s[m - 1] + s[m]) / 2
    }
}
