// The F(4×4, 3×3) Winograd transforms of KDTensor's `winogradConvolve` (docs/ops.md, "Winograd convolution"),
// sixteen channels at a time for AVX-512. One F(4×4) tile's arithmetic is defined once, generic over the
// vector (`winograd4InputTile`, `winograd4OutputTile`): KDTensor's eight-lane transforms run it with
// `SIMD8<Float>`, specialised in KDTensor (AVX2); the loops below with `SIMD16<Float>`, specialised here
// (AVX-512). The same operations lane by lane, so the same bits (`WinogradTests`). KDTensor calls the
// loops below where the CPU has AVX-512 and the channel count is a multiple of 16.

/// `Bᵀ` of F(4,3) on 6 values: rows 1, 2 are `d4 − 4d2 ± (d3 − 4d1)`, rows 3, 4 `d4 − d2 ± 2(d3 − d1)`.
@inlinable @inline(__always)
public func winogradBT4<V: SIMD>(_ d0: V, _ d1: V, _ d2: V, _ d3: V, _ d4: V,
                                 _ d5: V) -> (V, V, V, V, V, V) where V.Scalar == Float {
    let four: Float = 4, five: Float = 5, two: Float = 2
    let a = d4 - four * d2, b = d3 - four * d1
    let c = d4 - d2, e = two * (d3 - d1)
    return (four * d0 - five * d2 + d4, a + b, a - b, c + e, c - e, four * d1 - five * d3 + d5)
}

/// `Aᵀ` of F(4,3): 6 values → 4, sharing `m1 ± m2` and `m3 ± m4`.
@inlinable @inline(__always)
public func winogradAT4<V: SIMD>(_ m0: V, _ m1: V, _ m2: V, _ m3: V, _ m4: V,
                                 _ m5: V) -> (V, V, V, V) where V.Scalar == Float {
    let a = m1 + m2, b = m1 - m2, c = m3 + m4, d = m3 - m4
    let two: Float = 2, four: Float = 4, eight: Float = 8
    return (m0 + a + c, b + two * d, a + four * c, b + eight * d + m5)
}

/// `V = Bᵀ d B` of one F(4×4) tile, `V.scalarCount` channels at a time: `d[i][j]` is the vector at
/// `src + i·rs + j·cs`; columns `Bᵀ d` go to `tmp` (36 vectors), rows `(Bᵀ d) B` to
/// `store(V[ξ], dst + ξ·xs)`.
@inlinable @inline(__always)
public func winograd4InputTile<V: SIMD>(_ src: UnsafePointer<Float>, _ rs: Int, _ cs: Int,
                                        _ tmp: UnsafeMutablePointer<V>, _ dst: UnsafeMutablePointer<Float>,
                                        _ xs: Int, store: (V, UnsafeMutablePointer<Float>) -> Void)
    where V.Scalar == Float {
    func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }
    for j in 0..<6 {
        let p = src + j * cs
        let r = winogradBT4(load(p), load(p + rs), load(p + 2 * rs), load(p + 3 * rs), load(p + 4 * rs),
                            load(p + 5 * rs))
        tmp[j] = r.0; tmp[6 + j] = r.1; tmp[12 + j] = r.2; tmp[18 + j] = r.3; tmp[24 + j] = r.4; tmp[30 + j] = r.5
    }
    winograd4InputRows(tmp, dst, xs, store: store)
}

/// The rows `(Bᵀ d) B` of an F(4×4) input tile from its columns `Bᵀ d` in `tmp` (36 vectors, row-major): value
/// ξ = 6i + j to `store(V[ξ], dst + ξ·xs)`.
@inlinable @inline(__always)
public func winograd4InputRows<V: SIMD>(_ tmp: UnsafeMutablePointer<V>, _ dst: UnsafeMutablePointer<Float>, _ xs: Int,
                                        store: (V, UnsafeMutablePointer<Float>) -> Void) where V.Scalar == Float {
    for i in 0..<6 {
        let q = tmp + 6 * i, o = dst + 6 * i * xs
        let r = winogradBT4(q[0], q[1], q[2], q[3], q[4], q[5])
        store(r.0, o); store(r.1, o + xs); store(r.2, o + 2 * xs); store(r.3, o + 3 * xs)
        store(r.4, o + 4 * xs); store(r.5, o + 5 * xs)
    }
}

