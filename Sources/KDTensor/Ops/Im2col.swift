/// Window geometry of a 2-D convolution or pooling over an NHWC input.
///
/// `ho = (h + 2·padding − kh) / stride + 1`, likewise `wo`. The column matrix of `im2col` has one row
/// per output pixel (`n·ho·wo` rows) and `kh·kw·cin` columns ordered (ki, kj, c), which is exactly
/// the row-major layout of a conv weight `[Cout, kh, kw, Cin]` flattened to `[Cout, kh·kw·cin]`.
public struct ConvGeometry: Equatable, Sendable {
    public let n, h, w, cin, kh, kw, stride, padding, ho, wo: Int

    public init(n: Int, h: Int, w: Int, cin: Int, kh: Int, kw: Int, stride: Int, padding: Int) {
        self.n = n; self.h = h; self.w = w; self.cin = cin
        self.kh = kh; self.kw = kw; self.stride = stride; self.padding = padding
        self.ho = stride > 0 ? (h + 2 * padding - kh) / stride + 1 : 0
        self.wo = stride > 0 ? (w + 2 * padding - kw) / stride + 1 : 0
    }

    /// Columns of the column matrix: `kh·kw·cin`.
    @inline(__always) public var k: Int { kh * kw * cin }
    /// Output pixels per image.
    @inline(__always) public var pixelsPerImage: Int { ho * wo }
    /// A 1×1, stride-1, unpadded window: the NHWC input already is the column matrix.
    public var isPointwise: Bool { kh == 1 && kw == 1 && stride == 1 && padding == 0 }
}

/// Visits the window of every output pixel of images `images`, in column-matrix row order:
/// `body(row, image, ih0, iw0, interior)` with `row` the index of its column-matrix row (counted from
/// the first image), `(ih0, iw0)` its top-left input pixel (negative in the padding) and `interior`
/// whether all `kh × kw` input pixels exist (the fast path: `kh` contiguous runs of `kw·cin` floats).
@inline(__always)
func forEachWindow(_ g: ConvGeometry, images: Range<Int>,
                   _ body: (_ row: Int, _ image: Int, _ ih0: Int, _ iw0: Int, _ interior: Bool) -> Void) {
    var row = 0
    for n in images {
        for oh in 0..<g.ho {
            let ih0 = oh * g.stride - g.padding
            let rowsInside = ih0 >= 0 && ih0 + g.kh <= g.h
            for ow in 0..<g.wo {
                let iw0 = ow * g.stride - g.padding
                body(row, n, ih0, iw0, rowsInside && iw0 >= 0 && iw0 + g.kw <= g.w)
                row += 1
            }
        }
    }
}

/// Copies the windows of images `images` of `x` into `col` (`images.count·ho·wo` rows of `k` floats).
///
/// NHWC makes one kernel row of a window (`kw` neighbouring pixels × `cin` channels) one contiguous run
/// of `kw·cin` floats in `x`, so an interior window is `kh` memcpys; only border windows take the
/// per-pixel path that writes zeros for the padding.
public func im2col(_ x: UnsafePointer<Float>, _ g: ConvGeometry, images: Range<Int>,
                   into col: UnsafeMutablePointer<Float>) {
    let rowRun = g.kw * g.cin, imageSize = g.h * g.w * g.cin
    forEachWindow(g, images: images) { r, n, ih0, iw0, interior in
        let xn = x + n * imageSize, row = col + r * g.k
        if interior {
            var src = xn + (ih0 * g.w + iw0) * g.cin
            var dst = row
            for _ in 0..<g.kh {
                dst.update(from: src, count: rowRun)
                src += g.w * g.cin; dst += rowRun
            }
            return
        }
        for ki in 0..<g.kh {
            let ih = ih0 + ki
            let dst = row + ki * rowRun
            if ih < 0 || ih >= g.h { dst.update(repeating: 0, count: rowRun); continue }
            for kj in 0..<g.kw {
                let iw = iw0 + kj
                let d = dst + kj * g.cin
                if iw < 0 || iw >= g.w { d.update(repeating: 0, count: g.cin) }
                else { d.update(from: xn + (ih * g.w + iw) * g.cin, count: g.cin) }
            }
        }
    }
}

