import Foundation
import XCTest
import KDTestSupport
@testable import KDTrain

/// A reader of TensorBoard event files written for these tests, independent of `TensorBoardWriter`: a
/// bitwise CRC-32C (no table), the TFRecord framing checked record by record, and a generic protobuf
/// decoder of the `Event` fields.
struct EventFileReader {
    struct Event: Equatable {
        var wallTime: Double?
        var step: Int64 = 0
        var fileVersion: String?
        var scalars: [String: Float] = [:]
        var tags: [String] = []
        /// `session_log.status` (1: START), when the event carries a session log.
        var sessionStatus: UInt64?
    }

    static func crc32c(_ bytes: ArraySlice<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0x82F6_3B78 : 0) }
        }
        return ~c
    }

    static func mask(_ c: UInt32) -> UInt32 { ((c >> 15) | (c << 17)) &+ 0xA282_EAD8 }

    static func le<T: FixedWidthInteger>(_ b: [UInt8], _ at: Int, _: T.Type) -> T {
        (0..<MemoryLayout<T>.size).reduce(T(0)) { $0 | T(b[at + $1]) << (8 * $1) }
    }

    struct Failure: Error, CustomStringConvertible { var description: String }

    /// The records' payloads, each frame's length and both masked CRCs verified.
    static func records(_ b: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = [], at = 0
        while at < b.count {
            guard at + 12 <= b.count else { throw Failure(description: "truncated header at \(at)") }
            let n = Int(le(b, at, UInt64.self))
            guard le(b, at + 8, UInt32.self) == mask(crc32c(b[at..<at + 8])) else {
                throw Failure(description: "length CRC at \(at)")
            }
            guard at + 12 + n + 4 <= b.count else { throw Failure(description: "truncated record at \(at)") }
            let data = b[at + 12..<at + 12 + n]
            guard le(b, at + 12 + n, UInt32.self) == mask(crc32c(data)) else {
                throw Failure(description: "data CRC at \(at)")
            }
            out.append(Array(data))
            at += 16 + n
        }
        return out
    }

    /// Protobuf fields of `b`: (number, wire type, varint or fixed value, bytes of a length-delimited one).
    static func fields(_ b: [UInt8]) throws -> [(Int, Int, UInt64, [UInt8])] {
        var out: [(Int, Int, UInt64, [UInt8])] = [], at = 0
        func varint() throws -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true {
                guard at < b.count else { throw Failure(description: "truncated varint") }
                let byte = b[at]; at += 1
                v |= UInt64(byte & 0x7F) << shift; shift += 7
                if byte < 0x80 { return v }
            }
        }
        while at < b.count {
            let key = try varint()
            let number = Int(key >> 3), type = Int(key & 7)
            switch type {
            case 0: out.append((number, 0, try varint(), []))
            case 1: out.append((number, 1, le(b, at, UInt64.self), [])); at += 8
            case 5: out.append((number, 5, UInt64(le(b, at, UInt32.self)), [])); at += 4
            case 2:
                let n = Int(try varint())
                out.append((number, 2, 0, Array(b[at..<at + n]))); at += n
            default: throw Failure(description: "wire type \(type)")
            }
        }
        return out
    }

    static func events(path: String) throws -> [Event] {
        try records(Array(try Data(contentsOf: URL(fileURLWithPath: path)))).map { payload in
            var e = Event()
            for (number, type, value, bytes) in try fields(payload) {
                switch (number, type) {
                case (1, 1): e.wallTime = Double(bitPattern: value)
                case (2, 0): e.step = Int64(bitPattern: value)
                case (3, 2): e.fileVersion = String(decoding: bytes, as: UTF8.self)
                case (5, 2):
                    for (n, t, _, v) in try fields(bytes) where n == 1 && t == 2 {
                        var tag = "", simple = Float.nan
                        for (vn, vt, vv, vb) in try fields(v) {
                            if vn == 1 && vt == 2 { tag = String(decoding: vb, as: UTF8.self) }
                            if vn == 2 && vt == 5 { simple = Float(bitPattern: UInt32(vv)) }
                        }
                        e.tags.append(tag); e.scalars[tag] = simple
                    }
                case (7, 2):
                    for (n, t, v, _) in try fields(bytes) where n == 1 && t == 0 { e.sessionStatus = v }
                default: throw Failure(description: "unexpected Event field \(number) type \(type)")
                }
            }
            return e
        }
    }
}

