import Foundation
import KDLosses
import Yams

/// The run configuration. Every key is documented in docs/config.md; unknown keys are errors.
public struct KDConfig: Equatable {
    public enum Mode: String { case supervised, distill }

    public struct Data: Equatable {
        public var source = "synthetic"          // synthetic | npy | cifar
        public var path = ""
        public var classes = 10
        /// Side of the synthetic images (nil: 32). File sources take size and channels from the files;
        /// set explicitly it must agree with them. The trainer fills in what the data has.
        public var imageSize: Int?
        public var trainSize = 8192              // synthetic only
        public var evalSize = 1024               // synthetic only
        public var globalBatch = 128
        public var views = 1
        /// The master switch of training augmentation; `flip` and `cropPadding` say what it does.
        public var augment = true
        public var flip = true
        /// Zero padding of the random crop in pixels on each side (0: no crop).
        public var cropPadding = 4
        public var virtualAugment = "strong"     // the VRM virtual view: strong | standard
        public var dropLast = true
        public var evalFraction = 0.1
        /// Per-channel normalisation; nil: 0.5 and 0.25 for each channel the data has (the trainer fills
        /// in and logs the values used, so the resolved config and the checkpoint record them).
        public var mean: [Double]?
        public var std: [Double]?
        public var prefetch = true
    }

    public struct Teacher: Equatable {
        public var kind = "network"              // network | embeddings
        public var model = "resnet32x4"
        public var checkpoint = ""
        /// `checkpoint` (load `checkpoint`) or `random` (the zoo's seeded initialisation, for benchmarks
        /// where the weights do not matter for speed; warned about on rank 0).
        public var initialization = "checkpoint"
        public var embeddings = ""
        public var prompts = ""
        public var clipScale = 100.0
        public var hidden: [Int] = []
        public var cache = Cache()
    }

    /// `teacher.cache` (docs/training.md, "Teacher cache"): epoch `e` draws its augmentation from round
    /// `e mod rounds`, and a network teacher's outputs of each round are stored under `path` once and
    /// read back afterwards. `rounds: 0` (the default): fresh augmentation every epoch, no cache.
    public struct Cache: Equatable {
        public var rounds = 0
        /// Empty: replay the rounds' augmentation without storing (the teacher runs every step).
        public var path = ""
        public var dtype = "float32"            // float32 | float16
        public var enabled: Bool { rounds > 0 && !path.isEmpty }
        public init(rounds: Int = 0, path: String = "", dtype: String = "float32") {
            self.rounds = rounds; self.path = path; self.dtype = dtype
        }
    }

    public struct Student: Equatable {
        public var model = "resnet8"
        public var embedDim = 0                  // 0: the teacher's embedding size
        public var syncBN = true
        public var hidden: [Int] = []
    }

    public struct LossSpec: Equatable {
        public var kind: String
        public var weight: Double
        /// Term-specific keys as written (numbers or words such as `input: embedding`), echoed into the
        /// resolved config.
        public var params: [String: String]
        public var line: Int?
        /// The term, built from the entry by its `LossRegistry` descriptor when the config is read.
        public var term: any LossTerm

        /// Equal when the term is the same (where it stood in the file does not matter).
        public static func == (a: LossSpec, b: LossSpec) -> Bool {
            a.kind == b.kind && a.weight == b.weight && a.params == b.params
        }
    }

    public struct Optim: Equatable {
        public var kind = "sgd"                  // sgd | adamw
        public var lr = 0.05
        public var momentum = 0.9
        public var nesterov = false
        public var weightDecay = 5e-4
        public var decoupled = false
        public var decayBNAndBias = false
        public var betas: [Double] = [0.9, 0.999]
        public var eps = 1e-8
        public var schedule = "cosine"           // cosine | step | constant
        public var warmupSteps = 0
        public var milestones: [Int] = []
        public var gamma = 0.1
    }

    public struct Train: Equatable {
        public var epochs = 1
        public var steps = 0                     // > 0 overrides epochs
        public var logEvery = 10
        public var evalEvery = 0                 // 0: at the end only
        public var checkpointEvery = 0           // 0: at the end only
        public var syncCheckEvery = 50
        public var skipNonfinite = false
        /// Bit-identical training at any world size (docs/training.md): fixed sample blocks, exact sums.
        public var deterministic = false
        /// Samples per block when `deterministic` (the global batch a multiple of it).
        public var blockSize = 16
    }

    public struct Comm: Equatable {
        public var bucketMB = 4.0
        public var overlap = false
        public var timeoutS = 300.0
    }

    public var seed = 0
    public var mode = Mode.supervised
    public var data = Data()
    public var teacher = Teacher()
    public var student = Student()
    public var loss: [LossSpec] = []
    public var optim = Optim()
    public var train = Train()
    public var comm = Comm()
    public var outputDir = "runs/default"
    public var blasThreads = 1
    /// `runtime.conv_algorithm`: auto | direct | winograd2 | winograd4 (`ConvAlgorithmTuner`).
    public var convAlgorithm = "auto"
    /// `runtime.memory_limit_gb`: what one rank's step may use (0: the machine's physical memory shared
    /// by its ranks); a config whose estimate exceeds it is refused (`MemoryEstimate`).
    public var memoryLimitGB = 0.0
    /// The file the config came from (for error messages).
    public var file = "<defaults>"

    public init() {}
}

extension KDConfig {
    /// Loads a YAML file, applies `--set key=value` overrides, and validates strictly.
    public static func load(path: String, overrides: [String] = []) throws -> KDConfig {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw ConfigError(file: path, key: "", message: "no such file")
        }
        if isFolder.boolValue { throw ConfigError(file: path, key: "", message: "is a folder, not a YAML file") }
        let bytes: Foundation.Data
        do { bytes = try Foundation.Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ConfigError(file: path, key: "", message: "cannot read the file: \(ioReason(error))")
        }
        guard let text = String(data: bytes, encoding: .utf8), !bytes.contains(0) else {
            // Binary garbage (or a checkpoint passed as --config) would otherwise surface as a
            // puzzling YAML error or a bare "cannot read".
            let at = bytes.firstIndex(of: 0) ?? utf8Prefix(bytes)
            throw ConfigError(file: path, key: "", message: "not a YAML config: the file is not UTF-8 text "
                              + "(invalid byte at offset \(at)); --config takes a YAML file such as configs/*.yaml")
        }
        return try parse(yaml: text, file: path, overrides: overrides)
    }

    public static func parse(yaml: String, file: String = "<string>", overrides: [String] = []) throws -> KDConfig {
        var root: Node
        do {
            root = try Yams.compose(yaml: yaml) ?? Node.mapping(Node.Mapping([]))
        } catch {
            // Yams quotes the offending line; a pathological file (e.g. 100 000 nested brackets) would
            // print all of it, so each line of its message is cut (and ConfigError bounds the whole).
            let lines = "\(error)".split(separator: "\n").map { abbreviated(String($0), limit: 100) }
            throw ConfigError(file: file, key: "", message: "malformed YAML: " + lines.joined(separator: " ⏎ "))
        }
        for o in overrides { root = try applyOverride(o, to: root, file: file) }
        return try decode(root, file: file)
    }

    /// `a.b.c=value`: sets a nested key (list entries by index, e.g. `loss.0.weight=2`). A malformed key
    /// (empty, an empty segment such as `.`, `a..b` or `a.`) or a value that would replace a whole section
    /// is an error naming the override: before, `--set .=1` replaced the whole file by defaults.
    static func applyOverride(_ spec: String, to root: Node, file: String) throws -> Node {
        let shown = abbreviated(spec, limit: 120)
        func refuse(_ why: String) -> ConfigError {
            ConfigError(file: "--set", key: shown, message: why + " (expected key=value, e.g. "
                        + "data.global_batch=256)")
        }
        guard let eq = spec.firstIndex(of: "=") else { throw refuse("no '='") }
        let keyText = String(spec[..<eq])
        guard !keyText.isEmpty else { throw refuse("no key before '='") }
        let keys = keyText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if keys.contains(where: { $0.isEmpty }) { throw refuse("empty key segment in '\(keyText)'") }
        let valueText = String(spec[spec.index(after: eq)...])
        let value: Node
        do { value = try Yams.compose(yaml: valueText) ?? Node("") } catch {
            throw ConfigError(file: "--set", key: shown,
                              message: "malformed value '\(abbreviated(valueText, limit: 80))'")
        }
        func set(_ node: Node?, _ path: ArraySlice<String>) throws -> Node {
            guard let key = path.first else {
                if node?.mapping != nil && value.mapping == nil {
                    throw refuse("'\(keyText)' is a section; set one of its keys")
                }
                return value
            }
            if let idx = Int(key) {
                guard case .sequence(var seq)? = node, idx >= 0, idx < seq.count else {
                    throw ConfigError(file: "--set", key: shown, message: "no list entry \(key)")
                }
                seq[idx] = try set(seq[idx], path.dropFirst())
                return .sequence(seq)
            }
            var pairs: [(Node, Node)] = []
            if let m = node?.mapping { pairs = m.map { ($0.key, $0.value) } }
            if let i = pairs.firstIndex(where: { $0.0.string == key }) {
                pairs[i].1 = try set(pairs[i].1, path.dropFirst())
            } else {
                pairs.append((Node(key), try set(nil, path.dropFirst())))
            }
            return .mapping(Node.Mapping(pairs))
        }
        return try set(root, keys[...])
    }

    static func decode(_ root: Node, file: String) throws -> KDConfig {
        var c = KDConfig()
        c.file = file
        var r = try NodeReader(file: file, path: "", node: root)
        c.seed = try r.int("seed", 0, min: 0)
        c.mode = Mode(rawValue: try r.choice("mode", "supervised", ["supervised", "distill"]))!

        var d = try r.child("data")
        c.data.source = try d.choice("source", c.data.source, ["synthetic", "npy", "cifar"])
        c.data.path = try d.string("path", c.data.path)
        c.data.classes = try d.int("classes", c.data.classes, min: 2)
        c.data.imageSize = try d.optionalInt("image_size", min: 4)
        c.data.trainSize = try d.int("train_size", c.data.trainSize, min: 1)
        c.data.evalSize = try d.int("eval_size", c.data.evalSize, min: 1)
        c.data.globalBatch = try d.int("global_batch", c.data.globalBatch, min: 1)
        c.data.views = try d.int("views", c.data.views, min: 1, max: 8)
        c.data.augment = try d.bool("augment", c.data.augment)
        c.data.flip = try d.bool("flip", c.data.flip)
        c.data.cropPadding = try d.int("crop_padding", c.data.cropPadding, min: 0, max: 64)
        c.data.virtualAugment = try d.choice("virtual_augment", c.data.virtualAugment, ["strong", "standard"])
        c.data.dropLast = try d.bool("drop_last", c.data.dropLast)
        c.data.evalFraction = try d.double("eval_fraction", c.data.evalFraction, min: 0, max: 0.9)
        c.data.mean = try d.optionalDoubles("mean")
        c.data.std = try d.optionalDoubles("std")
        c.data.prefetch = try d.bool("prefetch", c.data.prefetch)
        try d.finish()
        if c.data.source != "synthetic" && c.data.path.isEmpty {
            throw ConfigError(file: file, key: "data.path", message: "required for data.source '\(c.data.source)'")
        }
        if let mean = c.data.mean, let std = c.data.std, mean.count != std.count {
            throw ConfigError(file: file, key: "data.std", message: "mean and std need one entry per channel "
                              + "(got \(mean.count) means, \(std.count) stds)")
        }
        if let std = c.data.std, std.isEmpty || std.contains(where: { $0 <= 0 }) {
            throw ConfigError(file: file, key: "data.std", message: "needs one positive entry per channel, got \(std)")
        }
        if let mean = c.data.mean, mean.isEmpty {
            throw ConfigError(file: file, key: "data.mean", message: "needs one entry per channel, got []")
        }

        var t = try r.child("teacher")
        c.teacher.kind = try t.choice("kind", c.teacher.kind, ["network", "embeddings"])
        c.teacher.model = try t.string("model", c.teacher.model)
        c.teacher.checkpoint = try t.string("checkpoint", c.teacher.checkpoint)
        c.teacher.initialization = try t.choice("init", c.teacher.initialization, ["checkpoint", "random"])
        c.teacher.embeddings = try t.string("embeddings", c.teacher.embeddings)
        c.teacher.prompts = try t.string("prompts", c.teacher.prompts)
        c.teacher.clipScale = try t.double("clip_scale", c.teacher.clipScale, min: 0, exclusiveMin: true)
        c.teacher.hidden = try t.ints("hidden", c.teacher.hidden, min: 1)
        var tc = try t.child("cache")
        c.teacher.cache.rounds = try tc.int("rounds", c.teacher.cache.rounds, min: 0)
        c.teacher.cache.path = try tc.string("path", c.teacher.cache.path)
        c.teacher.cache.dtype = try tc.choice("dtype", c.teacher.cache.dtype, ["float32", "float16"])
        try tc.finish()
        try t.finish()
        if !c.teacher.cache.path.isEmpty && c.teacher.kind == "embeddings" {
            throw ConfigError(file: file, key: "teacher.cache.path",
                              message: "applies to a network teacher; an embeddings teacher is already a file "
                                  + "of outputs (teacher.embeddings; N×R×V×D with teacher.cache.rounds: R)")
        }
        if c.teacher.cache.rounds == 0 && !c.teacher.cache.path.isEmpty {
            throw ConfigError(file: file, key: "teacher.cache.rounds",
                              message: "teacher.cache.path is set but rounds is 0: set the number of augmentation "
                                  + "rounds to store (e.g. 10), or remove the path")
        }

        var s = try r.child("student")
        c.student.model = try s.string("model", c.student.model)
        c.student.embedDim = try s.int("embed_dim", c.student.embedDim, min: 0)
        c.student.syncBN = try s.bool("sync_bn", c.mode == .distill ? true : c.student.syncBN)
        c.student.hidden = try s.ints("hidden", c.student.hidden, min: 1)
        try s.finish()

        if let lossNode = r.node("loss") { c.loss = try decodeLoss(lossNode, file: file) }

        var o = try r.child("optim")
        c.optim.kind = try o.choice("kind", c.optim.kind, ["sgd", "adamw"])
        c.optim.lr = try o.double("lr", c.optim.lr, min: 0, exclusiveMin: true)
        c.optim.momentum = try o.double("momentum", c.optim.momentum, min: 0, max: 1)
        c.optim.nesterov = try o.bool("nesterov", c.optim.nesterov)
        c.optim.weightDecay = try o.double("weight_decay", c.optim.weightDecay, min: 0)
        c.optim.decoupled = try o.bool("decoupled", c.optim.decoupled)
        c.optim.decayBNAndBias = try o.bool("decay_bn_bias", c.optim.decayBNAndBias)
        c.optim.betas = try o.doubles("betas", c.optim.betas)
        c.optim.eps = try o.double("eps", c.optim.eps, min: 0, exclusiveMin: true)
        c.optim.schedule = try o.choice("schedule", c.optim.schedule, ["cosine", "step", "constant"])
        c.optim.warmupSteps = try o.int("warmup_steps", c.optim.warmupSteps, min: 0)
        c.optim.milestones = try o.ints("milestones", c.optim.milestones, min: 0)
        c.optim.gamma = try o.double("gamma", c.optim.gamma, min: 0, exclusiveMin: true)
        try o.finish()
        if c.optim.betas.count != 2 || c.optim.betas.contains(where: { $0 < 0 || $0 >= 1 }) {
            throw ConfigError(file: file, key: "optim.betas",
                              message: "expected two numbers in [0, 1), got \(c.optim.betas)")
        }
        if c.optim.nesterov && c.optim.momentum == 0 {
            throw ConfigError(file: file, key: "optim.nesterov", message: "Nesterov momentum needs optim.momentum > 0")
        }

        var tr = try r.child("train")
        c.train.epochs = try tr.int("epochs", c.train.epochs, min: 1)
        c.train.steps = try tr.int("steps", c.train.steps, min: 0)
        c.train.logEvery = try tr.int("log_every", c.train.logEvery, min: 1)
        c.train.evalEvery = try tr.int("eval_every", c.train.evalEvery, min: 0)
        c.train.checkpointEvery = try tr.int("checkpoint_every", c.train.checkpointEvery, min: 0)
        c.train.syncCheckEvery = try tr.int("sync_check_every", c.train.syncCheckEvery, min: 0)
        c.train.skipNonfinite = try tr.bool("skip_nonfinite", c.train.skipNonfinite)
        c.train.deterministic = try tr.bool("deterministic", c.train.deterministic)
        c.train.blockSize = try tr.int("block_size", c.train.blockSize, min: 1)
        try tr.finish()

        var cm = try r.child("comm")
        c.comm.bucketMB = try cm.double("bucket_mb", c.comm.bucketMB, min: 0, exclusiveMin: true)
        c.comm.overlap = try cm.bool("overlap", c.comm.overlap)
        c.comm.timeoutS = try cm.double("timeout_s", c.comm.timeoutS, min: 0, exclusiveMin: true)
        try cm.finish()
        if c.train.deterministic { try c.checkDeterministic() }

        var out = try r.child("output")
        c.outputDir = try out.string("dir", c.outputDir)
        try out.finish()
        if c.outputDir.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ConfigError(file: file, key: "output.dir", message: "is empty: name the folder the run writes to "
                              + "(e.g. runs/my-run)")
        }
        var rt = try r.child("runtime")
        c.blasThreads = try rt.int("blas_threads", c.blasThreads, min: 1, max: 256)
        c.convAlgorithm = try rt.choice("conv_algorithm", c.convAlgorithm, ["auto", "direct", "winograd2", "winograd4"])
        c.memoryLimitGB = try rt.double("memory_limit_gb", c.memoryLimitGB, min: 0)
        try rt.finish()
        try r.finish()

        if c.mode == .distill && c.loss.isEmpty {
            throw ConfigError(file: file, key: "loss", message: "mode 'distill' needs at least one loss term")
        }
        // Random teacher weights only when asked for by name: a missing checkpoint is never papered over.
        if c.mode == .distill && c.teacher.kind == "network" && c.teacher.initialization == "checkpoint"
            && c.teacher.checkpoint.isEmpty {
            throw ConfigError(file: file, key: "teacher.checkpoint",
                              message: "a network teacher needs a checkpoint (or teacher.init: random for benchmarks)")
        }
        if c.teacher.kind == "embeddings" && c.teacher.initialization == "random" {
            throw ConfigError(file: file, key: "teacher.init",
                              message: "'random' applies to a network teacher; an embeddings teacher has no weights")
        }
        if c.mode == .distill && c.teacher.kind == "embeddings" && c.teacher.embeddings.isEmpty {
            throw ConfigError(file: file, key: "teacher.embeddings",
                              message: "an embeddings teacher needs teacher.embeddings (.npy)")
        }
        return c
    }

    /// The `loss:` list: each entry's `kind` and `weight`, its parameters read by the kind's
    /// `LossRegistry` descriptor through this strict reader (errors name `loss.N.key` and the line).
    static func decodeLoss(_ node: Node, file: String) throws -> [LossSpec] {
        guard let seq = node.sequence else {
            throw ConfigError(file: file, key: "loss", message: "expected a list of {kind, weight, ...}",
                              line: node.mark?.line)
        }
        return try seq.enumerated().map { i, entry in
            var e = try NodeReader(file: file, path: "loss.\(i)", node: entry)
            let kind = try e.string("kind", "")
            if kind.isEmpty { throw e.error("kind", "each loss term needs a kind", entry) }
            let weight = try e.double("weight", 1.0, min: 0, max: Double(Float.greatestFiniteMagnitude))
            var params: [String: String] = [:]
            for (k, v) in try e.scalars(except: ["kind", "weight"]) { params[k] = v }
            var reader: any LossParameterReader = e
            let term: any LossTerm
            do {
                term = try LossRegistry.make(kind, weight: Float(weight), reader: &reader)
            } catch let error as LossError {
                throw ConfigError(file: file, key: "loss.\(i).kind", message: "\(error)", line: entry.mark?.line)
            }
            try reader.finish()
            return LossSpec(kind: kind.lowercased(), weight: weight, params: params, line: entry.mark?.line, term: term)
        }
    }

    /// The terms of a `loss:` list written in YAML, e.g. `[{kind: rkd}, {kind: kd, weight: 0.5}]`.
    public static func lossTerms(yaml: String, file: String = "<string>") throws -> [any LossTerm] {
        guard let node = try Yams.compose(yaml: yaml) else { return [] }
        return try decodeLoss(node, file: file).map(\.term)
    }
}
