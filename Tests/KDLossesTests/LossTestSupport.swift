import XCTest
import KDTensor
@testable import KDLosses

/// Deterministic small inputs for the loss tests.
struct LossCase {
    let b: Int, views: Int, d: Int, c: Int
    let sFeat: Tensor, sEmb: Tensor, zs: Tensor, tEmb: Tensor, zt: Tensor, proxies: Tensor, labels: [Int]

    init(b: Int = 7, views: Int = 1, d: Int = 5, c: Int = 4, seed: UInt64 = 1) {
        self.b = b; self.views = views; self.d = d; self.c = c
        var rng = KDRandom(keys: seed, 99)
        let n = b * views
        sFeat = .randn([n, d + 1], rng: &rng)
        sEmb = .randn([n, d], rng: &rng)
        zs = .randn([n, c], std: 2, rng: &rng)
        tEmb = .randn([n, d], rng: &rng)
        zt = .randn([n, c], std: 2, rng: &rng)
        proxies = .randn([c, d], rng: &rng)
        labels = (0..<b).map { $0 % c }
    }

    func inputs(shard: Range<Int>? = nil) -> LossInputs {
        LossInputs(batchSize: b, views: views, shard: shard, studentFeatures: sFeat, studentEmbedding: sEmb,
                   studentLogits: zs, teacherEmbedding: tEmb, teacherLogits: zt, proxies: proxies, labels: labels)
    }
    var students: [Tensor] { [sFeat, sEmb, zs] }
}

/// Relative max-norm difference of two arrays.
func relErr(_ a: [Float], _ b: [Float]) -> Double {
    var d = 0.0, m = 0.0
    for (x, y) in zip(a, b) { d = max(d, abs(Double(x) - Double(y))); m = max(m, abs(Double(y))) }
    return d / max(m, 1e-12)
}
