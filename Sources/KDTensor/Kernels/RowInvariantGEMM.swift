import KDKernels512

/// A GEMM whose every output element is one fixed sequence of fused multiply-adds,
///
///     C[i, j] = fma(A[i, K−1], B[K−1, j], … fma(A[i, 1], B[1, j], fma(A[i, 0], B[0, j], c₀)) …)
///
/// with `c₀ = C[i, j]` (accumulate) or 0, whatever the row count `m`, the row's position `i`, or the
/// rows computed beside it. OpenBLAS's `sgemm` does not promise that: it rounds a row differently
/// depending on its position in the call and the call's shape (measured with OpenBLAS 0.3.21 — a
/// sample's convolution output changes in the last bits with its batch mates), so a sample's forward
/// through it depends on which samples share its GEMM. Here it cannot (docs/ops.md, "Row-invariant
/// GEMM"): the teacher computed in any batch gives every sample the same bits.
///
/// B is packed once (`RowInvariantGEMM.Packed`: panels of 16 columns, zero-padded), A is read in place.
/// Register blocking 6 rows × 16 columns (12 eight-lane accumulators, the BLIS Haswell shape), or where the CPU
/// has AVX-512 (`wideKernel`) 12 rows × 32 columns (24 sixteen-lane accumulators, module KDKernels512), then
/// 4 × 32, with the 6 × 16 block for the rows and columns left over — the same chain per element either way, so
/// the same bits.
/// K in chunks of `kc` that continue each element's chain through C (exact: the accumulators are float32
/// either way), rows in blocks of `mc` so that the A block stays in L2.
public enum RowInvariantGEMM {
    public typealias V8 = SIMD8<Float>
    static let nr = 16, mr = 6
    public nonisolated(unsafe) static var kc = 256
    public nonisolated(unsafe) static var mc = 96
    /// The 12 × 32 AVX-512 block where the CPU has it (`CPUFeatures.hasAVX512`); tests and benchmarks may turn
    /// it off to compare.
    public nonisolated(unsafe) static var wideKernel = CPUFeatures.hasAVX512

    /// B `[k, n]` as ⌈n/16⌉ panels, each `k` rows of 16 floats (columns past `n` are 0).
    public struct Packed: @unchecked Sendable {
        public let k: Int, n: Int
        let panels: Tensor
        var panelCount: Int { (n + 15) / 16 }

        /// Packs B, given row-major `[k, n]` (`ldb` ≥ n), or with `transposed` as row-major `[n, k]`
        /// (`ldb` ≥ k: a weight `[Cout, K]` used as `Wᵀ`).
        public init(_ b: UnsafePointer<Float>, k: Int, n: Int, ldb: Int, transposed: Bool = false) {
            self.k = k; self.n = n
            panels = Tensor(shape: [Packed.floats(k: k, n: n)], repeating: 0)
            let p = panels.ptr
            // Reads B along its rows (contiguous) in both layouts.
            if transposed {
                for j in 0..<n {
                    let dst = p + Packed.offset(row: 0, column: j, k: k), src = b + j * ldb
                    for kk in 0..<k { dst[kk * 16] = src[kk] }
                }
            } else {
                for kk in 0..<k {
                    let src = b + kk * ldb
                    for j in 0..<n { p[Packed.offset(row: kk, column: j, k: k)] = src[j] }
                }
            }
        }

        /// Panels written by their maker (`WinogradFilter` writes its transforms straight into them): `panels`
        /// holds `⌈n/16⌉·k·16` floats, `B[kk, j]` at `offset(row: kk, column: j, k: k)`, 0 past column `n`.
        init(k: Int, n: Int, panels: Tensor) {
            precondition(panels.count == Packed.floats(k: k, n: n), "panels of \(panels.count) floats")
            self.k = k; self.n = n; self.panels = panels
        }

        /// The panels' size in floats: ⌈n/16⌉ panels (at least one) of `k` rows of 16.
        static func floats(k: Int, n: Int) -> Int { max(1, (n + 15) / 16) * k * 16 }

        /// Where `B[kk, j]` sits in the panels: panel `j / 16`, row `kk`, lane `j % 16`.
        @inline(__always) static func offset(row kk: Int, column j: Int, k: Int) -> Int {
            (j / 16) * k * 16 + kk * 16 + j % 16
        }

        /// `B[kk, j]` (tests).
        func element(row kk: Int, column j: Int) -> Float { panels.ptr[Packed.offset(row: kk, column: j, k: k)] }
    }

