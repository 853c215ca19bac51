import XCTest
@testable import KDFormats
import KDTestSupport

final class SafetensorsTests: XCTestCase {
    func sample() -> [(String, SafetensorsTensor)] {
        [("conv1.weight", SafetensorsTensor(shape: [2, 3], floats: [1, -2, 3.5, 0, .pi, -0.0])),
         ("bn1.num_batches_tracked", SafetensorsTensor(shape: [], int64s: [42])),
         ("x.f64", SafetensorsTensor(shape: [3], doubles: [1e-300, 2, -3])),
         ("empty", SafetensorsTensor(shape: [0, 4], floats: []))]
    }

    func testRoundTripAndLayout() throws {
        let bytes = try Safetensors.serialize(sample(), metadata: ["step": "7", "quote\"key": "a\nb"])
        // 8-byte LE header length, header padded with spaces so data starts 8-aligned.
        var n = 0
        for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
        XCTAssertEqual((8 + n) % 8, 0)
        XCTAssertEqual(bytes[8], UInt8(ascii: "{"))
        XCTAssertEqual(bytes[8 + n - 1] == 0x20 || bytes[8 + n - 1] == UInt8(ascii: "}"), true)
        XCTAssertEqual(bytes.count, 8 + n + 24 + 8 + 24)
        let f = try Safetensors.parse(bytes)
        XCTAssertEqual(f.names, ["conv1.weight", "bn1.num_batches_tracked", "x.f64", "empty"])
        XCTAssertEqual(f.metadata, ["step": "7", "quote\"key": "a\nb"])
        XCTAssertEqual(try f.tensor("conv1.weight").floatValues().map(\.bitPattern),
                       [1, -2, 3.5, 0, Float.pi, -0.0].map(\.bitPattern))
        XCTAssertEqual(try f.tensor("bn1.num_batches_tracked").int64Values(), [42])
        XCTAssertEqual(try f.tensor("bn1.num_batches_tracked").shape, [])
        XCTAssertEqual(try f.tensor("x.f64").dtype, .F64)
        XCTAssertEqual(try f.tensor("empty").shape, [0, 4])
        for (name, t) in sample() { XCTAssertEqual(f.tensors[name], t) }
        // F32 stored little-endian: 1.0 = 00 00 80 3F.
        XCTAssertEqual(Array(bytes[(8 + n)..<(8 + n + 4)]), [0, 0, 0x80, 0x3F])
        XCTAssertThrowsError(try f.tensor("nope")) {
            XCTAssertEqual("\($0)", "safetensors <memory>: no tensor named 'nope'")
        }
    }

    func testKnownFileFromReferenceLayout() throws {
        // Bytes as written by the Python `safetensors` package for {"a": float32 [[1, 2]]}.
        let header = #"{"a":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]}}"#
        var bytes = [UInt8]()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { bytes.append(contentsOf: $0) }
        bytes += Array(header.utf8) + [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]
        let f = try Safetensors.parse(bytes, file: "ref.safetensors")
        XCTAssertEqual(try f.tensor("a").floatValues(), [1, 2])
        XCTAssertEqual(f.metadata, [:])
    }

    func testChecksumVerified() throws {
        var bytes = try Safetensors.serialize(sample(), metadata: ["k": "v"], addChecksum: true)
        let f = try Safetensors.parse(bytes)
        XCTAssertEqual(f.metadata[Safetensors.checksumKey]?.count, 64)
        bytes[bytes.count - 30] ^= 0x01
        XCTAssertThrowsError(try Safetensors.parse(bytes, file: "c.safetensors")) { e in
            guard case SafetensorsError.checksumMismatch(let file, _, _) = e else { return XCTFail("\(e)") }
            XCTAssertEqual(file, "c.safetensors")
            XCTAssertTrue("\(e)".contains("corrupted"))
        }
    }