final class TensorBoardWriterTests: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: String { tmp.path }

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kdgraph-tensorboard-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func testCRC32CTestVectors() {
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        // RFC 3720 (iSCSI), B.4: 32 bytes of zeros, 32 bytes of ones.
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        // TensorFlow's mask: rotate right by 15, add 0xa282ead8 (mod 2³²).
        XCTAssertEqual(CRC32C.masked(0xE306_9283), 0xC78A_B0E5)
        XCTAssertEqual(CRC32C.masked(0), 0xA282_EAD8)
        for bytes in [[UInt8](), Array("a".utf8), Array((0..<255).map { UInt8($0) })] {
            XCTAssertEqual(CRC32C.checksum(bytes), EventFileReader.crc32c(bytes[...]))
        }
    }

    /// The TFRecord frame of the 3-byte payload "abc", byte for byte.
    func testFrameLayout() {
        let f = TensorBoardWriter.frame(Array("abc".utf8))
        XCTAssertEqual(f.count, 8 + 4 + 3 + 4)
        XCTAssertEqual(Array(f[0..<8]), [3, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(EventFileReader.le(f, 8, UInt32.self), CRC32C.masked(CRC32C.checksum(f[0..<8])))
        XCTAssertEqual(Array(f[12..<15]), Array("abc".utf8))
        // CRC-32C("abc") = 0x364B3FB7.
        XCTAssertEqual(EventFileReader.le(f, 15, UInt32.self), CRC32C.masked(0x364B_3FB7))
    }

    /// Records written through `MetricsWriter` with `tensorboard` read back: the version record first,
    /// then one event per record with the scalar keys only, their values (as Float) and steps.
    func testEventFileReadsBackWithTheScalarsAsWritten() throws {
        let metrics = try MetricsWriter(directory: dir, enabled: true, tensorboard: true)
        var r = MetricRecord()
        r.set("step", 10); r.set("epoch", 1); r.set("loss", 2.5); r.set("loss/rkd", 1.25); r.set("loss/kd", 0.1)
        r.set("lr", 0.01); r.set("samples_per_s", 1234.5); r.set("time/data", 0.3); r.set("bytes/allreduce", 1e6)
        try metrics.write(r)
        var e = MetricRecord()
        e.set("step", 20); e.set("epoch", 2); e.set("eval.top1", 0.75); e.set("eval.top5", 1); e.set("eval.loss", 0.5)
        try metrics.write(e)
        var big = MetricRecord()
        big.set("step", 3_000_000_000); big.set("loss", -1)
        try metrics.write(big)
        try metrics.sync()
        metrics.close()

        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/tensorboard")
        XCTAssertEqual(files.count, 1)
        let name = try XCTUnwrap(files.first)
        XCTAssertTrue(name.hasPrefix("events.out.tfevents."), name)
        XCTAssertTrue(name.hasSuffix("." + hostName()), name)
        let seconds = name.dropFirst("events.out.tfevents.".count).split(separator: ".").first.flatMap { Int($0) }
        XCTAssertEqual(Double(try XCTUnwrap(seconds)), Date().timeIntervalSince1970, accuracy: 600)
        XCTAssertEqual(metrics.tensorboard?.path, dir + "/tensorboard/" + name)

        let events = try EventFileReader.events(path: dir + "/tensorboard/" + name)
        XCTAssertEqual(events.count, 4)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[0].tags, [])
        XCTAssertEqual(events.map(\.step), [0, 10, 20, 3_000_000_000])
        XCTAssertEqual(events[1].tags, ["loss", "loss/rkd", "loss/kd", "lr", "samples_per_s"])
        XCTAssertEqual(events[1].scalars, ["loss": 2.5, "loss/rkd": 1.25, "loss/kd": Float(0.1), "lr": Float(0.01),
                                           "samples_per_s": 1234.5])
        XCTAssertEqual(events[2].scalars, ["eval.top1": 0.75, "eval.top5": 1, "eval.loss": 0.5])
        XCTAssertEqual(events[3].scalars, ["loss": -1])
        for ev in events {
            XCTAssertEqual(try XCTUnwrap(ev.wallTime), Date().timeIntervalSince1970, accuracy: 600)
            if ev.fileVersion != nil { XCTAssertTrue(ev.scalars.isEmpty) }
        }
    }

    /// Two files of the same second and host (a run resumed at once) are both kept, whole.
    /// A resumed run's file starts with TensorBoard's purge marker (as `SummaryWriter(purge_step:)` writes
    /// it): an event at the first step written again with `session_log` START, after `file_version`.
    func testAResumedRunsFileMarksThePurgeStep() throws {
        let w = try TensorBoardWriter(directory: dir, wallTime: 1_700_000_000, host: "h", purgeFrom: 11)
        var r = MetricRecord()
        r.set("step", 11); r.set("loss", 2)
        try w.write(r, wallTime: 1_700_000_001)
        w.close()
        let events = try EventFileReader.events(path: w.path)
        XCTAssertEqual(events.count, 3)
        XCTAssertEqual(events[0].fileVersion, "brain.Event:2")
        XCTAssertEqual(events[1], EventFileReader.Event(wallTime: 1_700_000_000, step: 11, sessionStatus: 1))
        XCTAssertEqual(events[2].scalars, ["loss": 2])
        let fresh = try TensorBoardWriter(directory: dir, wallTime: 1_700_000_000, host: "g")
        fresh.close()
        XCTAssertEqual(try EventFileReader.events(path: fresh.path).count, 1, "no marker in a new run's file")
    }

    func testTheSameSecondDoesNotTruncateAnEarlierFile() throws {
        var r = MetricRecord()
        r.set("step", 1); r.set("loss", 3)
        let first = try TensorBoardWriter(directory: dir, wallTime: 1_700_000_000, host: "h")
        try first.write(r)
        first.close()
        let second = try TensorBoardWriter(directory: dir, wallTime: 1_700_000_000.5, host: "h")
        second.close()
        XCTAssertEqual(first.path, dir + "/tensorboard/events.out.tfevents.1700000000.h")
        XCTAssertEqual(second.path, dir + "/tensorboard/events.out.tfevents.1700000000.h.1")
        XCTAssertEqual(try EventFileReader.events(path: first.path).map(\.scalars), [[:], ["loss": 3]])
        XCTAssertEqual(try EventFileReader.events(path: second.path).map(\.fileVersion), ["brain.Event:2"])
        XCTAssertEqual(try EventFileReader.events(path: first.path).first?.wallTime, 1_700_000_000)
    }

    /// A folder that cannot be created is named with the OS reason, never ignored.
    func testAFolderThatCannotBeCreatedIsNamed() throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/tensorboard", contents: Data("x".utf8)))
        do {
            _ = try MetricsWriter(directory: dir, enabled: true, tensorboard: true)
            XCTFail("no error")
        } catch {
            XCTAssertTrue("\(error)".hasPrefix("\(dir)/tensorboard: cannot create the TensorBoard folder: "),
                          "\(error)")
        }
        // Without `tensorboard` (and on ranks other than 0) nothing is created.
        let other = dir + "/other"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        XCTAssertNil(try MetricsWriter(directory: other, enabled: true).tensorboard)
        XCTAssertNil(try MetricsWriter(directory: other, enabled: false, tensorboard: true).tensorboard)
        XCTAssertFalse(FileManager.default.fileExists(atPath: other + "/tensorboard"))
    }
}
