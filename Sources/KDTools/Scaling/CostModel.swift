import KDTensor

/// The all-reduce cost model of a ring / Rabenseifner all-reduce:
///
///     t(N, bytes) = 2(N−1)/N · bytes / bandwidth + 2(N−1) · latency
///
/// fitted by least squares to measured (N, bytes, seconds) points, so a user can extrapolate to ranks
/// and networks they have not measured.
public struct AllReduceCostModel: Equatable {
    public var latencySeconds: Double
    public var bandwidthBytesPerSecond: Double

    public init(latencySeconds: Double, bandwidthBytesPerSecond: Double) {
        self.latencySeconds = latencySeconds
        self.bandwidthBytesPerSecond = bandwidthBytesPerSecond
    }

    public func predict(ranks n: Int, bytes: Double) -> Double {
        guard n > 1 else { return 0 }
        let N = Double(n)
        return 2 * (N - 1) / N * bytes / bandwidthBytesPerSecond + 2 * (N - 1) * latencySeconds
    }

    /// `calls` ring all-gathers (or reduce-scatters) moving `bytes` in all, each half of an all-reduce:
    /// `(N−1)/N · bytes / bandwidth + calls · (N−1) · latency`.
    public func predictRingCollective(ranks n: Int, bytes: Double, calls: Int) -> Double {
        guard n > 1 else { return 0 }
        let N = Double(n)
        return (N - 1) / N * bytes / bandwidthBytesPerSecond + Double(calls) * (N - 1) * latencySeconds
    }

    /// Least-squares fit of `t = a·x + b·y` with `x = 2(N−1)/N·bytes`, `y = 2(N−1)`; `a = 1/bandwidth`,
    /// `b = latency`, in RELATIVE error (each point weighted by `1/t²`), so that the microsecond points
    /// of small messages set the latency and the large ones the bandwidth — an absolute fit lets the
    /// 16 MiB point decide everything. Points with N = 1 carry no information and are ignored. Returns
    /// nil with fewer than two informative points or a degenerate fit.
    public static func fit(_ points: [(ranks: Int, bytes: Double, seconds: Double)]) -> AllReduceCostModel? {
        var sxx = 0.0, sxy = 0.0, syy = 0.0, sxt = 0.0, syt = 0.0, used = 0
        for p in points where p.ranks > 1 && p.seconds > 0 {
            let N = Double(p.ranks)
            let w = 1 / (p.seconds * p.seconds)
            let x = 2 * (N - 1) / N * p.bytes, y = 2 * (N - 1)
            sxx += w * x * x; sxy += w * x * y; syy += w * y * y; sxt += w * x * p.seconds; syt += w * y * p.seconds
            used += 1
        }
        guard used >= 2 else { return nil }
        let det = sxx * syy - sxy * sxy
        guard abs(det) > 1e-30 * max(1, sxx * syy) else { return nil }
        var a = (sxt * syy - syt * sxy) / det
        var b = (syt * sxx - sxt * sxy) / det
        // A negative latency or inverse bandwidth is noise: refit with that term fixed at zero.
        if b < 0 { b = 0; a = sxt / sxx }
        if a <= 0 { a = 1e-12; b = max(0, (syt - a * sxy) / syy) }
        return AllReduceCostModel(latencySeconds: b, bandwidthBytesPerSecond: 1 / a)
    }
}
