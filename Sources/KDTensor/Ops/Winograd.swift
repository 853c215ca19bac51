import KDKernels512

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
/// Eight Double lanes: the filter transform's arithmetic (rounded to Float once, at the end).
typealias WDVec = SIMD8<Double>

/// `G` of F(m, 3) applied to 3 strided Double vectors `p[0], p[s], p[2s]`, α results to `q[0], q[t], …`:
/// row k is `G[k][0]·g0 + G[k][1]·g1 + G[k][2]·g2` with the zero terms left out (G as in the header).
@inline(__always)
func winogradG(_ v: WinogradVariant, _ p: UnsafePointer<WDVec>, _ s: Int, _ q: UnsafeMutablePointer<WDVec>,
               _ t: Int) {
    let g0 = p[0], g1 = p[s], g2 = p[2 * s]
    switch v {
    case .f2:
        let h = 0.5
        q[0] = g0; q[t] = h * g0 + h * g1 + h * g2; q[2 * t] = h * g0 - h * g1 + h * g2; q[3 * t] = g2
    case .f4:
        let sixth = 1.0 / 6, twelfth = 1.0 / 12, twentyFourth = 1.0 / 24
        q[0] = 0.25 * g0
        q[t] = -sixth * g0 - sixth * g1 - sixth * g2
        q[2 * t] = -sixth * g0 + sixth * g1 - sixth * g2
        q[3 * t] = twentyFourth * g0 + twelfth * g1 + sixth * g2
        q[4 * t] = twentyFourth * g0 - twelfth * g1 + sixth * g2
        q[5 * t] = g2
    }
}

/// `Bᵀ` of F(2,3) on the 4 values of a column or row of an input tile.
@inline(__always)
func winogradBT2(_ d0: WVec, _ d1: WVec, _ d2: WVec, _ d3: WVec) -> (WVec, WVec, WVec, WVec) {
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
}

/// `Aᵀ` of F(2,3): 4 values → 2.
@inline(__always)
func winogradAT2(_ m0: WVec, _ m1: WVec, _ m2: WVec, _ m3: WVec) -> (WVec, WVec) {
    (m0 + m1 + m2, m1 - m2 - m3)
}

/// A 3×3 filter bank transformed for one variant: `U_ξ[c, o] = (G g_{o,c} Gᵀ)[ξ]`, α² `[Cin, Cout]`
/// matrices, the right-hand sides of the α² GEMMs, written straight into the row-invariant GEMM's panels.
public struct WinogradFilter: @unchecked Sendable {
    public let variant: WinogradVariant
    public let cin: Int, cout: Int
    /// `U_ξ` packed for the row-invariant GEMM, one per transform position.
    public let panels: [RowInvariantGEMM.Packed]

    /// From an OHWI weight `[Cout, 3, 3, Cin]`. With `flipTransposed` the bank is that of the input
    /// gradient's convolution, `W'[c, ki, kj, o] = W[o, 2 − ki, 2 − kj, c]` (Cin and Cout swap).
    ///
    /// `G g Gᵀ` runs in Double on 8 of the bank's output channels at once (one bank input channel, the
    /// 3×3 filters gathered into 9 vectors), columns `t = G g` then rows `t Gᵀ`, each value rounded to
    /// Float once — the same operations, in the same order, as the scalar product of the matrices. Both
    /// banks read their 3×3 filters as vector loads from a `[bank input channel, 3, 3, bank output channel]`
    /// array: the flipped bank's is the weight itself, the unflipped bank's the weight transposed first
    /// (`transposedFilters`, 8×8 blocks). The loops take 16 output channels (one panel) at a time and, inside,
    /// the bank's input channels in order, so each panel row is written whole. A student makes both banks of
    /// each F(4×4) layer every step (`kdgraph bench --ops`, `filter_bank_ms` and `flipped_bank_ms`).
    public init(weight: UnsafePointer<Float>, cout: Int, cin: Int, variant: WinogradVariant,
                flipTransposed: Bool = false) {
        self.variant = variant
        let (inC, outC) = flipTransposed ? (cout, cin) : (cin, cout)
        self.cin = inC; self.cout = outC
        let a = variant.alpha, a2 = a * a
        let panelFloats = RowInvariantGEMM.Packed.floats(k: inC, n: outC)
        // Columns past `outC` must read as 0; full panels are written whole.
        let storage = (0..<a2).map { _ in
            outC % 16 == 0 ? Tensor(uninitializedShape: [panelFloats]) : Tensor(shape: [panelFloats], repeating: 0)
        }
        let out = storage.map { $0.ptr }
        let scratch = UnsafeMutablePointer<WDVec>.allocate(capacity: 9 + 3 * a + a2)
        defer { scratch.deallocate() }
        let g = scratch, t = scratch + 9, res = scratch + 9 + 3 * a
        // `filters[row, ki, kj, col]`: the bank's input channel `row`, tap (ki, kj), output channel `col`.
        let transposed = flipTransposed ? nil : WinogradFilter.transposedFilters(weight, cout: cout, cin: cin)
        let filters = transposed.map { UnsafePointer($0.ptr) } ?? weight
        for panel0 in stride(from: 0, to: outC, by: 16) {          // one panel: 16 of the bank's output channels
            for row in 0..<inC {                                    // the bank's input channel
                for col0 in stride(from: panel0, to: min(panel0 + 16, outC), by: 8) {   // 8 output channels
                    let cnt = min(8, outC - col0)
                    for ki in 0..<3 { for kj in 0..<3 {
                        // Flipped: W[o = row, 2 − ki, 2 − kj, c = col0 + l]; else W[o = col0 + l, ki, kj, c = row].
                        let (fi, fj) = flipTransposed ? (2 - ki, 2 - kj) : (ki, kj)
                        g[ki * 3 + kj] = WDVec(loadVec(filters + ((row * 3 + fi) * 3 + fj) * outC + col0, cnt))
                    } }
                    for j in 0..<3 { winogradG(variant, g + j, 3, t + j, 3) }          // t = G g (α×3)
                    for i in 0..<a { winogradG(variant, t + i * 3, 1, res + i * a, 1) }  // U = t Gᵀ (α×α)
                    let at = RowInvariantGEMM.Packed.offset(row: row, column: col0, k: inC)
                    for xi in 0..<a2 { storeVec(WVec(res[xi]), out[xi] + at, cnt) }
                }
            }
        }
        panels = storage.map { RowInvariantGEMM.Packed(k: inC, n: outC, panels: $0) }
    }

