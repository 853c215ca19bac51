/// BatchNorm's four passes over one channel row (`batchNorm`, `blockBatchNorm`; docs/ops.md "BatchNorm with
/// ReLU"), eight channels at a time and the remaining `c mod 8` one at a time. Each element goes through the
/// same operations, in the same order, as the one-at-a-time loop they replace — Float products and sums
/// without fused multiply-adds, Double accumulators added to in row order per channel — so the same bits
/// (`BatchNormTests.testRowKernelsGiveTheScalarBits`).
///
/// Eight-lane Float loads and stores are the module's (`loadVec8`, `storeVec`, with `WVec`); the Double
/// accumulators' (`WDVec`) are here.
enum BatchNormKernels {
    @inline(__always) static func loadD(_ p: UnsafePointer<Double>) -> WDVec {
        UnsafeRawPointer(p).loadUnaligned(as: WDVec.self)
    }
    @inline(__always) static func storeD(_ v: WDVec, _ p: UnsafeMutablePointer<Double>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: WDVec.self)
    }

    /// The moments: `s[j] += x[j]`, `s[c + j] += x[j]·x[j]` in Double, `j < c`.
    @inline(__always)
    static func addMoments(_ x: UnsafePointer<Float>, _ c: Int, into s: UnsafeMutablePointer<Double>) {
        var j = 0
        while j + 8 <= c {
            let v = WDVec(loadVec8(x + j))
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
            let v = (loadVec8(x + j) - loadVec8(mu + j)) * loadVec8(a + j) + loadVec8(beta + j)
            // `reluValue` lane by lane: 0 where `v ≤ 0` (−0 included), NaN kept.
            storeVec(on ? v.replacing(with: 0, where: v .<= 0) : v, y + j, 8)
            j += 8
        }
        while j < c { y[j] = reluValue((x[j] - mu[j]) * a[j] + beta[j], if: on); j += 1 }
    }

    /// ReLU's mask in backward, recomputed from the input instead of read from the output: `dy` is 0 where the
    /// forward's pre-ReLU value `(x − μ)·a + β` is ≤ 0 — the value `normalize` computed, bit for bit, so the
    /// mask `reluGradient` reads on the output — which spares backward a pass over the output.
    struct ReLUMask {
        let scale: UnsafePointer<Float>, beta: UnsafePointer<Float>

        /// `g` where the pre-ReLU value of channels `j..<j+8` is positive (or NaN), 0 elsewhere; `centred` is
        /// `x − μ` of those channels.
        @inline(__always) func masked(_ g: WVec, centred: WVec, at j: Int) -> WVec {
            g.replacing(with: 0, where: centred * loadVec8(scale + j) + loadVec8(beta + j) .<= 0)
        }

        /// `masked` for channel `j` alone (`reluGradient` at the pre-ReLU value).
        @inline(__always) func masked(_ g: Float, centred: Float, at j: Int) -> Float {
            reluGradient(g, at: centred * scale[j] + beta[j])
        }
    }

    /// The gradient's sums: `s[j] += dy`, `s[c + j] += dy·x̂` in Double, with `dy = g[j]` through ReLU's mask
    /// (`relu`) and `x̂ = (x[j] − μ[j])·invStd[j]` in Float.
    @inline(__always)
    static func addGradientSums(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>, _ c: Int,
                                mean mu: UnsafePointer<Float>, invStd inv: UnsafePointer<Float>, relu: ReLUMask?,
                                into s: UnsafeMutablePointer<Double>) {
        var j = 0
        while j + 8 <= c {
            let centred = loadVec8(x + j) - loadVec8(mu + j), gv = loadVec8(g + j)
            let dy = WDVec(relu?.masked(gv, centred: centred, at: j) ?? gv), xhat = WDVec(centred * loadVec8(inv + j))
            storeD(loadD(s + j) + dy, s + j)
            storeD(loadD(s + c + j) + dy * xhat, s + c + j)
            j += 8
        }
        while j < c {
            let centred = x[j] - mu[j]
            let dy = Double(relu?.masked(g[j], centred: centred, at: j) ?? g[j])
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
            let centred = loadVec8(x + j) - loadVec8(mu + j), gv = loadVec8(g + j)
            let dy = relu?.masked(gv, centred: centred, at: j) ?? gv
            let v = loadVec8(a + j) * dy + loadVec8(b + j) * centred + loadVec8(k + j)
            storeVec(fresh ? v : loadVec8(gx + j) + v, gx + j, 8)
            j += 8
        }
        while j < c {
            let centred = x[j] - mu[j]
            let dy = relu?.masked(g[j], centred: centred, at: j) ?? g[j]
            let v = a[j] * dy + b[j] * centred + k[j]
            gx[j] = fresh ? v : gx[j] + v
            j += 1
        }
    }
}
