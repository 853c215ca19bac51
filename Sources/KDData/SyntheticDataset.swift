import Foundation
import KDTensor

/// The embedded default source: deterministic, seeded H×W×3 images of `classes` classes, generated
/// from the sample index alone (no files, any N).
///
/// Class `c` is a textured object: a shape `s` filled with sinusoidal stripes of orientation
/// `θ_c = π·(o + s/nS)/nO` (± 3.4° jitter) and period `p_f` (± 10%), where `c = o + nO·(f + nF·s)`,
/// `nO = min(C, 6)` orientations, `nF ≤ 4` periods (3…11 px at 32 px, log-spaced) and `nS` shapes
/// (disk, square, diamond, ring, plus). Every image also has a random background colour and gradient,
/// three soft colour blobs, a smaller distractor object with random stripes and shape, and uniform
/// pixel noise; the object's position, size, phase and both stripe colours are random. The label is
/// carried only by orientation/period/shape of a texture at a random place, so translation-invariant
/// oriented filters (a CNN) separate the classes while a linear model on raw pixels stays near chance.
///
/// Randomness: label `KDRandom(seed, 0x5A1E, split, i)`, image `KDRandom(seed, 0x5E7D, split, i)`;
/// `split` 0 is training, 1 evaluation (disjoint streams).
public final class SyntheticDataset: ImageDataset, @unchecked Sendable {
    public let count: Int, height: Int, width: Int, classes: Int
    public let channels = 3
    public let seed: UInt64, split: UInt64
    public var name: String { "synthetic(seed \(seed), split \(split))" }

    let nO: Int, nF: Int, nS: Int
    let periods: [Float]

    /// The class counts the generator draws (6 shapes × 4 fillings × 5 sizes) and its smallest image side.
    public static let classRange = 2...120, minimumSide = 8

    public init(count: Int, classes: Int, height: Int = 32, width: Int = 32, seed: UInt64, split: UInt64 = 0) throws {
        guard count > 0 else {
            throw DataError.invalidConfig(field: split == 0 ? "data.train_size" : "data.eval_size",
                                          message: "must be ≥ 1 (synthetic samples in the split), got \(count)")
        }
        guard Self.classRange.contains(classes) else {
            let range = "\(Self.classRange.lowerBound)…\(Self.classRange.upperBound)"
            throw DataError.invalidConfig(field: "data.classes",
                                          message: "synthetic source supports \(range) classes, got \(classes)")
        }
        guard height >= Self.minimumSide, width >= Self.minimumSide else {
            throw DataError.invalidConfig(field: "data.image_size", message: "synthetic images need at least "
                                          + "\(Self.minimumSide)×\(Self.minimumSide), got \(height)×\(width)")
        }
        self.count = count; self.classes = classes; self.height = height; self.width = width
        self.seed = seed; self.split = split
        let nO = min(classes, 6), nF = min((classes + nO - 1) / nO, 4)
        self.nO = nO; self.nF = nF
        nS = (classes + nO * nF - 1) / (nO * nF)
        let scale = Float(min(height, width)) / 32
        periods = (0..<nF).map { f in
            nF == 1 ? 5 * scale : 3 * scale * Float(pow(11.0 / 3.0, Double(f) / Double(nF - 1)))
        }
    }

    /// (orientation radians, period pixels, shape) of class `c`.
    public func classParameters(_ c: Int) -> (theta: Float, period: Float, shape: Int) {
        let o = c % nO, f = (c / nO) % nF, s = c / (nO * nF)
        return (Float.pi * (Float(o) + Float(s) / Float(nS)) / Float(nO), periods[f], s % 5)
    }

    public func label(_ i: Int) -> Int {
        var r = KDRandom(keys: seed, 0x5A1E, split, UInt64(i))
        return r.nextInt(below: classes)
    }

    @inline(__always) static func inside(_ shape: Int, _ dx: Float, _ dy: Float) -> Bool {
        let ax = abs(dx), ay = abs(dy)
        switch shape {
        case 0: return dx * dx + dy * dy <= 1
        case 1: return max(ax, ay) <= 0.85
        case 2: return ax + ay <= 1.15
        case 3: let d = dx * dx + dy * dy; return d <= 1 && d >= 0.3
        default: return max(ax, ay) <= 1 && min(ax, ay) <= 0.38
        }
    }

    /// Blends a striped `shape` of radius `r` at (cx, cy) into `img` with opacity `alpha`.
    func drawObject(_ img: UnsafeMutablePointer<Float>, cx: Float, cy: Float, r: Float, shape: Int,
                    theta: Float, period: Float, phase: Float, c1: [Float], c2: [Float], alpha: Float) {
        let kx = cos(theta) * 2 * Float.pi / period, ky = sin(theta) * 2 * Float.pi / period
        let y0 = max(0, Int(cy - r) - 1), y1 = min(height - 1, Int(cy + r) + 1)
        let x0 = max(0, Int(cx - r) - 1), x1 = min(width - 1, Int(cx + r) + 1)
        guard y0 <= y1, x0 <= x1 else { return }
        for y in y0...y1 {
            let dy = (Float(y) - cy) / r
            for x in x0...x1 {
                let dx = (Float(x) - cx) / r
                guard Self.inside(shape, dx, dy) else { continue }
                let s = 0.5 + 0.5 * sin(kx * Float(x) + ky * Float(y) + phase)
                let p = img + (y * width + x) * 3
                for ch in 0..<3 { p[ch] = p[ch] * (1 - alpha) + (c2[ch] + (c1[ch] - c2[ch]) * s) * alpha }
            }
        }
    }

