import Foundation

/// Scalar types the `.npy` writer stores (raw little-endian bytes).
public protocol NPYElement { static var npyDType: NPYDType { get } }
extension Float16: NPYElement { public static var npyDType: NPYDType { .float16 } }
extension Float: NPYElement { public static var npyDType: NPYDType { .float32 } }
extension Double: NPYElement { public static var npyDType: NPYDType { .float64 } }
extension UInt8: NPYElement { public static var npyDType: NPYDType { .uint8 } }
extension Int8: NPYElement { public static var npyDType: NPYDType { .int8 } }
extension Int32: NPYElement { public static var npyDType: NPYDType { .int32 } }
extension Int64: NPYElement { public static var npyDType: NPYDType { .int64 } }

/// Writes C-order `.npy` files that `numpy.load` reads (tests, fixtures, tools).
public enum NPYWriter {
    /// The header block (magic, version, length, dict padded with spaces and `\n` so the data starts on
    /// a 64-byte boundary) for `dtype` and `shape`. Version 1 uses a 2-byte length, 2 and 3 a 4-byte one.
    public static func header(dtype: NPYDType, shape: [Int], version: Int = 1) -> [UInt8] {
        precondition((1...3).contains(version), "npy version must be 1, 2 or 3")
        let shapeText = shape.isEmpty
            ? "()" : "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
        var dict = Array("{'descr': '\(dtype.rawValue)', 'fortran_order': False, 'shape': \(shapeText), }".utf8)
        let prefix = version == 1 ? 10 : 12
        let total = (prefix + dict.count + 1 + 63) / 64 * 64
        dict += [UInt8](repeating: 0x20, count: total - prefix - dict.count - 1) + [0x0A]
        var out: [UInt8] = NPYHeader.magic + [UInt8(version), 0]
        let n = dict.count
        if version == 1 {
            out += [UInt8(n & 0xFF), UInt8(n >> 8)]
        } else {
            out += [UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), UInt8((n >> 16) & 0xFF), UInt8(n >> 24)]
        }
        return out + dict
    }

    /// The complete file image of `values` with `shape` (`values.count` must equal the shape's product).
    public static func encode<T: NPYElement>(_ values: [T], shape: [Int], version: Int = 1) -> [UInt8] {
        precondition(values.count == shape.reduce(1, *), "npy: \(values.count) values for shape \(shape)")
        var out = header(dtype: T.npyDType, shape: shape, version: version)
        values.withUnsafeBytes { out += $0 }
        return out
    }

    /// Writes `values` with `shape` to `path` (atomically: temporary file, then rename).
    public static func write<T: NPYElement>(_ values: [T], shape: [Int], to path: String, version: Int = 1) throws {
        let bytes = encode(values, shape: shape, version: version)
        do {
            try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw NPYError.writeFailed(path: path, reason: ioReason(error, path: path))
        }
    }
}
