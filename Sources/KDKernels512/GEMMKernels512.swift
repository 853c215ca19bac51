// The AVX-512 register blocks of KDTensor's GEMMs, in a module of its own: this module alone is compiled for
// AVX-512 (`-target-cpu skylake-avx512`, Package.swift), and KDTensor calls it only where the CPU has AVX-512
// F, CD, BW, DQ and VL (`CPUFeatures.hasAVX512`), so one binary runs on AVX2 machines too.
//
// `rowInvariantKernel12x32` is `RowInvariantGEMM`'s: each element of `C` is the same chain of fused
// multiply-adds as in the AVX2 block (`kernel6x16`),
//
//     C[i, j] = fma(A[i, K−1], B[K−1, j], … fma(A[i, 0], B[0, j], c₀) …),
//
// only 16 lanes wide instead of 8: the two blocks give the same bits, which `RowInvariantGEMMTests` checks.
// `transposedAKernel12x32` is the weight gradients' (`weightGradientGEMM`).

/// Sixteen Float lanes: one AVX-512 register.
public typealias V16 = SIMD16<Float>

@inline(__always)
func load16(_ p: UnsafePointer<Float>) -> V16 { UnsafeRawPointer(p).loadUnaligned(as: V16.self) }

@inline(__always)
func store16(_ v: V16, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V16.self) }

/// `C[12, 32] (+)= A[12, depth] · B[depth, 32]`: 24 accumulators of 16 lanes (of the 32 registers), one broadcast
/// of A per row and k, two vectors of B per k — the BLIS SkylakeX shape (12 × 32) in row-major terms.
/// `a` row-major with `lda`; `b` two packed panels of 16 columns (`panelStride` floats apart), `depth` rows of
/// 16 floats each; `c` row-major with `ldc`, read first when `startFromC`.
@inline(never)
public func rowInvariantKernel12x32(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                                    _ panelStride: Int, _ depth: Int, _ c: UnsafeMutablePointer<Float>,
                                    _ ldc: Int, _ startFromC: Bool) {
    var c0a = V16(), c0b = V16(), c1a = V16(), c1b = V16(), c2a = V16(), c2b = V16(), c3a = V16(), c3b = V16()
    var c4a = V16(), c4b = V16(), c5a = V16(), c5b = V16(), c6a = V16(), c6b = V16(), c7a = V16(), c7b = V16()
    var c8a = V16(), c8b = V16(), c9a = V16(), c9b = V16(), c10a = V16(), c10b = V16(), c11a = V16(), c11b = V16()
    if startFromC {
        c0a = load16(c + 0 * ldc); c0b = load16(c + 0 * ldc + 16)
        c1a = load16(c + 1 * ldc); c1b = load16(c + 1 * ldc + 16)
        c2a = load16(c + 2 * ldc); c2b = load16(c + 2 * ldc + 16)
        c3a = load16(c + 3 * ldc); c3b = load16(c + 3 * ldc + 16)
        c4a = load16(c + 4 * ldc); c4b = load16(c + 4 * ldc + 16)
        c5a = load16(c + 5 * ldc); c5b = load16(c + 5 * ldc + 16)
        c6a = load16(c + 6 * ldc); c6b = load16(c + 6 * ldc + 16)
        c7a = load16(c + 7 * ldc); c7b = load16(c + 7 * ldc + 16)
        c8a = load16(c + 8 * ldc); c8b = load16(c + 8 * ldc + 16)
        c9a = load16(c + 9 * ldc); c9b = load16(c + 9 * ldc + 16)
        c10a = load16(c + 10 * ldc); c10b = load16(c + 10 * ldc + 16)
        c11a = load16(c + 11 * ldc); c11b = load16(c + 11 * ldc + 16)
    }
    let a0 = a + 0 * lda, a1 = a + 1 * lda, a2 = a + 2 * lda, a3 = a + 3 * lda, a4 = a + 4 * lda, a5 = a + 5 * lda
    let a6 = a + 6 * lda, a7 = a + 7 * lda, a8 = a + 8 * lda, a9 = a + 9 * lda, a10 = a + 10 * lda, a11 = a + 11 * lda
    var p0 = b, p1 = b + panelStride
    for kk in 0..<depth {
        let b0 = load16(p0), b1 = load16(p1)
        let x0 = V16(repeating: a0[kk]); c0a = c0a.addingProduct(x0, b0); c0b = c0b.addingProduct(x0, b1)
        let x1 = V16(repeating: a1[kk]); c1a = c1a.addingProduct(x1, b0); c1b = c1b.addingProduct(x1, b1)
        let x2 = V16(repeating: a2[kk]); c2a = c2a.addingProduct(x2, b0); c2b = c2b.addingProduct(x2, b1)
        let x3 = V16(repeating: a3[kk]); c3a = c3a.addingProduct(x3, b0); c3b = c3b.addingProduct(x3, b1)
        let x4 = V16(repeating: a4[kk]); c4a = c4a.addingProduct(x4, b0); c4b = c4b.addingProduct(x4, b1)
        let x5 = V16(repeating: a5[kk]); c5a = c5a.addingProduct(x5, b0); c5b = c5b.addingProduct(x5, b1)
        let x6 = V16(repeating: a6[kk]); c6a = c6a.addingProduct(x6, b0); c6b = c6b.addingProduct(x6, b1)
        let x7 = V16(repeating: a7[kk]); c7a = c7a.addingProduct(x7, b0); c7b = c7b.addingProduct(x7, b1)
        let x8 = V16(repeating: a8[kk]); c8a = c8a.addingProduct(x8, b0); c8b = c8b.addingProduct(x8, b1)
        let x9 = V16(repeating: a9[kk]); c9a = c9a.addingProduct(x9, b0); c9b = c9b.addingProduct(x9, b1)
        let x10 = V16(repeating: a10[kk]); c10a = c10a.addingProduct(x10, b0); c10b = c10b.addingProduct(x10, b1)
        let x11 = V16(repeating: a11[kk]); c11a = c11a.addingProduct(x11, b0); c11b = c11b.addingProduct(x11, b1)
        p0 += 16; p1 += 16
    }
    store16(c0a, c + 0 * ldc); store16(c0b, c + 0 * ldc + 16)
    store16(c1a, c + 1 * ldc); store16(c1b, c + 1 * ldc + 16)
    store16(c2a, c + 2 * ldc); store16(c2b, c + 2 * ldc + 16)
    store16(c3a, c + 3 * ldc); store16(c3b, c + 3 * ldc + 16)
    store16(c4a, c + 4 * ldc); store16(c4b, c + 4 * ldc + 16)
    store16(c5a, c + 5 * ldc); store16(c5b, c + 5 * ldc + 16)
    store16(c6a, c + 6 * ldc); store16(c6b, c + 6 * ldc + 16)
    store16(c7a, c + 7 * ldc); store16(c7b, c + 7 * ldc + 16)
    store16(c8a, c + 8 * ldc); store16(c8b, c + 8 * ldc + 16)
    store16(c9a, c + 9 * ldc); store16(c9b, c + 9 * ldc + 16)
    store16(c10a, c + 10 * ldc); store16(c10b, c + 10 * ldc + 16)
    store16(c11a, c + 11 * ldc); store16(c11b, c + 11 * ldc + 16)
}