    public func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>) {
        let n = height * width * 3
        withUnsafeTemporaryAllocation(of: Float.self, capacity: n) { buf in
            let img = buf.baseAddress!
            render(i, into: img)
            for k in 0..<n { out[k] = UInt8(max(0, min(1, img[k])) * 255 + 0.5) }
        }
    }

    /// Renders sample `i` as HWC floats (unclamped, nominally [0, 1]).
    func render(_ i: Int, into img: UnsafeMutablePointer<Float>) {
        var rng = KDRandom(keys: seed, 0x5E7D, split, UInt64(i))
        let H = Float(height), W = Float(width), side = Float(min(height, width))
        func color() -> [Float] { [rng.nextFloat(), rng.nextFloat(), rng.nextFloat()] }
        // Background: colour plus a linear gradient per channel.
        let bg = (0..<3).map { _ in 0.25 + 0.5 * rng.nextFloat() }
        let gx = (0..<3).map { _ in 0.5 * (rng.nextFloat() - 0.5) },
            gy = (0..<3).map { _ in 0.5 * (rng.nextFloat() - 0.5) }
        for y in 0..<height {
            for x in 0..<width {
                let p = img + (y * width + x) * 3
                for ch in 0..<3 { p[ch] = bg[ch] + gx[ch] * (Float(x) / W - 0.5) + gy[ch] * (Float(y) / H - 0.5) }
            }
        }
        // Clutter: three soft blobs.
        for _ in 0..<3 {
            let cx = rng.nextFloat() * W, cy = rng.nextFloat() * H
            let r = side * (0.05 + 0.12 * rng.nextFloat()), col = color(), a0: Float = 0.6
            let y0 = max(0, Int(cy - 2 * r)), y1 = min(height - 1, Int(cy + 2 * r))
            let x0 = max(0, Int(cx - 2 * r)), x1 = min(width - 1, Int(cx + 2 * r))
            if y0 > y1 || x0 > x1 { continue }
            for y in y0...y1 {
                for x in x0...x1 {
                    let d2 = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)) / (r * r)
                    let a = a0 * exp(-d2)
                    let p = img + (y * width + x) * 3
                    for ch in 0..<3 { p[ch] = p[ch] * (1 - a) + col[ch] * a }
                }
            }
        }
        // The class object and a smaller random distractor, in random order.
        let c = label(i)
        let (theta, period, shape) = classParameters(c)
        let objR = side * (0.22 + 0.14 * rng.nextFloat())
        let obj = (cx: objR * 0.5 + rng.nextFloat() * (W - objR), cy: objR * 0.5 + rng.nextFloat() * (H - objR),
                   theta: theta + 0.06 * (2 * rng.nextFloat() - 1), period: period * (0.9 + 0.2 * rng.nextFloat()),
                   phase: 2 * Float.pi * rng.nextFloat(), alpha: 0.6 + 0.3 * rng.nextFloat())
        let fg = color(), bgc = fg.map { max(0, min(1, 1 - $0 + 0.3 * (rng.nextFloat() - 0.5))) }
        let dR = side * (0.1 + 0.07 * rng.nextFloat())
        let dist = (cx: rng.nextFloat() * W, cy: rng.nextFloat() * H, theta: Float.pi * rng.nextFloat(),
                    period: periods[0] * (0.8 + 3 * rng.nextFloat()), phase: 2 * Float.pi * rng.nextFloat(),
                    shape: rng.nextInt(below: 5))
        let d1 = color(), d2 = color()
        let distractorFirst = rng.nextFloat() < 0.5
        if distractorFirst {
            drawObject(img, cx: dist.cx, cy: dist.cy, r: dR, shape: dist.shape, theta: dist.theta, period: dist.period,
                       phase: dist.phase, c1: d1, c2: d2, alpha: 0.5)
        }
        drawObject(img, cx: obj.cx, cy: obj.cy, r: objR, shape: shape, theta: obj.theta, period: obj.period,
                   phase: obj.phase, c1: fg, c2: bgc, alpha: obj.alpha)
        if !distractorFirst {
            drawObject(img, cx: dist.cx, cy: dist.cy, r: dR, shape: dist.shape, theta: dist.theta, period: dist.period,
                       phase: dist.phase, c1: d1, c2: d2, alpha: 0.5)
        }
        // Pixel noise.
        for k in 0..<(height * width * 3) { img[k] += 0.16 * (rng.nextFloat() - 0.5) }
    }
}
