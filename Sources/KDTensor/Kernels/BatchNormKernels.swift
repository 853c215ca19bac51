/// BatchNorm's four passes over one channel row (`batchNorm`, `blockBatchNorm`; docs/ops.md "BatchNorm with
/// ReLU"), eight channels at a time and the remaining `c mod 8` one at a time. Each element goes through the
/// same operations, in the same order, as the one-at-a-time loop they replace — Float products and sums
/// without fused multiply-adds, Double accumulators added to in row order per channel — so the same bits
/// (`BatchNormTests.testRowKernelsGiveTheScalarBits`).
enum BatchNormKernels {
    typealias F8 = SIMD8<Float>
    typealias D8 = SIMD8<Double>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> F8 {
        UnsafeRawPointer(p).loadUnaligned(as: F8.self)
    }
    @inline(__always) static func store(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
    }
    @inline(__always) static func loadD(_ p: UnsafePointer<Double>) -> D8 {
        UnsafeRawPointer(p).loadUnaligned(as: D8.self)
    }
    @inline(__always) static func storeD(_ v: D8, _ p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: D8.self)
    }
    /// `reluValue` lane by lane: 0 where `v ≤ 0` (−0 included), NaN kept.
    @inline(__always) static func relu(_ v: F8) -> F8 { v.replacing(with: 0, where: v .<= 0) }

    /// The moments: `s[j] += x[j]`, `s[c + j] += x[j]·x[j]` in Double, `j < c`.
    @inline(__always)
    static func addMoments(_ x: UnsafePointer<Float>, _ c: Int, into s: UnsafeMutablePointer<Double>) {
        var j = 0
        while j + 8 <= c {
            let v = D8(load(x + j))
            storeD(loadD(s + j) + v, s + j)
            storeD(loadD(s + c + j) + v * v, s + c + j)
            j += 8
        }
        while j < c { let v = Double(x[j]); s[j] += v; s[c + j] += v * v; j += 1 }
    }

    /// The output: `y[j] = relu?((x[j] − μ[j])·a[j] + β[j])` (`a = γ/√(σ² + ε)`).
    @inline(__always)
    static func normalize(_ x: UnsafePointer<Float>, _ c: Int, mean mu: UnsafePointer<Float>,
                          scale a: UnsafePointer<Float>, beta: UnsafePointer<Float>, relu on: Bool,
                          into y: UnsafeMutablePointer<Float>) {
        var j = 0
        while j + 8 <= c {
            let v = (load(x + j) - load(mu + j)) * load(a + j) + load(beta + j)
            store(on ? relu(v) : v, y + j)
            j += 8
        }
        while j < c { y[j] = reluValue((x[j] - mu[j]) * a[j] + beta[j], if: on); j += 1 }
    }

    /// ReLU's mask in backward, recomputed from the input instead of read from the output: `dy` is 0 where the
    /// forward's pre-ReLU value `(x − μ)·a + β` is ≤ 0 — the value `normalize` computed, bit for bit, so the
    /// mask `reluGradient` reads on the output — which spares backward a pass over the output.
    struct ReLUMask {
        let scale: UnsafePointer<Float>, beta: UnsafePointer<Float>
    }

    /// The gradient's sums: `s[j] += dy`, `s[c + j] += dy·x̂` in Double, with `dy = g[j]` through ReLU's mask
    /// (`relu`) and `x̂ = (x[j] − μ[j])·invStd[j]` in Float.
    @inline(__always)
    static func addGradientSums(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ c: Int,
                                mean mu: UnsafePointer<Float>, invStd inv: UnsafePointer<Float>, relu: ReLUMask?,
                                into s: UnsafeMutablePointer<Double>) {
        var j = 0
        while j + 8 <= c {
            let centred = load(x + j) - load(mu + j)
            var gv = load(g + j)
            if let relu { gv.replace(with: 0, where: centred * load(relu.scale + j) + load(relu.beta + j) .<= 0) }
            let dy = D8(gv), xhat = D8(centred * load(inv + j))
            storeD(loadD(s + j) + dy, s + j)
            storeD(loadD(s + c + j) + dy * xhat, s + c + j)
            j += 8
        }
        while j < c {
            let centred = x[j] - mu[j]
            let dy = Double(relu.map { reluGradient(g[j], at: centred * $0.scale[j] + $0.beta[j]) } ?? g[j])
            s[j] += dy
            s[c + j] += dy * Double(centred * inv[j])
            j += 1
        }
    }

    /// The input gradient: `v = a[j]·dy + b[j]·(x[j] − μ[j]) + k[j]` (`dy` through ReLU's mask, `relu`), written
    /// to `gx[j]`, or added to it unless `fresh`.
    @inline(__always)
    static func applyGradient(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ c: Int, a: UnsafePointer<Float>,
                              b: UnsafePointer<Float>, k: UnsafePointer<Float>, mean mu: UnsafePointer<Float>,
                              relu: ReLUMask?, fresh: Bool, into gx: UnsafeMutablePointer<Float>) {
        var j = 0
        while j + 8 <= c {
            let centred = load(x + j) - load(mu + j)
            var dy = load(g + j)
            if let relu { dy.replace(with: 0, where: centred * load(relu.scale + j) + load(relu.beta + j) .<= 0) }
            let v = load(a + j) * dy + load(b + j) * centred + load(k + j)
            store(fresh ? v : load(gx + j) + v, gx + j)
            j += 8
        }
        while j < c {
            let centred = x[j] - mu[j]
            let dy = relu.map { reluGradient(g[j], at: centred * $0.scale[j] + $0.beta[j]) } ?? g[j]
            let v = a[j] * dy + b[j] * centred + k[j]
            gx[j] = fresh ? v : gx[j] + v
            j += 1
        }
    }
}
