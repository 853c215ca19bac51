import Foundation
import KDData
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

    /// `error` from opening the data of a config read from the checkpoint: a missing file or folder is the
    /// training run's data, which has often moved since; the message says where the path came from and how to
    /// name the new place. Any other error as it is.
    public static func explainingMovedData(_ error: Error, checkpoint: String) -> Error {
        guard case let DataError.missingFile(path, what) = error else { return error }
        return TrainError.io(path: path, message: "missing \(what): the path of the training run's config, recorded "
                             + "in \(checkpoint) (kdgraph.config); name where the data is now with --set "
                             + "data.path=DIR, or give --config")
    }
}

/// What `predict` needs to run a model on an `.npy` file: the model, its input and the normalisation of
/// uint8 pixels, from a KDGraph checkpoint's metadata or from a config (for weights from elsewhere, e.g.
/// a PyTorch `state_dict` saved with safetensors).
public struct ModelInput: Equatable {
    public var model: String, classes: Int, channels: Int, size: [Int], hidden: [Int]
    public var mean: [Float], std: [Float]
    /// Where the values came from, for the output line (`checkpoint metadata` or the config file).
    public var source: String

    /// The values a KDGraph checkpoint records (docs/training.md, "Using the weights").
    public static func metadata(of f: SafetensorsFile) throws -> ModelInput {
        func field(_ key: String) throws -> String {
            guard let v = f.metadata[key] else {
                throw TrainError.io(path: f.file, message: "no \(key) in its metadata (written by another tool or an "
                                    + "older KDGraph): name the model and preprocessing with --config")
            }
            return v
        }
        func ints(_ key: String) throws -> [Int] {
            let text = try field(key)
            if text.isEmpty { return [] }
            let v = text.split(separator: ",").compactMap { Int($0) }
            guard v.count == text.split(separator: ",").count else {
                throw TrainError.io(path: f.file, message: "metadata \(key) '\(text)' is not a list of integers")
            }
            return v
        }
        func floats(_ key: String) throws -> [Float] {
            let text = try field(key)
            let v = text.split(separator: ",").compactMap { Float($0) }
            guard v.count == text.split(separator: ",").count else {
                throw TrainError.io(path: f.file, message: "metadata \(key) '\(text)' is not a list of numbers")
            }
            return v
        }
        return ModelInput(model: try field("kdgraph.model"), classes: try ints("kdgraph.classes").first ?? 0,
                          channels: try ints("kdgraph.input_channels").first ?? 0,
                          size: try ints("kdgraph.input_size"), hidden: try ints("kdgraph.hidden"),
                          mean: try floats("kdgraph.mean"), std: try floats("kdgraph.std"),
                          source: "checkpoint metadata")
    }

    /// The values of `config`'s student on its data: the input and the normalisation the data decides
    /// (`data.mean`/`data.std`, or a file source's own statistics), as training would use them.
    public static func of(config c: KDConfig) throws -> ModelInput {
        let data = try TrainingData(config: c)
        return ModelInput(model: c.student.model, classes: c.data.classes, channels: data.inputChannels,
                          size: data.inputSize, hidden: c.student.hidden, mean: data.mean.map(Float.init),
                          std: data.std.map(Float.init), source: c.file)
    }
}

/// `kdgraph predict`: a model's logits for the images of an `.npy` file.
public enum Prediction {
    /// `checkpoint` run on `images`: with `config` nil a KDGraph checkpoint described by its own metadata;
    /// with a config, any safetensors weights (a PyTorch `state_dict`) described by the config's student and
    /// data. Returns the counts and the description used (the output names its normalisation).
    public static func run(checkpoint: String, config: KDConfig? = nil, images: String, out: String,
                           batch: Int) throws -> (images: Int, classes: Int, input: ModelInput) {
        let weights: SafetensorsFile, input: ModelInput
        if let config {
            weights = try Safetensors.read(path: checkpoint)
            try Checkpoint.refuseStateFile(weights)
            input = try ModelInput.of(config: config)
        } else {
            weights = try Checkpoint.read(path: checkpoint)
            input = try ModelInput.metadata(of: weights)
        }
        let n = try run(weights: weights, input: input, images: images, out: out, batch: batch)
        return (n.images, n.classes, input)
    }