/// `rowInvariantKernel12x32` for 4 rows (8 accumulators): the rows a 12-row blocking leaves over (a Winograd
/// chunk of 128 tiles is 10 × 12 + 2 × 4), each element the same chain.
@inline(never)
public func rowInvariantKernel4x32(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>,
                                   _ panelStride: Int, _ depth: Int, _ c: UnsafeMutablePointer<Float>,
                                   _ ldc: Int, _ startFromC: Bool) {
    var c0a = V16(), c0b = V16(), c1a = V16(), c1b = V16(), c2a = V16(), c2b = V16(), c3a = V16(), c3b = V16()
    if startFromC {
        c0a = load16(c + 0 * ldc); c0b = load16(c + 0 * ldc + 16)
        c1a = load16(c + 1 * ldc); c1b = load16(c + 1 * ldc + 16)
        c2a = load16(c + 2 * ldc); c2b = load16(c + 2 * ldc + 16)
        c3a = load16(c + 3 * ldc); c3b = load16(c + 3 * ldc + 16)
    }
    let a0 = a + 0 * lda, a1 = a + 1 * lda, a2 = a + 2 * lda, a3 = a + 3 * lda
    var p0 = b, p1 = b + panelStride
    for kk in 0..<depth {
        let b0 = load16(p0), b1 = load16(p1)
        let x0 = V16(repeating: a0[kk]); c0a = c0a.addingProduct(x0, b0); c0b = c0b.addingProduct(x0, b1)
        let x1 = V16(repeating: a1[kk]); c1a = c1a.addingProduct(x1, b0); c1b = c1b.addingProduct(x1, b1)
        let x2 = V16(repeating: a2[kk]); c2a = c2a.addingProduct(x2, b0); c2b = c2b.addingProduct(x2, b1)
        let x3 = V16(repeating: a3[kk]); c3a = c3a.addingProduct(x3, b0); c3b = c3b.addingProduct(x3, b1)
        p0 += 16; p1 += 16
    }
    store16(c0a, c + 0 * ldc); store16(c0b, c + 0 * ldc + 16)
    store16(c1a, c + 1 * ldc); store16(c1b, c + 1 * ldc + 16)
    store16(c2a, c + 2 * ldc); store16(c2b, c + 2 * ldc + 16)
    store16(c3a, c + 3 * ldc); store16(c3b, c + 3 * ldc + 16)
}

