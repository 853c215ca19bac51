// The transforms of KDTensor's strided Winograd convolution (docs/ops.md, "Strided Winograd convolution"): a
// 3×3 stride-2 convolution with padding 1 as F(4×4, 2×2) over the input's four phases (space-to-depth).
// Output row i reads input rows 2i − 1, 2i, 2i + 1: the even row 2i (phase 0) through tap 1, and the odd rows
// 2(i − 1) + 1 and 2i + 1 (phase 1) through taps 0 and 2. Per phase that is a 2-tap correlation over the
// phase's rows r − 1, r, so a 4×4 output tile reads, per phase pair (p, q), the 5×5 input values
// `x[8·ti − 2 + p + 2u, 8·tj − 2 + q + 2v]` (u, v < 5) and the GEMMs' inner size is 4·Cin.
//
// F(4, 2) with the interpolation points 0, ±1, 2, ∞:
//
//     Bᵀ = [2 −1 −2 1 0; 0 −2 −1 1 0; 0 2 −3 1 0; 0 −1 0 1 0; 0 2 −1 −2 1]
//     G  = [½ 0; −½ −½; −⅙ ⅙; ⅙ ⅓; 0 1]
//     Aᵀ = [1 1 1 1 0; 0 1 −1 2 0; 0 1 1 4 0; 0 1 −1 8 1]
//
// Each transform loop is defined once, generic over the vector: KDTensor runs it eight channels at a time
// (`SIMD8<Float>`, specialised there for AVX2), the `…16` entry points below sixteen at a time (specialised here
// for AVX-512). The same operations lane by lane, so the same bits (`StridedWinogradTests`).

/// `Bᵀ` of F(4,2) on 5 values, sharing `e = d3 − d1` (row 3).
@inlinable @inline(__always)
public func winogradBT42<V: SIMD>(_ d0: V, _ d1: V, _ d2: V, _ d3: V, _ d4: V) -> (V, V, V, V, V)
    where V.Scalar == Float {
    let two: Float = 2, three: Float = 3
    let e = d3 - d1
    return (two * (d0 - d2) + e, e - d1 - d2, e + three * (d1 - d2), e, d4 - d2 - two * e)
}

/// `Aᵀ` of F(4,2): 5 values → 4, sharing `m1 ± m2`.
@inlinable @inline(__always)
public func winogradAT42<V: SIMD>(_ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V) -> (V, V, V, V)
    where V.Scalar == Float {
    let a = m1 + m2, b = m1 - m2
    let two: Float = 2, four: Float = 4, eight: Float = 8
    return (m0 + a + m3, b + two * m3, a + four * m3, b + eight * m3 + m4)
}

/// `V = Bᵀ d B` of one phase of a tile, `V.scalarCount` channels: `d[u][v]` is the vector at
/// `src + u·rs + v·cs`; columns `Bᵀ d` go to `tmp` (25 vectors), rows `(Bᵀ d) B` to `dst + ξ·xs`, ξ = 5k + l.
@inlinable @inline(__always)
public func stridedWinogradInputTile<V: SIMD>(_ src: UnsafePointer<Float>, _ rs: Int, _ cs: Int,
                                              _ tmp: UnsafeMutablePointer<V>, _ dst: UnsafeMutablePointer<Float>,
                                              _ xs: Int) where V.Scalar == Float {
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    for j in 0..<5 {
        let p = src + j * cs
        let r = winogradBT42(load(p), load(p + rs), load(p + 2 * rs), load(p + 3 * rs), load(p + 4 * rs))
        tmp[j] = r.0; tmp[5 + j] = r.1; tmp[10 + j] = r.2; tmp[15 + j] = r.3; tmp[20 + j] = r.4
    }
    stridedWinogradInputRows(tmp, dst, xs)
}

/// The rows `(Bᵀ d) B` of one phase of a tile from its columns `Bᵀ d` in `tmp` (25 vectors, row-major): value
/// ξ = 5k + l to `dst + ξ·xs`.
@inlinable @inline(__always)
public func stridedWinogradInputRows<V: SIMD>(_ tmp: UnsafeMutablePointer<V>, _ dst: UnsafeMutablePointer<Float>,
                                              _ xs: Int) where V.Scalar == Float {
    func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }
    for k in 0..<5 {
        let q = tmp + 5 * k, o = dst + 5 * k * xs
        let r = winogradBT42(q[0], q[1], q[2], q[3], q[4])
        store(r.0, o); store(r.1, o + xs); store(r.2, o + 2 * xs); store(r.3, o + 3 * xs); store(r.4, o + 4 * xs)
    }
}