    /// Builds the model `input` names, loads the weights of `weights` (any safetensors file whose names
    /// match the model), preprocesses `images` (uint8: `(pixel/255 − mean[c]) / std[c]`; float: as it is),
    /// runs eval mode in batches of `batch` and writes the float32 logits `[N, classes]` to `out`.
    public static func run(weights: SafetensorsFile, input m: ModelInput, images: String, out: String,
                           batch: Int) throws -> (images: Int, classes: Int) {
        // Writing the logits over an input would destroy it (the write is atomic, so nothing stops it).
        for (input, name) in [(images, "input images"), (weights.file, "checkpoint")] where isSameFile(out, input) {
            throw TrainError.io(path: out, message: "the same file as the \(name) (\(input)): writing the logits "
                                + "would replace it; choose another --out")
        }
        let (classes, channels, size) = (m.classes, m.channels, m.size)
        guard size.count == 2, channels >= 1, classes >= 2 else {
            throw TrainError.io(path: weights.file, message: "\(m.source): classes \(classes), input channels "
                                + "\(channels), input size \(size) do not describe a model input")
        }
        let model = try ModelZoo.make(name: m.model, classes: classes, inputChannels: channels,
                                      imageSize: size, hiddenSizes: ModelZoo.hiddenSizes(m.hidden))
        try Checkpoint.loadWeights(weights, into: model)
        model.eval()

        let a = try NPYArray(path: images)
        let perImage = size[0] * size[1] * channels
        guard a.rowCount >= 1 else {
            throw TrainError.io(path: images, message: "holds no images (shape \(a.shape)): nothing to predict")
        }
        // A model trained on feature rows (`train_features.npy`) has no normalisation and takes 1×D×1 inputs.
        let features = m.mean.isEmpty && m.std.isEmpty && size[0] == 1 && channels == 1
        if a.dtype == .uint8 && features {
            throw TrainError.io(path: images, message: "dtype uint8: the model was trained on feature rows (float "
                                + "values, no normalisation), not on images")
        }
        // The layout, not only the count: an N×C×H×W array (PyTorch's) has the values of N×H×W×C ones, in
        // another order.
        let row = Array(a.shape.dropFirst())
        let layouts = features ? [[perImage], [1, perImage], [1, perImage, 1]]
            : [[size[0], size[1], channels]] + (channels == 1 ? [[size[0], size[1]]] : [])
        guard layouts.contains(row) else {
            let nchw = !features && row == [channels, size[0], size[1]]
            throw TrainError.io(path: images, message: "shape \(a.shape): the model takes "
                                + (features ? "feature rows of \(perImage) values (N×\(perImage))"
                                   : "N×\(size[0])×\(size[1])×\(channels) images (NHWC"
                                     + (channels == 1 ? ", or N×\(size[0])×\(size[1])" : "") + ")")
                                + (nchw ? "; this is N×C×H×W (PyTorch's layout): transpose it, e.g. "
                                   + "np.transpose(x, (0, 2, 3, 1))" : ""))
        }
        let normalise: ((Int, Float) -> Float)?
        switch a.dtype {
        case .uint8:
            let (mean, std) = (m.mean, m.std)
            guard mean.count == channels, std.count == channels else {
                throw TrainError.io(path: weights.file, message: "\(m.source): mean/std have "
                                    + "\(mean.count)/\(std.count) entries for \(channels) channel(s)")
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

/// Whether `a` and `b` name one existing file (the same device and inode: `./x.npy` and `x.npy`, a link).
func isSameFile(_ a: String, _ b: String) -> Bool {
    var sa = stat(), sb = stat()
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino
}
