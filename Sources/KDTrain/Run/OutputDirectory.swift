import Foundation
import KDModels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One run per `output.dir` (docs/reliability.md, "Guarantees"). `claim` creates the folder,
/// takes its lock and checks it against earlier runs before anything is written there:
///
/// - the lock `output.dir/kdgraph.lock` is created with `O_CREAT | O_EXCL` and holds the pid, the host
///   and (Linux) the process start time of rank 0; it is removed when the run ends (success, error,
///   signal). A lock whose holder is gone — same host, and the pid is not running or now belongs to a
///   process that started at another time — is stale: it is replaced, with a warning. A live holder is
///   refused; so is a holder on another host, which cannot be checked from here (the message says
///   which file to delete once that run is known to be over);
/// - a folder holding an earlier run's outputs (`checkpoints/step_*.safetensors`,
///   `checkpoints/final*.safetensors`, a non-empty `metrics.jsonl` or `metrics.csv`) is refused, unless
///   the run resumes from a checkpoint of that folder (`--resume`, continuing it) or `--overwrite`
///   says so; `--overwrite` deletes those files first (except the checkpoint resumed from and its state
///   file: `--resume CKPT --overwrite` restarts from CKPT, dropping the folder's other outputs), so that
///   "the newest `step_*`" can never be another run's.
public enum OutputDirectory {
    public static let lockName = "kdgraph.lock"

    /// Creates `directory`, takes its lock and applies the policy above; on failure nothing is left
    /// behind (the lock is released). `warn` receives the stale-lock notice.
    public static func claim(directory: String, resumingFrom resume: String?, overwrite: Bool,
                             warn: (String) -> Void) throws -> OutputLock {
        try makeDirectories(directory)
        let lock = try OutputLock.acquire(directory: directory, warn: warn)
        do {
            removeStaleTemporaryFiles(directory, warn: warn)
            let earlier = previousRunFiles(in: directory)
            if earlier.isEmpty { return lock }
            // The checkpoint resumed from and its training state (without which it could not be resumed again).
            let keep = Set([resume, resume.map(Checkpoint.statePath(of:))].compactMap { $0.flatMap(resolvedPath) })
            if overwrite {
                var removed = 0
                for name in earlier {
                    let path = (directory as NSString).appendingPathComponent(name)
                    if let p = resolvedPath(path), keep.contains(p) { continue }
                    guard unlink(path) == 0 || errno == ENOENT else {
                        throw TrainError.io(path: path, message: "--overwrite cannot remove it: \(errnoText())")
                    }
                    removed += 1
                }
                warn("\(directory): --overwrite removed \(removed) file(s) of an earlier run")
                return lock
            }
            if let refusal = earlierRunRefusal(directory: directory, earlier: earlier, resumingFrom: resume) {
                throw refusal
            }
            return lock   // continuing the run this folder holds
        } catch {
            lock.release()
            throw error
        }
    }

    /// The refusal of a run into `directory` holding `earlier` run files, unless it resumes from one of
    /// this folder's checkpoints (or `--overwrite`, which the caller handles).
    static func earlierRunRefusal(directory: String, earlier: [String], resumingFrom resume: String?) -> TrainError? {
        guard !earlier.isEmpty else { return nil }
        let checkpoints = resolvedPath((directory as NSString).appendingPathComponent("checkpoints"))
        if let resume, let folder = resolvedPath((resume as NSString).deletingLastPathComponent),
           folder == checkpoints {
            return nil
        }
        let shown = earlier.prefix(3).joined(separator: ", ") + (earlier.count > 3 ? ", …" : "")
        if let resume {
            // Resuming, but from a file that is not one of this folder's checkpoints.
            let ours = (directory as NSString).appendingPathComponent("checkpoints")
            return TrainError.io(path: directory, message: "output.dir already holds an earlier run's outputs "
                                 + "(\(shown)), and --resume \(resume) is not one of its checkpoints (in \(ours)/): "
                                 + "resume from one of those, or choose another output.dir")
        }
        return TrainError.io(path: directory, message: "output.dir already holds an earlier run's outputs "
                             + "(\(shown)): pass --resume with one of its checkpoints to continue that run, "
                             + "--overwrite to replace it, or choose another output.dir")
    }

