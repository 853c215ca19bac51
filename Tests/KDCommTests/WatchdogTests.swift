import XCTest
@testable import KDComm

final class WatchdogTests: XCTestCase {
    func testMessageFormat() {
        XCTAssertEqual(Watchdog.message(name: "MPI_Allreduce", timeout: 300, step: 12),
                       "collective MPI_Allreduce did not complete within 300s (step 12)")
        XCTAssertEqual(Watchdog.message(name: "MPI_Barrier", timeout: 2.5, step: -1),
                       "collective MPI_Barrier did not complete within 2.5s (step -1)")
    }

    func testOverdueOnlyWhileACollectiveRunsPastTheTimeout() {
        let w = Watchdog()
        w.timeoutSeconds = 0          // no thread: the test drives the clock itself
        w.currentStep = 7
        w.begin("MPI_Allgatherv")
        XCTAssertEqual(w.current, "MPI_Allgatherv")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds() + 10), "disabled with timeout 0")
        w.timeoutSeconds = 2
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds()), "not yet overdue")
        XCTAssertEqual(w.overdueMessage(now: monotonicSeconds() + 3),
                       "collective MPI_Allgatherv did not complete within 2s (step 7)")
        XCTAssertNil(w.overdueMessage(now: monotonicSeconds() + 3), "fires once")
        w.end()
        XCTAssertNil(w.current)
    }

    func testNothingOverdueBetweenCollectives() {
        let w = Watchdog()
        w.timeoutSeconds = 0
        w.begin("MPI_Barrier")
        w.end()
        w.timeoutSeconds = 1
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
        w.timeoutSeconds = 0
        let n = 200_000
        let t0 = monotonicSeconds()
        for _ in 0..<n { w.begin("MPI_Allreduce"); w.end() }
        let ns = (monotonicSeconds() - t0) / Double(n) * 1e9
        XCTAssertLessThan(ns, 5_000, "begin+end took \(ns) ns")   // debug build on a loaded machine
    }
}
