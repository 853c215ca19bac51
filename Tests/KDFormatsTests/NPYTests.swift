import Foundation
import XCTest
@testable import KDFormats
import KDTestSupport

final class NPYTests: XCTestCase {
    var tmp: TemporaryDirectory!

    override func setUpWithError() throws { tmp = try TemporaryDirectory(prefix: "npy-tests-") }

    override func tearDownWithError() throws { tmp?.remove() }

    func path(_ name: String) -> String { tmp.file(name) }

    func writeBytes(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = path(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func message(_ body: () throws -> Void) -> String {
        do { try body(); return "no error" } catch { return "\(error)" }
    }

    func testRoundTripAllVersionsAndDTypes() throws {
        for version in 1...3 {
            let f: [Float] = (0..<24).map { Float($0) * 0.5 - 3 }
            let pf = path("f\(version).npy")
            try NPYWriter.write(f, shape: [2, 3, 4], to: pf, version: version)
            let a = try NPYArray(path: pf)
            XCTAssertEqual(a.header.major, version)
            XCTAssertEqual(a.dtype, .float32)
            XCTAssertEqual(a.shape, [2, 3, 4])
            XCTAssertEqual(a.rowCount, 2); XCTAssertEqual(a.rowElements, 12); XCTAssertEqual(a.rowBytes, 48)
            XCTAssertEqual(a.header.dataOffset % 64, 0)
            XCTAssertEqual(a.floatArray(), f)
            XCTAssertEqual(a.floatRow(1), Array(f[12..<24]))
            let r = try a.rows(1..<2)
            XCTAssertEqual(r.count, 48)
            XCTAssertEqual(r.load(fromByteOffset: 4, as: Float.self), f[13])

            let d: [Double] = [1.5, -2.25, 3e10]
            try NPYWriter.write(d, shape: [3], to: path("d.npy"), version: version)
            let ad = try NPYArray(path: path("d.npy"))
            XCTAssertEqual(ad.dtype, .float64); XCTAssertEqual(ad.floatArray(), d.map(Float.init))

            let u: [UInt8] = [0, 7, 255, 128, 1, 2]
            try NPYWriter.write(u, shape: [2, 3], to: path("u.npy"), version: version)
            let au = try NPYArray(path: path("u.npy"))
            XCTAssertEqual(au.dtype, .uint8); XCTAssertEqual(au.floatRow(0), [0, 7, 255])
            XCTAssertEqual(au.intValue(2), 255)

            let i4: [Int32] = [-1, 5, 9]
            try NPYWriter.write(i4, shape: [3], to: path("i4.npy"), version: version)
            let a4 = try NPYArray(path: path("i4.npy"))
            XCTAssertEqual(a4.dtype, .int32); XCTAssertEqual((0..<3).map { a4.intValue($0) }, [-1, 5, 9])

            let i8: [Int64] = [1 << 40, -3, 0, 7]
            try NPYWriter.write(i8, shape: [4], to: path("i8.npy"), version: version)
            let a8 = try NPYArray(path: path("i8.npy"))
            XCTAssertEqual(a8.dtype, .int64); XCTAssertEqual((0..<4).map { a8.intValue($0) }, [1 << 40, -3, 0, 7])

            let i1: [Int8] = [-128, 127]
            try NPYWriter.write(i1, shape: [2], to: path("i1.npy"), version: version)
            XCTAssertEqual(try NPYArray(path: path("i1.npy")).floatArray(), [-128, 127])
        }
    }

    /// A header exactly as NumPy writes it (v1, `<u1` spelled with `|`, 1-tuple shape, trailing comma).
    func testNumpyStyleHeadersAndVariants() throws {
        func file(_ dict: String, version: UInt8 = 1, data: [UInt8]) -> [UInt8] {
            var h = Array(dict.utf8)
            let pre = version == 1 ? 10 : 12
            while (pre + h.count + 1) % 64 != 0 { h.append(0x20) }
            h.append(0x0A)
            var out = NPYHeader.magic + [version, 0]
            if version == 1 { out += [UInt8(h.count & 0xFF), UInt8(h.count >> 8)] }
            else { out += [UInt8(h.count & 0xFF), UInt8(h.count >> 8), 0, 0] }
            return out + h + data
        }
        let p1 = try writeBytes(file("{'descr': '<u1', 'fortran_order': False, 'shape': (3,), }", data: [1, 2, 3]),
                                "a.npy")
        XCTAssertEqual(try NPYArray(path: p1).floatArray(), [1, 2, 3])
        // Double quotes, different key order, no trailing comma, Python 2 long suffix, v3.
        let p2 = try writeBytes(file("{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"|u1\"}",
                                     version: 3, data: [9, 8]), "b.npy")
        let b = try NPYArray(path: p2)
        XCTAssertEqual(b.shape, [1, 2]); XCTAssertEqual(b.floatArray(), [9, 8])
        // 0-d array and an empty array.
        let p3 = try writeBytes(file("{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                                     data: [0, 0, 0x80, 0x3F]), "c.npy")
        let c = try NPYArray(path: p3)
        XCTAssertEqual(c.shape, []); XCTAssertEqual(c.floatArray(), [1])
        let p4 = try writeBytes(file("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 5), }", data: []), "e.npy")
        XCTAssertEqual(try NPYArray(path: p4).count, 0)
        // fortran_order True on a 1-D array is the same layout: accepted.
        let p5 = try writeBytes(file("{'descr': '|u1', 'fortran_order': True, 'shape': (2,), }", data: [4, 5]), "f.npy")
        XCTAssertEqual(try NPYArray(path: p5).floatArray(), [4, 5])
    }

    func testErrorMessages() throws {
        let good = NPYWriter.encode([Float](repeating: 1, count: 12), shape: [3, 4])
        let hdr = NPYWriter.header(dtype: .float32, shape: [3, 4])

        let pm = try writeBytes([0x93] + Array("NUMPX".utf8) + Array(good[6...]), "magic.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pm) },
                       "\(pm): not a .npy file (bad magic, expected \\x93NUMPY)")

        var v = good; v[6] = 4
        let pv = try writeBytes(v, "version.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pv) },
                       "\(pv): unsupported .npy version 4.0 (supported: 1.0, 2.0, 3.0)")

        let pt = try writeBytes(Array(good[0..<40]), "trunc_header.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pt) },
                       "\(pt): truncated .npy header: expected \(hdr.count) bytes, file has 40")

        let pd = try writeBytes(Array(good[0..<(hdr.count + 20)]), "trunc_data.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pd) },
                       "\(pd): truncated data: the shape needs 48 bytes, the file has 20")

        func withDict(_ d: String) -> [UInt8] {
            var h = Array(d.utf8); while (10 + h.count + 1) % 64 != 0 { h.append(0x20) }; h.append(0x0A)
            return NPYHeader.magic + [1, 0, UInt8(h.count), 0] + h + [UInt8](repeating: 0, count: 64)
        }
        let pb = try writeBytes(withDict("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }"), "be.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pb) },
                       "\(pb): unsupported dtype '>f4' (supported: <f2, <f4, <f8, |u1, |i1, <i4, <i8)")
        let ps = try writeBytes(withDict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }"),
                                "struct.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: ps) },
                       "\(ps): unsupported dtype '(('a', '<f4'),)' (supported: <f2, <f4, <f8, |u1, |i1, <i4, <i8)")
        let pf = try writeBytes(withDict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"), "fortran.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pf) },
                       "\(pf): fortran_order=True is not supported (C order only)")
        let pk = try writeBytes(withDict("{'descr': '<f4', 'fortran_order': False}"), "nokey.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pk) }, "\(pk): malformed .npy header dict: missing key 'shape'")
        let pn = try writeBytes(withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }"), "neg.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pn) },
                       "\(pn): malformed .npy header dict: 'shape' entries must be non-negative integers, got (2, -3)")
        let pg = try writeBytes(withDict("{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }"), "garbled.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pg) },
                       "\(pg): malformed .npy header dict: expected ',' or '}' at offset 16")

