import KDCore
import KDTensor

/// Per-block partials for checking `ExactSum.reduce`'s two transports against each other (`scatterGather`
/// or not; `ExactSumTests`, the multi-rank check `comm.exact_sum_scatter_gather`): this rank's `blocks`
/// blocks of `counts.reduce(0, +)` values, one group of `counts[g]` values each, spanning 2⁻²⁰…2²⁰ with both
/// signs (seeded by `seed` and the rank); with three groups or more the second holds zeros only (no scale),
/// and the last value is NaN on the last rank (a NaN group).
public struct ExactSumCase<T: BinaryFloatingPoint & CommScalar> {
    public let counts: [Int]
    public let blocks: Int
    public private(set) var partials: [T]

    public init(counts: [Int], blocks: Int, rank: Int, ranks: Int, seed: UInt64) {
        self.counts = counts; self.blocks = blocks
        let total = counts.reduce(0, +)
        var rng = KDRandom(keys: seed, UInt64(rank))
        partials = (0..<(blocks * total)).map { i -> T in
            let mag = T(Float(sign: .plus, exponent: Int(rng.next() % 41) - 20, significand: 1))
            return (rng.next() % 2 == 0 ? 1 : -1) * mag * T(1 + i % 5)
        }
        if counts.count > 2 {
            for b in 0..<blocks { for i in 0..<counts[1] { partials[b * total + counts[0] + i] = 0 } }
            if rank == ranks - 1 && total > 0 { partials[total - 1] = .nan }
        }
    }

    /// The sums over every block of every rank, one group per count (collective).
    public func sums(comm: Communicator, scatterGather: Bool) throws -> [T] {
        let total = counts.reduce(0, +)
        var out = [T](repeating: -1, count: total)
        try partials.withUnsafeBufferPointer { p in try out.withUnsafeMutableBufferPointer { o in
            var offset = 0, groups: [ExactSum.Group<T>] = []
            for n in counts {
                groups.append(ExactSum.Group(partials: p.baseAddress! + offset, blocks: blocks, count: n,
                                             blockStride: total, result: o.baseAddress! + offset))
                offset += n
            }
            try ExactSum.reduce(groups, globalBlocks: blocks * comm.size, comm: comm, scatterGather: scatterGather)
        } }
        return out
    }
}