    /// `T[c, ki, kj, o] = W[o, ki, kj, c]` for an OHWI weight `W` `[cout, 3, 3, cin]`: per tap a `[cout, cin]`
    /// transpose, in 8×8 blocks (each block's reads and writes eight cache lines).
    static func transposedFilters(_ weight: UnsafePointer<Float>, cout: Int, cin: Int) -> Tensor {
        let out = Tensor(uninitializedShape: [cin, 3, 3, cout]), t = out.ptr
        for o0 in stride(from: 0, to: cout, by: 8) {
            let o1 = min(cout, o0 + 8)
            for c0 in stride(from: 0, to: cin, by: 8) {
                let c1 = min(cin, c0 + 8)
                for k in 0..<9 {
                    for o in o0..<o1 {
                        let src = weight + (o * 9 + k) * cin
                        for c in c0..<c1 { t[(c * 9 + k) * cout + o] = src[c] }
                    }
                }
            }
        }
        return out
    }

    /// `U_ξ[row, col]` (tests).
    func element(xi: Int, row: Int, col: Int) -> Float { panels[xi].element(row: row, column: col) }
}

/// `max(v, 0)` lane by lane as one compare and blend: the standard library's generic `pointwiseMax`
/// is not inlined here and runs lane by lane (≈ 74 instructions per vector, measured with callgrind).
/// A NaN lane stays NaN (`NaN < 0` is false), as PyTorch's ReLU.
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

/// Unaligned load of 8 floats.
@inline(__always)
func loadVec8(_ p: UnsafePointer<Float>) -> WVec { UnsafeRawPointer(p).loadUnaligned(as: WVec.self) }

/// `V = Bᵀ d B` of one α×α tile of channel vectors: `d[i][j]` is the 8 floats at `src + i·rs + j·cs`,
/// `V[ξ]` goes to the first `cnt` lanes at `dst + ξ·xs`. Columns `Bᵀ d` are loaded straight from `src`
/// into `tmp` (α² scratch), rows `(Bᵀ d) B` from `tmp` straight to `dst`. F(4×4) is KDKernels512's
/// `winograd4InputTile`, the one definition its 16-lane transforms also run.
@inline(__always)
func winogradInputTile(_ v: WinogradVariant, _ src: UnsafePointer<Float>, _ rs: Int, _ cs: Int,
                       _ tmp: UnsafeMutablePointer<WVec>, _ dst: UnsafeMutablePointer<Float>, _ xs: Int,
                       _ cnt: Int) {
    switch v {
    case .f2:
        for j in 0..<4 {
            let p = src + j * cs
            let r = winogradBT2(loadVec8(p), loadVec8(p + rs), loadVec8(p + 2 * rs), loadVec8(p + 3 * rs))
            tmp[j] = r.0; tmp[4 + j] = r.1; tmp[8 + j] = r.2; tmp[12 + j] = r.3
        }
        for i in 0..<4 {
            let q = tmp + 4 * i, o = dst + 4 * i * xs
            let r = winogradBT2(q[0], q[1], q[2], q[3])
            storeVec(r.0, o, cnt); storeVec(r.1, o + xs, cnt); storeVec(r.2, o + 2 * xs, cnt)
            storeVec(r.3, o + 3 * xs, cnt)
        }
    case .f4:
        winograd4InputTile(src, rs, cs, tmp, dst, xs) { storeVec($0, $1, cnt) }
    }
}

/// `Y = Aᵀ M A` of one tile: `M[ξ]` is the first `cnt` lanes at `src + ξ·xs` (zeros beyond), columns
/// `Aᵀ M` go to `tmp` (m×α), and each of the first `hi` rows of `(Aᵀ M) A` is handed on as
/// `emit(i, j, Y[i][j])`, j < m. F(4×4) is KDKernels512's `winograd4OutputTile`.
@inline(__always)
func winogradOutputTile(_ v: WinogradVariant, _ src: UnsafePointer<Float>, _ xs: Int, _ cnt: Int,
                        _ tmp: UnsafeMutablePointer<WVec>, hi: Int, _ emit: (Int, Int, WVec) -> Void) {
    switch v {
    case .f2:
        for j in 0..<4 {
            let p = src + j * xs
            let r = winogradAT2(loadVec(p, cnt), loadVec(p + 4 * xs, cnt), loadVec(p + 8 * xs, cnt),
                                loadVec(p + 12 * xs, cnt))
            tmp[j] = r.0; tmp[4 + j] = r.1
        }
        for i in 0..<hi {
            let q = tmp + 4 * i
            let r = winogradAT2(q[0], q[1], q[2], q[3])
            emit(i, 0, r.0); emit(i, 1, r.1)
        }
    case .f4:
        winograd4OutputTile(src, xs, tmp, hi: hi, load: { loadVec($0, cnt) }, emit: emit)
    }
}
