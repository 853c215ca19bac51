import Foundation
import XCTest
@testable import KDData
import KDTestSupport

/// A fresh temporary folder per test.
class TempDirTestCase: XCTestCase {
    var tmp: TemporaryDirectory!
    var dir: URL { tmp.url }
    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "kddata-") }
    override func tearDownWithError() throws { tmp?.remove() }
    func path(_ name: String) -> String { tmp.file(name) }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }
}

/// A tiny in-memory dataset whose pixel (i, y, x, c) = (i·7 + y·5 + x·3 + c) mod 256.
final class PatternDataset: ImageDataset, @unchecked Sendable {
    let count: Int, height: Int, width: Int, channels: Int, classes: Int
    var name: String { "pattern" }
    init(count: Int, height: Int = 6, width: Int = 5, channels: Int = 3, classes: Int = 4) {
        self.count = count; self.height = height; self.width = width; self.channels = channels; self.classes = classes
    }
    func label(_ i: Int) -> Int { i % classes }
    func copyImage(_ i: Int, into out: UnsafeMutablePointer<UInt8>) {
        for y in 0..<height { for x in 0..<width { for c in 0..<channels {
            out[(y * width + x) * channels + c] = UInt8((i * 7 + y * 5 + x * 3 + c) % 256)
        } } }
    }
}
