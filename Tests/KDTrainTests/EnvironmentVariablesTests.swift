import XCTest
@testable import KDTrain

/// `EnvironmentVariables`: a value kdgraph cannot read was taken as unset (the AVX-512 kernels with
/// `KDGRAPH_AVX512=no`, the default timeout with `KDGRAPH_COMM_TIMEOUT=5m`); a misspelt name did nothing.
final class EnvironmentVariablesTests: XCTestCase {
    func testValuesKDGraphCannotReadAreErrors() {
        XCTAssertEqual(EnvironmentVariables.errors([
            "KDGRAPH_AVX512": "no", "KDGRAPH_COMM_TIMEOUT": "5m", "KDGRAPH_STALL_PROBE": "off",
            "KDGRAPH_FAIL_RANK": "-1", "KDGRAPH_NAN_STEP": "2.5", "KDGRAPH_SECOND_PASS_MIRRORED": "yes",
            "KDGRAPH_FAIL_STEP": "three",
        ]), [
            "KDGRAPH_COMM_TIMEOUT=5m: it takes seconds, a number (0 disables the watchdog)",
            "KDGRAPH_AVX512=no: it takes 0 (the AVX2 kernels) or 1 (the default)",
            "KDGRAPH_STALL_PROBE=off: it takes 0 (no stall probe) or 1 (the default)",
            "KDGRAPH_FAIL_RANK=-1: it takes a rank, an integer ≥ 0",
            "KDGRAPH_FAIL_STEP=three: it takes a step, an integer ≥ 0",
            "KDGRAPH_NAN_STEP=2.5: it takes a step, an integer ≥ 0",
            "KDGRAPH_SECOND_PASS_MIRRORED=yes: it takes 0 or 1",
        ])
        XCTAssertEqual(EnvironmentVariables.errors(["KDGRAPH_COMM_TIMEOUT": "inf"]).count, 1, "not finite")
        // Every value the docs and tests use, and the absence of each.
        XCTAssertEqual(EnvironmentVariables.errors([
            "KDGRAPH_AVX512": "0", "KDGRAPH_COMM_TIMEOUT": "2.5", "KDGRAPH_STALL_PROBE": "1", "KDGRAPH_FAIL_RANK": "1",
            "KDGRAPH_FAIL_STEP": "3", "KDGRAPH_NAN_STEP": "0", "KDGRAPH_SECOND_PASS_MIRRORED": "1",
        ]), [])
        XCTAssertEqual(EnvironmentVariables.errors([:]), [])
    }

    func testANameNothingReadsIsAWarning() {
        let w = EnvironmentVariables.warnings(["KDGRAPH_COMM_TIMOUT": "5", "KDGRAPH_STOP_GRACE": "30",
                                               "KDGRAPH": "kdgraph", "KDGRAPH_PORTABLE": "1", "PATH": "/bin"])
        XCTAssertEqual(w, ["KDGRAPH_COMM_TIMOUT is set but nothing of kdgraph reads it (it reads "
                           + "KDGRAPH_COMM_TIMEOUT, KDGRAPH_AVX512, KDGRAPH_STALL_PROBE, KDGRAPH_FAIL_RANK, "
                           + "KDGRAPH_FAIL_STEP, KDGRAPH_NAN_STEP, KDGRAPH_SECOND_PASS_MIRRORED; docs/launch.md)"])
    }
}
