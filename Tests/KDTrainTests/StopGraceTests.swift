import XCTest
@testable import KDTrain

/// Issue 24 item 12: under a bare `mpirun` a Ctrl-C killed the ranks 1 s after SIGTERM, mid-step, with
/// no checkpoint and no word. Rank 0 now says once, after the first step, when the kill grace is shorter
/// than a step (plus a checkpoint write) and how to launch so a stop is safe.
final class StopGraceTests: XCTestCase {
    func testWarnsWhenTheKillGraceIsShorterThanAStep() throws {
        let bare = ["OMPI_COMM_WORLD_SIZE": "2"]
        let m = try XCTUnwrap(Runtime.stopGraceWarning(stepSeconds: 4.7, environment: bare))
        XCTAssertEqual(m, "mpirun gives the ranks 1 s between SIGTERM and SIGKILL (odls_base_sigkill_timeout, "
                       + "OpenMPI's default) but a step took 4.7 s, and a stop needs the step, its checkpoint and "
                       + "MPI's shutdown (taken as two steps and a second): a Ctrl-C would kill them mid-step and lose "
                       + "the work since the last checkpoint. Launch with launch/local.sh (KDGRAPH_STOP_GRACE) or "
                       + "mpirun --mca odls_base_sigkill_timeout 30 for a safe stop (docs/launch.md)")
        var set = bare
        set["OMPI_MCA_odls_base_sigkill_timeout"] = "5"
        XCTAssertTrue(try XCTUnwrap(Runtime.stopGraceWarning(stepSeconds: 20, environment: set))
            .contains("gives the ranks 5 s between SIGTERM and SIGKILL (odls_base_sigkill_timeout) but a step took "
                      + "20.0 s") )
        XCTAssertTrue(try XCTUnwrap(Runtime.stopGraceWarning(stepSeconds: 20, environment: set))
            .contains("odls_base_sigkill_timeout 60 for a safe stop"), "three steps suggested")
        // Enough grace (launch/local.sh's 30 s for a 4.7 s step), or not under mpirun: nothing said.
        set["OMPI_MCA_odls_base_sigkill_timeout"] = "30"
        XCTAssertNil(Runtime.stopGraceWarning(stepSeconds: 4.7, environment: set))
        XCTAssertNil(Runtime.stopGraceWarning(stepSeconds: 4.7, environment: [:]))
        // A step of a few milliseconds still needs its checkpoint and MPI's shutdown: OpenMPI's 1 s is not enough.
        XCTAssertTrue(try XCTUnwrap(Runtime.stopGraceWarning(stepSeconds: 0.02, environment: bare))
            .contains("but a step took 0.0 s, and a stop needs the step, its checkpoint and MPI's shutdown"))
    }
}
