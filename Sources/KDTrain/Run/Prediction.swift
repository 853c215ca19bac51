import Foundation
import KDFormats
import KDModels
import KDTensor

/// The configuration of a checkpoint's run: `--config` when given, else the resolved config recorded
/// in the checkpoint's metadata (`kdgraph.config`, docs/training.md "Using the weights").
public enum CheckpointConfig {
    public static func load(config: String?, checkpoint: String, overrides: [String]) throws -> KDConfig {
        if let config { return try KDConfig.load(path: config, overrides: overrides) }
        let f = try Checkpoint.read(path: checkpoint)
        guard let yaml = f.metadata["kdgraph.config"] else {
            throw TrainError.io(path: checkpoint, message: "no kdgraph.config in its metadata (written by another "
                                + "tool or an older KDGraph): pass --config with the run's configuration")
        }
        return try KDConfig.parse(yaml: yaml, file: "\(checkpoint) (kdgraph.config)", overrides: overrides)
    }
}

/// `kdgraph predict`: a checkpoint's logits for the images of an `.npy` file, from the checkpoint alone.
public enum Prediction {
    /// Builds the model the metadata names (`kdgraph.model`, `classes`, `input_channels`, `input_size`,
    /// `hidden`), loads the weights, preprocesses `images` (uint8: `(pixel/255 − mean[c]) / std[c]` with
    /// `kdgraph.mean`/`kdgraph.std`; float: as it is), runs eval mode in batches of `batch` and writes the
    /// float32 logits `[N, classes]` to `out`. Returns the counts.
    public static func run(checkpoint: String, images: String, out: String,
                           batch: Int) throws -> (images: Int, classes: Int) {
        let f = try Checkpoint.read(path: checkpoint)
        func field(_ key: String) throws -> String {
            guard let v = f.metadata[key] else {
                throw TrainError.io(path: checkpoint, message: "no \(key) in its metadata (written by another tool "
                                    + "or an "
                                    + "older KDGraph): use `kdgraph eval --config` with the run's configuration")
            }
            return v
        }
        func ints(_ key: String) throws -> [Int] {
            let text = try field(key)
            if text.isEmpty { return [] }
            let v = text.split(separator: ",").compactMap { Int($0) }
            guard v.count == text.split(separator: ",").count else {
                throw TrainError.io(path: checkpoint, message: "metadata \(key) '\(text)' is not a list of integers")
            }
            return v
        }
        func floats(_ key: String) throws -> [Float] {
            let text = try field(key)
            let v = text.split(separator: ",").compactMap { Float($0) }
            guard v.count == text.split(separator: ",").count, !v.isEmpty else {
                throw TrainError.io(path: checkpoint, message: "metadata \(key) '\(text)' is not a list of numbers")
            }
            return v
        }
        let classes = try ints("kdgraph.classes").first ?? 0
        let channels = try ints("kdgraph.input_channels").first ?? 0
        let size = try ints("kdgraph.input_size")
        guard size.count == 2, channels >= 1, classes >= 2 else {
            throw TrainError.io(path: checkpoint, message: "metadata: classes \(classes), input_channels \(channels), "
                                + "input_size \(size) do not describe a model input")
        }
        let hidden = try ints("kdgraph.hidden")
        let model = try ModelZoo.make(name: try field("kdgraph.model"), classes: classes, inputChannels: channels,
                                      imageSize: size, hiddenSizes: ModelZoo.hiddenSizes(hidden))
        try Checkpoint.loadWeights(f, into: model)
        model.eval()

        let a = try NPYArray(path: images)
        let perImage = size[0] * size[1] * channels
        guard a.rowCount >= 1 else {
            throw TrainError.io(path: images, message: "holds no images (shape \(a.shape)): nothing to predict")
        }
        guard a.rowElements == perImage else {
            throw TrainError.io(path: images, message: "shape \(a.shape): the model takes "
                                + "\(size[0])×\(size[1])×\(channels) "
                                + "(NHWC) per image, \(perImage) values")
        }
        let normalise: ((Int, Float) -> Float)?
        switch a.dtype {
        case .uint8:
            let (mean, std) = (try floats("kdgraph.mean"), try floats("kdgraph.std"))
            guard mean.count == channels, std.count == channels else {
                throw TrainError.io(path: checkpoint, message: "metadata kdgraph.mean/std have "
                                    + "\(mean.count)/\(std.count) "
                                    + "entries for \(channels) channel(s)")
            }
            normalise = { k, x in (x / 255 - mean[k % channels]) / std[k % channels] }
        case .float32, .float64:
            normalise = nil
        default:
            throw TrainError.io(path: images,
                                message: "dtype \(a.dtype): expected uint8 images or float32/float64 input")
        }
        var logits = [Float]()
        logits.reserveCapacity(a.rowCount * classes)
        var start = 0
        while start < a.rowCount {
            let n = min(batch, a.rowCount - start)
            let x = Tensor(uninitializedShape: [n, size[0], size[1], channels])
            a.copyAsFloat(elementOffset: start * perImage, count: n * perImage, into: x.ptr)
            if let normalise { for k in 0..<(n * perImage) { x.ptr[k] = normalise(k % perImage, x.ptr[k]) } }
            if let bad = (0..<(n * perImage)).first(where: { !x.ptr[$0].isFinite }) {
                throw TrainError.io(path: images, message: "image \(start + bad / perImage) holds a non-finite value "
                                    + "(\(x.ptr[bad]) at element \(bad % perImage)): the model's outputs would be "
                                    + "meaningless; fix or drop that image")
            }
            let (_, z) = try withNoGrad { try model(x) }
            logits.append(contentsOf: UnsafeBufferPointer(start: z.ptr, count: z.count))
            start += n
        }
        try NPYWriter.write(logits, shape: [a.rowCount, classes], to: out)
        return (a.rowCount, classes)
    }
}
