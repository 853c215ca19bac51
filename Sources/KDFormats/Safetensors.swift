/// The safetensors format (huggingface/safetensors), read and written byte-exactly:
///
///     [u64 little-endian N][N bytes of JSON header, space-padded][data section]
///
/// The header maps each tensor name to `{"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}`
/// (offsets relative to the data section) and may hold `"__metadata__": {string: string}`.
/// Data is raw little-endian, C order. The writer pads the header with spaces so the data section
/// starts on an 8-byte boundary; offsets are contiguous in file order.
///
/// The reader validates everything before touching data: header length against the file size, the
/// JSON, every dtype, shape and offset pair (in range, contiguous, non-overlapping, covering the whole
/// data section), and `byteSize(dtype) × Π shape == end − begin`, with overflow-checked arithmetic.
///
/// Checksums (docs/reliability.md): when the metadata holds `checksumKey`, the SHA-256 of the whole
/// file (length prefix, header: names, dtypes, shapes, offsets, metadata, padding; data section) is
/// verified, with the digest's own 64 hex digits hashed as ASCII `'0'`. Files written before the
/// header was covered hold `legacyDataChecksumKey` (the data section only), still verified. Files
/// without either (PyTorch's `safetensors.torch.save_file`) are read unverified.
public enum Safetensors {
    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderBytes = 100_000_000
    /// Metadata key under which `serialize(..., addChecksum: true)` stores the SHA-256 of the whole file
    /// (its own value hashed as 64 `'0'`s). It must appear verbatim as `"kdgraph.file_sha256":"<hex>"`
    /// in the header (as the writer puts it): a header re-serialised by another tool is refused.
    public static let checksumKey = "kdgraph.file_sha256"
    /// The data-section-only SHA-256 of checkpoints written before the header was covered.
    public static let legacyDataChecksumKey = "kdgraph.data_sha256"

    /// The bytes `"<checksumKey>":"` that precede the digest in a header.
    static var checksumPrefix: [UInt8] { Array("\"\(checksumKey)\":\"".utf8) }