/// The positions `i < size` of a tile whose first position is `origin` (negative in the padding) that lie
/// inside `0..<extent`: the rows (or columns) of a border tile that `winograd4BorderInputTile` reads.
@inlinable @inline(__always)
public func tileSpan(origin: Int, size: Int, extent: Int) -> Range<Int> {
    let lo = max(0, -origin)
    return lo..<max(lo, min(size, extent - origin))
}

/// `winograd4InputTile` of a tile that reaches past the image: `d[i][j]` is the vector at
/// `image + origin + i·rs + j·cs` for `i ∈ rows`, `j ∈ cols` and zero elsewhere (the padding), read in place
/// (`origin` may be negative: only the positions inside the image are formed). A column outside the image
/// transforms to zeros, which it writes directly. The same bits as the tile gathered into zeros first.
@inlinable @inline(__always)
public func winograd4BorderInputTile<V: SIMD>(_ image: UnsafePointer<Float>, _ origin: Int, _ rs: Int, _ cs: Int,
                                              rows: Range<Int>, cols: Range<Int>, _ tmp: UnsafeMutablePointer<V>,
                                              _ dst: UnsafeMutablePointer<Float>, _ xs: Int,
                                              load: (UnsafePointer<Float>) -> V,
                                              store: (V, UnsafeMutablePointer<Float>) -> Void)
    where V.Scalar == Float {
    for j in 0..<6 {
        guard cols.contains(j) else {
            tmp[j] = V(); tmp[6 + j] = V(); tmp[12 + j] = V(); tmp[18 + j] = V(); tmp[24 + j] = V(); tmp[30 + j] = V()
            continue
        }
        let column = origin + j * cs
        func at(_ i: Int) -> V { rows.contains(i) ? load(image + (column + i * rs)) : V() }
        let r = winogradBT4(at(0), at(1), at(2), at(3), at(4), at(5))
        tmp[j] = r.0; tmp[6 + j] = r.1; tmp[12 + j] = r.2; tmp[18 + j] = r.3; tmp[24 + j] = r.4; tmp[30 + j] = r.5
    }
    winograd4InputRows(tmp, dst, xs, store: store)
}

/// `Y = Aᵀ M A` of one F(4×4) tile: `M[ξ]` is `load(src + ξ·xs)`; columns `Aᵀ M` go to `tmp` (24 vectors),
/// and each of the first `hi` rows of `(Aᵀ M) A` is handed on as `emit(i, j, Y[i][j])`, j < 4.
@inlinable @inline(__always)
public func winograd4OutputTile<V: SIMD>(_ src: UnsafePointer<Float>, _ xs: Int, _ tmp: UnsafeMutablePointer<V>,
                                         hi: Int, load: (UnsafePointer<Float>) -> V,
                                         emit: (Int, Int, V) -> Void) where V.Scalar == Float {
    for j in 0..<6 {
        let p = src + j * xs
        let r = winogradAT4(load(p), load(p + 6 * xs), load(p + 12 * xs), load(p + 18 * xs), load(p + 24 * xs),
                            load(p + 30 * xs))
        tmp[j] = r.0; tmp[6 + j] = r.1; tmp[12 + j] = r.2; tmp[18 + j] = r.3
    }
    for i in 0..<hi {
        let q = tmp + 6 * i
        let r = winogradAT4(q[0], q[1], q[2], q[3], q[4], q[5])
        emit(i, 0, r.0); emit(i, 1, r.1); emit(i, 2, r.2); emit(i, 3, r.3)
    }
}

