import XCTest
@testable import KDTools

/// The bench's quiet-machine check (`MachineLoad`): the judgement on given readings, and a real
/// calibration that takes measurable time.
final class MachineLoadTests: XCTestCase {
    func testWarnsOnSpeedDriftAndStealOnly() {
        // ±10%: within the threshold (this VM's run-to-run noise); +20% and −30%: warned, naming the rank.
        XCTAssertEqual(MachineLoad.warnings(before: [0.010, 0.010], after: [0.011, 0.009], stealShare: 0.01), [])
        let drift = MachineLoad.warnings(before: [0.010, 0.010], after: [0.012, 0.007], stealShare: nil)
        XCTAssertEqual(drift.count, 2)
        XCTAssertTrue(drift[0].hasPrefix("rank 0: the calibration loop took 10.0 ms before the steps and 12.0 ms "
                                         + "after (+20%)"), drift[0])
        XCTAssertTrue(drift[1].hasPrefix("rank 1:") && drift[1].contains("(-30%)"), drift[1])
        let steal = MachineLoad.warnings(before: [0.01], after: [0.01], stealShare: 0.06)
        XCTAssertEqual(steal, ["the hypervisor took 6.0% of the CPU time (steal) during the measurement: the cores "
                               + "were shared with other guests"])
        XCTAssertEqual(MachineLoad.warnings(before: [0.01], after: [0.01], stealShare: 0.04), [])
    }

    func testCalibrationTakesTimeAndCPUTimesAreRead() {
        XCTAssertGreaterThan(MachineLoad.calibrate(), 0)
        #if os(Linux)
        let t = MachineLoad.cpuTimes()
        XCTAssertNotNil(t)
        if let t { XCTAssertGreaterThan(t.total, 0); XCTAssertGreaterThanOrEqual(t.steal, 0) }
        #endif
    }
}
