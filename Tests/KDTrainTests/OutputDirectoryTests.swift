import XCTest
import KDTestSupport
@testable import KDTrain

/// Issue 18 item 3: one run per output folder (lock with pid/host, stale locks replaced, earlier
/// runs' outputs refused unless resuming or overwriting).
final class OutputDirectoryTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var base: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdout-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func claim(_ dir: String, resume: String? = nil, overwrite: Bool = false) throws -> (OutputLock, [String]) {
        var warnings: [String] = []
        let lock = try OutputDirectory.claim(directory: dir, resumingFrom: resume, overwrite: overwrite) {
            warnings.append($0)
        }
        return (lock, warnings)
    }

    func write(_ path: String, _ text: String) throws {
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    func testLockIsExclusiveAndReleased() throws {
        let dir = base + "/a/b"
        let (lock, warnings) = try claim(dir)
        XCTAssertEqual(warnings, [])
        let text = try String(contentsOfFile: dir + "/kdgraph.lock", encoding: .utf8)
        XCTAssertTrue(text.hasPrefix("pid \(getpid())\nhost \(hostName())\n"), text)
        XCTAssertThrowsError(try claim(dir)) {
            XCTAssertTrue("\($0)".hasPrefix("\(dir): output.dir is in use by another run "
                                            + "(pid \(getpid()) on \(hostName())"), "\($0)")
        }
        lock.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/kdgraph.lock"))
        let (again, _) = try claim(dir)
        again.release()
    }

    /// A dead pid, or a live pid whose process started at another time (reused), is a stale lock.
    func testStaleLockIsReplaced() throws {
        let dead = Process()
        dead.executableURL = URL(fileURLWithPath: "/bin/true")
        try dead.run()
        dead.waitUntilExit()
        for holder in ["pid \(dead.processIdentifier)\nhost \(hostName())\nprocess_start \nstarted then\n",
                       "pid \(getpid())\nhost \(hostName())\nprocess_start 1\nstarted then\n"] {
            try write(base + "/s/kdgraph.lock", holder)
            let (lock, warnings) = try claim(base + "/s")
            XCTAssertEqual(warnings.count, 1)
            XCTAssertTrue(warnings[0].contains("removing a stale lock"), warnings[0])
            XCTAssertTrue(try String(contentsOfFile: base + "/s/kdgraph.lock", encoding: .utf8)
                .hasPrefix("pid \(getpid())\n"))
            lock.release()
        }
    }

    func testLockOnAnotherHostIsRefusedWithAdvice() throws {
        try write(base + "/h/kdgraph.lock", "pid 1\nhost elsewhere-node\nprocess_start 5\nstarted yesterday\n")
        XCTAssertThrowsError(try claim(base + "/h")) {
            XCTAssertEqual("\($0)", "\(self.base)/h: output.dir is locked by pid 1 on host elsewhere-node (started "
                           + "yesterday), which cannot be checked from \(hostName()): if that run is over, delete "
                           + "\(self.base)/h/kdgraph.lock")
        }
    }

    func testEarlierRunIsRefusedUnlessResumedOrOverwritten() throws {
        let dir = base + "/run"
        for name in ["checkpoints/step_00000005.safetensors", "checkpoints/step_00000010.safetensors",
                     "checkpoints/final.safetensors", "metrics.jsonl"] {
            try write(dir + "/" + name, "x")
        }
        try write(dir + "/notes.txt", "kept")
        XCTAssertThrowsError(try claim(dir)) {
            XCTAssertEqual("\($0)", "\(dir): output.dir already holds an earlier run's outputs "
                           + "(checkpoints/final.safetensors, "
                           + "checkpoints/step_00000005.safetensors, checkpoints/step_00000010.safetensors, …): pass "
                           + "--resume with one of its checkpoints to continue that run, --overwrite to replace it, or "
                           + "choose another output.dir")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/kdgraph.lock"), "a refused claim leaves no lock")
        // Resuming from a checkpoint elsewhere does not make this folder's run ours.
        try write(base + "/other/step_00000001.safetensors", "x")
        XCTAssertThrowsError(try claim(dir, resume: base + "/other/step_00000001.safetensors")) {
            let other = self.base + "/other/step_00000001.safetensors"
            XCTAssertTrue("\($0)".hasSuffix(", …), and --resume \(other) is not one of its checkpoints (in "
                                           + "\(dir)/checkpoints/): resume from one of those, or choose another "
                                           + "output.dir"), "\($0)")
        }
        // Resuming from one of its own checkpoints continues that run.
        let (resumed, _) = try claim(dir, resume: dir + "/checkpoints/step_00000005.safetensors")
        resumed.release()
        // --overwrite removes the earlier outputs, except the checkpoint resumed from and its state (it had
        // removed the state file, so the checkpoint could not be resumed again), and nothing else.
        try write(dir + "/checkpoints/step_00000005.state.safetensors", "x")
        try write(dir + "/metrics.superseded-after-step-5.jsonl", "x")   // records a resumed run moved aside
        let (over, warnings) = try claim(dir, resume: dir + "/checkpoints/step_00000005.safetensors", overwrite: true)
        XCTAssertEqual(warnings, ["\(dir): --overwrite removed 4 file(s) of an earlier run"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/metrics.superseded-after-step-5.jsonl"))
        XCTAssertEqual(OutputDirectory.previousRunFiles(in: dir).sorted(),
                       ["checkpoints/step_00000005.safetensors", "checkpoints/step_00000005.state.safetensors"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/notes.txt"))
        over.release()
        let (fresh, _) = try claim(dir, overwrite: true)
        XCTAssertEqual(OutputDirectory.previousRunFiles(in: dir), [])
        fresh.release()
    }

    /// Issue 29 item 3: a run that names no output.dir gets `root/version_N`, N one past the highest
    /// (gaps and other names ignored), created by mkdir so that the next call moves on; a resume from a
    /// run's `checkpoints/` continues in that run; `create: false` (the `--check` preflight) creates nothing.
    func testNextVersionNumbersRunsAndResumesInPlace() throws {
        let root = base + "/runs/cfg"
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, create: false), root + "/version_0")
        XCTAssertFalse(FileManager.default.fileExists(atPath: root), "the preflight creates nothing")
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, create: true), root + "/version_0")
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, create: true), root + "/version_1")
        for name in ["version_7", "version_x", "notes"] {
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: false)
        }
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, create: false), root + "/version_8")
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, create: true), root + "/version_8")
        XCTAssertEqual(OutputDirectory.versions(in: root).sorted(), [0, 1, 7, 8])
        let ck = root + "/version_1/checkpoints/step_00000010.safetensors"
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, resumingFrom: ck, create: true), root + "/version_1")
        XCTAssertEqual(try OutputDirectory.nextVersion(root: root, resumingFrom: base + "/elsewhere.safetensors",
                                                       create: true), root + "/version_9")
        try write(base + "/runs/file", "x")
        XCTAssertThrowsError(try OutputDirectory.nextVersion(root: base + "/runs/file", create: true)) {
            XCTAssertEqual("\($0)", "\(self.base)/runs/file: output.dir exists and is not a folder")
        }
    }

    func testUncreatableFolderIsNamed() throws {
        try write(base + "/file", "x")
        XCTAssertThrowsError(try claim(base + "/file/sub")) {
            XCTAssertEqual("\($0)", "\(self.base)/file/sub: cannot create output.dir (at \(self.base)/file/sub): "
                           + String(cString: strerror(ENOTDIR)))
        }
    }

    /// Issue 24 item 11: a kill during a checkpoint write left `.step_….safetensors.tmp-PID` behind; the next
    /// start in that folder removes it and says so, and leaves the checkpoints themselves alone.
    func testStaleTemporaryFilesAreRemovedAndNamed() throws {
        let dir = base + "/t"
        let stale = dir + "/checkpoints/.step_00000004.safetensors.tmp-4242"
        try write(stale, "partial")
        try write(dir + "/checkpoints/step_00000002.safetensors", "kept")
        try write(dir + "/.config.yaml.tmp-77", "partial")
        let (lock, warnings) = try claim(dir, resume: dir + "/checkpoints/step_00000002.safetensors")
        lock.release()
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/.config.yaml.tmp-77"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/checkpoints/step_00000002.safetensors"))
        XCTAssertEqual(warnings, [
            "\(dir)/.config.yaml.tmp-77: removed a partial file left by an interrupted write (the file it was to "
                + "replace is intact)",
            "\(stale): removed a partial file left by an interrupted write (the file it was to replace is intact)",
        ])
    }
}
