import Foundation
import XCTest
@testable import KDData

final class SyntheticTests: XCTestCase {
    func testDeterministicByIndex() throws {
        let a = try SyntheticDataset(count: 100, classes: 10, seed: 5)
        let b = try SyntheticDataset(count: 1000, classes: 10, seed: 5)
        XCTAssertEqual(a.image(17), b.image(17)); XCTAssertEqual(a.label(17), b.label(17))
        XCTAssertNotEqual(a.image(17), a.image(18))
        XCTAssertNotEqual(a.image(17), try SyntheticDataset(count: 100, classes: 10, seed: 6).image(17))
        XCTAssertNotEqual(a.image(3), try SyntheticDataset(count: 100, classes: 10, seed: 5, split: 1).image(3))
        let labels = a.labels()
        XCTAssertEqual(Set(labels), Set(0..<10))
        XCTAssertEqual(a.image(0).count, 32 * 32 * 3)
        XCTAssertThrowsError(try SyntheticDataset(count: 10, classes: 1, seed: 0)) {
            XCTAssertEqual("\($0)", "config data.classes: synthetic source supports 2…120 classes, got 1")
        }
    }

    /// Stripes of class 0 run across x (θ = 0), those of class 3 across y (θ = 90°): the mean
    /// horizontal/vertical gradient ratio differs between the two classes.
    func testClassConditionalStatisticsDiffer() throws {
        let d = try SyntheticDataset(count: 400, classes: 10, seed: 1)
        XCTAssertEqual(d.classParameters(0).theta, 0)
        XCTAssertEqual(d.classParameters(3).theta, Float.pi / 2, accuracy: 1e-6)
        func ratio(_ c: Int) -> Double {
            var gx = 0.0, gy = 0.0
            for i in 0..<d.count where d.label(i) == c {
                let im = d.image(i)
                for y in 0..<31 { for x in 0..<31 { for ch in 0..<3 {
                    let v = Double(im[(y * 32 + x) * 3 + ch])
                    gx += abs(Double(im[(y * 32 + x + 1) * 3 + ch]) - v)
                    gy += abs(Double(im[((y + 1) * 32 + x) * 3 + ch]) - v)
                } } }
            }
            return gx / gy
        }
        let r0 = ratio(0), r3 = ratio(3)
        XCTAssertGreaterThan(r0, 1.1 * r3, "class 0 ratio \(r0), class 3 ratio \(r3)")
    }

    /// Learnable by translation-invariant features, not by a linear template on raw pixels:
    /// nearest-centroid on Fourier magnitudes at the class frequencies (what oriented conv filters plus
    /// global pooling compute) is far above chance; nearest-centroid on raw pixels is near chance.
    func testTranslationInvariantFeaturesBeatRawPixels() throws {
        let C = 10, H = 24
        let d = try SyntheticDataset(count: 600, classes: C, height: H, width: H, seed: 7)
        var freqs: [(Float, Float)] = []
        for o in 0..<6 { for p in d.periods {
            let th = Float.pi * Float(o) / 6
            freqs.append((cos(th) * 2 * .pi / p, sin(th) * 2 * .pi / p))
        } }
        func fourier(_ im: [UInt8]) -> [Float] {
            freqs.map { (kx, ky) in
                var re: Float = 0, imag: Float = 0
                for y in 0..<H { for x in 0..<H {
                    let p = (y * H + x) * 3
                    let g = (Float(im[p]) + Float(im[p + 1]) + Float(im[p + 2])) / 765
                    let a = kx * Float(x) + ky * Float(y)
                    re += g * cos(a); imag += g * sin(a)
                } }
                return (re * re + imag * imag).squareRoot()
            }
        }
        func accuracy(_ feature: ([UInt8]) -> [Float]) -> Double {
            let train = 0..<400, test = 400..<600
            let feats = (0..<600).map { feature(d.image($0)) }
            let dim = feats[0].count
            var cent = [[Float]](repeating: [Float](repeating: 0, count: dim), count: C),
                n = [Float](repeating: 0, count: C)
            for i in train { let l = d.label(i); n[l] += 1; for k in 0..<dim { cent[l][k] += feats[i][k] } }
            for c in 0..<C { for k in 0..<dim { cent[c][k] /= max(n[c], 1) } }
            var right = 0
            for i in test {
                let best = (0..<C).min { a, b in
                    zip(feats[i], cent[a]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
                        < zip(feats[i], cent[b]).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
                }!
                if best == d.label(i) { right += 1 }
            }
            return Double(right) / Double(test.count)
        }
        let inv = accuracy(fourier), raw = accuracy { $0.map { Float($0) / 255 } }
        print("synthetic nearest-centroid accuracy: fourier features \(inv), raw pixels \(raw) (chance 0.1)")
        XCTAssertGreaterThan(inv, 0.35)
        XCTAssertLessThan(raw, 0.2)
    }
}
