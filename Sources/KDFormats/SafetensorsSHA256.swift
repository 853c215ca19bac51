import Crypto

/// Lowercase hexadecimal SHA-256 (FIPS 180-4, via swift-crypto) of `bytes`: the checksum that
/// checkpoints store over their data section.
public func sha256Hex(_ bytes: UnsafeRawBufferPointer) -> String {
    let digest = SHA256.hash(data: bytes)
    let hex: [Character] = Array("0123456789abcdef")
    var s = ""
    s.reserveCapacity(64)
    for b in digest { s.append(hex[Int(b >> 4)]); s.append(hex[Int(b & 0xF)]) }
    return s
}

/// SHA-256 of a byte array, hex.
public func sha256Hex(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { sha256Hex($0) } }
