import Foundation
import XCTest
import KDData
import KDTestSupport

/// The teacher cache's files (docs/training.md, "Teacher cache"): records round-trip exactly (float32)
/// or rounded to nearest float16, absent and damaged records read as absent, and a cache made for other
/// settings is refused naming the differing field.
final class TeacherCacheStoreTests: XCTestCase {
    var tmp: TemporaryDirectory!
    /// The cache folder: not created, `prepare` makes it (its staging folders go beside it, in `tmp`).
    var dir: String { tmp.file("cache") }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-cache-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func manifest(dtype: String = "float32", seed: String = "1", samples: Int = 10) -> TeacherCacheManifest {
        let layout = TeacherCacheLayout(samples: samples, views: 2, rounds: 3,
                                        columns: [.init(name: "embedding", size: 4), .init(name: "logits", size: 3)],
                                        dtype: dtype, block: 4)
        return TeacherCacheManifest(layout: layout, fields: [("teacher.weights", "sha256:ab"), ("seed", seed)])
    }

    /// Record values with a spread of magnitudes (float16 rounding is relative).
    func record(_ sample: Int, round: Int, count: Int) -> [Float] {
        (0..<count).map { k in Float(sample * 100 + round * 10 + k) * 0.37 - 11.1 + Float(k) * 1e-3 }
    }

    func testRecordsRoundTripAndAbsentOnesReadAsAbsent() throws {
        let m = manifest()
        try TeacherCacheStore.prepare(directory: dir, manifest: m)
        let store = try TeacherCacheStore(directory: dir, expected: m)
        let n = m.layout.recordValues
        XCTAssertEqual(n, 2 * 7)
        var out = [Float](repeating: 0, count: n)
        XCTAssertFalse(try store.read(round: 1, sample: 3, into: &out))
        let values = record(3, round: 1, count: n)
        try store.write(round: 1, sample: 3, from: values)
        XCTAssertTrue(try store.read(round: 1, sample: 3, into: &out))
        XCTAssertEqual(out, values)   // float32: the same bits
        XCTAssertFalse(try store.read(round: 0, sample: 3, into: &out), "another round's record")
        XCTAssertFalse(try store.read(round: 1, sample: 4, into: &out), "another sample's record")
        XCTAssertEqual(try store.writtenCount(round: 1), 1)
        // A second opening (another rank) sees the record.
        let other = try TeacherCacheStore(directory: dir, expected: m)
        XCTAssertTrue(try other.read(round: 1, sample: 3, into: &out))
        XCTAssertEqual(out, values)
        XCTAssertThrowsError(try store.read(round: 3, sample: 0, into: &out)) { e in
            XCTAssertTrue("\(e)".contains("outside 3 rounds × 10 samples"), "\(e)")
        }
    }

    func testFloat16RecordsAreRoundedToNearest() throws {
        let m = manifest(dtype: "float16")
        try TeacherCacheStore.prepare(directory: dir, manifest: m)
        let store = try TeacherCacheStore(directory: dir, expected: m)
        let n = m.layout.recordValues
        let values = record(7, round: 2, count: n)
        try store.write(round: 2, sample: 7, from: values)
        var out = [Float](repeating: 0, count: n)
        XCTAssertTrue(try store.read(round: 2, sample: 7, into: &out))
        XCTAssertEqual(out, values.map { Float(Float16($0)) })
        var rounded = values
        store.roundToStored(&rounded, count: n)
        XCTAssertEqual(rounded, out, "what a step uses for a fresh record is what later steps read")
        XCTAssertNotEqual(rounded, values, "float16 must actually round these values")
        XCTAssertEqual(store.bytesPerSampleRound, n * 2 + 8)
    }

    /// A torn write: data bytes changed after the checksum (or a checksum never written) must not be read.
    func testDamagedRecordsReadAsAbsent() throws {
        let m = manifest()
        try TeacherCacheStore.prepare(directory: dir, manifest: m)
        let store = try TeacherCacheStore(directory: dir, expected: m)
        let n = m.layout.recordValues
        for s in [2, 5] { try store.write(round: 0, sample: s, from: record(s, round: 0, count: n)) }
        // Flip one byte inside record 5's data.
        let path = TeacherCacheStore.roundPath(dir, 0, "records")
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let offset = bytes.count - (m.layout.samples - 5) * n * 4 + 9
        bytes[offset] ^= 0x10
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        var out = [Float](repeating: 0, count: n)
        XCTAssertTrue(try store.read(round: 0, sample: 2, into: &out))
        XCTAssertFalse(try store.read(round: 0, sample: 5, into: &out), "checksum must catch the flipped byte")
        // Rewriting repairs it.
        try store.write(round: 0, sample: 5, from: record(5, round: 0, count: n))
        XCTAssertTrue(try store.read(round: 0, sample: 5, into: &out))
        XCTAssertEqual(out, record(5, round: 0, count: n))
    }

