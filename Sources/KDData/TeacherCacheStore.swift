import Foundation
import KDFormats

/// What a teacher-output cache holds (docs/training.md, "Teacher cache"): for each of `rounds`
/// augmentation rounds, one record per dataset sample, `views` rows of `width` values each (the
/// columns concatenated, e.g. the embedding then the logits), stored as `dtype`.
public struct TeacherCacheLayout: Codable, Equatable, Sendable {
    public struct Column: Codable, Equatable, Sendable {
        public var name: String
        public var size: Int
        public init(name: String, size: Int) { self.name = name; self.size = size }
    }
    public var samples: Int
    public var views: Int
    public var rounds: Int
    public var columns: [Column]
    /// `float32` or `float16`.
    public var dtype: String
    /// Samples per teacher forward: records are computed in whole blocks `[b·⌊i/b⌋, b·⌊i/b⌋ + b)`,
    /// one block per forward, so a record's bits do not depend on which run computed it.
    public var block: Int

    public init(samples: Int, views: Int, rounds: Int, columns: [Column], dtype: String, block: Int) {
        self.samples = samples; self.views = views; self.rounds = rounds; self.columns = columns; self.dtype = dtype
        self.block = block
    }

    /// The samples of the block holding sample `i`.
    public func blockSamples(of i: Int) -> Range<Int> {
        let lo = i / block * block
        return lo..<min(samples, lo + block)
    }
    /// Number of blocks.
    public var blockCount: Int { (samples + block - 1) / block }

    /// Values per view row (the columns' sizes summed).
    public var width: Int { columns.reduce(0) { $0 + $1.size } }
    /// Values per sample record (`views · width`).
    public var recordValues: Int { views * width }
    var npyDType: NPYDType { dtype == "float16" ? .float16 : .float32 }
    /// Bytes per sample record in a round file.
    var recordBytes: Int { recordValues * npyDType.size }
}

/// The manifest of a cache: its layout and the ordered fields of everything that determines the
/// stored values (teacher weights' SHA-256, data, augmentation, seed, …). A cache is used only when
/// every field matches the run's; the first differing field is named in the error.
public struct TeacherCacheManifest: Codable, Equatable, Sendable {
    public static let format = "kdgraph-teacher-cache/1"
    public var format: String
    public var layout: TeacherCacheLayout
    /// `[key, value]` pairs, in a fixed order.
    public var fields: [[String]]

    public init(layout: TeacherCacheLayout, fields: [(String, String)]) {
        format = TeacherCacheManifest.format; self.layout = layout; self.fields = fields.map { [$0.0, $0.1] }
    }

    public func value(_ key: String) -> String? { fields.first { $0.first == key }?.last }

    /// The first difference between `self` (the cache on disk) and `run`, as `key: cache → run`.
    public func firstDifference(from run: TeacherCacheManifest) -> String? {
        if format != run.format { return "format: \(format) → \(run.format)" }
        let a = layout, b = run.layout
        if a.samples != b.samples { return "training samples: \(a.samples) → \(b.samples)" }
        if a.views != b.views { return "data.views: \(a.views) → \(b.views)" }
        if a.rounds != b.rounds { return "teacher.cache.rounds: \(a.rounds) → \(b.rounds)" }
        if a.dtype != b.dtype { return "teacher.cache.dtype: \(a.dtype) → \(b.dtype)" }
        if a.block != b.block { return "samples per block: \(a.block) → \(b.block)" }
        if a.columns != b.columns {
            func show(_ c: [TeacherCacheLayout.Column]) -> String {
                c.map { "\($0.name)[\($0.size)]" }.joined(separator: " ")
            }
            return "columns: \(show(a.columns)) → \(show(b.columns))"
        }
        for pair in run.fields where pair.count == 2 {
            let mine = value(pair[0])
            if mine != pair[1] { return "\(pair[0]): \(mine ?? "(none)") → \(pair[1])" }
        }
        for pair in fields where pair.count == 2 && run.value(pair[0]) == nil {
            return "\(pair[0]): \(pair[1]) → (none)"
        }
        return nil
    }
}

