import XCTest
import KDTensor
@testable import KDData

final class AugmentTests: XCTestCase {
    /// Recomputes the standard crop + flip from the documented draws and compares pixel by pixel.
    func testCropAndFlipMatchTheDocumentedFormula() throws {
        let H = 6, W = 5, C = 3
        let ds = PatternDataset(count: 10, height: H, width: W, channels: C)
        let norm = Normalization.symmetric(channels: C)
        let r = try ViewRenderer(height: H, width: W, channels: C, policy: AugmentPolicy(padding: 2), normalization: norm, seed: 77)
        var flips = Set<Bool>(), shifts = Set<Int>()
        for i in 0..<10 {
            for v in 0..<2 {
                let src = ds.image(i)
                var out = [Float](repeating: .nan, count: H * W * C)
                src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                    r.render(s.baseAddress!, sampleIndex: i, epoch: 3, view: v, views: 2, augment: true, into: o.baseAddress!)
                } }
                var rng = KDRandom(keys: 77, 3, UInt64(i), UInt64(v), 0xA06)
                let dy = rng.nextInt(below: 5) - 2, dx = rng.nextInt(below: 5) - 2
                let flip = (rng.next() >> 63) == 1
                flips.insert(flip); shifts.insert(dy * 10 + dx)
                for y in 0..<H { for x in 0..<W { for c in 0..<C {
                    let sy = y + dy, sx = (flip ? W - 1 - x : x) + dx
                    let byte: UInt8 = (sy >= 0 && sy < H && sx >= 0 && sx < W) ? src[(sy * W + sx) * C + c] : 0
                    XCTAssertEqual(out[(y * W + x) * C + c], (Float(byte) / 255 - 0.5) / 0.5, "i \(i) v \(v) y \(y) x \(x)")
                } } }
            }
        }
        XCTAssertEqual(flips, [true, false])
        XCTAssertGreaterThan(shifts.count, 5)
    }

    func testStrongViewOnlyOnTheLastViewAndCutoutIsZero() throws {
        let H = 16, W = 16
        let ds = PatternDataset(count: 4, height: H, width: W, channels: 3)
        let policy = AugmentPolicy(padding: 0, flip: false, strongLastView: true, jitter: 0.3, cutout: 6)
        let r = try ViewRenderer(height: H, width: W, channels: 3, policy: policy, normalization: .cifar10, seed: 1)
        let plain = try ViewRenderer(height: H, width: W, channels: 3, policy: AugmentPolicy(enabled: false), normalization: .cifar10, seed: 1)
        let src = ds.image(1)
        func render(_ rr: ViewRenderer, view: Int) -> [Float] {
            var out = [Float](repeating: .nan, count: H * W * 3)
            src.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                rr.render(s.baseAddress!, sampleIndex: 1, epoch: 0, view: view, views: 2, augment: true, into: o.baseAddress!)
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
