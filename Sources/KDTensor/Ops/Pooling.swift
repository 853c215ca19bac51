/// Checks an NHWC input and a pooling window; returns its geometry.
private func poolGeometry(_ op: String, _ x: Tensor, kernel: Int, stride: Int, padding: Int) throws -> ConvGeometry {
    guard x.rank == 4 else {
        throw TensorError.invalidArgument(op: op, message: "input must be NHWC [N, H, W, C], got shape \(x.shape)")
    }
    guard kernel >= 1, stride >= 1, padding >= 0, padding <= kernel / 2 else {
        throw TensorError.invalidArgument(op: op, message:
            "kernel \(kernel), stride \(stride), padding \(padding): "
                + "need kernel ≥ 1, stride ≥ 1, 0 ≤ padding ≤ kernel/2")
    }
    let g = ConvGeometry(n: x.shape[0], h: x.shape[1], w: x.shape[2], cin: x.shape[3],
                         kh: kernel, kw: kernel, stride: stride, padding: padding)
    guard g.ho >= 1, g.wo >= 1 else {
        throw TensorError.invalidArgument(op: op, message:
            "kernel \(kernel) with padding \(padding) does not fit input \(g.h)×\(g.w) (shape \(x.shape))")
    }
    return g
}

/// Max pooling over NHWC windows (padding counts as −∞, i.e. never wins).
///
/// `y[n, i, j, c] = max_{ki,kj} x[n, i·s − p + ki, j·s − p + kj, c]` over in-range positions,
/// `Ho = (H + 2p − k)/s + 1`. Backward routes each `dy` to its window's argmax (the first maximum):
/// `dx[argmax] += dy`. The argmax (offset within the image) is stored as Int32 only when recording.
/// A NaN in a window wins (the first one is the argmax): the output is NaN, as PyTorch's `max_pool2d`.
public func maxPool2d(_ x: Tensor, kernel: Int, stride: Int, padding: Int = 0) throws -> Tensor {
    let g = try poolGeometry("maxPool2d", x, kernel: kernel, stride: stride, padding: padding)
    let c = g.cin, imageSize = g.h * g.w * c, outImage = g.ho * g.wo * c
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, c])
    let recording = GradMode.isEnabled && x.requiresGrad
    // Argmax per output element, as Int32 offsets within the image, in a pool buffer of the same size.
    let argmaxStore = recording ? Tensor(uninitializedShape: [out.count]) : nil
    let arg: UnsafeMutablePointer<Int32>? = argmaxStore.map {
        UnsafeMutableRawPointer($0.ptr).bindMemory(to: Int32.self, capacity: out.count)
    }
    for n in 0..<g.n {
        let xn = x.ptr + n * imageSize
        for oh in 0..<g.ho {
            let ih0 = oh * g.stride - g.padding
            for ow in 0..<g.wo {
                let iw0 = ow * g.stride - g.padding
                let o = n * outImage + (oh * g.wo + ow) * c
                let y = out.ptr + o
                y.update(repeating: -.infinity, count: c)
                let a = arg.map { $0 + o }
                if let a { a.update(repeating: 0, count: c) }
                for ih in max(ih0, 0)..<min(ih0 + g.kh, g.h) {
                    for iw in max(iw0, 0)..<min(iw0 + g.kw, g.w) {
                        let off = (ih * g.w + iw) * c
                        let src = xn + off
                        if let a {
                            maxWithArgmax(y, a, src, base: Int32(truncatingIfNeeded: off), count: c)
                        } else {
                            for j in 0..<c where src[j] > y[j] || src[j].isNaN { y[j] = src[j] }
                        }
                    }
                }
            }
        }
    }
    if let arg, let argmaxStore {
        Tape.record("maxPool2d", inputs: [x], output: out) { gy in
            _ = argmaxStore   // keeps the argmax buffer alive until backward
            let (gx, fresh) = x.gradBuffer()
            for n in 0..<g.n {
                let dxn = gx + n * imageSize, a = arg + n * outImage, d = gy.ptr + n * outImage
                if fresh { dxn.update(repeating: 0, count: imageSize) }   // image by image, cache-warm
                for i in 0..<outImage { dxn[Int(a[i])] += d[i] }
            }
        }
    }
    return out
}

