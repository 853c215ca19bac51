import Foundation
import KDFormats

/// The embedded synthetic data written as an `npy` folder (`kdgraph export-data`): a user's first
/// `data.path`, in exactly the layout `data.source: npy` reads (docs/data.md): `train_images.npy` and
/// `test_images.npy` (N×H×W×3 uint8), `train_labels.npy` and `test_labels.npy` (N int64).
public enum SyntheticExport {
    /// Writes `train` and `test` images of `classes` classes, `size`×`size`, seeded by `seed`, into
    /// `folder` (created). A folder that already holds any of the four files is refused, untouched.
    public static func write(folder: String, train: Int, test: Int, classes: Int, size: Int, seed: UInt64) throws {
        let names = ["train_images.npy", "train_labels.npy", "test_images.npy", "test_labels.npy"]
        let paths = names.map { (folder as NSString).appendingPathComponent($0) }
        if let existing = paths.first(where: { FileManager.default.fileExists(atPath: $0) }) {
            throw DataError.invalidFile(path: existing, reason: "already exists: export-data writes a new folder "
                                        + "(choose another --out or delete it)")
        }
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        } catch {
            throw DataError.invalidFile(path: folder, reason: "cannot create the folder (\(ioReason(error)))")
        }
        for (split, count) in [(UInt64(0), train), (UInt64(1), test)] {
            let d = try SyntheticDataset(count: count, classes: classes, height: size, width: size, seed: seed,
                                         split: split)
            var pixels = [UInt8](repeating: 0, count: count * d.imageBytes)
            pixels.withUnsafeMutableBufferPointer { b in
                for i in 0..<count { d.copyImage(i, into: b.baseAddress! + i * d.imageBytes) }
            }
            let prefix = split == 0 ? 0 : 2
            do {
                try NPYWriter.write(pixels, shape: [count, size, size, d.channels], to: paths[prefix])
                try NPYWriter.write((0..<count).map { Int64(d.label($0)) }, shape: [count], to: paths[prefix + 1])
            } catch let e as NPYError {
                throw DataError.npy(e)
            }
        }
    }
}
