import Foundation

/// Element types KDGraph reads from and writes to `.npy` files (little-endian or byte-order-free).
public enum NPYDType: String, CaseIterable, Sendable {
    case float16 = "<f2"
    case float32 = "<f4"
    case float64 = "<f8"
    case uint8 = "|u1"
    case int8 = "|i1"
    case int32 = "<i4"
    case int64 = "<i8"

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8, .int8: return 1
        case .float16: return 2
        case .float32, .int32: return 4
        case .float64, .int64: return 8
        }
    }

    /// True for the integer types (labels).
    public var isInteger: Bool { self != .float16 && self != .float32 && self != .float64 }

    /// Parses a NumPy `descr` string; one-byte types accept any byte-order mark (`|u1`, `<u1`, `=u1`).
    public init?(descr: String) {
        switch descr {
        case "<f2": self = .float16
        case "<f4": self = .float32
        case "<f8": self = .float64
        case "|u1", "<u1", "=u1", ">u1": self = .uint8
        case "|i1", "<i1", "=i1", ">i1": self = .int8
        case "<i4": self = .int32
        case "<i8": self = .int64
        default: return nil
        }
    }
}

/// Errors of the `.npy` reader and writer. Every message names the file and the reason.
public enum NPYError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case badMagic(path: String)
    case unsupportedVersion(path: String, major: Int, minor: Int)
    case truncatedHeader(path: String, expectedBytes: Int, actualBytes: Int)
    case malformedHeader(path: String, reason: String)
    case unsupportedDType(path: String, descr: String)
    case fortranOrder(path: String)
    case truncatedData(path: String, expectedBytes: Int, actualBytes: Int)
    case shapeMismatch(path: String, expected: String, actual: [Int])
    case dtypeMismatch(path: String, expected: [String], actual: String)
    case rowsOutOfRange(path: String, range: Range<Int>, rows: Int)
    case writeFailed(path: String, reason: String)

    public var description: String {
        switch self {
        case let .cannotOpen(p, r): return "\(p): cannot open .npy file: \(r)"
        case let .badMagic(p): return "\(p): not a .npy file (bad magic, expected \\x93NUMPY)"
        case let .unsupportedVersion(p, ma, mi):
            return "\(p): unsupported .npy version \(ma).\(mi) (supported: 1.0, 2.0, 3.0)"
        case let .truncatedHeader(p, e, a):
            return "\(p): truncated .npy header: expected \(e) bytes, file has \(a)"
        case let .malformedHeader(p, r): return "\(p): malformed .npy header dict: \(r)"
        case let .unsupportedDType(p, d):
            return "\(p): unsupported dtype '\(d)' (supported: <f2, <f4, <f8, |u1, |i1, <i4, <i8)"
        case let .fortranOrder(p): return "\(p): fortran_order=True is not supported (C order only)"
        case let .truncatedData(p, e, a):
            return "\(p): truncated data: the shape needs \(e) bytes, the file has \(a)"
        case let .shapeMismatch(p, e, a): return "\(p): shape \(a) does not match the expected \(e)"
        case let .dtypeMismatch(p, e, a):
            return "\(p): dtype '\(a)' does not fit here (expected one of \(e.joined(separator: ", ")))"
        case let .rowsOutOfRange(p, r, n): return "\(p): rows \(r.lowerBound)..<\(r.upperBound) out of range 0..<\(n)"
        case let .writeFailed(p, r): return "\(p): cannot write .npy file: \(r)"
        }
    }
}

/// The parsed header of a `.npy` file.
///
/// Layout: magic `\x93NUMPY`, major, minor, header length (`UInt16` LE for v1, `UInt32` LE for v2/v3),
/// then a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (N, D), }` padded with
/// spaces and `\n`; the data follows at `dataOffset`.
public struct NPYHeader: Equatable, Sendable {
    public var version: (major: Int, minor: Int) { (major, minor) }
    public let major: Int
    public let minor: Int
    public let dtype: NPYDType
    public let shape: [Int]
    /// Byte offset of the first element.
    public let dataOffset: Int
    /// Number of elements (product of `shape`; 1 for a 0-d array).
    public let count: Int
    /// Bytes of data the shape needs.
    public var dataBytes: Int { count * dtype.size }

    public static let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY

    /// Parses and validates the header of `bytes` (the whole file, or at least its header); `fileSize`
    /// is the full size, to check that the data is complete. `path` only names the file in errors.
    public static func parse(_ bytes: UnsafeRawBufferPointer, fileSize: Int, path: String) throws -> NPYHeader {
        let n = bytes.count
        guard n >= 8 else {
            if n < 6 || !zip(bytes.prefix(6), magic).allSatisfy({ $0 == $1 }) { throw NPYError.badMagic(path: path) }
            throw NPYError.truncatedHeader(path: path, expectedBytes: 10, actualBytes: n)
        }
        for i in 0..<6 where bytes[i] != magic[i] { throw NPYError.badMagic(path: path) }
        let major = Int(bytes[6]), minor = Int(bytes[7])
        guard (1...3).contains(major), minor == 0 else {
            throw NPYError.unsupportedVersion(path: path, major: major, minor: minor)
        }
        let lenBytes = major == 1 ? 2 : 4
        guard n >= 8 + lenBytes else {
            throw NPYError.truncatedHeader(path: path, expectedBytes: 8 + lenBytes, actualBytes: n)
        }
        var headerLen = 0
        for i in 0..<lenBytes { headerLen |= Int(bytes[8 + i]) << (8 * i) }
        let start = 8 + lenBytes
        let dataOffset = start + headerLen
        guard n >= dataOffset else {
            throw NPYError.truncatedHeader(path: path, expectedBytes: dataOffset, actualBytes: n)
        }
        let text = Array(bytes[start..<dataOffset])
        var parser = PyLiteralParser(bytes: text, path: path)
        let dict = try parser.parseHeaderDict()

        guard let descrValue = dict["descr"] else {
            throw NPYError.malformedHeader(path: path, reason: "missing key 'descr'")
        }
        guard let fortranValue = dict["fortran_order"] else {
            throw NPYError.malformedHeader(path: path, reason: "missing key 'fortran_order'")
        }
        guard let shapeValue = dict["shape"] else {
            throw NPYError.malformedHeader(path: path, reason: "missing key 'shape'")
        }
        guard case let .string(descr) = descrValue else {
            throw NPYError.unsupportedDType(path: path, descr: descrValue.pythonText)
        }
        guard let dtype = NPYDType(descr: descr) else { throw NPYError.unsupportedDType(path: path, descr: descr) }
        guard case let .bool(fortran) = fortranValue else {
            throw NPYError.malformedHeader(path: path, reason: "'fortran_order' must be True or False, "
                                           + "got \(fortranValue.pythonText)")
        }
        guard case let .tuple(items) = shapeValue else {
            throw NPYError.malformedHeader(path: path, reason: "'shape' must be a tuple, got \(shapeValue.pythonText)")
        }
        var shape: [Int] = []
        var count = 1
        for item in items {
            guard case let .int(d) = item, d >= 0 else {
                throw NPYError.malformedHeader(path: path, reason: "'shape' entries must be non-negative integers, "
                                               + "got \(shapeValue.pythonText)")
            }
            let (p, o) = count.multipliedReportingOverflow(by: d)
            guard !o, p <= Int.max / 16 else {
                throw NPYError.malformedHeader(path: path, reason: "shape \(shapeValue.pythonText) is too large")
            }
            shape.append(d); count = p
        }
        if fortran && shape.count > 1 && count > 1 { throw NPYError.fortranOrder(path: path) }
        let need = count * dtype.size
        let have = max(0, fileSize - dataOffset)
        guard have >= need else { throw NPYError.truncatedData(path: path, expectedBytes: need, actualBytes: have) }
        return NPYHeader(major: major, minor: minor, dtype: dtype, shape: shape, dataOffset: dataOffset, count: count)
    }

    public static func == (a: NPYHeader, b: NPYHeader) -> Bool {
        a.major == b.major && a.minor == b.minor && a.dtype == b.dtype && a.shape == b.shape
            && a.dataOffset == b.dataOffset
    }
}

/// A value of the Python literal subset found in `.npy` headers.
enum PyValue: Equatable {
    case string(String), int(Int), bool(Bool), none, tuple([PyValue])

    var pythonText: String {
        switch self {
        case let .string(s): return "'\(s)'"
        case let .int(i): return String(i)
        case let .bool(b): return b ? "True" : "False"
        case .none: return "None"
        case let .tuple(v): return "(" + v.map { $0.pythonText }.joined(separator: ", ") + (v.count == 1 ? ",)" : ")")
        }
    }
}