    /// The same refusal as `claim`, checked before anything is built (no lock taken, nothing created):
    /// a run that would be refused is refused within a second, not after its data and models are ready.
    /// A folder with a lock is left to `claim`, which tells a live run (in use) from a stale lock.
    public static func refusalBeforeStart(directory: String, resumingFrom resume: String?,
                                          overwrite: Bool) -> TrainError? {
        let lock = (directory as NSString).appendingPathComponent(lockName)
        guard !overwrite, !FileManager.default.fileExists(atPath: lock) else { return nil }
        return earlierRunRefusal(directory: directory, earlier: previousRunFiles(in: directory),
                                 resumingFrom: resume)
    }

    /// The folder of a run that names no `output.dir`: `root/version_N`, N one more than the highest
    /// `version_*` already in `root` (0 for the first; PyTorch Lightning numbers its logs so). With `create`
    /// the folder is made here by `mkdir`, which is atomic: two runs started together get different numbers.
    /// A run resumed from a checkpoint of `…/checkpoints/` continues in that run's folder instead.
    public static func nextVersion(root: String, resumingFrom resume: String? = nil, create: Bool) throws -> String {
        if let resume, (resume as NSString).deletingLastPathComponent.hasSuffix("checkpoints") {
            let run = ((resume as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent
            return run.isEmpty ? "." : run
        }
        if create { try makeDirectories(root) }
        var next = versions(in: root).max().map { $0 + 1 } ?? 0
        guard create else { return (root as NSString).appendingPathComponent("version_\(next)") }
        while true {
            let folder = (root as NSString).appendingPathComponent("version_\(next)")
            if mkdir(folder, 0o755) == 0 { return folder }
            guard errno == EEXIST else {
                throw TrainError.io(path: folder, message: "cannot create the run's folder: \(errnoText())")
            }
            next += 1   // another run took it between the listing and mkdir
        }
    }

    /// The N of every `version_N` entry of `root`.
    static func versions(in root: String) -> [Int] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap { name in
            name.hasPrefix("version_") ? Int(name.dropFirst("version_".count)) : nil
        }
    }

    /// Removes the temporary files (`.NAME.tmp-PID`, `Safetensors.writeAtomically`) that a run killed in
    /// the middle of writing a checkpoint or the resolved config left in `directory` or its checkpoints
    /// folder, naming each. The folder is locked (`OutputLock`), so no live run of it is writing them.
    static func removeStaleTemporaryFiles(_ directory: String, warn: (String) -> Void) {
        for folder in [directory, (directory as NSString).appendingPathComponent("checkpoints")] {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []
            for name in names.sorted() where name.hasPrefix(".") && name.contains(".tmp-") {
                let path = (folder as NSString).appendingPathComponent(name)
                if unlink(path) == 0 {
                    warn("\(path): removed a partial file left by an interrupted write (the file it was to "
                         + "replace is intact)")
                }
            }
        }
    }

    /// The files of an earlier run in `directory`, relative to it, sorted.
    public static func previousRunFiles(in directory: String) -> [String] {
        var out: [String] = []
        let fm = FileManager.default
        let ck = (directory as NSString).appendingPathComponent("checkpoints")
        for name in ((try? fm.contentsOfDirectory(atPath: ck)) ?? []).sorted()
        where name.hasSuffix(".safetensors") && (name.hasPrefix("step_") || name.hasPrefix("final")) {
            out.append("checkpoints/" + name)
        }
        // The records a resumed run moved aside (`MetricsWriter.supersede`) are the earlier run's too.
        let superseded = ((try? fm.contentsOfDirectory(atPath: directory)) ?? []).sorted()
            .filter { $0.hasPrefix("metrics.superseded-after-step-") && $0.hasSuffix(".jsonl") }
        for name in ["metrics.jsonl", "metrics.csv"] + superseded {
            let path = (directory as NSString).appendingPathComponent(name)
            var st = stat()
            if stat(path, &st) == 0 && st.st_size > 0 { out.append(name) }
        }
        return out
    }

    /// `mkdir -p`, with an error naming the folder and the OS reason.
    static func makeDirectories(_ directory: String) throws {
        guard !directory.isEmpty else { throw TrainError.io(path: "output.dir", message: "is empty") }
        var prefix = directory.hasPrefix("/") ? "/" : ""
        for part in directory.split(separator: "/") {
            prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + part
            if mkdir(prefix, 0o755) != 0 && errno != EEXIST {
                throw TrainError.io(path: directory, message: "cannot create output.dir (at \(prefix)): \(errnoText())")
            }
        }
        var st = stat()
        guard stat(directory, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw TrainError.io(path: directory, message: "output.dir exists and is not a folder")
        }
    }

    static func resolvedPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// The lock on an output folder (see `OutputDirectory`).
public final class OutputLock {
    public let path: String
    let content: String
    var held = true

    init(path: String, content: String) {
        self.path = path
        self.content = content
    }

    /// Who holds a lock: the lines `pid P`, `host H`, `process_start S` (ticks since boot, Linux;
    /// empty elsewhere) and `started T` (UTC, for people).
    struct Holder: Equatable {
        var pid: Int32
        var host: String
        var processStart: String
        var started: String

        var text: String { "pid \(pid)\nhost \(host)\nprocess_start \(processStart)\nstarted \(started)\n" }

        init(pid: Int32, host: String, processStart: String, started: String) {
            (self.pid, self.host, self.processStart, self.started) = (pid, host, processStart, started)
        }

        init?(text: String) {
            var fields: [String: String] = [:]
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1).map(String.init)
                if parts.count == 2 { fields[parts[0]] = parts[1] }
            }
            guard let pid = fields["pid"].flatMap(Int32.init), let host = fields["host"] else { return nil }
            self.init(pid: pid, host: host, processStart: fields["process_start"] ?? "",
                      started: fields["started"] ?? "")
        }

        static var current: Holder {
            let pid = getpid()
            let iso = ISO8601DateFormatter()
            return Holder(pid: pid, host: hostName(), processStart: processStartTime(pid) ?? "",
                          started: iso.string(from: Date()))
        }

        /// true: the holder runs; false: it is gone (stale lock); nil: another host, cannot tell.
        var isRunning: Bool? {
            guard host == hostName() else { return nil }
            if kill(pid, 0) != 0 && errno == ESRCH { return false }
            if !processStart.isEmpty, let now = processStartTime(pid), now != processStart { return false }
            return true
        }
    }