/// `y = max(y, src)` elementwise, recording `a[j] = base + j` where `src` wins (8 lanes at a time).
@inline(__always)
private func maxWithArgmax(_ y: UnsafeMutablePointer<Float>, _ a: UnsafeMutablePointer<Int32>,
                           _ src: UnsafePointer<Float>, base: Int32, count c: Int) {
    var j = 0
    let lanes = SIMD8<Int32>(0, 1, 2, 3, 4, 5, 6, 7)
    while j + 8 <= c {
        let v = UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self)
        let cur = UnsafeRawPointer(y + j).loadUnaligned(as: SIMD8<Float>.self)
        let idx = UnsafeRawPointer(a + j).loadUnaligned(as: SIMD8<Int32>.self)
        let better = (v .> cur) .| (v .!= v)   // a NaN wins and stays (PyTorch's max_pool2d)
        UnsafeMutableRawPointer(y + j).storeBytes(of: cur.replacing(with: v, where: better), as: SIMD8<Float>.self)
        let lane = lanes &+ (base &+ Int32(truncatingIfNeeded: j))
        UnsafeMutableRawPointer(a + j).storeBytes(of: idx.replacing(with: lane, where: better),
                                                  as: SIMD8<Int32>.self)
        j += 8
    }
    while j < c {
        if src[j] > y[j] || src[j].isNaN { y[j] = src[j]; a[j] = base &+ Int32(truncatingIfNeeded: j) }
        j += 1
    }
}

/// Average pooling over NHWC windows without padding.
///
/// `y[n, i, j, c] = (1/k²) Σ_{ki,kj} x[n, i·s + ki, j·s + kj, c]`, `Ho = (H − k)/s + 1`.
/// Backward: `dx[window] += dy / k²` for every window containing the position.
public func avgPool2d(_ x: Tensor, kernel: Int, stride: Int) throws -> Tensor {
    let g = try poolGeometry("avgPool2d", x, kernel: kernel, stride: stride, padding: 0)
    let c = g.cin, imageSize = g.h * g.w * c, outImage = g.ho * g.wo * c
    let inv = 1 / Float(kernel * kernel)
    let out = Tensor(uninitializedShape: [g.n, g.ho, g.wo, c])
    for n in 0..<g.n {
        let xn = x.ptr + n * imageSize
        for oh in 0..<g.ho {
            for ow in 0..<g.wo {
                let y = out.ptr + n * outImage + (oh * g.wo + ow) * c
                y.update(repeating: 0, count: c)
                for ih in oh * g.stride..<oh * g.stride + g.kh {
                    for iw in ow * g.stride..<ow * g.stride + g.kw { addInPlace(y, xn + (ih * g.w + iw) * c, c) }
                }
                for j in 0..<c { y[j] *= inv }
            }
        }
    }
    Tape.record("avgPool2d", inputs: [x], output: out) { gy in
        let (gx, fresh) = x.gradBuffer()
        if fresh { gx.update(repeating: 0, count: x.count) }
        let scaled = Tensor(uninitializedShape: [c])
        for n in 0..<g.n {
            let dxn = gx + n * imageSize
            for oh in 0..<g.ho {
                for ow in 0..<g.wo {
                    let d = gy.ptr + n * outImage + (oh * g.wo + ow) * c
                    for j in 0..<c { scaled.ptr[j] = d[j] * inv }
                    for ih in oh * g.stride..<oh * g.stride + g.kh {
                        for iw in ow * g.stride..<ow * g.stride + g.kw {
                            addInPlace(dxn + (ih * g.w + iw) * c, scaled.ptr, c)
                        }
                    }
                }
            }
        }
    }
    return out
}

/// Global average pooling `[N, H, W, C] → [N, C]`: `y[n, c] = (1/HW) Σ_{i,j} x[n, i, j, c]`
/// (accumulated in Double). Backward: `dx[n, i, j, c] = dy[n, c] / HW`.
public func globalAvgPool(_ x: Tensor) throws -> Tensor {
    guard x.rank == 4 else {
        throw TensorError.invalidArgument(op: "globalAvgPool",
                                          message: "input must be NHWC [N, H, W, C], got shape \(x.shape)")
    }
    let n = x.shape[0], hw = x.shape[1] * x.shape[2], c = x.shape[3]
    guard hw > 0 else {
        throw TensorError.invalidArgument(op: "globalAvgPool", message: "empty spatial extent in shape \(x.shape)")
    }
    let out = Tensor(uninitializedShape: [n, c])
    var acc = [Double](repeating: 0, count: c)
    acc.withUnsafeMutableBufferPointer { ab in
        let a = ab.baseAddress!
        for i in 0..<n {
            a.update(repeating: 0, count: c)
            var p = x.ptr + i * hw * c
            for _ in 0..<hw {
                for j in 0..<c { a[j] += Double(p[j]) }
                p += c
            }
            let y = out.ptr + i * c
            for j in 0..<c { y[j] = Float(a[j] / Double(hw)) }
        }
    }
    Tape.record("globalAvgPool", inputs: [x], output: out) { gy in
        let (gx, fresh) = x.gradBuffer()
        let inv = 1 / Float(hw)
        for i in 0..<n {
            let d = gy.ptr + i * c
            var q = gx + i * hw * c
            for _ in 0..<hw {
                if fresh { for j in 0..<c { q[j] = d[j] * inv } } else { for j in 0..<c { q[j] += d[j] * inv } }
                q += c
            }
        }
    }
    return out
}
