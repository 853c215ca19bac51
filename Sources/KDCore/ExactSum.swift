/// An exact, order-independent sum of per-block partials over all ranks: the combination step of
/// deterministic training (docs/training.md, "Bit-identical training at any world size").
///
/// Float addition is not associative, so a sum whose terms are grouped by rank changes in the last bits
/// with the world size. Here every partial `x` (a block's contribution to one element) is converted to
/// a 64-bit fixed-point integer on a scale shared by every rank, the integers are added — exactly, in
/// any order — locally and with one `MPI_SUM` all-reduce of `Int64`, and the total is converted back
/// once. The scale of a group of elements is `2^s` with `s = 62 − h − (e + 1)`, where `2^e ≤ m < 2^(e+1)`
/// for the group's largest magnitude `m` over all partials of all ranks (one small `MPI_MAX` all-reduce)
/// and `h = ⌈log₂(globalBlocks + 1)⌉` bits of headroom, so that `|q| ≤ 2^(62−h)` and a sum of up to
/// `globalBlocks` terms stays below `2^62`.
///
/// - Result: `Σ_blocks round(x · 2^s) · 2^−s`, rounded once to the element type: a function of the
///   multiset of partials only (not of their order, their split over ranks, or the world size).
/// - Accuracy: each term is rounded to `2^−s ≤ m · 2^(h−61)`, so the sum is within
///   `globalBlocks · m · 2^(h−62)` of the exact sum (`globalBlocks = 4096`: `m · 2^−37`), before the final
///   rounding to Float or Double; float32 summation of the same terms is within `globalBlocks · m · 2^−24`.
/// - Non-finite partials make the group's result NaN (the trainer's non-finite guard then fires).
/// - Cost: one pass over the partials for the maxima, one to convert, `count` Int64 values all-reduced
///   (twice the bytes of a Float all-reduce; or reduce-scattered, and the results all-gathered:
///   `scatterGather`) and one small MAX all-reduce per call.
public enum ExactSum {
    /// One group of elements sharing a scale: `blocks` partials of `count` values, partial `b` of
    /// element `i` at `partials[b · blockStride + i]`; the sums are written to `result[i]`.
    public struct Group<T: BinaryFloatingPoint> {
        public var partials: UnsafePointer<T>
        public var blocks: Int
        public var count: Int
        public var blockStride: Int
        public var result: UnsafeMutablePointer<T>
        public init(partials: UnsafePointer<T>, blocks: Int, count: Int, blockStride: Int? = nil,
                    result: UnsafeMutablePointer<T>) {
            self.partials = partials; self.blocks = blocks; self.count = count
            self.blockStride = blockStride ?? count; self.result = result
        }
    }

