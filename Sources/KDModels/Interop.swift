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
        try Safetensors.write(Checkpoint.modelTensors(model), metadata: ["model": model.modelName], to: dir + "model.safetensors")
        try writeNPY(input, to: dir + "input.npy")
        try writeNPY(logits, to: dir + "logits.npy")
        try writeNPY(feature, to: dir + "feature.npy")
        if gradients {
            model.train()
            model.zeroGrad()
            Tape.reset()
            var rng = KDRandom(keys: 0x6AD, UInt64(logits.count))
            let r = Tensor.uniform(logits.shape, -1, 1, rng: &rng)
            let trainLogits = try model(input).logits
            Tape.backward(trainLogits, seed: r)
            let grads = model.stateEntries().filter { !$0.isBuffer }.map { e in
                (e.name, Checkpoint.export(e.tensor.grad ?? Tensor.zeros(e.tensor.shape), layout: e.layout, integer: false))
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

    /// Writes a float32 tensor as NumPy `.npy` v1.0 (`<f4`, C order).
    ///
    /// Header: magic `\x93NUMPY`, version 1.0, u16 LE header length, a Python dict literal padded with
    /// spaces and ending in `\n` so that the data starts at a multiple of 64 bytes.
    public static func writeNPY(_ t: Tensor, to path: String) throws {
        let shape = t.shape.count == 1 ? "(\(t.shape[0]),)" : "(" + t.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        let total = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - total % 64) % 64) + "\n"
        var bytes: [UInt8] = [0x93] + Array("NUMPY".utf8) + [1, 0]
        let n = UInt16(header.utf8.count)
        bytes += [UInt8(n & 0xFF), UInt8(n >> 8)]
        bytes += Array(header.utf8)
        for i in 0..<t.count {
            let b = t.ptr[i].bitPattern.littleEndian
            bytes += [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)]
        }
        try SafetensorsIO.writeAtomically(bytes, to: path)
    }
}
