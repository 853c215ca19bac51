import Crypto

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