    /// Serialises `tensors` (in this order) and `metadata` into the bytes of one safetensors file.
    /// With `addChecksum`, the lowercase hex SHA-256 of the whole file is stored in the metadata under
    /// `checksumKey` (computed with its 64 digits as `'0'`, then written in their place).
    public static func serialize(_ tensors: [(String, SafetensorsTensor)], metadata: [String: String] = [:],
                                 addChecksum: Bool = false, file: String = "<memory>") throws -> [UInt8] {
        var seen = Set<String>()
        var dataSize = 0
        for (name, t) in tensors {
            if name == "__metadata__" {
                throw SafetensorsError.invalidTensor(file: file, tensor: name, message: "reserved name")
            }
            if !seen.insert(name).inserted {
                throw SafetensorsError.invalidTensor(file: file, tensor: name, message: "duplicate name")
            }
            guard let n = t.expectedByteCount, n == t.bytes.count else {
                throw SafetensorsError.invalidTensor(
                    file: file, tensor: name,
                    message: "\(t.bytes.count) bytes for dtype \(t.dtype.rawValue) shape \(t.shape)")
            }
            dataSize += n
        }
        var data = [UInt8]()
        data.reserveCapacity(dataSize)
        var entries: [String] = []
        for (name, t) in tensors {
            let begin = data.count
            data.append(contentsOf: t.bytes)
            let shape = t.shape.map(String.init).joined(separator: ",")
            entries.append("\(SafetensorsJSON.quote(name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(shape)],"
                           + "\"data_offsets\":[\(begin),\(data.count)]}")
        }
        var meta = metadata
        meta[legacyDataChecksumKey] = nil
        meta[checksumKey] = addChecksum ? String(repeating: "0", count: 64) : nil
        var header = "{"
        if !meta.isEmpty {
            let pairs = meta.keys.sorted().map { "\(SafetensorsJSON.quote($0)):\(SafetensorsJSON.quote(meta[$0]!))" }
            header += "\"__metadata__\":{" + pairs.joined(separator: ",") + "}"
            if !entries.isEmpty { header += "," }
        }
        header += entries.joined(separator: ",") + "}"
        var headerBytes = Array(header.utf8)
        while (8 + headerBytes.count) % 8 != 0 { headerBytes.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + data.count)
        var n = UInt64(headerBytes.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        out.append(contentsOf: data)
        if addChecksum {
            let at = occurrences(of: checksumPrefix, in: out, within: 8..<(8 + headerBytes.count))
            precondition(at.count == 1, "the writer puts the checksum key once")
            let digits = (at[0] + checksumPrefix.count)..<(at[0] + checksumPrefix.count + 64)
            let digest = out.withUnsafeBytes { sha256Hex($0) }   // the digits are still '0's here
            out.replaceSubrange(digits, with: Array(digest.utf8))
        }
        return out
    }

    /// Start offsets of every occurrence of `pattern` in `bytes[range]` (at most two are looked for).
    static func occurrences(of pattern: [UInt8], in bytes: UnsafeBufferPointer<UInt8>,
                            within range: Range<Int>) -> [Int] {
        var found: [Int] = []
        guard let first = pattern.first, range.count >= pattern.count else { return found }
        var i = range.lowerBound
        while i + pattern.count <= range.upperBound && found.count < 2 {
            if bytes[i] == first && (1..<pattern.count).allSatisfy({ bytes[i + $0] == pattern[$0] }) { found.append(i) }
            i += 1
        }
        return found
    }

    static func occurrences(of pattern: [UInt8], in bytes: [UInt8], within range: Range<Int>) -> [Int] {
        bytes.withUnsafeBufferPointer { occurrences(of: pattern, in: $0, within: range) }
    }

    /// Parses and validates the bytes of a safetensors file. `file` names it in error messages.
    public static func parse(_ bytes: [UInt8], file: String = "<memory>") throws -> SafetensorsFile {
        try bytes.withUnsafeBufferPointer { try parse($0, file: file) }
    }

    /// Parses and validates a safetensors file held in memory.
    public static func parse(_ buf: UnsafeBufferPointer<UInt8>, file: String) throws -> SafetensorsFile {
        func headerError(_ m: String) -> SafetensorsError { .invalidHeader(file: file, message: m) }
        guard buf.count >= 8 else {
            throw headerError("file is \(buf.count) bytes, shorter than the 8-byte header length (truncated?)")
        }
        var n64: UInt64 = 0
        for k in 0..<8 { n64 |= UInt64(buf[k]) << (8 * UInt64(k)) }
        guard n64 <= UInt64(maxHeaderBytes) else {
            throw headerError("header length \(n64) exceeds the limit of \(maxHeaderBytes) bytes")
        }
        let n = Int(n64)
        guard 8 + n <= buf.count else {
            throw headerError("header length \(n) runs past the end of the \(buf.count)-byte file (truncated?)")
        }
        guard n >= 2, buf[8] == UInt8(ascii: "{") else { throw headerError("header does not start with '{'") }
        let json: SafetensorsJSON
        do {
            json = try SafetensorsJSON.parse(UnsafeBufferPointer(rebasing: buf[8..<(8 + n)]))
        } catch let e as SafetensorsJSON.ParseError {
            throw headerError("malformed JSON: \(e.message)")
        }
        guard case let .object(members) = json else { throw headerError("header is not a JSON object") }
        let dataStart = 8 + n
        let dataSize = buf.count - dataStart

        var metadata: [String: String] = [:]
        var entries: [(name: String, dtype: SafetensorsDType, shape: [Int], begin: Int, end: Int)] = []
        var names = Set<String>()
        for (name, value) in members {
            guard names.insert(name).inserted else { throw headerError("duplicate key '\(name)'") }
            if name == "__metadata__" {
                guard case let .object(pairs) = value else { throw headerError("__metadata__ is not an object") }
                for (k, v) in pairs {
                    guard case let .string(s) = v else {
                        throw headerError("__metadata__ value of '\(k)' is not a string")
                    }
                    metadata[k] = s
                }
                continue
            }
            func bad(_ m: String) -> SafetensorsError { .invalidTensor(file: file, tensor: name, message: m) }
            guard case let .object(fields) = value else { throw bad("entry is not an object") }
            var dtype: SafetensorsDType?, shape: [Int]?, offsets: [Int]?
            for (key, v) in fields {
                switch key {
                case "dtype":
                    guard case let .string(s) = v else { throw bad("dtype is not a string") }
                    guard let d = SafetensorsDType(rawValue: s) else { throw bad("unknown dtype '\(s)'") }
                    dtype = d
                case "shape":
                    shape = try nonNegativeInts(v, what: "shape", bad)
                case "data_offsets":
                    offsets = try nonNegativeInts(v, what: "data_offsets", bad)
                default:
                    throw bad("unexpected field '\(key)'")
                }
            }
            guard let dtype else { throw bad("missing dtype") }
            guard let shape else { throw bad("missing shape") }
            guard let offsets else { throw bad("missing data_offsets") }
            guard offsets.count == 2 else { throw bad("data_offsets has \(offsets.count) values, expected 2") }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end else { throw bad("data_offsets [\(begin), \(end)] are reversed") }
            guard end <= dataSize else {
                throw bad("data_offsets [\(begin), \(end)] run past the \(dataSize)-byte data section (truncated?)")
            }
            var elements = 1
            for d in shape {
                let (m, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw bad("shape \(shape) overflows") }
                elements = m
            }
            let (bytes, o) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !o, bytes == end - begin else {
                throw bad("dtype \(dtype.rawValue) shape \(shape) needs \(o ? "too many" : String(bytes)) bytes, "
                          + "data_offsets [\(begin), \(end)] hold \(end - begin)")
            }
            entries.append((name, dtype, shape, begin, end))
        }
        // Offsets must tile the data section exactly: sorted by begin, each starts where the previous ended.
        let sorted = entries.sorted { ($0.begin, $0.end) < ($1.begin, $1.end) }
        var cursor = 0
        for e in sorted {
            if e.begin != cursor {
                throw SafetensorsError.invalidTensor(
                    file: file, tensor: e.name,
                    message: e.begin < cursor
                        ? "data_offsets [\(e.begin), \(e.end)] overlap the previous tensor (ending at \(cursor))"
                        : "data_offsets [\(e.begin), \(e.end)] leave a gap after offset \(cursor)")
            }
            cursor = e.end
        }
        guard cursor == dataSize else {
            throw headerError("tensors cover \(cursor) bytes but the data section holds \(dataSize)")
        }
        if let stored = metadata[checksumKey] {
            let hexDigit = { (b: UInt8) in (0x30...0x39).contains(b) || (0x61...0x66).contains(b) }
            guard stored.utf8.count == 64, stored.utf8.allSatisfy(hexDigit) else {
                throw headerError("\(checksumKey) '\(stored.prefix(80))' is not a lowercase hex SHA-256")
            }
            let at = occurrences(of: checksumPrefix + Array(stored.utf8) + [UInt8(ascii: "\"")], in: buf,
                                 within: 8..<dataStart)
            guard at.count == 1 else {
                throw headerError("\(checksumKey) is not written as \"\(checksumKey)\":\"<hex>\" in the header "
                                  + "(was the header rewritten by another tool?)")
            }
            let digits = (at[0] + checksumPrefix.count)..<(at[0] + checksumPrefix.count + 64)
            let actual = sha256Hex(UnsafeRawBufferPointer(buf), zeroed: digits)
            guard stored == actual else {
                throw SafetensorsError.checksumMismatch(file: file, expected: stored, actual: actual)
            }
        }
        if let stored = metadata[legacyDataChecksumKey] {
            let actual = sha256Hex(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(buf)[dataStart...]))
            guard stored == actual else {
                throw SafetensorsError.checksumMismatch(file: file, expected: stored, actual: actual)
            }
        }
        var tensors: [String: SafetensorsTensor] = [:]
        for e in sorted {
            let slice = UnsafeBufferPointer(rebasing: buf[(dataStart + e.begin)..<(dataStart + e.end)])
            tensors[e.name] = SafetensorsTensor(dtype: e.dtype, shape: e.shape, bytes: Array(slice))
        }
        return SafetensorsFile(file: file, names: sorted.map(\.name), tensors: tensors, metadata: metadata)
    }