        let pe = try writeBytes([], "empty.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: pe) },
                       "\(pe): not a .npy file (bad magic, expected \\x93NUMPY)")
        let missing = path("nope.npy")
        XCTAssertEqual(message { _ = try NPYArray(path: missing) },
                       "\(missing): cannot open .npy file: No such file or directory")

        let ok = try writeBytes(good, "ok.npy")
        let a = try NPYArray(path: ok)
        XCTAssertEqual(message { try a.expectShape([3, 5]) }, "\(ok): shape [3, 4] does not match the expected [3, 5]")
        XCTAssertEqual(message { try a.expectShape([nil]) }, "\(ok): shape [3, 4] does not match the expected [*]")
        XCTAssertNoThrow(try a.expectShape([nil, 4]))
        XCTAssertEqual(message { try a.expectDType([.uint8]) },
                       "\(ok): dtype '<f4' does not fit here (expected one of |u1)")
        XCTAssertEqual(message { _ = try a.rows(2..<4) }, "\(ok): rows 2..<4 out of range 0..<3")
    }

    /// The data region is read lazily through the mapping, and the mapping outlives the file name.
    func testMappingSurvivesUnlink() throws {
        let p = path("m.npy")
        try NPYWriter.write((0..<1000).map(Float.init), shape: [100, 10], to: p)
        let a = try NPYArray(path: p)
        try FileManager.default.removeItem(atPath: p)
        XCTAssertEqual(a.floatRow(99).first, 990)
    }
}
