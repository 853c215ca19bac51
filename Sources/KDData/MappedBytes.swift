import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a whole file (CIFAR binary batches); unmapped and closed on deinit.
final class MappedBytes: @unchecked Sendable {
    let path: String
    let bytes: UnsafeRawBufferPointer
    private let fd: Int32

    init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw DataError.missingFile(path: path, what: "file (\(String(cString: strerror(errno))))")
        }
        var st = stat()
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            close(fd); throw DataError.invalidFile(path: path, reason: "not a readable regular file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            self.fd = fd; self.bytes = UnsafeRawBufferPointer(start: nil, count: 0); return
        }
        guard let m = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), m != MAP_FAILED else {
            let r = String(cString: strerror(errno)); close(fd)
            throw DataError.invalidFile(path: path, reason: "mmap failed: \(r)")
        }
        self.fd = fd
        self.bytes = UnsafeRawBufferPointer(start: m, count: size)
    }

    deinit {
        if let b = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: b), bytes.count) }
        close(fd)
    }
}
