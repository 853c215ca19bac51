import Foundation

/// The OS reason of a Foundation I/O error (`Permission denied`, `No space left on device`), rather
/// than its NSCocoaErrorDomain dump. Foundation on Linux often reports a failed write as the bare
/// "error 512" with no underlying error: then `path` (the file written) is probed for the reason.
public func ioReason(_ error: Error, path: String? = nil) -> String {
    let ns = error as NSError
    if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(underlying.code)))
    }
    if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
    switch ns.code {
    case NSFileWriteNoPermissionError, NSFileReadNoPermissionError: return "permission denied"
    case NSFileWriteOutOfSpaceError: return "no space left on the device"
    case NSFileWriteVolumeReadOnlyError: return "read-only file system"
    case NSFileNoSuchFileError, NSFileReadNoSuchFileError:
        if let path, case let folder = (path as NSString).deletingLastPathComponent, !folder.isEmpty,
           !FileManager.default.fileExists(atPath: folder) {
            return "the folder \(folder) does not exist"
        }
        return "no such file or folder"
    case NSFileWriteFileExistsError:
        if let path, FileManager.default.fileExists(atPath: path) { return "a file of that name is in the way" }
        return "a file of that name already exists"
    default: break
    }
    if let path {
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { return "a folder of that name is in the way" }
        let folder = (path as NSString).deletingLastPathComponent
        if access(folder.isEmpty ? "." : folder, W_OK) != 0 { return String(cString: strerror(errno)) }
    }
    return "I/O error (Foundation code \(ns.code))"
}