/// The files of a teacher-output cache under one directory, shared by every rank (a shared file
/// system across nodes):
///
///     manifest.json        layout + the fields that determine the values (written last, atomically)
///     round-0003.npy       [samples, views, width] float32 or float16, C order: the records
///     round-0003.sums.npy  [samples] int64: record i's checksum, 0 = not written
///
/// A record is valid when its checksum is non-zero and equals the truncated SHA-256 of (round, index,
/// record bytes). A writer stores the record first and its checksum second, so a record whose write
/// was interrupted reads as absent (or fails its checksum) and is computed again — never read.
/// Ranks write disjoint records (`NPYRowFile`: `pwrite`/`pread` of whole rows); two ranks computing
/// the same block write the same bytes.
public final class TeacherCacheStore: @unchecked Sendable {
    public let directory: String
    public let manifest: TeacherCacheManifest
    public var layout: TeacherCacheLayout { manifest.layout }
    private let records: [NPYRowFile]
    private let sums: [NPYRowFile]
    private var bytes: [UInt8]

    public static func manifestPath(_ directory: String) -> String {
        (directory as NSString).appendingPathComponent("manifest.json")
    }
    /// `round-NNNN.npy` (`kind` "records") or `round-NNNN.sums.npy` ("sums").
    public static func roundPath(_ directory: String, _ r: Int, _ kind: String) -> String {
        (directory as NSString).appendingPathComponent(String(format: "round-%04d", r)
                                                        + (kind == "sums" ? ".sums.npy" : ".npy"))
    }

    static func shapes(_ l: TeacherCacheLayout) -> (records: [Int], sums: [Int]) {
        ([l.samples, l.views, l.width], [l.samples])
    }

    /// Creates the cache at `directory` for `manifest` when it has no manifest yet (rank 0 only,
    /// before the other ranks open it); checks an existing one. Refuses, naming the first differing
    /// field, a cache made for other settings — it is never silently used or overwritten.
    ///
    /// A new cache is built in a staging folder beside `directory` (round files, then the manifest) and
    /// renamed into place in one step, so two runs creating the same cache at once never write into each
    /// other's files: the second rename fails, and that run checks the winner's manifest instead.
    public static func prepare(directory: String, manifest: TeacherCacheManifest) throws {
        if try checkExisting(directory: directory, manifest: manifest) { return }
        let l = manifest.layout, (recordShape, sumShape) = shapes(l)
        try checkSpace(directory: directory, layout: l)
        let fm = FileManager.default
        // A staging folder of this creator alone (ranks on several hosts may share a pid; threads share one).
        let staging = directory + ".creating-\(getpid())-\(UUID().uuidString)"
        func refuse(_ what: String, _ error: Error) -> DataError {
            .invalidConfig(field: "teacher.cache.path", message: "\(directory): \(what) (\(ioReason(error)))")
        }
        do {
            try fm.createDirectory(atPath: staging, withIntermediateDirectories: true)
        } catch {
            throw refuse("cannot create the folder", error)
        }
        defer { try? fm.removeItem(atPath: staging) }
        do {
            for r in 0..<l.rounds {
                try NPYRowFile.create(path: roundPath(staging, r, "records"), dtype: l.npyDType, shape: recordShape)
                try NPYRowFile.create(path: roundPath(staging, r, "sums"), dtype: .int64, shape: sumShape)
            }
        } catch let e as NPYError {
            throw DataError.npy(e)
        }
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        do {
            try e.encode(manifest).write(to: URL(fileURLWithPath: manifestPath(staging)))
        } catch {
            throw refuse("cannot write the manifest", error)
        }
        guard rename(staging, directory) != 0 else { return }
        let reason = String(cString: strerror(errno))
        // Another run created the cache meanwhile (or the folder holds something else).
        if try checkExisting(directory: directory, manifest: manifest) { return }
        var isFolder: ObjCBool = false
        let exists = fm.fileExists(atPath: directory, isDirectory: &isFolder)
        throw DataError.invalidConfig(field: "teacher.cache.path", message: "\(directory): "
            + (exists && !isFolder.boolValue ? "is a file, not a folder"
               : exists ? "is a folder with other files and no manifest.json: not a teacher cache; use a new or "
                   + "empty folder" : "cannot create the cache there (\(reason))"))
    }