    /// Sums every group's partials over the blocks of all ranks into its `result`; `globalBlocks` must
    /// bound the number of blocks over all ranks and be the same on every rank. Collective: every rank
    /// calls it with the same groups' `count`s (a rank may hold no block). Without a communicator (or on
    /// one rank) the sum is over the given partials only.
    /// Specialised for Float and Double: the conversions of every partial go through `T`, and an
    /// unspecialised generic call across modules costs tens of nanoseconds per element.
    ///
    /// `scatterGather` chooses how the integers cross the ranks, not what they sum to: one `Int64` all-reduce
    /// (false), or an `Int64` reduce-scatter, each rank converting its share of the sums to `T`, and an
    /// all-gather of the `T` values (true): the same bits (each sum is converted once, by the same formula,
    /// wherever it is converted), with 8 + 4 bytes per Float element on the wire instead of the all-reduce's
    /// 2 · 8 (ring algorithms), but two collectives instead of one. The trainer takes it for the gradients
    /// when the ranks span several hosts (docs/communication.md, "The exact gradient sum across hosts").
    @_specialize(where T == Float)
    @_specialize(where T == Double)
    public static func reduce<T: BinaryFloatingPoint & CommScalar>(_ groups: [Group<T>], globalBlocks: Int,
                                                                   comm: Communicator?,
                                                                   scatterGather: Bool = false) throws {
        let comm = (comm?.size ?? 1) > 1 ? comm : nil
        // ① the largest magnitude of each group over all ranks (∞ for a non-finite partial)
        var maxima = groups.map { g -> Double in
            var m = 0.0
            for b in 0..<g.blocks {
                let p = g.partials + b * g.blockStride
                for i in 0..<g.count {
                    let v = Double(p[i]).magnitude
                    if !(v <= m) { m = v.isFinite ? v : .infinity }   // NaN compares false: becomes ∞
                }
            }
            return m
        }
        if let comm, !maxima.isEmpty { try comm.allReduce(&maxima, op: .max) }
        // ② each partial on its group's scale, added as integers
        let total = groups.reduce(0) { $0 + $1.count }
        var sums = [Int64](repeating: 0, count: total)
        let scales = maxima.map { scaleExponent(maxMagnitude: $0, globalBlocks: globalBlocks) }
        sums.withUnsafeMutableBufferPointer { s in
            var offset = 0
            for (g, e) in zip(groups, scales) {
                defer { offset += g.count }
                guard let e else { continue }
                let q = s.baseAddress! + offset, up = Double(sign: .plus, exponent: e, significand: 1)
                for b in 0..<g.blocks {
                    let p = g.partials + b * g.blockStride
                    for i in 0..<g.count { q[i] &+= Int64(roundedToEven(Double(p[i]) * up)) }
                }
            }
        }
        guard total > 0 else { return }
        // ③ across the ranks, and back to floating point once: a group's sum times its `2^−s` (no scale: every
        // partial was zero, or one was not finite).
        let downs = scales.map { $0.map { Double(sign: .plus, exponent: -$0, significand: 1) } }
        func convert(_ sums: UnsafePointer<Int64>, _ n: Int, into out: UnsafeMutablePointer<T>, down: Double?,
                     max m: Double) {
            guard let down else { out.update(repeating: m == 0 ? 0 : .nan, count: n); return }
            for i in 0..<n { out[i] = T(Double(sums[i]) * down) }
        }
        if let comm, scatterGather {
            // Rank r sums and converts elements [first_r, first_r + counts[r]), then every rank gathers them all.
            let counts = (0..<comm.size).map { total / comm.size + ($0 < total % comm.size ? 1 : 0) }
            let first = counts.prefix(comm.rank).reduce(0, +), mine = counts[comm.rank]
            // (At least one element each: a rank may own none when there are fewer sums than ranks.)
            var share = [Int64](repeating: 0, count: Swift.max(1, mine))
            var values = [T](repeating: 0, count: Swift.max(1, mine))
            try sums.withUnsafeBufferPointer { s in try share.withUnsafeMutableBufferPointer {
                try comm.reduceScatterV(s.baseAddress!, counts: counts, into: $0.baseAddress!)
            } }
            share.withUnsafeBufferPointer { sh in values.withUnsafeMutableBufferPointer { v in
                var offset = 0
                for (g, (down, m)) in zip(groups, zip(downs, maxima)) {
                    defer { offset += g.count }
                    let lo = Swift.max(offset, first), hi = Swift.min(offset + g.count, first + mine)
                    guard lo < hi else { continue }
                    convert(sh.baseAddress! + (lo - first), hi - lo, into: v.baseAddress! + (lo - first), down: down,
                            max: m)
                }
            } }
            var all = [T](repeating: 0, count: total)
            try values.withUnsafeBufferPointer { v in try all.withUnsafeMutableBufferPointer {
                try comm.allGatherV(v.baseAddress!, counts: counts, into: $0.baseAddress!)
            } }
            all.withUnsafeBufferPointer { a in
                var offset = 0
                for g in groups { g.result.update(from: a.baseAddress! + offset, count: g.count); offset += g.count }
            }
            return
        }
        if let comm {
            try sums.withUnsafeMutableBufferPointer { try comm.allReduce($0.baseAddress!, count: total, op: .sum) }
        }
        sums.withUnsafeBufferPointer { s in
            var offset = 0
            for (g, (down, m)) in zip(groups, zip(downs, maxima)) {
                convert(s.baseAddress! + offset, g.count, into: g.result, down: down, max: m)
                offset += g.count
            }
        }
    }