    /// Rewrites the JSON header of a safetensors file (the length prefix follows; the data is kept).
    static func editHeader(_ bytes: [UInt8], _ edit: (String) -> String) -> [UInt8] {
        var n = 0
        for k in 0..<8 { n |= Int(bytes[k]) << (8 * k) }
        let header = Array(edit(String(decoding: bytes[8..<(8 + n)], as: UTF8.self)).utf8)
        var out = [UInt8]()
        var m = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &m) { out.append(contentsOf: $0) }
        return out + header + bytes[(8 + n)...]
    }

    /// Swaps the `data_offsets` of tensors `a` and `b` in a header written by `serialize`.
    static func swapOffsets(_ header: String, _ a: String, _ b: String) -> String {
        func offsets(_ name: String) -> String {
            let entry = header.range(of: "\"\(name)\":{")!
            let rest = header[entry.upperBound...]
            let start = rest.range(of: "\"data_offsets\":")!.upperBound
            return String(rest[start...].prefix { $0 != "]" }) + "]"
        }
        let (oa, ob) = (offsets(a), offsets(b))
        return header.replacingOccurrences(of: oa, with: "@A@").replacingOccurrences(of: ob, with: oa)
            .replacingOccurrences(of: "@A@", with: ob)
    }

    /// The digest covers the header (issue 18 item 4): a changed metadata value and two tensors'
    /// swapped offsets pass every structural check, and are refused by the checksum, naming the file.
    func testChecksumCoversHeader() throws {
        let two = [("a", SafetensorsTensor(shape: [2], floats: [1, 2])),
                   ("b", SafetensorsTensor(shape: [2], floats: [3, 4]))]
        let bytes = try Safetensors.serialize(two, metadata: ["kdgraph.step": "10"], addChecksum: true)
        XCTAssertEqual(try Safetensors.parse(bytes).metadata["kdgraph.step"], "10")
        let stepEdited = Self.editHeader(bytes) {
            $0.replacingOccurrences(of: #""kdgraph.step":"10""#, with: #""kdgraph.step":"11""#)
        }
        XCTAssertNotEqual(stepEdited, bytes)
        let swapped = Self.editHeader(bytes) { Self.swapOffsets($0, "a", "b") }
        XCTAssertNotEqual(swapped, bytes)
        // Without a checksum the same edits are valid files (so only the digest can catch them).
        let plain = try Safetensors.serialize(two, metadata: ["kdgraph.step": "10"])
        XCTAssertEqual(try Safetensors.parse(Self.editHeader(plain) { Self.swapOffsets($0, "a", "b") })
                        .tensor("a").floatValues(), [3, 4])
        for edited in [stepEdited, swapped] {
            XCTAssertThrowsError(try Safetensors.parse(edited, file: "ck.safetensors")) { e in
                guard case SafetensorsError.checksumMismatch(let file, _, _) = e else { return XCTFail("\(e)") }
                XCTAssertEqual(file, "ck.safetensors")
                XCTAssertTrue("\(e)".contains("edited"), "\(e)")
            }
        }
        // A header re-serialised with other spacing cannot be verified: refused, not skipped.
        let respaced = Self.editHeader(bytes) {
            $0.replacingOccurrences(of: "\"\(Safetensors.checksumKey)\":", with: "\"\(Safetensors.checksumKey)\": ")
        }
        expectError(respaced, "rewritten by another tool")
        // The digest is the SHA-256 of the file with its own digits read as '0'.
        let digest = try Safetensors.parse(bytes).metadata[Safetensors.checksumKey]!
        let zeroed = Self.editHeader(bytes) {
            $0.replacingOccurrences(of: digest, with: String(repeating: "0", count: 64))
        }
        XCTAssertEqual(sha256Hex(zeroed), digest)
    }

    /// Files written before the header was covered carry the data-section digest only: still read,
    /// still verified.
    func testLegacyDataChecksum() throws {
        let data: [UInt8] = [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40]
        let header = #"{"__metadata__":{"kdgraph.data_sha256":""# + sha256Hex(data)
            + #""},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        XCTAssertEqual(try Safetensors.parse(file(header, data: data)).tensor("a").floatValues(), [1, 2])
        XCTAssertThrowsError(try Safetensors.parse(file(header, data: [0, 0, 0x80, 0x3F, 0, 0, 0, 0x41]),
                                                   file: "old.safetensors")) {
            XCTAssertTrue("\($0)".contains("old.safetensors: checksum mismatch"), "\($0)")
        }
    }

    func testSHA256KnownAnswer() {
        XCTAssertEqual(sha256Hex(Array("abc".utf8)),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    /// Builds a file from a raw header string and data.
    func file(_ header: String, data: [UInt8]) -> [UInt8] {
        var bytes = [UInt8]()
        var n = UInt64(header.utf8.count).littleEndian
        withUnsafeBytes(of: &n) { bytes.append(contentsOf: $0) }
        return bytes + Array(header.utf8) + data
    }

    func expectError(_ bytes: [UInt8], _ fragment: String, line: UInt = #line) {
        XCTAssertThrowsError(try Safetensors.parse(bytes, file: "bad.safetensors"), line: line) { e in
            let m = "\(e)"
            XCTAssertTrue(m.contains("bad.safetensors"), m, line: line)
            XCTAssertTrue(m.contains(fragment), "'\(m)' lacks '\(fragment)'", line: line)
        }
    }

    func testValidationErrors() {
        expectError([1, 2, 3], "shorter than the 8-byte header length")
        expectError([200, 0, 0, 0, 0, 0, 0, 0, 0x7B], "runs past the end")
        expectError([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], "exceeds the limit")
        expectError(file("[1]", data: []), "does not start with '{'")
        expectError(file("{\"a\":", data: []), "malformed JSON")
        let d8 = [UInt8](repeating: 0, count: 8)
        expectError(file(#"{"w":{"dtype":"F99","shape":[2],"data_offsets":[0,8]}}"#, data: d8),
                    "tensor 'w': unknown dtype 'F99'")
        expectError(file(#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, data: d8),
                    "tensor 'w': dtype F32 shape [3] needs 12 bytes")
        expectError(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, data: d8),
                    "run past the 8-byte data section")
        expectError(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, data: d8), "reversed")
        expectError(file(#"{"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, data: d8),
                    "not a non-negative integer")
        expectError(file(#"{"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#, data: d8),
                    "not a non-negative integer")
        expectError(file(#"{"w":{"dtype":"F32","shape":[2]}}"#, data: d8), "missing data_offsets")
        expectError(file(#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}"#, data: d8),
                    "unexpected field 'x'")
        expectError(file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                         + #""v":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: d8), "overlap")
        expectError(file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: d8), "leave a gap")
        expectError(file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#, data: d8),
                    "cover 4 bytes but the data section holds 8")
        expectError(file(#"{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
                         + #""w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#, data: d8), "duplicate key 'w'")
        expectError(file(#"{"__metadata__":{"a":1}}"#, data: []), "not a string")
        expectError(file(#"{"w":{"dtype":"F32","shape":[4611686018427387903,4611686018427387903],"#
                         + #""data_offsets":[0,8]}}"#, data: d8), "overflows")
    }

    func testSerializeRejectsBadInput() {
        XCTAssertThrowsError(try Safetensors.serialize([("a", SafetensorsTensor(dtype: .F32, shape: [3],
                                                                                 bytes: [0, 0]))])) {
            XCTAssertTrue("\($0)".contains("tensor 'a'"))
        }
        let t = SafetensorsTensor(shape: [1], floats: [1])
        XCTAssertThrowsError(try Safetensors.serialize([("a", t), ("a", t)])) {
            XCTAssertTrue("\($0)".contains("duplicate"))
        }
    }

    func testAtomicWriteAndRead() throws {
        let tmp = try TemporaryDirectory(prefix: "st-")
        defer { tmp.remove() }
        let dir = tmp.path
        let path = dir + "/w.safetensors"
        try Safetensors.write(sample(), metadata: ["a": "b"], addChecksum: true, to: path)
        let f = try Safetensors.read(path: path)
        XCTAssertEqual(f.file, path)
        XCTAssertEqual(f.metadata["a"], "b")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["w.safetensors"])
        XCTAssertThrowsError(try Safetensors.read(path: dir + "/missing.safetensors")) {
            XCTAssertTrue("\($0)".contains("missing.safetensors: cannot open"))
        }
        // A folder (a run's, say) is named as one, not as the system's "read failed: Is a directory".
        XCTAssertThrowsError(try Safetensors.read(path: dir)) {
            XCTAssertEqual("\($0)", "safetensors \(dir): is a folder: name a .safetensors file (a run's last "
                           + "checkpoint is its checkpoints/final.safetensors)")
        }
    }

    /// Thousands of random and mutated files: the reader returns or throws, never crashes, and
    /// whatever it accepts is self-consistent. Bounded to a few seconds.
    func testFuzzNeverCrashes() throws {
        var rng = SystemRNG(seed: 0x5EED)
        let valid = try Safetensors.serialize(sample(), metadata: ["step": "3"], addChecksum: false)
        let headerLen = Int(valid[0])
        let start = Date()
        var accepted = 0, rejected = 0
        for iter in 0..<20_000 {
            if Date().timeIntervalSince(start) > 8 { break }
            var b = valid
            switch iter % 6 {
            case 0: // flip random bytes anywhere
                for _ in 0..<(1 + rng.below(4)) {
                    b[rng.below(b.count)] ^= UInt8(truncatingIfNeeded: 1 + rng.below(255))
                }
            case 1: // mutate the header only, with JSON-significant characters
                let chars = Array("{}[],:\"0123456789-.eE \\u".utf8)
                for _ in 0..<(1 + rng.below(3)) { b[8 + rng.below(headerLen)] = chars[rng.below(chars.count)] }
            case 2: // truncate
                b = Array(b.prefix(rng.below(b.count)))
            case 3: // extend with junk
                b += (0..<rng.below(16)).map { _ in UInt8(truncatingIfNeeded: rng.below(256)) }
            case 4: // random header length
                var n = UInt64(truncatingIfNeeded: rng.next() >> UInt64(rng.below(64)))
                withUnsafeBytes(of: &n) { for k in 0..<8 { b[k] = $0[k] } }
            default: // fully random bytes with a plausible length prefix
                let len = rng.below(64)
                b = [UInt8(len), 0, 0, 0, 0, 0, 0, 0]
                    + (0..<(len + rng.below(16))).map { _ in UInt8(truncatingIfNeeded: rng.below(256)) }
                if len > 0, rng.below(2) == 0 { b[8] = UInt8(ascii: "{") }
            }
            do {
                let f = try Safetensors.parse(b, file: "fuzz")
                for name in f.names {
                    let t = f.tensors[name]!
                    XCTAssertEqual(t.expectedByteCount, t.bytes.count)
                    _ = t.floatValues()
                }
                accepted += 1
            } catch is SafetensorsError {
                rejected += 1
            }
        }
        XCTAssertGreaterThan(accepted + rejected, 2000)
        XCTAssertGreaterThan(rejected, 0)
    }
}

/// A small deterministic generator for the fuzz test (KDFormats does not depend on KDTensor).
struct SystemRNG {
    var s: UInt64
    init(seed: UInt64) { s = seed }
    mutating func next() -> UInt64 {
        s &+= 0x9E37_79B9_7F4A_7C15
        var z = s
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
}
