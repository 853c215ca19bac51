/// Winograd minimal filtering F(m×m, 3×3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural
/// Networks", CVPR 2016): an m×m output tile of a 3×3 stride-1 correlation is
///
///     Y = Aᵀ [ (G g Gᵀ) ⊙ (Bᵀ d B) ] A
///
/// over an α×α input tile `d` (α = m + 2) and the 3×3 filter `g`. Summed over input channels, the
/// element-wise product becomes α² independent GEMMs `M_ξ[tiles, Cout] = V_ξ[tiles, Cin] · U_ξ[Cin, Cout]`
/// (ξ = one of the α² transform positions) — α²/(m²·9) of the direct algorithm's multiplications:
/// 16/36 for F(2×2, 3×3), 36/144 for F(4×4, 3×3).
///
/// Matrices (interpolation points 0, ±1 for F(2,3); 0, ±1, ±2, ∞ for F(4,3), as in the paper):
///
///     F(2,3): Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]
///             G  = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]          Aᵀ = [1 1 1 0; 0 1 −1 −1]
///     F(4,3): Bᵀ = [4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0;
///                   0 −2 −1 2 1 0; 0 2 −1 −2 1 0; 0 4 0 −5 0 1]
///             G  = [¼ 0 0; −⅙ −⅙ −⅙; −⅙ ⅙ −⅙; 1⁄24 1⁄12 ⅙; 1⁄24 −1⁄12 ⅙; 0 0 1]
///             Aᵀ = [1 1 1 1 1 0; 0 1 −1 2 −2 0; 0 1 1 4 4 0; 0 1 −1 8 −8 1]
///
/// Error growth (docs/ops.md): the transforms' entries bound how much float rounding in `V`, `U` and
/// the GEMM sums is amplified. F(2,3) has ‖Bᵀ‖∞ = 2, ‖G‖∞ = 1.5, ‖Aᵀ‖∞ = 3 (max row sums of
/// |entries|) and stays near the direct sum's error; F(4,3)'s ‖Bᵀ‖∞ = 10 and ‖Aᵀ‖∞ = 19 make its
/// error ≈ 10× larger in practice (bound: 450×).
public enum WinogradVariant: Int, Sendable, CaseIterable {
    /// F(2×2, 3×3): 4×4 input tiles, 16 transform positions.
    case f2 = 2
    /// F(4×4, 3×3): 6×6 input tiles, 36 transform positions.
    case f4 = 4

    /// Output tile side m.
    @inline(__always) public var m: Int { rawValue }
    /// Input tile side α = m + 2.
    @inline(__always) public var alpha: Int { rawValue + 2 }
}

public typealias WVec = SIMD8<Float>

/// `G` of F(m, 3) as α rows of 3 (Double: the filter transform runs once per weight, exactly enough).
func winogradG(_ v: WinogradVariant) -> [[Double]] {
    switch v {
    case .f2: return [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]]
    case .f4: return [[0.25, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                      [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]]
    }
}

/// `Bᵀ` applied to α values `p[0], p[s], …` in place of `q[0], q[t], …` (F(2,3)).
@inline(__always)
func winogradBT2(_ p: UnsafePointer<WVec>, _ s: Int, _ q: UnsafeMutablePointer<WVec>, _ t: Int) {
    let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s]
    q[0] = d0 - d2; q[t] = d1 + d2; q[2 * t] = d2 - d1; q[3 * t] = d1 - d3
}

/// `Bᵀ` of F(4,3) on 6 strided values.
@inline(__always)
func winogradBT4(_ p: UnsafePointer<WVec>, _ s: Int, _ q: UnsafeMutablePointer<WVec>, _ t: Int) {
    let d0 = p[0], d1 = p[s], d2 = p[2 * s], d3 = p[3 * s], d4 = p[4 * s], d5 = p[5 * s]
    let four: Float = 4, five: Float = 5, two: Float = 2
    q[0] = four * d0 - five * d2 + d4
    let a = d4 - four * d2, b = d3 - four * d1            // rows 1, 2: d4 − 4d2 ± (d3 − 4d1)
    q[t] = a + b; q[2 * t] = a - b
    let c = d4 - d2, e = two * (d3 - d1)                  // rows 3, 4: d4 − d2 ± 2(d3 − d1)
    q[3 * t] = c + e; q[4 * t] = c - e
    q[5 * t] = four * d1 - five * d3 + d5
}

/// `Aᵀ` of F(2,3): 4 strided values → 2.
@inline(__always)
func winogradAT2(_ p: UnsafePointer<WVec>, _ s: Int, _ q: UnsafeMutablePointer<WVec>, _ t: Int) {
    let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s]
    q[0] = m0 + m1 + m2; q[t] = m1 - m2 - m3
}

/// `Aᵀ` of F(4,3): 6 strided values → 4.
@inline(__always)
func winogradAT4(_ p: UnsafePointer<WVec>, _ s: Int, _ q: UnsafeMutablePointer<WVec>, _ t: Int) {
    let m0 = p[0], m1 = p[s], m2 = p[2 * s], m3 = p[3 * s], m4 = p[4 * s], m5 = p[5 * s]
    let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
    let two: Float = 2, four: Float = 4, eight: Float = 8
    q[0] = m0 + a + c; q[t] = b + two * d; q[2 * t] = a + four * c; q[3 * t] = b + eight * d + m5
}

/// A 3×3 filter bank transformed for one variant: `u[ξ·Cin·Cout + c·Cout + o] = (G g_{o,c} Gᵀ)[ξ]`,
/// i.e. α² row-major `[Cin, Cout]` matrices, the right-hand sides of the α² GEMMs.
public struct WinogradFilter: @unchecked Sendable {
    public let variant: WinogradVariant
    public let cin: Int, cout: Int
    public let u: Tensor
    /// `U_ξ` packed for the row-invariant GEMM, one per transform position.
    public let panels: [RowInvariantGEMM.Packed]

    /// From an OHWI weight `[Cout, 3, 3, Cin]`. With `flipTransposed` the bank is that of the input
    /// gradient's convolution, `W'[c, ki, kj, o] = W[o, 2 − ki, 2 − kj, c]` (Cin and Cout swap).
    public init(weight: UnsafePointer<Float>, cout: Int, cin: Int, variant: WinogradVariant,
                flipTransposed: Bool = false) {
        self.variant = variant
        let (inC, outC) = flipTransposed ? (cout, cin) : (cin, cout)
        self.cin = inC; self.cout = outC
        let a = variant.alpha, gm = winogradG(variant)
        let u = Tensor(uninitializedShape: [a * a, inC, outC])
        let plane = inC * outC
        var g = [Double](repeating: 0, count: 9), t = [Double](repeating: 0, count: a * 3)
        for o in 0..<cout {
            for c in 0..<cin {
                for ki in 0..<3 { for kj in 0..<3 {
                    let v = Double(weight[((o * 3 + ki) * 3 + kj) * cin + c])
                    if flipTransposed { g[(2 - ki) * 3 + (2 - kj)] = v } else { g[ki * 3 + kj] = v }
                } }
                // t = G g (α×3), then U = t Gᵀ (α×α).
                for i in 0..<a { for j in 0..<3 {
                    t[i * 3 + j] = gm[i][0] * g[j] + gm[i][1] * g[3 + j] + gm[i][2] * g[6 + j]
                } }
                let (row, col) = flipTransposed ? (o, c) : (c, o)   // the bank's (input, output) channel
                for i in 0..<a { for j in 0..<a {
                    let s = t[i * 3] * gm[j][0] + t[i * 3 + 1] * gm[j][1] + t[i * 3 + 2] * gm[j][2]
                    u.ptr[(i * a + j) * plane + row * outC + col] = Float(s)
                } }
            }
        }
        self.u = u
        panels = (0..<(a * a)).map { RowInvariantGEMM.Packed(u.ptr + $0 * plane, k: inC, n: outC, ldb: outC) }
    }
}

/// `max(v, 0)` lane by lane as one compare and blend: the standard library's generic `pointwiseMax`
/// is not inlined here and runs lane by lane (≈ 74 instructions per vector, measured with callgrind).
@inline(__always)
func reluVec(_ v: WVec) -> WVec { v.replacing(with: 0, where: v .< 0) }

/// Loads `count ≤ 8` floats (zeros beyond) into a vector.
@inline(__always)
func loadVec(_ p: UnsafePointer<Float>, _ count: Int) -> WVec {
    if count == 8 { return UnsafeRawPointer(p).loadUnaligned(as: WVec.self) }
    var v = WVec(repeating: 0)
    for i in 0..<count { v[i] = p[i] }
    return v
}

/// Stores the first `count ≤ 8` lanes of `v`.
@inline(__always)
func storeVec(_ v: WVec, _ p: UnsafeMutablePointer<Float>, _ count: Int) {
    if count == 8 { UnsafeMutableRawPointer(p).storeBytes(of: v, as: WVec.self); return }
    for i in 0..<count { p[i] = v[i] }
}

/// `res = Bᵀ d B` for one α×α tile of channel vectors (row-major, `tmp` α² scratch); the strides are
/// constants per variant so the transforms unroll.
@inline(__always)
func winogradInputTile(_ v: WinogradVariant, _ d: UnsafeMutablePointer<WVec>, _ tmp: UnsafeMutablePointer<WVec>,
                       _ res: UnsafeMutablePointer<WVec>) {
    switch v {
    case .f2:
        for j in 0..<4 { winogradBT2(d + j, 4, tmp + j, 4) }          // Bᵀ d (columns)
        for i in 0..<4 { winogradBT2(tmp + i * 4, 1, res + i * 4, 1) }  // (Bᵀ d) B (rows)
    case .f4:
        for j in 0..<6 { winogradBT4(d + j, 6, tmp + j, 6) }
        for i in 0..<6 { winogradBT4(tmp + i * 6, 1, res + i * 6, 1) }
    }
}

/// `res = Aᵀ M A` (m×m, row-major) for one α×α tile of GEMM outputs.
@inline(__always)
func winogradOutputTile(_ v: WinogradVariant, _ mm: UnsafeMutablePointer<WVec>, _ tmp: UnsafeMutablePointer<WVec>,
                        _ res: UnsafeMutablePointer<WVec>) {
    switch v {
    case .f2:
        for j in 0..<4 { winogradAT2(mm + j, 4, tmp + j, 4) }          // Aᵀ M (2×4)
        for i in 0..<2 { winogradAT2(tmp + i * 4, 1, res + i * 2, 1) }  // (Aᵀ M) A (2×2)
    case .f4:
        for j in 0..<6 { winogradAT4(mm + j, 6, tmp + j, 6) }
        for i in 0..<4 { winogradAT4(tmp + i * 6, 1, res + i * 4, 1) }
    }
}