    /// The exact sum of per-block partials of a gathered matrix's rows over all ranks, each rank keeping
    /// its own rows: the reduce-scatter of deterministic training's row-sharded loss (`LossBlocks`).
    ///
    /// `partials` holds this rank's `blocks` partials of the whole `[Σ rowCounts, rowSize]` matrix (block
    /// `b` at `b · total · rowSize`); rank `r` owns the `rowCounts[r]` rows after those of the ranks
    /// before it and receives their sums in `result` (`rowCounts[rank] · rowSize` values). The dense form
    /// of `reduceScatterRows(entries:…)`, with every row of every block as an entry.
    public static func reduceScatterRows(_ partials: UnsafePointer<Float>, blocks: Int, rowSize: Int,
                                         rowCounts: [Int], globalBlocks: Int, comm: Communicator,
                                         into result: UnsafeMutablePointer<Float>,
                                         scratch: UnsafeMutablePointer<Int64>? = nil) throws {
        let rows = rowCounts.reduce(0, +)
        let entries = (0..<blocks).flatMap { b in
            (0..<rows).map { i in (row: i, values: partials + (b * rows + i) * rowSize) }
        }
        try reduceScatterRows(entries: entries, rowSize: rowSize, rowCounts: rowCounts, globalBlocks: globalBlocks,
                              comm: comm, into: result, scratch: scratch)
    }

    /// The exact sum over all ranks of row partials of a gathered `[Σ rowCounts, rowSize]` matrix, each rank
    /// keeping its own rows. `entries` are this rank's partials, row by row: `(i, v)` is one block's part of
    /// row `i` (a row absent from a block is zero there; `Tensor.LossBlockPartials` stores only the rows a
    /// block's ops wrote). Rank `r` owns the `rowCounts[r]` rows after those of the ranks before it and
    /// receives their sums in `result` (`rowCounts[rank] · rowSize` values). Each row is its own group
    /// (its scale from its largest magnitude over every partial of every rank: one `MPI_MAX` all-reduce
    /// of one Double per row), the integers go through one `Int64` reduce-scatter, and the result has the
    /// accuracy and the independence of the split stated for `reduce` — and does not depend on which rows
    /// an entry list leaves out as zero. Collective: every rank passes the same `rowCounts`, `rowSize` and
    /// `globalBlocks`. `scratch`, when given, holds `scratchCount(rowCounts:rowSize:rank:)` integers for
    /// the sums (a buffer the caller reuses: fresh pages for megabytes of integers cost more than the
    /// arithmetic).
    public static func reduceScatterRows(entries: [(row: Int, values: UnsafePointer<Float>)], rowSize: Int,
                                         rowCounts: [Int], globalBlocks: Int, comm: Communicator,
                                         into result: UnsafeMutablePointer<Float>,
                                         scratch: UnsafeMutablePointer<Int64>? = nil) throws {
        let rows = rowCounts.reduce(0, +), total = rows * rowSize
        // ① each row's largest magnitude over its entries, in Float (exact); a non-finite value makes the
        // row's maximum ∞ (`x − x` is NaN only for ±∞ and NaN, and NaN survives the sum).
        var maxima = [Double](repeating: 0, count: rows)
        var bad = [Float](repeating: 0, count: rows)
        for (i, p) in entries {
            var m = Float(maxima[i]), nan = bad[i]
            for j in 0..<rowSize { let x = p[j]; m = Swift.max(m, x.magnitude); nan += x - x }
            maxima[i] = Double(m); bad[i] = nan
        }
        for i in 0..<rows where bad[i].isNaN { maxima[i] = .infinity }
        if comm.size > 1 && rows > 0 { try comm.allReduce(&maxima, op: .max) }
        let scales = maxima.map { scaleExponent(maxMagnitude: $0, globalBlocks: globalBlocks) }
        // ② every partial on its row's scale, added as integers.
        let first = rowCounts[..<comm.rank].reduce(0, +), mine = rowCounts[comm.rank]
        let owned = scratch == nil
        let sums = scratch ?? UnsafeMutablePointer<Int64>.allocate(capacity: scratchCount(rowCounts: rowCounts,
                                                                                           rowSize: rowSize,
                                                                                           rank: comm.rank))
        defer { if owned { sums.deallocate() } }
        sums.initialize(repeating: 0, count: total)
        for (i, p) in entries {
            guard let e = scales[i] else { continue }
            let up = Double(sign: .plus, exponent: e, significand: 1), q = sums + i * rowSize
            for j in 0..<rowSize { q[j] &+= Int64(roundedToEven(Double(p[j]) * up)) }
        }
        // ③ the reduce-scatter of the integers (on one rank, its own sums)
        var own = UnsafePointer(sums)
        if comm.size > 1 {
            let mineSums = sums + total
            try comm.reduceScatterV(UnsafePointer(sums), counts: rowCounts.map { $0 * rowSize }, into: mineSums)
            own = UnsafePointer(mineSums)
        }
        for r in 0..<mine {
            let i = first + r, out = result + r * rowSize
            guard let e = scales[i] else {
                out.update(repeating: maxima[i] == 0 ? 0 : .nan, count: rowSize)
                continue
            }
            let down = Double(sign: .plus, exponent: -e, significand: 1)
            for j in 0..<rowSize { out[j] = Float(Double(own[r * rowSize + j]) * down) }
        }
    }

