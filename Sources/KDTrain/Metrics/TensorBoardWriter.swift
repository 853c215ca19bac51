import Foundation
import KDFormats
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF), the
/// checksum of TFRecord framing, computed with one 256-entry table.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { (n: Int) -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes`: 0xE3069283 for the ASCII bytes of "123456789".
    public static func checksum<S: Sequence>(_ bytes: S) -> UInt32 where S.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TensorFlow's masked CRC (`crc32c::Mask`): the CRC rotated right by 15 bits plus 0xa282ead8, so a
    /// record holding CRCs does not checksum to a trivial value.
    public static func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }
}

/// The few protobuf encodings a TensorBoard `Event` needs, written by hand (no protobuf dependency):
/// varints, 64-bit, 32-bit and length-delimited fields.
enum ProtobufEncoding {
    static func varint(_ v: UInt64, into out: inout [UInt8]) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }

    /// Field `number`, wire type `type` (0 varint, 1 64-bit, 2 length-delimited, 5 32-bit).
    static func key(_ number: Int, _ type: Int, into out: inout [UInt8]) {
        varint(UInt64(number << 3 | type), into: &out)
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T, into out: inout [UInt8]) {
        withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
    }

    static func double(_ number: Int, _ v: Double, into out: inout [UInt8]) {
        key(number, 1, into: &out); littleEndian(v.bitPattern, into: &out)
    }

    static func float(_ number: Int, _ v: Float, into out: inout [UInt8]) {
        key(number, 5, into: &out); littleEndian(v.bitPattern, into: &out)
    }

    static func int64(_ number: Int, _ v: Int64, into out: inout [UInt8]) {
        key(number, 0, into: &out); varint(UInt64(bitPattern: v), into: &out)
    }

    static func bytes(_ number: Int, _ v: [UInt8], into out: inout [UInt8]) {
        key(number, 2, into: &out); varint(UInt64(v.count), into: &out); out += v
    }
}

/// Writes a run's scalars as a TensorBoard event file, `events.out.tfevents.<unix seconds>.<host>` in
/// `<output.dir>/tensorboard/` (`output.tensorboard`; rank 0 only), which `tensorboard --logdir` reads.
///
/// The file is a sequence of TFRecords (little-endian uint64 length, masked CRC-32C of those 8 bytes,
/// the data, masked CRC-32C of the data), each holding one protobuf `Event`: the first carries
/// `file_version` "brain.Event:2", each later one the wall time, the step and a `Summary` of
/// `simple_value`s tagged with the metrics' keys. Each record is one `write(2)`: a failed write is cut
/// back and reported as `TrainError.io` naming the file and the OS reason, as the metrics files are.
public final class TensorBoardWriter {
    /// The event file's path.
    public let path: String
    let sink: MetricsWriter.Sink

    /// The keys of a metrics record that become scalars: the loss and its terms, the learning rate,
    /// the throughput and the evaluation.
    public static func isScalar(_ key: String) -> Bool {
        MetricRecord.isCurve(key) || key.hasPrefix("eval.")
    }

    /// Creates `<directory>/tensorboard/` and the event file (named with `host`, by default this
    /// machine's name; suffixed `.1`, `.2`, … when that name exists), and writes its `file_version` record.
    /// `purgeFrom` (a resumed run: the first step it writes again): an event at that step with a
    /// `SessionLog` START, on which TensorBoard drops the events of that step and later read from the
    /// folder's earlier files (its "orphaned data"; PyTorch's `SummaryWriter(purge_step:)` writes the same).
    public init(directory: String, wallTime: Double = Date().timeIntervalSince1970, host: String? = nil,
                purgeFrom: Int? = nil) throws {
        let folder = (directory as NSString).appendingPathComponent("tensorboard")
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw TrainError.io(path: folder, message: "cannot create the TensorBoard folder: "
                                + ioReason(error, path: folder))
        }
        // A run resumed within the same second must not truncate the earlier file: `.1`, `.2`, … then.
        let name = "events.out.tfevents.\(Int(wallTime)).\(host ?? hostName())"
        var candidate = (folder as NSString).appendingPathComponent(name), n = 0
        while FileManager.default.fileExists(atPath: candidate) {
            n += 1
            candidate = (folder as NSString).appendingPathComponent("\(name).\(n)")
        }
        path = candidate
        sink = try MetricsWriter.Sink(path: path, append: false)
        var event = [UInt8]()
        ProtobufEncoding.double(1, wallTime, into: &event)
        ProtobufEncoding.bytes(3, Array("brain.Event:2".utf8), into: &event)
        try sink.append(bytes: Self.frame(event))
        if let purgeFrom {
            // Event {wall_time: 1, step: 2, session_log: 7 {status: 1 = START}}.
            var start = [UInt8](), log = [UInt8]()
            ProtobufEncoding.int64(1, 1, into: &log)
            ProtobufEncoding.double(1, wallTime, into: &start)
            ProtobufEncoding.int64(2, Int64(purgeFrom), into: &start)
            ProtobufEncoding.bytes(7, log, into: &start)
            try sink.append(bytes: Self.frame(start))
        }
    }

    /// The protobuf `Event` {wall_time: 1, step: 2, summary: 5 {value: 1 {tag: 1, simple_value: 2}}}.
    public static func event(wallTime: Double, step: Int64, scalars: [(String, Float)]) -> [UInt8] {
        var summary = [UInt8]()
        for (tag, value) in scalars {
            var v = [UInt8]()
            ProtobufEncoding.bytes(1, Array(tag.utf8), into: &v)
            ProtobufEncoding.float(2, value, into: &v)
            ProtobufEncoding.bytes(1, v, into: &summary)
        }
        var event = [UInt8]()
        ProtobufEncoding.double(1, wallTime, into: &event)
        ProtobufEncoding.int64(2, step, into: &event)
        ProtobufEncoding.bytes(5, summary, into: &event)
        return event
    }

    /// One TFRecord around `data`.
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(data.count + 16)
        ProtobufEncoding.littleEndian(UInt64(data.count), into: &out)
        ProtobufEncoding.littleEndian(CRC32C.masked(CRC32C.checksum(out)), into: &out)
        out += data
        ProtobufEncoding.littleEndian(CRC32C.masked(CRC32C.checksum(data)), into: &out)
        return out
    }

    /// Appends one event with `r`'s scalars (`isScalar`) at `r["step"]`; a record without them writes
    /// nothing.
    public func write(_ r: MetricRecord, wallTime: Double = Date().timeIntervalSince1970) throws {
        let scalars = r.fields.filter { Self.isScalar($0.0) }.map { ($0.0, Float($0.1)) }
        guard !scalars.isEmpty else { return }
        let step = Int64(r["step"] ?? 0)
        try sink.append(bytes: Self.frame(Self.event(wallTime: wallTime, step: step, scalars: scalars)))
    }

    /// Flushes the file to the disk; throws `TrainError.io` naming it.
    public func sync() throws { try sink.sync() }

    public func close() { sink.close() }
}
