import KDTensor

/// Per-channel normalisation `x̂ = (pixel/255 − mean[c]) / std[c]`.
public struct Normalization: Equatable, Sendable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) throws {
        guard mean.count == std.count, !mean.isEmpty else {
            throw DataError.invalidConfig(field: "data.normalize",
                                          message: "mean has \(mean.count) values, std \(std.count)")
        }
        guard std.allSatisfy({ $0 > 0 && $0.isFinite }) else {
            throw DataError.invalidConfig(field: "data.normalize", message: "std \(std) must be positive")
        }
        self.mean = mean; self.std = std
    }

    /// CIFAR-10 training-set statistics (the usual PyTorch recipe).
    public static let cifar10 = try! Normalization(mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
    /// CIFAR-100 training-set statistics.
    public static let cifar100 = try! Normalization(mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762])
    /// Maps [0, 255] to [−1, 1] on every channel (`channels` of them).
    public static func symmetric(channels: Int) -> Normalization {
        try! Normalization(mean: [Float](repeating: 0.5, count: channels),
                           std: [Float](repeating: 0.5, count: channels))
    }

    /// Lookup table `lut[c·256 + byte]` of normalised values.
    func table(channels: Int) -> [Float] {
        var t = [Float](repeating: 0, count: channels * 256)
        for c in 0..<channels {
            let m = mean[c % mean.count], s = std[c % std.count]
            for b in 0..<256 { t[c * 256 + b] = (Float(b) / 255 - m) / s }
        }
        return t
    }
}

/// How the views of a sample are augmented.
///
/// Standard (every view when `augment` is on): random crop of `height × width` from the image
/// zero-padded by `padding` pixels on each side (offsets `dy, dx` uniform in `0…2·padding`), then a
/// horizontal flip with probability ½. Padding pixels are byte 0 before normalisation (torchvision
/// `RandomCrop(padding=4)` semantics). With `strongLastView` and `V ≥ 2`, the last view (VRM's virtual
/// view) additionally gets colour jitter (brightness, contrast, saturation factors uniform in
/// `1 ± jitter`, applied in that order on [0, 1] values and clamped) and a cutout square of side
/// `cutout` set to 0 after normalisation (the mean colour).
public struct AugmentPolicy: Equatable, Sendable {
    public var enabled: Bool
    public var padding: Int
    public var flip: Bool
    public var strongLastView: Bool
    public var jitter: Float
    public var cutout: Int

    public init(enabled: Bool = true, padding: Int = 4, flip: Bool = true, strongLastView: Bool = false,
                jitter: Float = 0.4, cutout: Int = 16) {
        self.enabled = enabled; self.padding = padding; self.flip = flip
        self.strongLastView = strongLastView; self.jitter = jitter; self.cutout = cutout
    }

    /// The training views' policy from the config (docs/data.md, "Views, augmentation, normalisation"):
    /// `data.augment` is the master switch (off: every view is the normalised image); with it on,
    /// `data.crop_padding` (0: no crop) and `data.flip` choose the standard transforms, so digits can keep
    /// the crop and drop the flip. The last view is strong when there are ≥ 2 views and `strongVirtualView`.
    public static func training(augment: Bool, flip: Bool, cropPadding: Int, views: Int,
                                strongVirtualView: Bool) -> AugmentPolicy {
        AugmentPolicy(enabled: augment, padding: cropPadding, flip: flip,
                      strongLastView: views >= 2 && strongVirtualView)
    }

    /// The `data.augment` config values: `none`, `standard` (crop + flip), `strong` (crop + flip, and a
    /// stronger last view for VRM).
    public static func named(_ name: String) throws -> AugmentPolicy {
        switch name {
        case "none": return AugmentPolicy(enabled: false)
        case "standard": return AugmentPolicy()
        case "strong": return AugmentPolicy(strongLastView: true)
        default:
            throw DataError.invalidConfig(field: "data.augment",
                                          message: "unknown value '\(name)' (none, standard, strong)")
        }
    }
}

/// Renders augmented, normalised views of HWC byte images into float NHWC buffers.
///
/// The randomness of view `v` of sample `i` in epoch `e` comes from `KDRandom(seed, e, i, v, 0xA06)`
/// alone: draws, in order, `dy`, `dx`, the flip bit, then (strong view only) brightness, contrast,
/// saturation factors and the cutout centre.
public struct ViewRenderer: Sendable {
    public let height: Int, width: Int, channels: Int
    public let policy: AugmentPolicy
    public let normalization: Normalization
    public let seed: UInt64
    let lut: [Float]

    public init(height: Int, width: Int, channels: Int, policy: AugmentPolicy, normalization: Normalization,
                seed: UInt64) throws {
        guard normalization.mean.count == channels || normalization.mean.count == 1 else {
            throw DataError.invalidConfig(field: "data.normalize",
                                          message: "\(normalization.mean.count) channel statistics "
                                              + "for \(channels)-channel images")
        }
        guard policy.padding >= 0, policy.cutout >= 0, policy.jitter >= 0, policy.jitter < 1 else {
            throw DataError.invalidConfig(field: "data.augment",
                                          message: "padding/cutout must be ≥ 0 and jitter in [0, 1)")
        }
        self.height = height; self.width = width; self.channels = channels
        self.policy = policy; self.normalization = normalization; self.seed = seed
        lut = normalization.table(channels: channels)
    }

