/// Array-level conveniences over any `Communicator` (the collective contract is unchanged: every rank
/// calls them in the same order).
extension Communicator {
    /// All-reduces an array in place.
    public func allReduce<T: CommScalar>(_ values: inout [T], op: ReduceOp) throws {
        let n = values.count
        if n == 0 { return }
        try values.withUnsafeMutableBufferPointer { try allReduce($0.baseAddress!, count: n, op: op) }
    }

    /// The reduction of one value over all ranks.
    public func allReduce<T: CommScalar>(_ value: T, op: ReduceOp) throws -> T {
        var v = [value]
        try allReduce(&v, op: op)
        return v[0]
    }

    /// Replaces every rank's array (same count everywhere) with `root`'s.
    public func broadcast<T: CommScalar>(_ values: inout [T], root: Int) throws {
        let n = values.count
        if n == 0 { return }
        try values.withUnsafeMutableBufferPointer { try broadcast($0.baseAddress!, count: n, root: root) }
    }

    /// `root`'s string on every rank (its UTF-8 length, then its bytes: two broadcasts).
    public func broadcast(_ text: String, root: Int) throws -> String {
        var bytes = Array(text.utf8)
        var n = [bytes.count]
        try broadcast(&n, root: root)
        if rank != root { bytes = [UInt8](repeating: 0, count: n[0]) }
        try broadcast(&bytes, root: root)
        return String(decoding: bytes, as: UTF8.self)
    }

    /// `[v_0, …, v_{size-1}]`: one value from each rank, rank order.
    public func allGather<T: CommScalar>(_ value: T) throws -> [T] {
        var mine = value
        var out = [T](repeating: 0, count: size)
        try withUnsafePointer(to: &mine) { p in
            try out.withUnsafeMutableBufferPointer { try allGather(p, count: 1, into: $0.baseAddress!) }
        }
        return out
    }

    /// Every rank's local count, rank order (one `MPI_Allgather` of one `Int`).
    public func allGatherCounts(_ local: Int) throws -> [Int] { try allGather(local) }

    /// Concatenation of every rank's array in rank order (`allGatherV`). `counts` (every rank's
    /// `local.count`) is exchanged first unless given.
    public func allGatherV<T: CommScalar>(_ local: [T], counts: [Int]? = nil) throws -> [T] {
        let counts = try counts ?? allGatherCounts(local.count)
        guard counts.count == size, counts[rank] == local.count else {
            throw CommError.invalidArgument(op: "allGatherV",
                message: "counts \(counts) do not give rank \(rank) its \(local.count) elements")
        }
        let total = counts.reduce(0, +)
        if total == 0 { return [] }     // the same on every rank: no collective needed
        var out = [T](repeating: 0, count: total)
        try out.withUnsafeMutableBufferPointer { recv in
            if local.isEmpty {
                var dummy: T = 0
                try withUnsafePointer(to: &dummy) { try allGatherV($0, counts: counts, into: recv.baseAddress!) }
            } else {
                try local.withUnsafeBufferPointer {
                    try allGatherV($0.baseAddress!, counts: counts, into: recv.baseAddress!)
                }
            }
        }
        return out
    }

    /// Labels or indices of all ranks, concatenated in rank order (counts exchanged unless given).
    public func allGatherInts(_ local: [Int], counts: [Int]? = nil) throws -> [Int] {
        try allGatherV(local, counts: counts)
    }

    /// Throws `CommError.rankMismatch` on every rank unless `value` is identical on all ranks (one
    /// all-reduce of `[v, −v]` with MAX). Meant for cheap desync checks such as a parameter checksum
    /// compared every K steps: `rank order` is not needed, only agreement.
    public func verifyIdentical(_ value: Double, what: String) throws {
        var v = [value, -value]
        try allReduce(&v, op: .max)
        let hi = v[0], lo = -v[1]
        if !(hi == lo) && !(hi.isNaN && lo.isNaN) {
            throw CommError.rankMismatch(op: "verifyIdentical", message: "\(what) differs across ranks: "
                                         + "min \(lo), max \(hi) (this rank \(value))")
        }
    }
}