/// `C[12, 32] (+)= Aᵀ · B` over `depth` rows of A and B, both read in place: row kk of A holds the 12 values of
/// column kk of Aᵀ at `a + kk·lda` (a weight gradient's `dY` rows), row kk of B its 32 values at `b + kk·ldb`
/// (the im2col rows, or the transformed tiles). 24 accumulators as in `rowInvariantKernel12x32`, the broadcasts
/// from consecutive floats, started from zero; their sums are then added onto `c` (row-major, `ldc`) when
/// `startFromC`, or written. A sum over many K chunks is thus a sum of chunk sums, whose rounding error grows
/// with the chunk length plus the chunk count instead of with K (measured: continuing one chain through C over
/// 65 536 pixels left dW 10× less accurate than `cblas_sgemm`).
@inline(never)
public func transposedAKernel12x32(_ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                   _ depth: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int,
                                   _ startFromC: Bool) {
    var c0a = V16(), c0b = V16(), c1a = V16(), c1b = V16(), c2a = V16(), c2b = V16(), c3a = V16(), c3b = V16()
    var c4a = V16(), c4b = V16(), c5a = V16(), c5b = V16(), c6a = V16(), c6b = V16(), c7a = V16(), c7b = V16()
    var c8a = V16(), c8b = V16(), c9a = V16(), c9b = V16(), c10a = V16(), c10b = V16(), c11a = V16(), c11b = V16()
    /// The block's sum onto C (or in place of it): two-level summation, as `cblas_sgemm` does per K block.
    @inline(__always) func add(_ v: V16, _ p: UnsafeMutablePointer<Float>) {
        store16(startFromC ? load16(p) + v : v, p)
    }
    var ap = a, bp = b
    for _ in 0..<depth {
        let b0 = load16(bp), b1 = load16(bp + 16)
        let x0 = V16(repeating: ap[0]); c0a = c0a.addingProduct(x0, b0); c0b = c0b.addingProduct(x0, b1)
        let x1 = V16(repeating: ap[1]); c1a = c1a.addingProduct(x1, b0); c1b = c1b.addingProduct(x1, b1)
        let x2 = V16(repeating: ap[2]); c2a = c2a.addingProduct(x2, b0); c2b = c2b.addingProduct(x2, b1)
        let x3 = V16(repeating: ap[3]); c3a = c3a.addingProduct(x3, b0); c3b = c3b.addingProduct(x3, b1)
        let x4 = V16(repeating: ap[4]); c4a = c4a.addingProduct(x4, b0); c4b = c4b.addingProduct(x4, b1)
        let x5 = V16(repeating: ap[5]); c5a = c5a.addingProduct(x5, b0); c5b = c5b.addingProduct(x5, b1)
        let x6 = V16(repeating: ap[6]); c6a = c6a.addingProduct(x6, b0); c6b = c6b.addingProduct(x6, b1)
        let x7 = V16(repeating: ap[7]); c7a = c7a.addingProduct(x7, b0); c7b = c7b.addingProduct(x7, b1)
        let x8 = V16(repeating: ap[8]); c8a = c8a.addingProduct(x8, b0); c8b = c8b.addingProduct(x8, b1)
        let x9 = V16(repeating: ap[9]); c9a = c9a.addingProduct(x9, b0); c9b = c9b.addingProduct(x9, b1)
        let x10 = V16(repeating: ap[10]); c10a = c10a.addingProduct(x10, b0); c10b = c10b.addingProduct(x10, b1)
        let x11 = V16(repeating: ap[11]); c11a = c11a.addingProduct(x11, b0); c11b = c11b.addingProduct(x11, b1)
        ap += lda; bp += ldb
    }
    add(c0a, c + 0 * ldc); add(c0b, c + 0 * ldc + 16)
    add(c1a, c + 1 * ldc); add(c1b, c + 1 * ldc + 16)
    add(c2a, c + 2 * ldc); add(c2b, c + 2 * ldc + 16)
    add(c3a, c + 3 * ldc); add(c3b, c + 3 * ldc + 16)
    add(c4a, c + 4 * ldc); add(c4b, c + 4 * ldc + 16)
    add(c5a, c + 5 * ldc); add(c5b, c + 5 * ldc + 16)
    add(c6a, c + 6 * ldc); add(c6b, c + 6 * ldc + 16)
    add(c7a, c + 7 * ldc); add(c7b, c + 7 * ldc + 16)
    add(c8a, c + 8 * ldc); add(c8b, c + 8 * ldc + 16)
    add(c9a, c + 9 * ldc); add(c9b, c + 9 * ldc + 16)
    add(c10a, c + 10 * ldc); add(c10b, c + 10 * ldc + 16)
    add(c11a, c + 11 * ldc); add(c11b, c + 11 * ldc + 16)
}