/// `stridedWinogradInputTile` of a tile that reaches past the image (or the output gradient): `d[u][v]` is the
/// vector at `image + origin + u·rs + v·cs` for `u ∈ rows`, `v ∈ cols` and zero elsewhere, read in place
/// (`origin` may be negative: only the positions inside are formed); a column outside transforms to zeros,
/// written directly. The same bits as the tile gathered into zeros first.
@inlinable @inline(__always)
public func stridedWinogradBorderInputTile<V: SIMD>(_ image: UnsafePointer<Float>, _ origin: Int, _ rs: Int,
                                                    _ cs: Int, rows: Range<Int>, cols: Range<Int>,
                                                    _ tmp: UnsafeMutablePointer<V>, _ dst: UnsafeMutablePointer<Float>,
                                                    _ xs: Int) where V.Scalar == Float {
    for j in 0..<5 {
        guard cols.contains(j) else {
            tmp[j] = V(); tmp[5 + j] = V(); tmp[10 + j] = V(); tmp[15 + j] = V(); tmp[20 + j] = V()
            continue
        }
        let column = origin + j * cs
        func at(_ u: Int) -> V {
            rows.contains(u) ? UnsafeRawPointer(image + (column + u * rs)).loadUnaligned(as: V.self) : V()
        }
        let r = winogradBT42(at(0), at(1), at(2), at(3), at(4))
        tmp[j] = r.0; tmp[5 + j] = r.1; tmp[10 + j] = r.2; tmp[15 + j] = r.3; tmp[20 + j] = r.4
    }
    stridedWinogradInputRows(tmp, dst, xs)
}

/// `Y = Aᵀ M A` of one tile: `M[ξ]` is the vector at `src + ξ·xs`, columns `Aᵀ M` go to `tmp` (4×5), and each
/// of the first `hi` rows of `(Aᵀ M) A` is handed on as `emit(i, j, Y[i][j])`, j < 4.
@inlinable @inline(__always)
public func stridedWinogradOutputTile<V: SIMD>(_ src: UnsafePointer<Float>, _ xs: Int, _ tmp: UnsafeMutablePointer<V>,
                                               hi: Int, emit: (Int, Int, V) -> Void) where V.Scalar == Float {
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    for l in 0..<5 {
        let p = src + l * xs
        let y = winogradAT42(load(p), load(p + 5 * xs), load(p + 10 * xs), load(p + 15 * xs), load(p + 20 * xs))
        tmp[l] = y.0; tmp[5 + l] = y.1; tmp[10 + l] = y.2; tmp[15 + l] = y.3
    }
    for i in 0..<hi {
        let q = tmp + 5 * i
        let y = winogradAT42(q[0], q[1], q[2], q[3], q[4])
        emit(i, 0, y.0); emit(i, 1, y.1); emit(i, 2, y.2); emit(i, 3, y.3)
    }
}

/// Input transform of tiles `tiles` of the NHWC images `x` (`[·, h, w, cin]`, `cin` a multiple of the vector's
/// lanes): tile t (`perImage` per image, `tilesW` per row) of the output; its value ξ of phase `2p + q`, channel
/// c at `v[(t − tiles.lowerBound)·row + ξ·4cin + (2p + q)·cin + c]`. Every tile is read in place, a tile whose
/// 10×10 input window reaches past the image with zeros there (`stridedWinogradBorderInputTile`). `scratch`: the
/// tile's `tmp` (25 vectors).
@inlinable
public func stridedWinogradInputTransform<V: SIMD>(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int,
                                                   tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                   into v: UnsafeMutablePointer<Float>, row: Int,
                                                   scratch: UnsafeMutablePointer<V>) where V.Scalar == Float {
    let lanes = V.scalarCount, tmp = scratch, xs = 4 * cin
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let ih0 = (r / tilesW) * 8 - 2, iw0 = (r % tilesW) * 8 - 2
        let xImage = x + img * h * w * cin, tileBase = v + (t - tiles.lowerBound) * row
        let inside = ih0 >= 0 && iw0 >= 0 && ih0 + 10 <= h && iw0 + 10 <= w
        for phase in 0..<4 {
            let rh = ih0 + phase / 2, rw = iw0 + phase % 2   // the phase's top-left input pixel (may be outside)
            // The 5×5 positions inside the image: rows rh + 2u for u in uLo..<uHi, columns likewise.
            let uLo = max(0, (1 - rh) / 2), uHi = max(uLo, min(5, (h - rh + 1) / 2))
            let jLo = max(0, (1 - rw) / 2), jHi = max(jLo, min(5, (w - rw + 1) / 2))
            for c0 in stride(from: 0, to: cin, by: lanes) {
                let dst = tileBase + phase * cin + c0
                if inside {
                    stridedWinogradInputTile(xImage + (rh * w + rw) * cin + c0, 2 * w * cin, 2 * cin, tmp, dst, xs)
                } else {
                    stridedWinogradBorderInputTile(xImage + c0, (rh * w + rw) * cin, 2 * w * cin, 2 * cin,
                                                   rows: uLo..<uHi, cols: jLo..<jHi, tmp, dst, xs)
                }
            }
        }
    }
}

