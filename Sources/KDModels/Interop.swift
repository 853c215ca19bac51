import Foundation
import KDFormats
import KDTensor

/// Exports what `launch/interop_check.py` needs to reproduce a KDGraph forward pass in PyTorch:
/// `model.safetensors` (PyTorch names and layouts), `input.npy` (NHWC float32), `logits.npy`,
/// `feature.npy` and `manifest.json` (model name, classes, input channels, image size, hidden sizes).
/// With `gradients`, also one training-mode step: `grad_weights.npy` (R), `train_logits.npy` and
/// `grads.safetensors`, the gradients of `L = Σ logits ⊙ R` for every parameter (PyTorch names and layouts).
public enum Interop {
    /// A deterministic input batch `[n, h, w, c]` of N(0, 1) values keyed by `seed`.
    public static func referenceInput(n: Int, height: Int, width: Int, channels: Int, seed: UInt64 = 7) -> Tensor {
        var rng = KDRandom(keys: seed, 0x1A7E)
        return Tensor.randn([n, height, width, channels], rng: &rng)
    }

    /// Runs `model` in eval mode (no tape) on `input` and writes the files listed above into `directory`
    /// (which must exist). Returns the logits.
    @discardableResult
    public static func export(model: any Classifier, input: Tensor, hiddenSizes: [Int] = [],
                              gradients: Bool = false, to directory: String) throws -> Tensor {
        model.eval()
        let (feature, logits) = try withNoGrad { try model(input) }
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        try Safetensors.write(Checkpoint.modelTensors(model), metadata: ["model": model.modelName],
                              to: dir + "model.safetensors")
        try writeNPY(input, to: dir + "input.npy")
        try writeNPY(logits, to: dir + "logits.npy")
        try writeNPY(feature, to: dir + "feature.npy")
        if gradients {
            // The training-mode pass updates running statistics: keep the caller's model unchanged.
            let savedBuffers = model.namedBuffers().map { ($0.1, $0.1.copy()) }
            defer { for (b, saved) in savedBuffers { b.assign(from: saved) } }
            model.train()
            model.zeroGrad()
            Tape.reset()
            var rng = KDRandom(keys: 0x6AD, UInt64(logits.count))
            let r = Tensor.uniform(logits.shape, -1, 1, rng: &rng)
            let trainLogits = try model(input).logits
            Tape.backward(trainLogits, seed: r)
            let grads = model.stateEntries().filter { !$0.isBuffer }.map { e in
                (e.name, Checkpoint.export(e.tensor.grad ?? Tensor.zeros(e.tensor.shape), layout: e.layout,
                                           integer: false))
            }
            try Safetensors.write(grads, to: dir + "grads.safetensors")
            try writeNPY(r, to: dir + "grad_weights.npy")
            try writeNPY(trainLogits.detached(), to: dir + "train_logits.npy")
            model.zeroGrad()
            model.eval()
        }
        let image = input.rank == 4 ? "[\(input.shape[1]), \(input.shape[2])]" : "[]"
        let channels = input.rank == 4 ? input.shape[3] : 1
        let manifest = """
        {"model": "\(model.modelName)", "classes": \(model.classes), "input_channels": \(channels), \
        "image_size": \(image), "hidden_sizes": [\(hiddenSizes.map(String.init).joined(separator: ", "))], \
        "layout": "NHWC"}

        """
        try SafetensorsIO.writeAtomically(Array(manifest.utf8), to: dir + "manifest.json")
        return logits
    }

    /// Writes a float32 tensor as NumPy `.npy` v1.0 (`<f4`, C order) with KDFormats' `NPYWriter`.
    public static func writeNPY(_ t: Tensor, to path: String) throws {
        try NPYWriter.write(t.array, shape: t.shape, to: path)
    }

    /// The reverse direction: reads a folder written by `interop_check.py --export-torch` (a PyTorch
    /// model's `torch_model.safetensors`, `input.npy` NHWC, `torch_logits.npy`, `torch_feature.npy`,
    /// `manifest.json`), builds the zoo model named in the manifest, loads the PyTorch weights with
    /// `Checkpoint.loadWeights`, runs it in eval mode and returns the relative errors
    /// `max |kd − torch| / max |torch|` of logits and features.
    public static func reproduceTorch(directory: String) throws -> (logits: Double, feature: Double) {
        let dir = directory.hasSuffix("/") ? directory : directory + "/"
        let manifestBytes = try SafetensorsIO.readAll(path: dir + "manifest.json")
        guard let m = try? JSONSerialization.jsonObject(with: Data(manifestBytes)) as? [String: Any],
              let name = m["model"] as? String, let classes = m["classes"] as? Int,
              let channels = m["input_channels"] as? Int else {
            throw ModelError.invalidArgument("interop \(dir)manifest.json: needs model, classes, input_channels")
        }
        let image = (m["image_size"] as? [Int]) ?? [32, 32]
        let hidden = (m["hidden_sizes"] as? [Int]) ?? []
        let model = try ModelZoo.make(name: name, classes: classes, inputChannels: channels, imageSize: image,
                                      hiddenSizes: hidden)
        try Checkpoint.loadWeights(path: dir + "torch_model.safetensors", into: model)
        let inputArray = try NPYArray(path: dir + "input.npy")
        let input = Tensor(shape: inputArray.shape, data: inputArray.floatArray())
        model.eval()
        let (feature, logits) = try withNoGrad { try model(input) }
        func relativeError(_ a: Tensor, _ path: String) throws -> Double {
            let ref = try NPYArray(path: path).floatArray()
            guard ref.count == a.count else {
                throw ModelError.invalidArgument("interop \(path): \(ref.count) values, KDGraph produced \(a.count)")
            }
            var diff = 0.0, scale = 1e-12
            for i in 0..<a.count {
                diff = max(diff, Double(abs(a.ptr[i] - ref[i]))); scale = max(scale, Double(abs(ref[i])))
            }
            return diff / scale
        }
        return (try relativeError(logits, dir + "torch_logits.npy"),
                try relativeError(feature, dir + "torch_feature.npy"))
    }
}
