/// Counter-based, seedable random numbers.
///
/// Every random stream in KDGraph is keyed by integers only (e.g. `(seed, epoch, sampleIndex, view)`),
/// never by which rank or thread draws it, so a sample looks the same whichever rank loads it.
/// The generator is SplitMix64 (Steele et al. 2014) over a key folded with the same mixer.
public struct KDRandom: RandomNumberGenerator, Sendable {
    public private(set) var state: UInt64

    /// A stream keyed by any number of integers.
    public init(keys: UInt64...) { self.init(keyArray: keys) }

    public init(keyArray: [UInt64]) {
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        for k in keyArray { s = KDRandom.mix(s ^ KDRandom.mix(k &+ 0xD1B5_4A32_D192_ED03)) }
        state = s
    }

    /// Restores a generator from a saved `state` (checkpoints).
    public init(state: UInt64) { self.state = state }

    @inline(__always) static func mix(_ z0: UInt64) -> UInt64 {
        var z = z0
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    @inline(__always) public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return KDRandom.mix(state)
    }

    /// Uniform in [0, 1) with 24 bits of precision.
    @inline(__always) public mutating func nextFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    @inline(__always) public mutating func nextDouble() -> Double {
        Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// Uniform integer in `0..<bound`.
    @inline(__always) public mutating func nextInt(below bound: Int) -> Int {
        Int(next(upperBound: UInt64(bound)))
    }

    /// Standard normal (Box–Muller; one value per call, the second is discarded for statelessness).
    public mutating func nextNormal() -> Float {
        let u1 = max(nextDouble(), 1e-300), u2 = nextDouble()
        return Float((-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2))
    }

    /// A permutation of `0..<n` (Fisher–Yates).
    public mutating func permutation(_ n: Int) -> [Int] {
        var p = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { p.swapAt(i, nextInt(below: i + 1)) } }
        return p
    }
}

import Foundation
@inline(__always) func _log(_ x: Double) -> Double { Foundation.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Foundation.cos(x) }