    /// `C[m, n] (+)= A[m, k] · B`, A row-major with leading dimension `lda`, C with `ldc`.
    public static func multiply(m: Int, a: UnsafePointer<Float>, lda: Int, b: Packed,
                                c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool) {
        let k = b.k, n = b.n
        guard m > 0, n > 0 else { return }
        if k == 0 {
            if !accumulate { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let panels = b.panels.ptr, wide = wideKernel
        var tile = [Float](repeating: 0, count: mr * nr)
        for i0 in stride(from: 0, to: m, by: mc) {
            let rows = min(mc, m - i0)
            for k0 in stride(from: 0, to: k, by: kc) {
                let depth = min(kc, k - k0)
                let startFromC = accumulate || k0 > 0
                /// Rows `from..<rows` of the block against panel `p` by the 6 × 16 block (and the edge).
                func narrow(_ p: Int, from: Int) {
                    let panel = panels + p * k * 16 + k0 * 16
                    let j0 = p * 16, cols = min(16, n - j0)
                    for r0 in stride(from: from, to: rows, by: mr) {
                        let r = min(mr, rows - r0)
                        let aRow = a + (i0 + r0) * lda + k0, cRow = c + (i0 + r0) * ldc + j0
                        if r == mr && cols == 16 {
                            kernel6x16(aRow, lda, panel, depth, cRow, ldc, startFromC)
                        } else {
                            tile.withUnsafeMutableBufferPointer { t in
                                edge(aRow, lda, panel, depth, rows: r, cols: cols, cRow, ldc, startFromC,
                                     t.baseAddress!)
                            }
                        }
                    }
                }
                var p = 0
                while p < b.panelCount {
                    guard wide, n - p * 16 >= 32 else { narrow(p, from: 0); p += 1; continue }
                    // Two full panels: 12 × 32 blocks, 4 × 32 blocks, then the rows left over panel by panel.
                    let by12 = rows - rows % 12, by4 = rows - rows % 4, panel = panels + p * k * 16 + k0 * 16
                    for r0 in stride(from: 0, to: by12, by: 12) {
                        rowInvariantKernel12x32(a + (i0 + r0) * lda + k0, lda, panel, k * 16, depth,
                                                c + (i0 + r0) * ldc + p * 16, ldc, startFromC)
                    }
                    for r0 in stride(from: by12, to: by4, by: 4) {
                        rowInvariantKernel4x32(a + (i0 + r0) * lda + k0, lda, panel, k * 16, depth,
                                               c + (i0 + r0) * ldc + p * 16, ldc, startFromC)
                    }
                    if by4 < rows { narrow(p, from: by4); narrow(p + 1, from: by4) }
                    p += 2
                }
            }
        }
    }

    /// The 6×16 block: 12 accumulators, one broadcast of A per row and k, two vectors of B per k.
    @inline(__always)
    static func kernel6x16(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ depth: Int,
                           _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ startFromC: Bool) {
        func store(_ v: V8, _ p: UnsafeMutablePointer<Float>) { storeVec(v, p, 8) }
        var c00 = V8(), c01 = V8(), c10 = V8(), c11 = V8(), c20 = V8(), c21 = V8()
        var c30 = V8(), c31 = V8(), c40 = V8(), c41 = V8(), c50 = V8(), c51 = V8()
        if startFromC {
            c00 = loadVec8(c); c01 = loadVec8(c + 8)
            c10 = loadVec8(c + ldc); c11 = loadVec8(c + ldc + 8)
            c20 = loadVec8(c + 2 * ldc); c21 = loadVec8(c + 2 * ldc + 8)
            c30 = loadVec8(c + 3 * ldc); c31 = loadVec8(c + 3 * ldc + 8)
            c40 = loadVec8(c + 4 * ldc); c41 = loadVec8(c + 4 * ldc + 8)
            c50 = loadVec8(c + 5 * ldc); c51 = loadVec8(c + 5 * ldc + 8)
        }
        let a0 = a, a1 = a + lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
        var bp = b
        for kk in 0..<depth {
            let b0 = loadVec8(bp), b1 = loadVec8(bp + 8)
            var x = V8(repeating: a0[kk]); c00 = c00.addingProduct(x, b0); c01 = c01.addingProduct(x, b1)
            x = V8(repeating: a1[kk]); c10 = c10.addingProduct(x, b0); c11 = c11.addingProduct(x, b1)
            x = V8(repeating: a2[kk]); c20 = c20.addingProduct(x, b0); c21 = c21.addingProduct(x, b1)
            x = V8(repeating: a3[kk]); c30 = c30.addingProduct(x, b0); c31 = c31.addingProduct(x, b1)
            x = V8(repeating: a4[kk]); c40 = c40.addingProduct(x, b0); c41 = c41.addingProduct(x, b1)
            x = V8(repeating: a5[kk]); c50 = c50.addingProduct(x, b0); c51 = c51.addingProduct(x, b1)
            bp += 16
        }
        store(c00, c); store(c01, c + 8); store(c10, c + ldc); store(c11, c + ldc + 8)
        store(c20, c + 2 * ldc); store(c21, c + 2 * ldc + 8); store(c30, c + 3 * ldc); store(c31, c + 3 * ldc + 8)
        store(c40, c + 4 * ldc); store(c41, c + 4 * ldc + 8); store(c50, c + 5 * ldc); store(c51, c + 5 * ldc + 8)
    }

    /// Fewer than 6 rows or 16 columns: the same chain per element, one row at a time through a
    /// 16-wide tile (`tile`: `mr · nr` scratch), then the valid columns are copied.
    static func edge(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ depth: Int, rows: Int,
                     cols: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ startFromC: Bool,
                     _ tile: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let t = tile + r * nr
            t.update(repeating: 0, count: nr)
            if startFromC { t.update(from: c + r * ldc, count: cols) }
            var c0 = loadVec8(t), c1 = loadVec8(t + 8)
            let ar = a + r * lda
            var bp = b
            for kk in 0..<depth {
                let x = V8(repeating: ar[kk])
                c0 = c0.addingProduct(x, loadVec8(bp)); c1 = c1.addingProduct(x, loadVec8(bp + 8))
                bp += 16
            }
            storeVec(c0, t, 8); storeVec(c1, t + 8, 8)
            (c + r * ldc).update(from: t, count: cols)
        }
    }
}

/// `C[m, n] (+)= A[m, k] · op(B)` by `RowInvariantGEMM` with B packed for this call (`op(B) = Bᵀ` when
/// `transB`, B then `[n, k]`): the drop-in for a `sgemm` whose rows are samples' rows (a layer's
/// forward, its input gradient), so that a sample's result does not depend on the rows beside it.
public func rowInvariantGEMM(transB: Bool = false, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int, accumulate: Bool,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
    let packed = RowInvariantGEMM.Packed(b, k: k, n: n, ldb: ldb, transposed: transB)
    RowInvariantGEMM.multiply(m: m, a: a, lda: lda, b: packed, c: c, ldc: ldc, accumulate: accumulate)
}