    /// Writes view `view` (of `views`) of sample `sampleIndex` in `epoch` into `out` (`H·W·C` floats).
    /// With `augment == false` (evaluation) the image is only normalised.
    public func render(_ src: UnsafePointer<UInt8>, sampleIndex: Int, epoch: Int, view: Int, views: Int,
                       augment: Bool, into out: UnsafeMutablePointer<Float>) {
        let H = height, W = width, C = channels
        guard augment && policy.enabled else {
            lut.withUnsafeBufferPointer { t in
                for p in 0..<(H * W) { for c in 0..<C { out[p * C + c] = t[c * 256 + Int(src[p * C + c])] } }
            }
            return
        }
        var rng = KDRandom(keys: seed, UInt64(epoch), UInt64(sampleIndex), UInt64(view), 0xA06)
        let pad = policy.padding
        let dy = rng.nextInt(below: 2 * pad + 1) - pad, dx = rng.nextInt(below: 2 * pad + 1) - pad
        let flip = policy.flip && (rng.next() >> 63) == 1
        let strong = policy.strongLastView && views >= 2 && view == views - 1
        if !strong {
            lut.withUnsafeBufferPointer { t in
                let t = t.baseAddress!
                // Valid output columns: those whose source column sx lies in 0..<W.
                let x0 = flip ? max(0, dx) : max(0, -dx), x1 = flip ? min(W, W + dx) : min(W, W - dx)
                for y in 0..<H {
                    let row = out + y * W * C, sy = y + dy
                    let valid = sy >= 0 && sy < H && x0 < x1
                    let lo = valid ? x0 : W, hi = valid ? x1 : W
                    for x in 0..<lo { for c in 0..<C { row[x * C + c] = t[c * 256] } }
                    for x in hi..<W { for c in 0..<C { row[x * C + c] = t[c * 256] } }
                    guard valid else { continue }
                    let srow = src + sy * W * C
                    let step = flip ? -C : C
                    var sp = srow + ((flip ? W - 1 - lo : lo) + dx) * C
                    if C == 3 {
                        let t1 = t + 256, t2 = t + 512
                        for x in lo..<hi {
                            let o = row + x * 3
                            o[0] = t[Int(sp[0])]; o[1] = t1[Int(sp[1])]; o[2] = t2[Int(sp[2])]
                            sp += step
                        }
                    } else {
                        for x in lo..<hi {
                            for c in 0..<C { row[x * C + c] = t[c * 256 + Int(sp[c])] }
                            sp += step
                        }
                    }
                }
            }
            return
        }
        // Strong view: crop + flip on [0, 1] values, colour jitter, normalise, cutout.
        let j = policy.jitter
        let bright = 1 + j * (2 * rng.nextFloat() - 1), contrast = 1 + j * (2 * rng.nextFloat() - 1)
        let saturation = 1 + j * (2 * rng.nextFloat() - 1)
        let cy = rng.nextInt(below: H), cx = rng.nextInt(below: W)
        var sum: Double = 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { scaled in
            for b in 0..<256 { scaled[b] = Float(b) * (bright / 255) }
            let sc = scaled.baseAddress!
            for y in 0..<H {
                var rowSum: Float = 0
                let sy = y + dy
                for x in 0..<W {
                    let sx = (flip ? W - 1 - x : x) + dx
                    let o = out + (y * W + x) * C
                    if sy >= 0 && sy < H && sx >= 0 && sx < W {
                        let sp = src + (sy * W + sx) * C
                        for c in 0..<C { let v = sc[Int(sp[c])]; o[c] = v; rowSum += v }
                    } else {
                        for c in 0..<C { o[c] = 0 }
                    }
                }
                sum += Double(rowSum)
            }
        }
        let grey = Float(sum / Double(H * W * C))
        let m = (0..<C).map { normalization.mean[$0 % normalization.mean.count] }
        let inv = (0..<C).map { 1 / normalization.std[$0 % normalization.std.count] }
        let invC = 1 / Float(C)
        m.withUnsafeBufferPointer { m in inv.withUnsafeBufferPointer { inv in
            for p in 0..<(H * W) {
                let px = out + p * C
                var g: Float = 0
                for c in 0..<C { px[c] = (px[c] - grey) * contrast + grey; g += px[c] }
                g *= invC
                for c in 0..<C {
                    let v = max(0, min(1, g + (px[c] - g) * saturation))
                    px[c] = (v - m[c]) * inv[c]
                }
            }
        } }
        let half = policy.cutout / 2
        if policy.cutout > 0 {
            for y in max(0, cy - half)..<min(H, cy - half + policy.cutout) {
                for x in max(0, cx - half)..<min(W, cx - half + policy.cutout) {
                    for c in 0..<C { out[(y * W + x) * C + c] = 0 }
                }
            }
        }
    }
}