    /// Takes the lock of `directory` (which exists), replacing a stale one (reported through `warn`).
    static func acquire(directory: String, warn: (String) -> Void) throws -> OutputLock {
        let path = (directory as NSString).appendingPathComponent(OutputDirectory.lockName)
        let me = Holder.current
        for _ in 0..<3 {
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                let bytes = Array(me.text.utf8)
                let w = bytes.withUnsafeBytes { write(fd, $0.baseAddress!, $0.count) }
                let reason = errnoText()
                close(fd)
                guard w == bytes.count else {
                    unlink(path)
                    throw TrainError.io(path: path, message: "cannot write the output.dir lock: \(reason)")
                }
                return OutputLock(path: path, content: me.text)
            }
            guard errno == EEXIST else {
                throw TrainError.io(path: path, message: "cannot create the output.dir lock: \(errnoText())")
            }
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            guard let holder = Holder(text: text) else {
                if text.isEmpty { usleep(200_000); continue }   // another run is writing it right now
                throw TrainError.io(path: path, message: "unreadable output.dir lock; delete it if no run uses "
                                    + "\(directory)")
            }
            switch holder.isRunning {
            case true?:
                throw TrainError.io(path: directory, message: "output.dir is in use by another run "
                                    + "(pid \(holder.pid) on "
                                    + "\(holder.host), started \(holder.started), lock \(path)): give each run its own "
                                    + "output.dir")
            case nil:
                throw TrainError.io(path: directory, message: "output.dir is locked by pid \(holder.pid) on host "
                                    + "\(holder.host) (started \(holder.started)), which cannot be checked from "
                                    + "\(hostName()): if that run is over, delete \(path)")
            case false?:
                warn("\(path): removing a stale lock (pid \(holder.pid) on \(holder.host), started \(holder.started), "
                     + "is no longer running)")
                unlink(path)
            }
        }
        throw TrainError.io(path: path, message: "could not take the output.dir lock (another run keeps taking it)")
    }

    /// Removes the lock if it is still this run's. Idempotent.
    public func release() {
        guard held else { return }
        held = false
        if (try? String(contentsOfFile: path, encoding: .utf8)) == content { unlink(path) }
    }

    deinit { release() }
}

/// This machine's host name.
func hostName() -> String {
    var buf = [CChar](repeating: 0, count: 256)
    gethostname(&buf, 255)
    return String(cString: buf)
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), or nil (no procfs, no process).
func processStartTime(_ pid: Int32) -> String? {
    guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let paren = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: paren)...].split(separator: " ")
    return fields.count > 19 ? String(fields[19]) : nil
}

private func errnoText() -> String { String(cString: strerror(errno)) }
