import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A memory-mapped, read-only NumPy array (`.npy` v1/v2/v3, C order).
///
/// The file is opened and mapped with `mmap(PROT_READ, MAP_PRIVATE)`; the descriptor and mapping stay
/// alive as long as this object (and every buffer handed out by it is valid only that long). Nothing
/// is read until it is touched, so a rank that reads only its rows pages in only those rows.
///
/// Row `i` of an array of shape `[N, d1, d2, …]` is the `d1·d2·…` elements at byte offset
/// `dataOffset + i · rowBytes`.
public final class NPYArray: @unchecked Sendable {
    public let path: String
    public let header: NPYHeader
    public var dtype: NPYDType { header.dtype }
    public var shape: [Int] { header.shape }
    public var count: Int { header.count }
    /// Size of the first axis (1 for a 0-d array).
    public let rowCount: Int
    /// Elements per row (product of all axes but the first).
    public let rowElements: Int
    public var rowBytes: Int { rowElements * dtype.size }

    private let fd: Int32
    private let base: UnsafeRawPointer?
    private let mappedBytes: Int
    /// The data region, `count · dtype.size` bytes.
    public let data: UnsafeRawBufferPointer

    /// Opens and maps `path`, validating magic, version, header dict, dtype, order and data length.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw NPYError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let r = String(cString: strerror(errno)); close(fd)
            throw NPYError.cannotOpen(path: path, reason: r)
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd); throw NPYError.cannotOpen(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        guard size > 0 else { close(fd); throw NPYError.badMagic(path: path) }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            let r = String(cString: strerror(errno)); close(fd)
            throw NPYError.cannotOpen(path: path, reason: "mmap failed: \(r)")
        }
        let raw = UnsafeRawPointer(m)
        do {
            header = try NPYHeader.parse(UnsafeRawBufferPointer(start: raw, count: size), fileSize: size, path: path)
        } catch {
            munmap(m, size); close(fd)
            throw error
        }
        self.fd = fd
        self.base = raw
        self.mappedBytes = size
        self.data = UnsafeRawBufferPointer(start: raw + header.dataOffset, count: header.dataBytes)
        rowCount = header.shape.first ?? 1
        rowElements = header.shape.count <= 1 ? 1 : header.shape.dropFirst().reduce(1, *)
    }

    deinit {
        if let b = base { munmap(UnsafeMutableRawPointer(mutating: b), mappedBytes) }
        close(fd)
    }

    // MARK: Validation

    /// Throws `shapeMismatch` unless the shape has `expected.count` axes and each non-nil entry matches.
    public func expectShape(_ expected: [Int?]) throws {
        let ok = expected.count == shape.count && zip(expected, shape).allSatisfy { $0.0 == nil || $0.0 == $0.1 }
        if !ok {
            let text = "[" + expected.map { $0.map(String.init) ?? "*" }.joined(separator: ", ") + "]"
            throw NPYError.shapeMismatch(path: path, expected: text, actual: shape)
        }
    }

    /// Throws `dtypeMismatch` unless the dtype is one of `allowed`.
    public func expectDType(_ allowed: [NPYDType]) throws {
        if !allowed.contains(dtype) {
            throw NPYError.dtypeMismatch(path: path, expected: allowed.map(\.rawValue), actual: dtype.rawValue)
        }
    }

    // MARK: Access

    /// The raw bytes of rows `range` (valid while this array lives).
    public func rows(_ range: Range<Int>) throws -> UnsafeRawBufferPointer {
        guard range.lowerBound >= 0, range.upperBound <= rowCount else {
            throw NPYError.rowsOutOfRange(path: path, range: range, rows: rowCount)
        }
        return UnsafeRawBufferPointer(rebasing: data[(range.lowerBound * rowBytes)..<(range.upperBound * rowBytes)])
    }

    /// Pointer to the first byte of row `i` (no bounds check beyond a debug precondition).
    @inline(__always) public func rowPointer(_ i: Int) -> UnsafeRawPointer {
        precondition(i >= 0 && i < rowCount)
        return data.baseAddress! + i * rowBytes
    }

    /// Converts `n` elements starting at element `offset` to Float into `out`.
    public func copyAsFloat(elementOffset offset: Int, count n: Int, into out: UnsafeMutablePointer<Float>) {
        precondition(offset >= 0 && offset + n <= count)
        guard n > 0 else { return }
        let p = data.baseAddress! + offset * dtype.size
        switch dtype {
        case .float16: for k in 0..<n { out[k] = Float(p.loadUnaligned(fromByteOffset: 2 * k, as: Float16.self)) }
        case .float32: memcpy(out, p, n * 4)
        case .float64: for k in 0..<n { out[k] = Float(p.loadUnaligned(fromByteOffset: 8 * k, as: Double.self)) }
        case .uint8: let b = p.assumingMemoryBound(to: UInt8.self); for k in 0..<n { out[k] = Float(b[k]) }
        case .int8: let b = p.assumingMemoryBound(to: Int8.self); for k in 0..<n { out[k] = Float(b[k]) }
        case .int32: for k in 0..<n { out[k] = Float(p.loadUnaligned(fromByteOffset: 4 * k, as: Int32.self)) }
        case .int64: for k in 0..<n { out[k] = Float(p.loadUnaligned(fromByteOffset: 8 * k, as: Int64.self)) }
        }
    }

    /// Row `i` converted to Float into `out` (`rowElements` values).
    @inline(__always) public func copyRowAsFloat(_ i: Int, into out: UnsafeMutablePointer<Float>) {
        copyAsFloat(elementOffset: i * rowElements, count: rowElements, into: out)
    }

    /// Row `i` as Float.
    public func floatRow(_ i: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: rowElements) { buf, n in
            copyRowAsFloat(i, into: buf.baseAddress!); n = rowElements
        }
    }

    /// Every element as Float (C order).
    public func floatArray() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buf, n in
            if count > 0 { copyAsFloat(elementOffset: 0, count: count, into: buf.baseAddress!) }
            n = count
        }
    }

    /// Element `k` (C order) as Int. Floating values that are not whole numbers (or NaN, or beyond
    /// ±1e15) give `nil`.
    public func intValue(_ k: Int) -> Int? {
        let p = data.baseAddress! + k * dtype.size
        switch dtype {
        case .uint8: return Int(p.load(as: UInt8.self))
        case .int8: return Int(p.load(as: Int8.self))
        case .int32: return Int(p.loadUnaligned(as: Int32.self))
        case .int64: return Int(p.loadUnaligned(as: Int64.self))
        case .float16:
            let v = Float(p.loadUnaligned(as: Float16.self))
            return v.isFinite && v.rounded() == v ? Int(v) : nil
        case .float32:
            let v = p.loadUnaligned(as: Float.self)
            return v.isFinite && abs(v) < 1e15 && v.rounded() == v ? Int(v) : nil
        case .float64:
            let v = p.loadUnaligned(as: Double.self)
            return v.isFinite && abs(v) < 1e15 && v.rounded() == v ? Int(v) : nil
        }
    }
}
