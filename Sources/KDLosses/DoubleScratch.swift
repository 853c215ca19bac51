import KDTensor

/// Float64 scratch memory drawn from the `BufferPool` (so `peakBytes` counts it): `count` doubles in
/// the storage of a Float tensor of `2·count` elements, bound back to Float when released.
final class DoubleScratch {
    private let storage: Tensor
    let ptr: UnsafeMutablePointer<Double>
    let count: Int

    init(_ count: Int) {
        self.count = count
        storage = Tensor(uninitializedShape: [2 * max(count, 1)])
        ptr = UnsafeMutableRawPointer(storage.ptr).bindMemory(to: Double.self, capacity: max(count, 1))
    }

    static func zeros(_ count: Int) -> DoubleScratch {
        let s = DoubleScratch(count)
        s.ptr.update(repeating: 0, count: count)
        return s
    }

    deinit { UnsafeMutableRawPointer(ptr).bindMemory(to: Float.self, capacity: storage.count) }
}

/// Squared pairwise distances `q_ij = ‖x_i − x_j‖²` of an `[n, d]` matrix in Float64 (`dgemm` Gram on
/// a Float64 copy, `q = ‖x_i‖² + ‖x_j‖² − 2 x_i·x_j`), diagonal 0; entries where cancellation would
/// dominate (`q_ij < 1e-3·(‖x_i‖² + ‖x_j‖²)`, e.g. duplicated rows) are recomputed directly, so equal
/// rows give exactly 0.
func squaredDistancesDouble(_ x: UnsafePointer<Float>, n: Int, d: Int) -> DoubleScratch {
    let xd = DoubleScratch(n * d)
    for k in 0..<(n * d) { xd.ptr[k] = Double(x[k]) }
    let q = DoubleScratch(n * n)
    if n > 0 && d > 0 {
        dgemmGram(xd.ptr, n: n, d: d, into: q.ptr)
    } else {
        q.ptr.update(repeating: 0, count: n * n)
    }
    var sq = [Double](repeating: 0, count: n)
    for i in 0..<n { sq[i] = q.ptr[i * n + i] }
    for i in 0..<n {
        q.ptr[i * n + i] = 0
        for j in (i + 1)..<max(i + 1, n) {
            var v = sq[i] + sq[j] - 2 * q.ptr[i * n + j]
            if v < 1e-3 * (sq[i] + sq[j]) {
                var s = 0.0
                for c in 0..<d { let t = xd.ptr[i * d + c] - xd.ptr[j * d + c]; s += t * t }
                v = s
            }
            v = max(v, 0)
            q.ptr[i * n + j] = v; q.ptr[j * n + i] = v
        }
    }
    return q
}
