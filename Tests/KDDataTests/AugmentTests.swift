import XCTest
import KDTensor
@testable import KDData

final class AugmentTests: XCTestCase {
    /// Recomputes the standard crop + flip from the documented draws and compares pixel by pixel.
    func testCropAndFlipMatchTheDocumentedFormula() throws {
        let H = 6, W = 5, C = 3
        let ds = PatternDataset(count: 10, height: H, width: W, channels: C)
        let norm = Normalization.symmetric(channels: C)
        let r = try ViewRenderer(height: H, width: W, channels: C, policy: AugmentPolicy(padding: 2),
                                 normalization: norm, seed: 77)
        var flips = Set<Bool>(), shifts = Set<Int>()
        for i in 0..<10 {
            for v in 0..<2 {
                let src = ds.image(i)
                var out = [Float](repeating: .nan, count: H * W * C)
                src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                    r.render(s.baseAddress!, sampleIndex: i, epoch: 3, view: v, views: 2, augment: true,
                             into: o.baseAddress!)
                } }
                var rng = KDRandom(keys: 77, 3, UInt64(i), UInt64(v), 0xA06)
                let dy = rng.nextInt(below: 5) - 2, dx = rng.nextInt(below: 5) - 2
                let flip = (rng.next() >> 63) == 1
                flips.insert(flip); shifts.insert(dy * 10 + dx)
                for y in 0..<H { for x in 0..<W { for c in 0..<C {
                    let sy = y + dy, sx = (flip ? W - 1 - x : x) + dx
                    let byte: UInt8 = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? src[(sy * W + sx) * C + c] : 0
                    XCTAssertEqual(out[(y * W + x) * C + c], (Float(byte) / 255 - 0.5) / 0.5,
                                   "i \(i) v \(v) y \(y) x \(x)")
                } } }
            }
        }
        XCTAssertEqual(flips, [true, false])
        XCTAssertGreaterThan(shifts.count, 5)
    }

    /// `data.flip: false` keeps the crop and drops the mirror (digits must not be mirrored);
    /// `data.crop_padding: 0` keeps the flip and drops the shift; `data.augment: false` turns both off.
    /// Each view is compared with the documented formula for the draws of its key.
    func testTrainingPolicyFlipAndCropSwitches() throws {
        let H = 6, W = 5, C = 1
        let ds = PatternDataset(count: 12, height: H, width: W, channels: C)
        let norm = Normalization.symmetric(channels: C)
        func views(augment: Bool, flip: Bool, padding: Int) throws -> (flipped: Int, shifted: Int) {
            let policy = AugmentPolicy.training(augment: augment, flip: flip, cropPadding: padding, views: 2,
                                                strongVirtualView: false)
            XCTAssertEqual(policy, AugmentPolicy(enabled: augment, padding: padding, flip: flip))
            let r = try ViewRenderer(height: H, width: W, channels: C, policy: policy, normalization: norm, seed: 5)
            var flipped = 0, shifted = 0
            for i in 0..<12 {
                for v in 0..<2 {
                    let src = ds.image(i)
                    var out = [Float](repeating: .nan, count: H * W * C)
                    src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                        r.render(s.baseAddress!, sampleIndex: i, epoch: 1, view: v, views: 2, augment: true,
                                 into: o.baseAddress!)
                    } }
                    var rng = KDRandom(keys: 5, 1, UInt64(i), UInt64(v), 0xA06)
                    let dy = rng.nextInt(below: 2 * padding + 1) - padding
                    let dx = rng.nextInt(below: 2 * padding + 1) - padding
                    let mirror = augment && flip && (rng.next() >> 63) == 1
                    let (sy0, sx0) = augment ? (dy, dx) : (0, 0)
                    if mirror { flipped += 1 }
                    if sy0 != 0 || sx0 != 0 { shifted += 1 }
                    for y in 0..<H { for x in 0..<W {
                        let sy = y + sy0, sx = (mirror ? W - 1 - x : x) + sx0
                        let byte: UInt8 = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? src[sy * W + sx] : 0
                        XCTAssertEqual(out[y * W + x], (Float(byte) / 255 - 0.5) / 0.5, "i \(i) v \(v) y \(y) x \(x)")
                    } }
                }
            }
            return (flipped, shifted)
        }
        let cropOnly = try views(augment: true, flip: false, padding: 2)
        XCTAssertEqual(cropOnly.flipped, 0)
        XCTAssertGreaterThan(cropOnly.shifted, 12)
        let flipOnly = try views(augment: true, flip: true, padding: 0)
        XCTAssertGreaterThan(flipOnly.flipped, 4)
        XCTAssertEqual(flipOnly.shifted, 0)
        let off = try views(augment: false, flip: true, padding: 2)
        XCTAssertEqual(off.flipped + off.shifted, 0)
    }

    func testStrongViewOnlyOnTheLastViewAndCutoutIsZero() throws {
        let H = 16, W = 16
        let ds = PatternDataset(count: 4, height: H, width: W, channels: 3)
        let policy = AugmentPolicy(padding: 0, flip: false, strongLastView: true, jitter: 0.3, cutout: 6)
        let r = try ViewRenderer(height: H, width: W, channels: 3, policy: policy, normalization: .cifar10, seed: 1)
        let plain = try ViewRenderer(height: H, width: W, channels: 3, policy: AugmentPolicy(enabled: false),
                                     normalization: .cifar10, seed: 1)
        let src = ds.image(1)
        func render(_ rr: ViewRenderer, view: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: H * W * 3)
            src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                rr.render(s.baseAddress!, sampleIndex: 1, epoch: 0, view: view, views: 2, augment: true,
                          into: o.baseAddress!)
            } }
            return out
        }
        XCTAssertEqual(render(r, view: 0), render(plain, view: 0))   // no padding, no flip: identity
        let strong = render(r, view: 1)
        XCTAssertNotEqual(strong, render(plain, view: 1))
        XCTAssertTrue(strong.allSatisfy { $0.isFinite })
        XCTAssertGreaterThanOrEqual(strong.filter { $0 == 0 }.count, 3 * 3 * 3)  // at least a 3×3 corner of the cutout
    }
}