    /// Integers `reduceScatterRows` needs as scratch: the whole matrix's sums and, on several ranks, this
    /// rank's rows of them.
    public static func scratchCount(rowCounts: [Int], rowSize: Int, rank: Int) -> Int {
        let total = rowCounts.reduce(0, +) * rowSize
        return max(1, total + (rowCounts.count > 1 ? rowCounts[rank] * rowSize : 0))
    }

    /// The exact sums of per-block vectors over all ranks: `partials[b][i]` is block `b`'s part of value
    /// `i` (every block the same length); each value is its own group. Collective (a rank may hold no
    /// block, but every rank passes vectors of the same length `count`). Without a communicator the sum
    /// is over the given blocks only — the same result as when they are spread over ranks.
    public static func sums(_ partials: [[Double]], count: Int, globalBlocks: Int,
                            comm: Communicator?) throws -> [Double] {
        guard count > 0 else { return [] }
        precondition(partials.allSatisfy { $0.count == count }, "exact sums: blocks of unequal length")
        let flat = partials.isEmpty ? [Double](repeating: 0, count: count) : partials.flatMap { $0 }
        var result = [Double](repeating: 0, count: count)
        try flat.withUnsafeBufferPointer { f in
            try result.withUnsafeMutableBufferPointer { r in
                let groups = (0..<count).map { i in
                    Group(partials: f.baseAddress! + i, blocks: partials.count, count: 1, blockStride: count,
                          result: r.baseAddress! + i)
                }
                try reduce(groups, globalBlocks: globalBlocks, comm: comm)
            }
        }
        return result
    }

    /// The exact sum of scalar `terms` over all ranks (each term one block). Collective.
    public static func sum(_ terms: [Double], globalBlocks: Int, comm: Communicator) throws -> Double {
        try sums(terms.map { [$0] }, count: 1, globalBlocks: globalBlocks, comm: comm)[0]
    }

    /// `v.rounded(.toNearestOrEven)`, without the library call: below 2^51 in magnitude, adding and
    /// subtracting 1.5·2^52 rounds to the integer (ties to even) in IEEE double arithmetic; from 2^52 on
    /// every double is an integer. The same value as the library's for every finite `v`, several times
    /// faster in the conversion loops.
    @inlinable @inline(__always)
    public static func roundedToEven(_ v: Double) -> Double {
        let a = v.magnitude
        if a < 0x1p51 { return Double(signOf: v, magnitudeOf: (v + 0x1.8p52) - 0x1.8p52) }   // −0.4 → −0
        return a < 0x1p52 ? v.rounded(.toNearestOrEven) : v
    }

    /// The fixed-point exponent `s` for a group whose largest magnitude is `m` (nil: all zero, or not finite).
    public static func scaleExponent(maxMagnitude m: Double, globalBlocks: Int) -> Int? {
        guard m > 0, m.isFinite else { return nil }
        let headroom = Int.bitWidth - max(1, globalBlocks).leadingZeroBitCount   // ⌈log₂(n + 1)⌉
        return 62 - headroom - (Int(m.exponent) + 1)
    }
}