/// A bounded recursive-descent parser for the header's dict literal: strings ('…' or "…"), integers,
/// True/False/None, tuples and lists (nesting depth ≤ 16). It never traps: every malformed input
/// throws `NPYError.malformedHeader`.
struct PyLiteralParser {
    let bytes: [UInt8]
    let path: String
    var i = 0

    init(bytes: [UInt8], path: String) { self.bytes = bytes; self.path = path }

    func fail(_ reason: String) -> NPYError {
        .malformedHeader(path: path, reason: "\(reason) at offset \(i)")
    }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0A || bytes[i] == 0x09 || bytes[i] == 0x0D { i += 1 }
    }

    mutating func expect(_ c: UInt8) throws {
        skipSpace()
        guard i < bytes.count, bytes[i] == c else {
            throw fail("expected '\(Character(UnicodeScalar(c)))'")
        }
        i += 1
    }

    mutating func parseHeaderDict() throws -> [String: PyValue] {
        try expect(UInt8(ascii: "{"))
        var dict: [String: PyValue] = [:]
        while true {
            skipSpace()
            guard i < bytes.count else { throw fail("unterminated dict") }
            if bytes[i] == UInt8(ascii: "}") { i += 1; break }
            guard case let .string(key) = try parseValue(depth: 0) else { throw fail("dict keys must be strings") }
            try expect(UInt8(ascii: ":"))
            let value = try parseValue(depth: 0)
            if dict[key] != nil { throw fail("duplicate key '\(key)'") }
            dict[key] = value
            skipSpace()
            guard i < bytes.count else { throw fail("unterminated dict") }
            if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
            if bytes[i] == UInt8(ascii: "}") { i += 1; break }
            throw fail("expected ',' or '}'")
        }
        skipSpace()
        guard i == bytes.count else { throw fail("unexpected text after the dict") }
        return dict
    }

    mutating func parseValue(depth: Int) throws -> PyValue {
        guard depth < 16 else { throw fail("nesting too deep") }
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end of header") }
        let c = bytes[i]
        if c == UInt8(ascii: "'") || c == UInt8(ascii: "\"") {
            i += 1
            let start = i
            while i < bytes.count, bytes[i] != c {
                if bytes[i] == UInt8(ascii: "\\") || bytes[i] == 0x0A { throw fail("unsupported character in string") }
                i += 1
            }
            guard i < bytes.count else { throw fail("unterminated string") }
            guard let s = String(bytes: bytes[start..<i], encoding: .utf8) else { throw fail("string is not UTF-8") }
            i += 1
            return .string(s)
        }
        if c == UInt8(ascii: "(") || c == UInt8(ascii: "[") {
            let close = c == UInt8(ascii: "(") ? UInt8(ascii: ")") : UInt8(ascii: "]")
            i += 1
            var items: [PyValue] = []
            while true {
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated tuple") }
                if bytes[i] == close { i += 1; break }
                items.append(try parseValue(depth: depth + 1))
                skipSpace()
                guard i < bytes.count else { throw fail("unterminated tuple") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == close { i += 1; break }
                throw fail("expected ',' or ')'")
            }
            return .tuple(items)
        }
        if c == UInt8(ascii: "-") || (c >= 0x30 && c <= 0x39) {
            var negative = false
            if c == UInt8(ascii: "-") { negative = true; i += 1 }
            var v = 0, digits = 0
            while i < bytes.count, bytes[i] >= 0x30, bytes[i] <= 0x39 {
                let (m, o1) = v.multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int(bytes[i] - 0x30))
                if o1 || o2 { throw fail("integer too large") }
                v = a; i += 1; digits += 1
            }
            if digits == 0 { throw fail("expected digits") }
            if i < bytes.count, bytes[i] == UInt8(ascii: "L") { i += 1 }  // Python 2 long suffix
            return .int(negative ? -v : v)
        }
        for (word, value) in [("True", PyValue.bool(true)), ("False", .bool(false)), ("None", .none)] {
            let w = Array(word.utf8)
            if i + w.count <= bytes.count, Array(bytes[i..<(i + w.count)]) == w { i += w.count; return value }
        }
        throw fail("unexpected character 0x\(String(c, radix: 16))")
    }
}
