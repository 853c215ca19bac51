import Crypto
import Foundation

/// Lowercase hexadecimal SHA-256 (FIPS 180-4, via swift-crypto) of `bytes`: the checksum that
/// checkpoints store (see `Safetensors.checksumKey`).
public func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
    hex(SHA256.hash(data: bytes))
}

/// SHA-256 of a byte array, hex.
public func sha256Hex(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { sha256Hex($0) } }

/// SHA-256 of `bytes` with the bytes in `zeroed` read as ASCII `'0'` (the self-describing file digest:
/// the digest's own hex digits are hashed as zeros), hex.
func sha256Hex(_ bytes: UnsafeRawBufferPointer, zeroed: Range<Int>) -> String {
    var h = SHA256()
    h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[..<zeroed.lowerBound]))
    let zeros = [UInt8](repeating: UInt8(ascii: "0"), count: zeroed.count)
    zeros.withUnsafeBytes { h.update(bufferPointer: $0) }
    h.update(bufferPointer: UnsafeRawBufferPointer(rebasing: bytes[zeroed.upperBound...]))
    return hex(h.finalize())
}

private func hex<D: Sequence>(_ digest: D) -> String where D.Element == UInt8 {
    let digits: [Character] = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(64)
    for b in digest { s.append(digits[Int(b >> 4)]); s.append(digits[Int(b & 0xF)]) }
    return s
}

/// The first 8 bytes of SHA-256(`prefix` ‖ `bytes`) as a little-endian integer: a record checksum
/// (the teacher cache's), where a 2⁻⁶⁴ chance of accepting a torn or misplaced write is enough.
public func sha256Prefix64(prefix: [UInt8], _ bytes: UnsafeRawBufferPointer) -> UInt64 {
    var h = SHA256()
    prefix.withUnsafeBytes { h.update(bufferPointer: $0) }
    h.update(bufferPointer: bytes)
    var v: UInt64 = 0
    for (i, b) in h.finalize().prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
    return v
}

/// SHA-256 of a whole file, hex, read in 1 MiB pieces (a teacher checkpoint's identity).
public func sha256HexOfFile(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else {
        throw SafetensorsError.io(file: path, message: "cannot open for reading")
    }
    defer { try? handle.close() }
    var h = SHA256()
    while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
        chunk.withUnsafeBytes { h.update(bufferPointer: $0) }
    }
    return hex(h.finalize())
}

/// SHA-256 over data fed in pieces (a data set's content, image by image), hex at the end.
public struct SHA256Stream {
    private var hasher = SHA256()
    public init() {}
    public mutating func update(_ bytes: UnsafeRawBufferPointer) { hasher.update(bufferPointer: bytes) }
    public mutating func update(_ text: String) { update(Array(text.utf8)) }
    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { hasher.update(bufferPointer: $0) } }
    public func finalizeHex() -> String { hex(hasher.finalize()) }
}