/// Input transform `V = Bᵀ d B` of tiles `tiles` of the NHWC images `x` (`[·, h, w, cin]`, `cin` a multiple
/// of 16), the output cut into 4×4 tiles (`tilesW` per row, `perImage` per image, padding `p`): tile t's value
/// ξ of channel c goes to `v[(t − tiles.lowerBound)·row + ξ·xi + c]`. Tiles reaching into the padding read
/// the positions inside the image in place, zeros for the others (`winograd4BorderInputTile`).
@inline(never)
public func winograd4InputTransform16(_ x: UnsafePointer<Float>, h: Int, w: Int, cin: Int, padding p: Int,
                                      tilesW: Int, perImage: Int, tiles: Range<Int>,
                                      into v: UnsafeMutablePointer<Float>, row: Int, xi: Int) {
    let tmp = UnsafeMutablePointer<V16>.allocate(capacity: 36)
    defer { tmp.deallocate() }
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let ih0 = (r / tilesW) * 4 - p, iw0 = (r % tilesW) * 4 - p
        let xImage = x + img * h * w * cin
        let inside = ih0 >= 0 && iw0 >= 0 && ih0 + 6 <= h && iw0 + 6 <= w
        let rows = tileSpan(origin: ih0, size: 6, extent: h), cols = tileSpan(origin: iw0, size: 6, extent: w)
        for c0 in stride(from: 0, to: cin, by: 16) {
            let dst = v + (t - tiles.lowerBound) * row + c0
            if inside {
                winograd4InputTile(xImage + (ih0 * w + iw0) * cin + c0, w * cin, cin, tmp, dst, xi, store: store16)
            } else {
                winograd4BorderInputTile(xImage + c0, (ih0 * w + iw0) * cin, w * cin, cin, rows: rows, cols: cols,
                                         tmp, dst, xi, load: load16, store: store16)
            }
        }
    }
}

/// Output transform `Y = Aᵀ M A` with the epilogue `act(Y + b + r)` of tiles `tiles`: tile t's value ξ of
/// channel o at `m[(t − tiles.lowerBound)·row + ξ·xi + o]` (`cout` a multiple of 16); `Y` goes to `out`
/// (`[·, ho, wo, cout]`, tiles cropped at the edges), `bias` `[cout]` or nil, `residual` shaped as `out` (may
/// alias it) or nil, ReLU when `relu` (`max(y, 0)` as compare and blend: NaN stays NaN).
@inline(never)
public func winograd4OutputTransform16(_ m: UnsafePointer<Float>, row: Int, xi: Int, cout: Int, ho: Int, wo: Int,
                                       tilesW: Int, perImage: Int, tiles: Range<Int>, bias: UnsafePointer<Float>?,
                                       residual: UnsafePointer<Float>?, relu: Bool,
                                       out: UnsafeMutablePointer<Float>) {
    let tmp = UnsafeMutablePointer<V16>.allocate(capacity: 24)
    defer { tmp.deallocate() }
    for t in tiles {
        let img = t / perImage, r = t % perImage
        let oh0 = (r / tilesW) * 4, ow0 = (r % tilesW) * 4
        let hi = min(4, ho - oh0), wi = min(4, wo - ow0)
        let base = out + ((img * ho + oh0) * wo + ow0) * cout, resBase = residual.map { $0 + (base - out) }
        for k0 in stride(from: 0, to: cout, by: 16) {
            let b = bias.map { load16($0 + k0) } ?? V16()
            let src = m + (t - tiles.lowerBound) * row + k0
            winograd4OutputTile(src, xi, tmp, hi: hi, load: load16) { i, j, y0 in
                guard j < wi else { return }
                let off = (i * wo + j) * cout + k0
                var y = y0 + b
                if let resBase { y += load16(resBase + off) }
                if relu { y = y.replacing(with: 0, where: y .< 0) }
                store16(y, base + off)
            }
        }
    }
}
