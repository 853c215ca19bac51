import XCTest
@testable import KDComm
import KDCore

final class WatchdogTests: XCTestCase {
    func testMessageFormat() {
        XCTAssertEqual(Watchdog.message(name: "MPI_Allreduce", timeout: 300, setting: "comm.timeout_s", step: 12),
                       "collective MPI_Allreduce did not complete within 300s of comm.timeout_s (step 12)")
        XCTAssertEqual(Watchdog.message(name: "MPI_Barrier", timeout: 2.5, setting: "KDGRAPH_COMM_TIMEOUT", step: -1),
                       "collective MPI_Barrier did not complete within 2.5s of KDGRAPH_COMM_TIMEOUT (step -1)")
    }

    func testOverdueOnlyWhileACollectiveRunsPastTheTimeout() {
        let w = Watchdog()
        w.setTimeout(0, setting: "comm.timeout_s")          // no thread: the test drives the clock itself
        w.currentStep = 7
        w.begin("MPI_Allgatherv")
        XCTAssertEqual(w.current, "MPI_Allgatherv")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds() + 10), "disabled with timeout 0")
        w.setTimeout(2, setting: "comm.timeout_s")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds()), "not yet overdue")
        XCTAssertEqual(w.overdueMessage(now: monotonicSeconds() + 3),
                       "collective MPI_Allgatherv did not complete within 2s of comm.timeout_s (step 7)")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds() + 3), "fires once")
        w.end()
        XCTAssertNil(w.current)
    }

    /// Issue 18 item 10: a rank that was stopped (SIGSTOP) and resumed must not find its own collective
    /// overdue: the time it spent stopped does not count; time it ran does.
    func testTimeStoppedDoesNotCount() {
        let w = Watchdog()
        w.setTimeout(0, setting: "comm.timeout_s")
        let t0 = monotonicSeconds()
        w.noteWake(now: t0, interval: 0.5)
        w.begin("MPI_Allreduce")
        w.setTimeout(5, setting: "comm.timeout_s")
        w.noteWake(now: t0 + 0.5, interval: 0.5)
        w.noteWake(now: t0 + 100.5, interval: 0.5)          // stopped for ~100 s
        XCTAssertNil(w.overdueMessage(now: t0 + 101), "the stopped time was counted")
        XCTAssertEqual(w.state.stoppedSeconds, 99.5, accuracy: 1e-9, "the stop is reported to peers that ask")
        w.noteWake(now: t0 + 101, interval: 0.5)
        XCTAssertNil(w.overdueMessage(now: t0 + 104))
        XCTAssertEqual(w.overdueMessage(now: t0 + 106.5),    // > 5 s of running time since the gap
                       "collective MPI_Allreduce did not complete within 5s of comm.timeout_s (step -1)")
        w.end()
    }

    /// Across hosts, every named rank comes with its host (a host cut off cannot say where it runs);
    /// on one host, or without the names, the verdict is unchanged.
    func testStallReportNamesTheHostOfEachNamedRank() {
        let me = PeerState(inCollective: true, name: "MPI_Allreduce", step: 7, sequence: 20)
        let computing = PeerState(inCollective: false, name: "", step: 7, sequence: 19)
        let earlier = PeerState(inCollective: true, name: "MPI_Barrier", step: 6, sequence: 18)
        let hosts = ["kdg-h0", "kdg-h1", "kdg-h2", "kdg-h2"]
        XCTAssertEqual(Watchdog.stallReport(me, rank: 0, size: 4, answers: [1: me, 3: computing], grace: 2,
                                            hosts: hosts),
                       "stalled: rank 2 (no answer within 2s: stopped, hung outside MPI, or gone) on host kdg-h2, "
                       + "rank 3 (not in a collective, at step 7) on host kdg-h2")
        XCTAssertEqual(Watchdog.stallReport(me, rank: 1, size: 4, answers: [0: earlier, 2: me, 3: me], grace: 2,
                                            hosts: hosts),
                       "waiting in an earlier collective: rank 0 (MPI_Barrier at step 6) on host kdg-h0")
        let oneHost = [String](repeating: "node7", count: 4)
        XCTAssertEqual(Watchdog.stallReport(me, rank: 0, size: 4, answers: [1: me, 3: me], grace: 2, hosts: oneHost),
                       "stalled: rank 2 (no answer within 2s: stopped, hung outside MPI, or gone)")
        // A list that does not match the world (never expected) is ignored rather than misattributed.
        XCTAssertEqual(Watchdog.stallReport(me, rank: 0, size: 3, answers: [1: me], grace: 2, hosts: ["a", "b"]),
                       "stalled: rank 2 (no answer within 2s: stopped, hung outside MPI, or gone)")
    }

    /// The verdict names the silent rank and the ones behind (a smaller sequence), not the ranks in
    /// the same collective or already past it (the root of a broadcast).
    func testStallReportNamesTheRanksThatDidNotArrive() {
        let me = PeerState(inCollective: true, name: "MPI_Allreduce", step: 12, sequence: 40)
        let past = PeerState(inCollective: true, name: "MPI_Allgatherv", step: 12, sequence: 41)
        XCTAssertEqual(Watchdog.stallReport(me, rank: 0, size: 4, answers: [1: me, 3: past], grace: 2),
                       "stalled: rank 2 (no answer within 2s: stopped, hung outside MPI, or gone)")
        let computing = PeerState(inCollective: false, name: "", step: 12, sequence: 39)
        let earlier = PeerState(inCollective: true, name: "MPI_Barrier", step: 11, sequence: 38)
        XCTAssertEqual(Watchdog.stallReport(me, rank: 3, size: 4, answers: [0: me, 1: computing, 2: earlier],
                                            grace: 2.5),
                       "stalled: rank 1 (not in a collective, at step 12); "
                       + "waiting in an earlier collective: rank 2 (MPI_Barrier at step 11)")
        // Seen under mpirun -np 4 with rank 2 stopped: rank 1 had finished an all-reduce that rank 0 was
        // still waiting in (rank 2's part had reached rank 1 through another rank); rank 0 is a victim.
        XCTAssertEqual(Watchdog.stallReport(past, rank: 1, size: 4, answers: [0: me, 3: past], grace: 2),
                       "stalled: rank 2 (no answer within 2s: stopped, hung outside MPI, or gone); "
                       + "waiting in an earlier collective: rank 0 (MPI_Allreduce at step 12)")
        XCTAssertEqual(Watchdog.stallReport(me, rank: 1, size: 2, answers: [0: past], grace: 2),
                       "every rank has reached it (suspect the network or MPI, not a rank)")
        // Seen: the first waiting rank aborted, mpirun sent SIGCONT, and the stopped rank answered the
        // others from inside the collective; its stop gives it away.
        var resumed = me
        resumed.stoppedSeconds = 8.6
        XCTAssertEqual(Watchdog.stallReport(me, rank: 1, size: 3, answers: [0: me, 2: resumed], grace: 2),
                       "stalled: rank 2 (was stopped for 9s)")
        // Waiting in MPI_Wait (not counted): a peer with the same count outside any call has not got there.
        let waiting = PeerState(inCollective: true, name: "MPI_Wait(MPI_Iallreduce)", step: 12, sequence: 40)
        let backward = PeerState(inCollective: false, name: "", step: 12, sequence: 40)
        XCTAssertEqual(Watchdog.stallReport(waiting, rank: 0, size: 3, answers: [1: waiting, 2: backward], grace: 2),
                       "stalled: rank 2 (not in a collective, at step 12)")
    }

    /// `sequence` counts collectives, not waits or MPI_Finalize (which ranks may skip or reach apart).
    func testSequenceCountsCollectivesOnly() {
        let w = Watchdog()
        w.setTimeout(0, setting: "comm.timeout_s")
        w.begin("MPI_Allreduce"); w.end()
        w.begin("MPI_Wait(MPI_Iallreduce)", collective: false); w.end()
        w.begin("MPI_Barrier")
        XCTAssertEqual(w.state, PeerState(inCollective: true, name: "MPI_Barrier", step: -1, sequence: 2))
        w.end()
        XCTAssertEqual(w.state, PeerState(inCollective: false, name: "", step: -1, sequence: 2))
    }

    func testProbeAnswerRoundTrips() {
        for s in [PeerState(inCollective: true, name: "MPI_Wait(MPI_Iallreduce)", step: 123_456_789, sequence: 7,
                            stoppedSeconds: 12.345),
                  PeerState(inCollective: false, name: "", step: -1, sequence: 0)] {
            let bytes = StallProbe.encode(s)
            XCTAssertEqual(bytes.count, StallProbe.answerBytes)
            bytes.withUnsafeBytes { XCTAssertEqual(StallProbe.decode($0), s) }
        }
    }

    func testNothingOverdueBetweenCollectives() {
        let w = Watchdog()
        w.setTimeout(0, setting: "comm.timeout_s")
        w.begin("MPI_Barrier")
        w.end()
        w.setTimeout(1, setting: "comm.timeout_s")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds() + 100))
    }

    func testCommunicatorForwardsTimeoutAndStep() throws {
        let comm = try MPICommunicator.initialize()
        let saved = comm.timeoutSeconds
        comm.timeoutSeconds = 42
        comm.currentStep = 3
        XCTAssertEqual(Watchdog.shared.timeoutSeconds, 42)
        XCTAssertEqual(Watchdog.shared.currentStep, 3)
        comm.timeoutSeconds = saved
        comm.currentStep = -1
    }

    func testBeginEndIsCheap() {
        let w = Watchdog()
        w.setTimeout(0, setting: "comm.timeout_s")
        let n = 200_000
        let t0 = monotonicSeconds()
        for _ in 0..<n { w.begin("MPI_Allreduce"); w.end() }
        let ns = (monotonicSeconds() - t0) / Double(n) * 1e9
        XCTAssertLessThan(ns, 5_000, "begin+end took \(ns) ns")   // debug build on a loaded machine
    }
}