/// Output transform `Y = Aᵀ M A` with the epilogue `act(Y + b + r)` of tiles `tiles`: tile t's value ξ of
/// channel o at `m[(t − tiles.lowerBound)·row + ξ·cout + o]` (`cout` a multiple of the vector's lanes); `Y` goes
/// to `out` (`[·, ho, wo, cout]`, tiles cropped at the edges), `bias` `[cout]` or nil, `residual` shaped as `out`
/// (may alias it) or nil, `relu` the activation or nil. `tmp`: 20 vectors.
@inlinable
public func stridedWinogradOutputTransform<V: SIMD>(_ m: UnsafePointer<Float>, row: Int, cout: Int, ho: Int,
                                                    wo: Int, tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                    bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                                    relu: ((V) -> V)?, out: UnsafeMutablePointer<Float>,
                                                    tmp: UnsafeMutablePointer<V>) where V.Scalar == Float {
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let oh0 = (r / tilesW) * 4, ow0 = (r % tilesW) * 4
        let hi = min(4, ho - oh0), wi = min(4, wo - ow0)
        let base = out + ((img * ho + oh0) * wo + ow0) * cout, resBase = residual.map { $0 + (base - out) }
        for k0 in stride(from: 0, to: cout, by: V.scalarCount) {
            let b = bias.map { load($0 + k0) } ?? V()
            stridedWinogradOutputTile(m + (t - tiles.lowerBound) * row + k0, cout, tmp, hi: hi) { i, j, y0 in
                guard j < wi else { return }
                let off = (i * wo + j) * cout + k0
                var y = y0 + b
                if let resBase { y += load(resBase + off) }
                if let relu { y = relu(y) }
                UnsafeMutableRawPointer(base + off).storeBytes(of: y, as: V.self)
            }
        }
    }
}

// The input gradient of the strided convolution is F(4×4, 2×2) again, over `dY` (docs/ops.md): along each
// axis the even input rows receive `w₁·dY[k]` and the odd ones `w₂·dY[k] + w₀·dY[k + 1]`, a 2-tap correlation
// over `dY`'s rows k, k + 1, so a 4×4 tile of phase positions (input rows 2k + p) reads the 5×5 values
// `dY[4·ti + u, 4·tj + v]` and the GEMMs' output is 4·Cin wide: value ξ of phase `2p + q`, channel c.

/// Input transform of tiles `tiles` of the output gradient `gy` (`[·, ho, wo, cout]`, `cout` a multiple of the
/// vector's lanes) for the strided convolution's input gradient: tile t covers phase positions rows `4·ti…`,
/// columns `4·tj…` (`tilesW` per row, `perImage` per image) and reads `gy`'s 5×5 values from there, zeros past the
/// last row and column (`stridedWinogradBorderInputTile`); value ξ of channel o at `v[(t − tiles.lowerBound)·row
/// + ξ·cout + o]`. `scratch`: the tile's `tmp` (25 vectors).
@inlinable
public func stridedWinogradGradientInputTransform<V: SIMD>(_ gy: UnsafePointer<Float>, ho: Int, wo: Int, cout: Int,
                                                           tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                           into v: UnsafeMutablePointer<Float>, row: Int,
                                                           scratch: UnsafeMutablePointer<V>) where V.Scalar == Float {
    let lanes = V.scalarCount, tmp = scratch
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let r0 = (r / tilesW) * 4, s0 = (r % tilesW) * 4
        let image = gy + img * ho * wo * cout, dstTile = v + (t - tiles.lowerBound) * row
        let uHi = min(5, ho - r0), jHi = min(5, wo - s0), inside = uHi == 5 && jHi == 5
        for c0 in stride(from: 0, to: cout, by: lanes) {
            if inside {
                stridedWinogradInputTile(image + (r0 * wo + s0) * cout + c0, wo * cout, cout, tmp, dstTile + c0, cout)
            } else {
                stridedWinogradBorderInputTile(image + c0, (r0 * wo + s0) * cout, wo * cout, cout, rows: 0..<uHi,
                                               cols: 0..<jHi, tmp, dstTile + c0, cout)
            }
        }
    }
}

