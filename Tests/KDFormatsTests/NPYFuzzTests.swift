import Foundation
import XCTest
@testable import KDFormats
import KDTestSupport

/// Random and mutated `.npy` images must give a header or a typed `NPYError`, never a crash.
final class NPYFuzzTests: XCTestCase {
    func testFuzzNeverCrashes() throws {
        var seed: UInt64 = 0x1234_5678
        func next() -> UInt64 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return seed >> 11 }
        let templates: [[UInt8]] = [
            NPYWriter.encode([Float](repeating: 0.5, count: 6), shape: [2, 3], version: 1),
            NPYWriter.encode([UInt8](repeating: 1, count: 48), shape: [2, 4, 2, 3], version: 2),
            NPYWriter.encode([Int64](repeating: 3, count: 5), shape: [5], version: 3),
        ]
        let tokens = ["(", ")", "{", "}", "'", "\"", ",", ":", "-", "True", "False", "None", "999999999999999999999",
                      "[", "]", "'descr'", "'shape'", "'<f4'", " ", "\n", "\\", "L", "0", "((((((((((((((((((("]
        var tried = 0, parsed = 0, errors = 0
        let deadline = Date().addingTimeInterval(8)
        while Date() < deadline || tried < 2000 {
            var bytes: [UInt8]
            switch next() % 4 {
            case 0:  // pure random bytes, sometimes with a valid magic/version prefix
                bytes = (0..<Int(next() % 200)).map { _ in UInt8(truncatingIfNeeded: next()) }
                if next() % 2 == 0 { bytes = NPYHeader.magic + [UInt8(1 + next() % 3), 0] + bytes }
            case 1:  // byte flips in a valid file
                bytes = templates[Int(next() % 3)]
                for _ in 0..<(1 + Int(next() % 6)) {
                    bytes[Int(next()) % bytes.count] = UInt8(truncatingIfNeeded: next())
                }
            case 2:  // token splices into the header dict
                bytes = templates[Int(next() % 3)]
                let lenBytes = bytes[6] == 1 ? 2 : 4
                let start = 8 + lenBytes, end = bytes.firstIndex(of: 0x0A) ?? bytes.count
                let at = start + Int(next() % UInt64(max(1, end - start)))
                let tok = Array(tokens[Int(next() % UInt64(tokens.count))].utf8)
                if next() % 2 == 0 { bytes.replaceSubrange(at..<min(end, at + tok.count), with: tok) }
                else { bytes.insert(contentsOf: tok, at: at); if bytes[6] == 1 { bytes[8] &+= UInt8(tok.count) } }
            default:  // truncations and length-field corruption
                bytes = templates[Int(next() % 3)]
                if next() % 2 == 0 { bytes = Array(bytes[0..<Int(next() % UInt64(bytes.count))]) }
                else { bytes[8] = UInt8(truncatingIfNeeded: next()); bytes[9] = UInt8(truncatingIfNeeded: next()) }
            }
            tried += 1
            do {
                let h = try bytes.withUnsafeBytes { try NPYHeader.parse($0, fileSize: bytes.count, path: "fuzz") }
                XCTAssertLessThanOrEqual(h.dataOffset + h.dataBytes, bytes.count)
                parsed += 1
            } catch is NPYError {
                errors += 1
            }
        }
        // A few hundred through the file + mmap path as well.
        let dir = try TemporaryDirectory(prefix: "npy-fuzz-")
        defer { dir.remove() }
        var fileTried = 0
        for k in 0..<300 {
            var bytes = templates[k % 3]
            bytes[Int(next()) % bytes.count] = UInt8(truncatingIfNeeded: next())
            if k % 3 == 0 { bytes = Array(bytes[0..<Int(next() % UInt64(bytes.count))]) }
            let p = dir.file("f\(k).npy")
            try Data(bytes).write(to: URL(fileURLWithPath: p))
            if let a = try? NPYArray(path: p) { _ = a.floatArray() }
            fileTried += 1
        }
        print("npy fuzz: \(tried) in-memory inputs (\(parsed) parsed, \(errors) typed errors), \(fileTried) files")
        XCTAssertEqual(parsed + errors, tried)
        XCTAssertGreaterThan(tried, 2000)
    }
}