/// The adjoint of `im2col`: adds every column-matrix row back onto the input pixels it was copied
/// from (`dx[window] += dcol[row]`), for images `images`. `dx` must hold the images' gradient (zeroed
/// or partial); padding entries are dropped.
public func col2imAccumulate(_ dcol: UnsafePointer<Float>, _ g: ConvGeometry, images: Range<Int>,
                             into dx: UnsafeMutablePointer<Float>) {
    let rowRun = g.kw * g.cin, imageSize = g.h * g.w * g.cin
    forEachWindow(g, images: images) { r, n, ih0, iw0, interior in
        let xn = dx + n * imageSize, row = dcol + r * g.k
        if interior {
            var dst = xn + (ih0 * g.w + iw0) * g.cin
            var src = row
            for _ in 0..<g.kh {
                addInPlace(dst, src, rowRun)
                dst += g.w * g.cin; src += rowRun
            }
            return
        }
        for ki in 0..<g.kh {
            let ih = ih0 + ki
            if ih < 0 || ih >= g.h { continue }
            let src = row + ki * rowRun
            for kj in 0..<g.kw {
                let iw = iw0 + kj
                if iw < 0 || iw >= g.w { continue }
                addInPlace(xn + (ih * g.w + iw) * g.cin, src + kj * g.cin, g.cin)
            }
        }
    }
}

/// `dst[i] += src[i]` for `i < count` (vectorised by the compiler in release builds).
@inline(__always)
func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    for i in 0..<count { dst[i] += src[i] }
}

/// Fills each of `rows` rows of `out` (length `cols`) with `bias` (the GEMM then adds onto it).
@inline(__always)
func broadcastRows(_ bias: UnsafePointer<Float>, rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
    var p = out
    for _ in 0..<rows { p.update(from: bias, count: cols); p += cols }
}

/// Column sums of a `rows × cols` row-major matrix accumulated in Double, added (or written when
/// `overwrite`) into `out` — the bias gradient `db = Σ_rows dY`.
func accumulateColumnSums(_ m: UnsafePointer<Float>, rows: Int, cols: Int,
                          into out: UnsafeMutablePointer<Float>, overwrite: Bool) {
    var acc = [Double](repeating: 0, count: cols)
    acc.withUnsafeMutableBufferPointer { a in
        let ap = a.baseAddress!
        var p = m
        for _ in 0..<rows {
            for j in 0..<cols { ap[j] += Double(p[j]) }
            p += cols
        }
        if overwrite { for j in 0..<cols { out[j] = Float(ap[j]) } }
        else { for j in 0..<cols { out[j] += Float(ap[j]) } }
    }
}

/// `col2im` for an unpadded 1×1 window with stride `s > 1`: windows do not overlap, so input pixel
/// `(ih, iw)` receives row `(ih/s, iw/s)` when both are multiples of `s` and nothing otherwise.
/// With `overwrite` the images' gradient is written in one pass (zeros between the sampled pixels),
/// which saves clearing `dx` first; otherwise the rows are added.
public func col2imStridedPointwise(_ dcol: UnsafePointer<Float>, _ g: ConvGeometry, images: Range<Int>,
                                   into dx: UnsafeMutablePointer<Float>, overwrite: Bool) {
    precondition(g.kh == 1 && g.kw == 1 && g.padding == 0, "col2imStridedPointwise needs a 1×1 unpadded window")
    let c = g.cin, s = g.stride
    var row = dcol
    for n in images {
        var q = dx + n * g.h * g.w * c
        for ih in 0..<g.h {
            let sampledRow = ih % s == 0
            for iw in 0..<g.w {
                if sampledRow && iw % s == 0 {
                    if overwrite { q.update(from: row, count: c) } else { addInPlace(q, row, c) }
                    row += c
                } else if overwrite {
                    q.update(repeating: 0, count: c)
                }
                q += c
            }
        }
    }
}