/// Output transform of the strided convolution's input gradient (`cin` a multiple of the vector's lanes): tile
/// t's value ξ of phase `2p + q`, channel c at `m[(t − tiles.lowerBound)·row + ξ·4cin + (2p + q)·cin + c]`;
/// `Aᵀ M A` gives the tile's 4×4 phase positions (k, l), each written to (or with `accumulate` added onto)
/// `gx[2k + p, 2l + q, c]` (`[·, h, w, cin]`) where that pixel exists. `tmp`: 20 vectors.
@inlinable
public func stridedWinogradGradientOutputTransform<V: SIMD>(_ m: UnsafePointer<Float>, row: Int, cin: Int, h: Int,
                                                            w: Int, tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                            accumulate: Bool, into gx: UnsafeMutablePointer<Float>,
                                                            tmp: UnsafeMutablePointer<V>) where V.Scalar == Float {
    let xs = 4 * cin
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let k0 = (r / tilesW) * 4, l0 = (r % tilesW) * 4
        let image = gx + img * h * w * cin, src0 = m + (t - tiles.lowerBound) * row
        for phase in 0..<4 {
            let p = phase / 2, q = phase % 2
            let hi = max(0, min(4, (h - p + 1) / 2 - k0)), wi = min(4, (w - q + 1) / 2 - l0)
            guard hi > 0, wi > 0 else { continue }
            for c0 in stride(from: 0, to: cin, by: V.scalarCount) {
                stridedWinogradOutputTile(src0 + phase * cin + c0, xs, tmp, hi: hi) { i, j, y in
                    guard j < wi else { return }
                    let dst = UnsafeMutableRawPointer(image + ((2 * (k0 + i) + p) * w + 2 * (l0 + j) + q) * cin + c0)
                    dst.storeBytes(of: accumulate ? dst.loadUnaligned(as: V.self) + y : y, as: V.self)
                }
            }
        }
    }
}

/// `stridedWinogradInputTransform` sixteen channels at a time (AVX-512; `cin` a multiple of 16).
@inline(never)
public func stridedWinogradInputTransform16(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int, tilesW: Int,
                                            perImage: Int, tiles: Range<Int>, into v: UnsafeMutablePointer<Float>,
                                            row: Int) {
    let scratch = UnsafeMutablePointer<V16>.allocate(capacity: 25)
    defer { scratch.deallocate() }
    stridedWinogradInputTransform(x, h: h, w: w, cin: cin, tilesW: tilesW, perImage: perImage, tiles: tiles, into: v,
                                  row: row, scratch: scratch)
}

/// `stridedWinogradOutputTransform` sixteen channels at a time (AVX-512; `cout` a multiple of 16), ReLU when
/// `relu` as one compare and blend (NaN stays NaN).
@inline(never)
public func stridedWinogradOutputTransform16(_ m: UnsafePointer<Float>, row: Int, cout: Int, ho: Int, wo: Int,
                                             tilesW: Int, perImage: Int, tiles: Range<Int>,
                                             bias: UnsafePointer<Float>?, residual: UnsafePointer<Float>?,
                                             relu: Bool, out: UnsafeMutablePointer<Float>) {
    let tmp = UnsafeMutablePointer<V16>.allocate(capacity: 20)
    defer { tmp.deallocate() }
    stridedWinogradOutputTransform(m, row: row, cout: cout, ho: ho, wo: wo, tilesW: tilesW, perImage: perImage,
                                   tiles: tiles, bias: bias, residual: residual,
                                   relu: relu ? { $0.replacing(with: 0, where: $0 .< 0) } : nil, out: out, tmp: tmp)
}

/// `stridedWinogradGradientInputTransform` sixteen channels at a time (AVX-512; `cout` a multiple of 16).
@inline(never)
public func stridedWinogradGradientInputTransform16(_ gy: UnsafePointer<Float>, ho: Int, wo: Int, cout: Int,
                                                    tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                    into v: UnsafeMutablePointer<Float>, row: Int) {
    let scratch = UnsafeMutablePointer<V16>.allocate(capacity: 25)
    defer { scratch.deallocate() }
    stridedWinogradGradientInputTransform(gy, ho: ho, wo: wo, cout: cout, tilesW: tilesW, perImage: perImage,
                                          tiles: tiles, into: v, row: row, scratch: scratch)
}

/// `stridedWinogradGradientOutputTransform` sixteen channels at a time (AVX-512; `cin` a multiple of 16).
@inline(never)
public func stridedWinogradGradientOutputTransform16(_ m: UnsafePointer<Float>, row: Int, cin: Int, h: Int, w: Int,
                                                     tilesW: Int, perImage: Int, tiles: Range<Int>,
                                                     accumulate: Bool, into gx: UnsafeMutablePointer<Float>) {
    let tmp = UnsafeMutablePointer<V16>.allocate(capacity: 20)
    defer { tmp.deallocate() }
    stridedWinogradGradientOutputTransform(m, row: row, cin: cin, h: h, w: w, tilesW: tilesW, perImage: perImage,
                                           tiles: tiles, accumulate: accumulate, into: gx, tmp: tmp)
}