    /// True when `directory` holds a cache whose manifest matches `manifest`; throws when it holds one
    /// made for other settings; false when there is no manifest.
    static func checkExisting(directory: String, manifest: TeacherCacheManifest) throws -> Bool {
        let path = manifestPath(directory)
        guard FileManager.default.fileExists(atPath: path) else { return false }
        let found = try readManifest(directory)
        if let diff = found.firstDifference(from: manifest) {
            throw DataError.invalidFile(path: path, reason: "this cache was made for other settings (\(diff)); "
                                        + "use another teacher.cache.path or delete this one")
        }
        return true
    }

    /// Bytes of a complete cache of `l`: per round, the records and checksums with their headers.
    public static func bytes(_ l: TeacherCacheLayout) -> Int {
        let (records, sums) = shapes(l)
        let recordFile = NPYWriter.header(dtype: l.npyDType, shape: records).count + l.samples * l.recordBytes
        let sumFile = NPYWriter.header(dtype: .int64, shape: sums).count + l.samples * 8
        return l.rounds * (recordFile + sumFile)
    }

    /// Refuses a cache that the file system under `directory` cannot hold once filled (the round files
    /// are created sparse, so the space is taken as records are written): its bytes and files are
    /// compared with the free space of the nearest existing folder before anything is created.
    static func checkSpace(directory: String, layout l: TeacherCacheLayout) throws {
        var folder = directory.isEmpty ? "." : directory
        while !FileManager.default.fileExists(atPath: folder) && folder != "/" && folder != "." {
            folder = (folder as NSString).deletingLastPathComponent
            if folder.isEmpty { folder = "." }
        }
        var fs = statvfs()
        guard statvfs(folder, &fs) == 0 else { return }
        let need = bytes(l), free = Int(fs.f_bavail) * Int(fs.f_frsize), files = 2 * l.rounds + 1
        let freeFiles = Int(fs.f_favail)
        func gb(_ b: Int) -> String { String(format: "%.2f GB", Double(b) / 1e9) }
        if need > free || (fs.f_files > 0 && files > freeFiles) {
            throw DataError.invalidConfig(
                field: "teacher.cache.rounds",
                message: "\(l.rounds) round(s) of \(l.samples) samples need \(gb(need)) in \(files) files under "
                    + "\(directory), but its file system has \(gb(free)) and \(freeFiles) files free: lower "
                    + "teacher.cache.rounds, use teacher.cache.dtype: float16, or another teacher.cache.path")
        }
    }

    /// The manifest at `directory`.
    public static func readManifest(_ directory: String) throws -> TeacherCacheManifest {
        let path = manifestPath(directory)
        guard let d = FileManager.default.contents(atPath: path) else {
            throw DataError.missingFile(path: path, what: "teacher cache manifest")
        }
        do {
            let m = try JSONDecoder().decode(TeacherCacheManifest.self, from: d)
            let l = m.layout
            guard l.samples >= 0, l.views >= 1, l.rounds >= 1, l.block >= 1, l.columns.allSatisfy({ $0.size >= 1 }),
                  ["float32", "float16"].contains(l.dtype) else {
                throw DataError.invalidFile(path: path, reason: "layout \(l) is not valid")
            }
            return m
        } catch let e as DataError {
            throw e
        } catch {
            throw DataError.invalidFile(path: path, reason: "not a teacher cache manifest (\(error))")
        }
    }

    /// Opens the cache every rank reads and writes; `expected` must match the manifest on disk.
    public init(directory: String, expected: TeacherCacheManifest) throws {
        let found = try TeacherCacheStore.readManifest(directory)
        if let diff = found.firstDifference(from: expected) {
            throw DataError.invalidFile(path: TeacherCacheStore.manifestPath(directory),
                                        reason: "this cache was made for other settings (\(diff))")
        }
        self.directory = directory
        manifest = found
        let l = found.layout, (recordShape, sumShape) = TeacherCacheStore.shapes(l)
        bytes = [UInt8](repeating: 0, count: l.recordBytes)
        do {
            records = try (0..<l.rounds).map {
                try NPYRowFile(path: TeacherCacheStore.roundPath(directory, $0, "records"), dtype: l.npyDType,
                               shape: recordShape)
            }
            sums = try (0..<l.rounds).map {
                try NPYRowFile(path: TeacherCacheStore.roundPath(directory, $0, "sums"), dtype: .int64, shape: sumShape)
            }
        } catch let e as NPYError {
            throw DataError.npy(e)
        }
    }

