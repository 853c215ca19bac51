import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A `.npy` file of fixed dtype and shape, read and written in place one row (the first axis) at a
/// time with `pread`/`pwrite`, by any number of processes at once (each writing its own rows): the
/// teacher cache's records and checksums, `kdgraph export-views`'s views. `create` writes the header
/// and sizes the file (sparse: unwritten rows read as zeros).
public final class NPYRowFile: @unchecked Sendable {
    public let path: String
    public let dtype: NPYDType
    public let shape: [Int]
    /// Bytes per row (the product of the trailing axes × the element size).
    public let rowBytes: Int
    let dataOffset: Int
    private let fd: Int32
    /// Opened for reading only (a read-only file system, or no write permission): `write` refuses.
    public let readOnly: Bool

    /// Creates (or truncates) `path` for `shape` (`shape[0]` rows).
    public static func create(path: String, dtype: NPYDType, shape: [Int]) throws {
        let header = NPYWriter.header(dtype: dtype, shape: shape)
        let size = header.count + shape.reduce(1, *) * dtype.size
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw NPYError.writeFailed(path: path, reason: "cannot create: \(errnoText())") }
        defer { close(fd) }
        let wrote = header.withUnsafeBytes { Glibc.write(fd, $0.baseAddress!, $0.count) }
        guard wrote == header.count, ftruncate(fd, off_t(size)) == 0 else {
            throw NPYError.writeFailed(path: path, reason: "cannot size to \(size) bytes: \(errnoText())")
        }
    }

    /// Opens `path`, which must have been created for exactly `dtype` and `shape`: for reading and
    /// writing, or for reading only where the file cannot be written (a shared cache on a read-only
    /// file system is read as it is).
    public init(path: String, dtype: NPYDType, shape: [Int]) throws {
        self.path = path; self.dtype = dtype; self.shape = shape
        rowBytes = shape.dropFirst().reduce(1, *) * dtype.size
        dataOffset = NPYWriter.header(dtype: dtype, shape: shape).count
        let expected = dataOffset + shape.reduce(1, *) * dtype.size
        var fd = open(path, O_RDWR)
        readOnly = fd < 0 && (errno == EROFS || errno == EACCES || errno == EPERM)
        if readOnly { fd = open(path, O_RDONLY) }
        guard fd >= 0 else { throw NPYError.cannotOpen(path: path, reason: errnoText()) }
        var st = stat()
        guard fstat(fd, &st) == 0, Int(st.st_size) == expected else {
            close(fd)
            throw NPYError.cannotOpen(path: path, reason: "size \(st.st_size) bytes, \(dtype.rawValue) \(shape) "
                                      + "needs \(expected)")
        }
        let headerBytes = dataOffset
        var head = [UInt8](repeating: 0, count: headerBytes)
        let got = head.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, headerBytes, 0) }
        guard got == headerBytes, head == NPYWriter.header(dtype: dtype, shape: shape) else {
            close(fd)
            throw NPYError.cannotOpen(path: path, reason: "its header is not that of \(dtype.rawValue) \(shape)")
        }
        self.fd = fd
    }

    deinit { close(fd) }

    /// Reads `buffer.count` bytes of row `row`, from byte `offset` within it.
    public func read(row: Int, offset: Int = 0, into buffer: UnsafeMutableRawBufferPointer) throws {
        let start = try position(row, offset, buffer.count)
        var done = 0
        while done < buffer.count {
            let k = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(start + done))
            if k < 0 && errno == EINTR { continue }
            guard k > 0 else {
                throw NPYError.cannotOpen(path: path, reason: "read failed at byte \(start + done): "
                                          + (k == 0 ? "file too short" : errnoText()))
            }
            done += k
        }
    }

    /// Writes `bytes` into row `row` from byte `offset` within it.
    public func write(row: Int, offset: Int = 0, _ bytes: UnsafeRawBufferPointer) throws {
        let start = try position(row, offset, bytes.count)
        if readOnly {
            throw NPYError.writeFailed(path: path, reason: "cannot write row \(row): the file is read-only here")
        }
        var done = 0
        while done < bytes.count {
            let k = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(start + done))
            if k < 0 && errno == EINTR { continue }
            guard k > 0 else {
                throw NPYError.writeFailed(path: path, reason: "at byte \(start + done): \(errnoText())")
            }
            done += k
        }
    }

    private func position(_ row: Int, _ offset: Int, _ count: Int) throws -> Int {
        precondition(offset >= 0 && offset + count <= rowBytes,
                     "bytes \(offset)..<\(offset + count) of a row of \(rowBytes)")
        guard row >= 0, row < shape[0] else {
            throw NPYError.rowsOutOfRange(path: path, range: row..<(row + 1), rows: shape[0])
        }
        return dataOffset + row * rowBytes + offset
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }
