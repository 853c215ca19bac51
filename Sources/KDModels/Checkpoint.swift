#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KDFormats
import KDTensor

/// Checkpoints as safetensors files that `safetensors.torch.load_file` reads and a PyTorch module of
/// the same architecture accepts with `load_state_dict(strict=True)` as they are (docs/interop.md).
///
/// A checkpoint is a pair of files:
/// - `X.safetensors`, the weights: exactly the model's `state_dict` — parameters and buffers under
///   their PyTorch names, F32, conv weights permuted to PyTorch's `[Cout, Cin, kh, kw]`,
///   `num_batches_tracked` as I64 — and `__metadata__`: the caller's strings (for a training run: step,
///   epoch, sampler position, config digest and the whole resolved config, the model, classes and
///   the preprocessing, see docs/training.md) plus `kdgraph.file_sha256` (`Safetensors.checksumKey`);
/// - `X.state.safetensors` (`statePath(of:)`), the training state, when there is any: optimizer state
///   under `optim.<param>.<slot>` (same layout as its parameter), caller tensors (`state.…`), the
///   same metadata plus `optim.step_count`, `optim.kind` and `kdgraph.weights_sha256`, the weights
///   file's checksum, so that a state file is only ever used with the weights it was written with.
/// Older single-file checkpoints (optimizer and `state.` tensors inside the weights file) are read
/// too. Writes go to a temporary file in the destination folder, are fsync'ed, renamed over the
/// target and the folder is fsync'ed (the weights first, then the state): a crash leaves the previous
/// file or the new one, and a pair whose state file is missing or does not match is refused on resume.
public enum Checkpoint {
    /// Prefix of optimizer state tensors.
    public static let optimizerPrefix = "optim."
    /// Metadata key of the state file holding the weights file's checksum.
    public static let weightsChecksumKey = "kdgraph.weights_sha256"

    /// `runs/x/checkpoints/step_00000010.safetensors` → `…/step_00000010.state.safetensors`.
    public static func statePath(of path: String) -> String {
        (path.hasSuffix(".safetensors") ? String(path.dropLast(".safetensors".count)) : path) + ".state.safetensors"
    }

    /// The model's state as safetensors tensors in PyTorch layout, `state_dict` order.
    public static func modelTensors(_ model: Module) -> [(String, SafetensorsTensor)] {
        model.stateEntries().map { e in
            (e.name, export(e.tensor, layout: e.layout, integer: e.name.hasSuffix("num_batches_tracked")))
        }
    }

    /// Saves a checkpoint when `rank == 0` (other ranks return at once). Returns whether it wrote.
    /// The state file is written when `optimizer` or `extraTensors` are given.
    @discardableResult
    public static func save(path: String, model: Module, optimizer: Optimizer? = nil,
                            extraTensors: [(String, Tensor)] = [], metadata: [String: String] = [:],
                            rank: Int = 0) throws -> Bool {
        guard rank == 0 else { return false }
        // No checkpoint ever holds NaN/Inf (docs/reliability.md): resuming from one could only diverge.
        let optimizerState = optimizer?.stateTensors().map { (optimizerPrefix + $0.0, $0.1) } ?? []
        for (name, t) in model.namedParameters() + model.namedBuffers() + optimizerState + extraTensors {
            if let n = nonFiniteCount(t) {
                throw ModelError.checkpoint(file: path, message: "tensor '\(name)' holds \(n) NaN/Inf value(s) of "
                                            + "\(t.count): a checkpoint is never written with non-finite values")
            }
        }
        let weightsDigest: String
        do {
            weightsDigest = try Safetensors.write(modelTensors(model), metadata: metadata, addChecksum: true,
                                                  to: path) ?? ""
        } catch let e as SafetensorsError {
            throw ModelError.checkpoint(file: path, message: "cannot write: \(e)")
        }
        guard optimizer != nil || !extraTensors.isEmpty else { return true }
        let state = statePath(of: path)
        var tensors: [(String, SafetensorsTensor)] = []
        var meta = metadata
        meta[weightsChecksumKey] = weightsDigest
        if let optimizer {
            let entries = entriesByName(model)
            for (name, t) in optimizer.stateTensors() {
                let layout = slotLayout(name, shape: t.shape, entries: entries)
                tensors.append((optimizerPrefix + name, export(t, layout: layout, integer: false)))
            }
            meta["optim.step_count"] = String(optimizer.stepCount)
            meta["optim.kind"] = String(describing: type(of: optimizer))
        }
        for (name, t) in extraTensors { tensors.append((name, export(t, layout: .plain, integer: false))) }
        do {
            try Safetensors.write(tensors, metadata: meta, addChecksum: true, to: state)
        } catch let e as SafetensorsError {
            unlink(path)   // no weights file without its training state
            throw ModelError.checkpoint(file: state, message: "cannot write: \(e)")
        }
        return true
    }

    /// Reads and validates a checkpoint's weights file (format and checksum); errors name the file, and
    /// say so when it is the training-state file.
    public static func read(path: String) throws -> SafetensorsFile {
        let f = try readFile(path: path)
        try refuseStateFile(f)
        return f
    }

    /// Reads and validates either file of a checkpoint (format and checksum).
    static func readFile(path: String) throws -> SafetensorsFile {
        let f = try Safetensors.read(path: path)
        guard f.metadata[Safetensors.checksumKey] != nil || f.metadata[Safetensors.legacyDataChecksumKey] != nil else {
            throw ModelError.checkpoint(file: path, message: "has no \(Safetensors.checksumKey) in __metadata__: "
                                        + "not a KDGraph checkpoint but plain safetensors weights (e.g. a PyTorch "
                                        + "state_dict): name the model and preprocessing with --config C.yaml")
        }
        return f
    }

    /// The file holding the training state of checkpoint `path`: `statePath(of: path)`, verified against
    /// the weights file `weights` (read from `path`), or — an older single-file checkpoint — the weights
    /// file itself when it holds `optim.`/`state.` tensors. Nil when there is no training state.
    public static func readState(path: String, weights: SafetensorsFile) throws -> SafetensorsFile? {
        let state = statePath(of: path)
        guard access(state, F_OK) == 0 else {
            let legacy = weights.names.contains { $0.hasPrefix(optimizerPrefix) || $0.hasPrefix("state.") }
            return legacy || weights.metadata["optim.step_count"] != nil ? weights : nil
        }
        let f = try readFile(path: state)
        let expected = weights.metadata[Safetensors.checksumKey]
        guard let paired = f.metadata[weightsChecksumKey], paired == expected else {
            throw ModelError.checkpoint(file: state, message: "was written with other weights than \(path) "
                                        + "(\(weightsChecksumKey) differs: a crash between the two writes?); "
                                        + "resume from the previous checkpoint")
        }
        return f
    }

    /// Loads a checkpoint into `model` (and `optimizer`, from the state file), returning the metadata
    /// (the state file's when there is one). Model names and shapes must match exactly: otherwise the
    /// error lists the first mismatches (missing, unexpected, shape).
    @discardableResult
    public static func load(path: String, into model: Module, optimizer: Optimizer? = nil) throws -> [String: String] {
        let weights = try read(path: path)
        return try load(weights, state: try readState(path: path, weights: weights), into: model, optimizer: optimizer)
    }

    /// `load(path:into:optimizer:)` on files already read: `weights` (`read(path:)`) and its training state
    /// (`readState(path:weights:)`), so that a caller that needs them too reads each file once.
    @discardableResult
    public static func load(_ weights: SafetensorsFile, state stateFile: SafetensorsFile?, into model: Module,
                            optimizer: Optimizer? = nil) throws -> [String: String] {
        let path = weights.file
        try loadWeights(weights, into: model)
        if let optimizer {
            guard let f = stateFile, let steps = f.metadata["optim.step_count"].flatMap(Int.init) else {
                throw ModelError.checkpoint(file: path, message: "no optimizer state (neither \(statePath(of: path)) "
                                            + "nor optim.step_count in this file)")
            }
            let entries = entriesByName(model)
            var state: [String: Tensor] = [:]
            for name in f.names where name.hasPrefix(optimizerPrefix) {
                let slot = String(name.dropFirst(optimizerPrefix.count)), stored = f.tensors[name]!
                let layout = slotLayout(slot, shape: stored.shape, entries: entries)
                state[slot] = try importTensor(stored, layout: layout, file: f.file, name: name)
            }
            let kind = String(describing: type(of: optimizer))
            if let saved = f.metadata["optim.kind"], saved != kind {
                throw ModelError.checkpoint(file: f.file, message: "optimizer state is for \(saved), not \(kind)")
            }
            do { try optimizer.loadState(state, stepCount: steps) } catch let e as ModelError {
                throw ModelError.checkpoint(file: f.file, message: "\(e)")
            }
        }
        return (stateFile ?? weights).metadata
    }

    /// Loads weights from any safetensors file (a KDGraph checkpoint or one written by PyTorch):
    /// tensors named `optim.*` or `state.*` (older single-file checkpoints) are ignored; every other
    /// name must match the model. A missing `num_batches_tracked` is 0 (as PyTorch does); F16/BF16
    /// tensors are converted with a warning (`warn`).
    public static func loadWeights(path: String, into model: Module) throws {
        let f = try Safetensors.read(path: path)
        try refuseStateFile(f)
        try loadWeights(f, into: model)
    }

    /// A checkpoint's training-state file (`X.state.safetensors`: optimizer slots and `state.` tensors
    /// only) named where weights are expected: said so, with the weights file beside it.
    public static func refuseStateFile(_ f: SafetensorsFile) throws {
        let suffix = ".state.safetensors"
        guard f.file.hasSuffix(suffix), !f.names.isEmpty,
              f.names.allSatisfy({ $0.hasPrefix(optimizerPrefix) || $0.hasPrefix("state.") }) else { return }
        let weights = String(f.file.dropLast(suffix.count)) + ".safetensors"
        throw ModelError.checkpoint(file: f.file, message: "is a checkpoint's optimizer-state file, not its weights: "
                                    + "use the weights file beside it, \(weights)")
    }

    /// Loads weights from a parsed file (see `loadWeights(path:into:)`).
    public static func loadWeights(_ f: SafetensorsFile, into model: Module) throws {
        let entries = model.stateEntries()
        let fileNames = f.names.filter { !$0.hasPrefix(optimizerPrefix) && !$0.hasPrefix("state.") }
        let expected = Set(entries.map(\.name))
        var problems: [String] = []
        // PyTorch's BatchNorm accepts a state_dict without num_batches_tracked (it starts from 0): so do we.
        let missing = entries.map(\.name).filter { f.tensors[$0] == nil && !$0.hasSuffix("num_batches_tracked") }
        let unexpected = fileNames.filter { !expected.contains($0) }
        if !missing.isEmpty {
            problems.append("missing \(missing.count): " + missing.prefix(5).joined(separator: ", ")
                            + (missing.count > 5 ? ", …" : ""))
        }
        if !unexpected.isEmpty {
            problems.append("unexpected \(unexpected.count): " + unexpected.prefix(5).joined(separator: ", ")
                            + (unexpected.count > 5 ? ", …" : ""))
        }
        var shapes: [String] = []
        for e in entries {
            guard let t = f.tensors[e.name] else { continue }
            let want = exportedShape(e.tensor.shape, e.layout)
            if t.shape != want { shapes.append("\(e.name): checkpoint \(t.shape) vs model \(want)") }
        }
        if !shapes.isEmpty {
            problems.append("shape mismatch \(shapes.count): " + shapes.prefix(5).joined(separator: "; ")
                            + (shapes.count > 5 ? "; …" : ""))
        }
        guard problems.isEmpty else {
            throw ModelError.checkpoint(file: f.file,
                                        message: "does not match the model: " + problems.joined(separator: "; "))
        }
        let halves = entries.compactMap { e in
            f.tensors[e.name].flatMap { [.F16, .BF16].contains($0.dtype) ? e.name : nil }
        }
        if !halves.isEmpty {
            warn("checkpoint \(f.file): \(halves.count) tensor(s) stored in 16-bit floats (\(halves[0])"
                 + (halves.count > 1 ? ", …" : "")
                 + ") converted to float32: their values carry 16-bit precision only")
        }
        for e in entries {
            guard let stored = f.tensors[e.name] else { e.tensor.assign(from: Tensor.zeros(e.tensor.shape)); continue }
            let t = try importTensor(stored, layout: e.layout, file: f.file, name: e.name)
            e.tensor.assign(from: t)
        }
    }

    /// Where `loadWeights` reports conversions it made (stderr unless a caller replaces it).
    nonisolated(unsafe) public static var warn: (String) -> Void = { fputs("warning: \($0)\n", stderr) }

    static func entriesByName(_ model: Module) -> [String: (count: Int, layout: ParameterLayout)] {
        Dictionary(model.stateEntries().map { ($0.name, ($0.tensor.count, $0.layout)) },
                   uniquingKeysWith: { a, _ in a })
    }

    /// The file layout of optimizer slot `slot` of shape `shape`: its parameter's layout when the slot
    /// mirrors the parameter element by element (momentum, `exp_avg`, `exp_avg_sq`), plain for anything
    /// else (AdamW's 0-d per-parameter `step`), so export and import permute the same tensors.
    static func slotLayout(_ slot: String, shape: [Int],
                           entries: [String: (count: Int, layout: ParameterLayout)]) -> ParameterLayout {
        guard let e = entries[paramName(ofSlot: slot)], !shape.isEmpty, e.count == shape.reduce(1, *) else {
            return .plain
        }
        return e.layout
    }

    /// `layer1.0.conv1.weight.exp_avg` → `layer1.0.conv1.weight`.
    static func paramName(ofSlot slot: String) -> String {
        guard let dot = slot.lastIndex(of: ".") else { return slot }
        return String(slot[..<dot])
    }

    static func exportedShape(_ shape: [Int], _ layout: ParameterLayout) -> [Int] {
        layout == .convOHWI && shape.count == 4 ? [shape[0], shape[3], shape[1], shape[2]] : shape
    }

    /// Internal tensor → file tensor (permuting `[O, kh, kw, I]` → `[O, I, kh, kw]` for conv weights).
    static func export(_ t: Tensor, layout: ParameterLayout, integer: Bool) -> SafetensorsTensor {
        if integer { return SafetensorsTensor(shape: t.shape, int64s: t.array.map { Int64($0) }) }
        guard layout == .convOHWI, t.rank == 4 else {
            return SafetensorsTensor(shape: t.shape, floats: UnsafeBufferPointer(start: t.ptr, count: t.count))
        }
        let (o, kh, kw, i) = (t.shape[0], t.shape[1], t.shape[2], t.shape[3])
        var out = [Float](repeating: 0, count: t.count)
        let src = t.ptr
        for a in 0..<o { for y in 0..<kh { for x in 0..<kw { for c in 0..<i {
            out[((a * i + c) * kh + y) * kw + x] = src[((a * kh + y) * kw + x) * i + c]
        } } } }
        return SafetensorsTensor(shape: [o, i, kh, kw], floats: out)
    }

    /// File tensor → internal tensor (inverse of `export`; any numeric dtype is converted to Float).
    static func importTensor(_ s: SafetensorsTensor, layout: ParameterLayout, file: String,
                             name: String) throws -> Tensor {
        let values = s.floatValues()
        guard layout == .convOHWI else { return Tensor(shape: s.shape, data: values) }
        guard s.shape.count == 4 else {
            throw ModelError.checkpoint(file: file,
                                        message: "tensor '\(name)': conv weight must be 4-D, got \(s.shape)")
        }
        let (o, i, kh, kw) = (s.shape[0], s.shape[1], s.shape[2], s.shape[3])
        let t = Tensor(uninitializedShape: [o, kh, kw, i])
        for a in 0..<o { for c in 0..<i { for y in 0..<kh { for x in 0..<kw {
            t.ptr[((a * kh + y) * kw + x) * i + c] = values[((a * i + c) * kh + y) * kw + x]
        } } } }
        return t
    }
}