    /// Reads record `sample` of `round` into `out` (`layout.recordValues` floats). False when it was
    /// never written, or its checksum does not match (an interrupted write): compute it again.
    public func read(round: Int, sample: Int, into out: UnsafeMutablePointer<Float>) throws -> Bool {
        try checkPosition(round, sample)
        var stored: UInt64 = 0
        try npy { try withUnsafeMutableBytes(of: &stored) { try sums[round].read(row: sample, into: $0) } }
        guard stored != 0 else { return false }
        try npy { try bytes.withUnsafeMutableBytes { try records[round].read(row: sample, into: $0) } }
        guard UInt64(littleEndian: stored) == checksum(round: round, sample: sample) else { return false }
        bytes.withUnsafeBytes { b in
            let count = layout.recordValues
            if layout.dtype == "float16" {
                for k in 0..<count { out[k] = Float(b.loadUnaligned(fromByteOffset: 2 * k, as: Float16.self)) }
            } else {
                for k in 0..<count { out[k] = b.loadUnaligned(fromByteOffset: 4 * k, as: Float.self) }
            }
        }
        return true
    }

    /// Writes record `sample` of `round` from `values` (`layout.recordValues` floats, rounded to the
    /// dtype), then its checksum.
    public func write(round: Int, sample: Int, from values: UnsafePointer<Float>) throws {
        try checkPosition(round, sample)
        let count = layout.recordValues, half = layout.dtype == "float16"
        bytes.withUnsafeMutableBytes { b in
            for k in 0..<count {
                if half {
                    b.storeBytes(of: Float16(values[k]), toByteOffset: 2 * k, as: Float16.self)
                } else {
                    b.storeBytes(of: values[k], toByteOffset: 4 * k, as: Float.self)
                }
            }
        }
        try npy { try bytes.withUnsafeBytes { try records[round].write(row: sample, $0) } }
        var sum = checksum(round: round, sample: sample).littleEndian
        try npy { try withUnsafeBytes(of: &sum) { try sums[round].write(row: sample, $0) } }
    }

    /// Rounds `values` in place to what `write` stores and `read` returns (float16: nearest even).
    public func roundToStored(_ values: UnsafeMutablePointer<Float>, count: Int) {
        guard layout.dtype == "float16" else { return }
        for k in 0..<count { values[k] = Float(Float16(values[k])) }
    }

    /// Records of `round` whose checksum is written (not verified): a quick count of what a fill has done.
    public func writtenCount(round: Int) throws -> Int {
        var n = 0
        var stored: UInt64 = 0
        for i in 0..<layout.samples {
            try npy { try withUnsafeMutableBytes(of: &stored) { try sums[round].read(row: i, into: $0) } }
            if stored != 0 { n += 1 }
        }
        return n
    }

    /// Bytes per sample and round on disk (record + checksum).
    public var bytesPerSampleRound: Int { layout.recordBytes + 8 }

    /// The truncated SHA-256 of (round, sample, the record bytes in `bytes`); never 0.
    private func checksum(round: Int, sample: Int) -> UInt64 {
        let key = [UInt64(round).littleEndian, UInt64(sample).littleEndian]
        let digest = bytes.withUnsafeBytes { sha256Prefix64(prefix: key.withUnsafeBytes { [UInt8]($0) }, $0) }
        return digest == 0 ? 1 : digest
    }

    private func checkPosition(_ round: Int, _ sample: Int) throws {
        guard round >= 0, round < layout.rounds, sample >= 0, sample < layout.samples else {
            throw DataError.invalidFile(path: directory, reason: "record (round \(round), sample \(sample)) outside "
                                        + "\(layout.rounds) rounds × \(layout.samples) samples")
        }
    }

    private func npy(_ body: () throws -> Void) throws {
        do { try body() } catch let e as NPYError { throw DataError.npy(e) }
    }
}