    func testACacheForOtherSettingsIsRefusedNamingTheField() throws {
        try TeacherCacheStore.prepare(directory: dir, manifest: manifest())
        try TeacherCacheStore.prepare(directory: dir, manifest: manifest())   // the same settings: fine
        XCTAssertThrowsError(try TeacherCacheStore.prepare(directory: dir, manifest: manifest(seed: "2"))) { e in
            XCTAssertTrue("\(e)".contains("seed: 1 → 2"), "\(e)")
            XCTAssertTrue("\(e)".contains("manifest.json"), "\(e)")
        }
        XCTAssertThrowsError(try TeacherCacheStore(directory: dir, expected: manifest(dtype: "float16"))) { e in
            XCTAssertTrue("\(e)".contains("teacher.cache.dtype: float32 → float16"), "\(e)")
        }
        XCTAssertThrowsError(try TeacherCacheStore(directory: dir, expected: manifest(samples: 11))) { e in
            XCTAssertTrue("\(e)".contains("training samples: 10 → 11"), "\(e)")
        }
        // A round file of the wrong size (truncated copy) is named.
        let path = TeacherCacheStore.roundPath(dir, 2, "sums")
        try Data([0, 0, 0]).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TeacherCacheStore(directory: dir, expected: manifest())) { e in
            XCTAssertTrue("\(e)".contains("round-0002.sums.npy"), "\(e)")
            XCTAssertTrue("\(e)".contains("size 3 bytes"), "\(e)")
        }
    }

    func testBlocksCoverTheSamplesOnce() {
        let l = manifest().layout
        XCTAssertEqual(l.blockCount, 3)
        XCTAssertEqual(l.blockSamples(of: 0), 0..<4)
        XCTAssertEqual(l.blockSamples(of: 7), 4..<8)
        XCTAssertEqual(l.blockSamples(of: 9), 8..<10)   // the last block is short
    }

    /// Issue 24 item 8: `rounds: 1000000` created 1.58 M files before it was killed. A cache that the file
    /// system cannot hold is refused before anything is created, naming the key, the size and the space.
    func testACacheLargerThanTheFreeSpaceIsRefusedBeforeAnythingIsCreated() throws {
        let layout = TeacherCacheLayout(samples: 50_000_000, views: 2, rounds: 10_000,
                                        columns: [.init(name: "embedding", size: 1024),
                                                  .init(name: "logits", size: 1000)],
                                        dtype: "float32", block: 16)
        let m = TeacherCacheManifest(layout: layout, fields: [("seed", "1")])
        // 10⁴ rounds × 5·10⁷ samples × 2 views × 2024 floats: about 8·10¹⁵ bytes, more than any disk here.
        XCTAssertGreaterThan(TeacherCacheStore.bytes(layout), 8_000_000_000_000_000)
        XCTAssertThrowsError(try TeacherCacheStore.prepare(directory: dir + "/big", manifest: m)) { e in
            let text = "\(e)"
            XCTAssertTrue(text.contains("teacher.cache.rounds"), text)
            XCTAssertTrue(text.contains("10000 round(s) of 50000000 samples need"), text)
            XCTAssertTrue(text.contains("in 20001 files under \(self.dir)/big, but its file system has"), text)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/big"), "nothing created")
        // The size counted is what the files take once every record is written.
        let small = manifest()
        try TeacherCacheStore.prepare(directory: dir, manifest: small)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("round-") }
        let onDisk = try files.map { try FileManager.default.attributesOfItem(atPath: dir + "/" + $0)[.size] as! Int }
        XCTAssertEqual(onDisk.reduce(0, +), TeacherCacheStore.bytes(small.layout))
    }

    /// Issue 24 item 11: two runs creating one cache at once, a path that is a file, a folder holding
    /// other files: each gets a plain answer (no NSCocoaErrorDomain dump), the winner's files intact.
    func testConcurrentCreationAndPathsThatAreNotCaches() throws {
        let m = manifest()
        let results = UnsafeMutableBufferPointer<Int>.allocate(capacity: 8)
        defer { results.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 8) { k in
            results[k] = (try? TeacherCacheStore.prepare(directory: dir, manifest: m)) == nil ? 0 : 1
        }
        XCTAssertEqual(Array(results), Array(repeating: 1, count: 8), "every creator finds the same cache")
        let store = try TeacherCacheStore(directory: dir, expected: m)
        let values = record(1, round: 0, count: m.layout.recordValues)
        try store.write(round: 0, sample: 1, from: values)
        var out = [Float](repeating: 0, count: values.count)
        XCTAssertTrue(try store.read(round: 0, sample: 1, into: &out))
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: (dir as NSString).deletingLastPathComponent)
            .filter { $0.contains(".creating-") }
        XCTAssertEqual(leftovers, [], "no staging folder left behind")

        let file = dir + "-file"
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        XCTAssertThrowsError(try TeacherCacheStore.prepare(directory: file, manifest: m)) {
            XCTAssertTrue("\($0)".contains("teacher.cache.path: \(file): "), "\($0)")
            XCTAssertFalse("\($0)".contains("NSCocoaErrorDomain"), "\($0)")
        }
        let other = dir + "-other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: other + "/notes.txt"))
        defer { try? FileManager.default.removeItem(atPath: other) }
        XCTAssertThrowsError(try TeacherCacheStore.prepare(directory: other, manifest: m)) {
            XCTAssertTrue("\($0)".contains("is a folder with other files and no manifest.json"), "\($0)")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: other + "/notes.txt"), "the folder untouched")
    }
}
