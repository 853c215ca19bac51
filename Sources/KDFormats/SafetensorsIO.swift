#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// File I/O for safetensors and checkpoints: whole-file reads and crash-safe atomic writes
/// (temporary file in the destination folder → write → fsync → rename → fsync of the folder).
public enum SafetensorsIO {
    static func errno_message() -> String { String(cString: strerror(errno)) }

    /// Reads the whole file.
    public static func readAll(path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw SafetensorsError.io(file: path, message: "cannot open: \(errno_message())") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SafetensorsError.io(file: path, message: "cannot stat: \(errno_message())")
        }
        if (st.st_mode & S_IFMT) == S_IFDIR {
            throw SafetensorsError.io(file: path, message: "is a folder: name a .safetensors file (a run's last "
                                      + "checkpoint is its checkpoints/final.safetensors)")
        }
        let size = Int(st.st_size)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        try out.withUnsafeMutableBytes { raw in
            while done < size {
                let r = read(fd, raw.baseAddress! + done, size - done)
                if r < 0 {
                    if errno == EINTR { continue }
                    throw SafetensorsError.io(file: path, message: "read failed: \(errno_message())")
                }
                if r == 0 { break }
                done += r
            }
        }
        if done < size { out.removeLast(size - done) }
        return out
    }

    /// The folder part of `path` ("." when none).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    /// Writes `bytes` to `path` atomically: the previous file (if any) is untouched unless the new one
    /// was completely written and synced. On failure the temporary file is removed.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        let dir = directory(of: path)
        let base = path.split(separator: "/").last.map(String.init) ?? path
        let tmp = (dir == "." && !path.hasPrefix("./") ? "" : dir + (dir == "/" ? "" : "/"))
            + ".\(base).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else {
            throw SafetensorsError.io(file: path, message: "cannot create temporary file \(tmp): \(errno_message())")
        }
        var ok = false
        defer { if !ok { close(fd); unlink(tmp) } }
        var done = 0
        try bytes.withUnsafeBytes { raw in
            while done < raw.count {
                let w = write(fd, raw.baseAddress! + done, raw.count - done)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw SafetensorsError.io(file: path, message: "write failed: \(errno_message())")
                }
                done += w
            }
        }
        guard fsync(fd) == 0 else { throw SafetensorsError.io(file: path, message: "fsync failed: \(errno_message())") }
        ok = true
        close(fd)
        guard rename(tmp, path) == 0 else {
            let m = errno_message()
            unlink(tmp)
            throw SafetensorsError.io(file: path, message: "rename from \(tmp) failed: \(m)")
        }
        let dfd = open(dir, O_RDONLY)
        if dfd >= 0 { _ = fsync(dfd); close(dfd) }
    }
}
