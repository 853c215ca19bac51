import Foundation

/// A fresh folder of one test under the system's temporary directory (`TMPDIR`, else `/tmp`): `prefix`
/// followed by a new UUID, created with its intermediate folders. Every `init` makes a folder no other
/// call has made, so tests running at once (threads of one process, or parallel test processes) never
/// share one and never find what an earlier, crashed run left behind. Whoever makes it removes it:
/// `tearDown` calls `remove()`, a one-off folder `defer { dir.remove() }`.
public struct TemporaryDirectory: Sendable {
    /// The folder's path, without a trailing `/`.
    public let path: String
    /// The folder as a file URL.
    public let url: URL

    /// Creates `<temporary directory>/<prefix><UUID>`; throws where it cannot be created.
    public init(prefix: String) throws {
        path = (NSTemporaryDirectory() as NSString).appendingPathComponent(prefix + UUID().uuidString)
        url = URL(fileURLWithPath: path, isDirectory: true)
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    /// The path of `name` (a file or a folder, possibly `a/b`) inside the folder; nothing is created.
    public func file(_ name: String) -> String { path + "/" + name }

    /// Removes the folder and everything in it. A folder already gone is not an error; one that cannot be
    /// removed is named on standard error, not thrown, so a test's cleanup never fails the test.
    public func remove() {
        do {
            try FileManager.default.removeItem(atPath: path)
        } catch {
            guard FileManager.default.fileExists(atPath: path) else { return }
            FileHandle.standardError.write(Data("TemporaryDirectory: cannot remove \(path): \(error)\n".utf8))
        }
    }
}