    static func nonNegativeInts(_ v: SafetensorsJSON, what: String,
                                _ bad: (String) -> SafetensorsError) throws -> [Int] {
        guard case let .array(items) = v else { throw bad("\(what) is not an array") }
        return try items.map {
            guard case let .integer(x) = $0, x >= 0, x <= Int64(Int.max / 2) else {
                throw bad("\(what) holds a value that is not a non-negative integer")
            }
            return Int(x)
        }
    }

    /// Reads and validates the safetensors file at `path`.
    public static func read(path: String) throws -> SafetensorsFile {
        let bytes = try SafetensorsIO.readAll(path: path)
        return try parse(bytes, file: path)
    }

    /// Writes a safetensors file atomically (temporary file in the same folder, fsync, rename, fsync
    /// of the folder): a reader sees either the previous file or the complete new one. Returns the
    /// stored checksum (`checksumKey`) with `addChecksum`, else nil.
    @discardableResult
    public static func write(_ tensors: [(String, SafetensorsTensor)], metadata: [String: String] = [:],
                             addChecksum: Bool = false, to path: String) throws -> String? {
        let bytes = try serialize(tensors, metadata: metadata, addChecksum: addChecksum, file: path)
        try SafetensorsIO.writeAtomically(bytes, to: path)
        guard addChecksum else { return nil }
        var n = 0
        for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
        let at = occurrences(of: checksumPrefix, in: bytes, within: 8..<(8 + n))[0] + checksumPrefix.count
        return String(decoding: bytes[at..<(at + 64)], as: UTF8.self)
    }
}

/// A parsed, validated safetensors file.
public struct SafetensorsFile {
    /// The path (or `<memory>`) for messages.
    public let file: String
    /// Tensor names in data-section order.
    public let names: [String]
    public let tensors: [String: SafetensorsTensor]
    public let metadata: [String: String]

    /// The tensor named `name`, or an error naming the file and tensor.
    public func tensor(_ name: String) throws -> SafetensorsTensor {
        guard let t = tensors[name] else { throw SafetensorsError.missingTensor(file: file, tensor: name) }
        return t
    }
}
