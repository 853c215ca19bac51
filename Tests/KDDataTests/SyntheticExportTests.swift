import Foundation
import XCTest
import KDData
import KDTestSupport

/// `kdgraph export-data` (issue 29 item 5: the README's `digits/` placeholder had no way to make one):
/// the embedded images written as an npy folder read back by the `npy` source as the same images and
/// labels; a folder that already holds the files is refused, untouched.
final class SyntheticExportTests: XCTestCase {
    func testTheFolderReadsBackAsTheSameImagesAndIsNeverOverwritten() throws {
        let tmp = try TemporaryDirectory(prefix: "kdgraph-export-")
        defer { tmp.remove() }
        let dir = tmp.file("digits")
        try SyntheticExport.write(folder: dir, train: 20, test: 6, classes: 4, size: 8, seed: 3)
        let splits = try DataSources.open(DataSourceConfig(source: "npy", path: dir, classes: 4, imageSize: nil,
                                                           evalFraction: 0.1, seed: 3))
        let original = try SyntheticDataset(count: 20, classes: 4, height: 8, width: 8, seed: 3, split: 0)
        let test = try SyntheticDataset(count: 6, classes: 4, height: 8, width: 8, seed: 3, split: 1)
        XCTAssertEqual(splits.train.count, 20)
        XCTAssertEqual(splits.eval.count, 6)
        for i in 0..<20 {
            XCTAssertEqual(splits.train.image(i), original.image(i), "image \(i)")
            XCTAssertEqual(splits.train.label(i), original.label(i))
        }
        XCTAssertEqual((0..<6).map(splits.eval.image), (0..<6).map(test.image))
        let before = try Data(contentsOf: URL(fileURLWithPath: dir + "/train_images.npy"))
        XCTAssertThrowsError(try SyntheticExport.write(folder: dir, train: 5, test: 5, classes: 4, size: 8, seed: 0)) {
            XCTAssertTrue("\($0)".contains("train_images.npy: already exists"), "\($0)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: dir + "/train_images.npy")), before)
    }
}
