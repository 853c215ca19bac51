import Foundation
import KDFormats
import KDLosses
import KDModels
import Yams

/// The run configuration: one `Codable` section per YAML mapping, each key one field whose initial value
/// is its default (YAML `global_batch` ↔ `globalBatch`, ConfigCoding.swift). docs/config.md documents
/// every key (a test compares the two lists); `validate()` holds every rule; `parse` decodes strictly
/// (unknown keys, wrong types and unknown kinds are errors naming file, key and line) and `resolvedYAML`
/// is the encoder's output.
public struct KDConfig: Codable, Equatable {
    public enum Mode: String, ConfigChoice { case supervised, distill }
    public enum DataSource: String, ConfigChoice { case synthetic, npy, cifar }
    /// The VRM virtual view's augmentation.
    public enum VirtualAugment: String, ConfigChoice { case strong, standard }
    public enum TeacherKind: String, ConfigChoice { case network, embeddings }
    /// `checkpoint`: load `teacher.checkpoint`; `random`: the zoo's seeded initialisation (benchmarks).
    public enum TeacherInit: String, ConfigChoice { case checkpoint, random }
    public enum CacheDType: String, ConfigChoice { case float32, float16 }
    public enum OptimizerKind: String, ConfigChoice { case sgd, adamw }
    /// `student.batch_norm` (docs/training.md, "BatchNorm"): statistics over the global batch (`sync`,
    /// SyncBN), per block of `train.block_size` samples (`block`), or per rank (`local`, what plain
    /// BatchNorm under PyTorch DDP does; changes with the world size).
    public enum BatchNormMode: String, ConfigChoice { case sync, block, local }
    public enum ScheduleKind: String, ConfigChoice { case cosine, step, constant }
    /// `runtime.conv_algorithm` (`ConvAlgorithmTuner`): `auto` by a fixed rule (no timing: the same
    /// choice on every run), `timed` by timing on this machine (an explicit opt-in, written and reused).
    public enum ConvAlgorithmSetting: String, ConfigChoice {
        case auto, timed, direct, winograd2, winograd4
        /// Chosen per layer shape (not one algorithm named by the config).
        public var perLayer: Bool { self == .auto || self == .timed }
    }

    public struct Data: Codable, Equatable {
        public var source = DataSource.synthetic
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
        public var virtualAugment = VirtualAugment.strong
        public var dropLast = true
        public var evalFraction = 0.1
        /// Per-channel normalisation; nil: 0.5 and 0.25 for each channel the data has (the trainer fills
        /// in and logs the values used, so the resolved config and the checkpoint record them).
        public var mean: [Double]?
        public var std: [Double]?
        public var prefetch = true
    }

    public struct Teacher: Codable, Equatable {
        public var kind = TeacherKind.network
        public var model = "resnet32x4"
        public var checkpoint = ""
        public var initialization = TeacherInit.checkpoint
        public var embeddings = ""
        public var prompts = ""
        /// `τ_clip` of the prompt logits (PRG's teacher side).
        public var clipScale = 100.0
        public var hidden: [Int] = []
        public var cache = Cache()

        enum CodingKeys: String, CodingKey {
            case kind, model, checkpoint, initialization = "init", embeddings, prompts, clipScale, hidden, cache
        }
    }

    /// `teacher.cache` (docs/training.md, "Teacher cache"): epoch `e` draws its augmentation from round
    /// `e mod rounds`, and a network teacher's outputs of each round are stored under `path` once and
    /// read back afterwards. `rounds: 0` (the default): fresh augmentation every epoch, no cache.
    public struct Cache: Codable, Equatable {
        public var rounds = 0
        /// Empty: replay the rounds' augmentation without storing (the teacher runs every step).
        public var path = ""
        public var dtype = CacheDType.float32
        public var enabled: Bool { rounds > 0 && !path.isEmpty }
        public init(rounds: Int = 0, path: String = "", dtype: CacheDType = .float32) {
            self.rounds = rounds; self.path = path; self.dtype = dtype
        }
    }

    public struct Student: Codable, Equatable {
        public var model = "resnet8"
        public var embedDim = 0                  // 0: the teacher's embedding size
        public var batchNorm = BatchNormMode.sync
        public var hidden: [Int] = []
    }

    public struct Optim: Codable, Equatable {
        public var kind = OptimizerKind.sgd
        public var lr = 0.05
        public var momentum = 0.9
        public var nesterov = false
        public var weightDecay = 5e-4
        public var decoupled = false
        /// Also decay BatchNorm parameters and biases.
        public var decayBNBias = false
        public var betas: [Double] = [0.9, 0.999]
        public var eps = 1e-8
        public var schedule = ScheduleKind.cosine
        public var warmupSteps = 0
        public var milestones: [Int] = []
        public var gamma = 0.1
    }

    public struct Train: Codable, Equatable {
        public var epochs = 1
        public var steps = 0                     // > 0 overrides epochs
        public var logEvery = 10
        public var evalEvery = 0                 // 0: at the end only
        public var checkpointEvery = 0           // 0: at the end only
        public var syncCheckEvery = 50
        public var skipNonfinite = false
        /// Bit-identical training at any world size (docs/training.md): fixed sample blocks, exact sums.
        public var deterministic = true
        /// Samples per block when `deterministic` or with block BatchNorm (the global batch a multiple of
        /// it); 0: automatic (`KDConfig.samplesPerBlock`).
        public var blockSize = 0
        /// Graph accumulation: samples per rank per pass (whole blocks); 0: off (docs/training.md, "Graphs
        /// larger than memory").
        public var microBatch = 0
    }

    public struct Comm: Codable, Equatable {
        public var bucketMB = 4.0
        public var overlap = false
        public var timeoutS = 300.0
        /// The link probe (`LinkProbe`, across hosts only): before the first step and after every this many
        /// steps; 0: never.
        public var linkProbeEvery = 1000
    }

    public struct Output: Codable, Equatable {
        /// The run's folder; "" (the default): a fresh `runs/<config file name>/version_N` (`OutputDirectory`).
        public var dir = ""
        /// Also write the metrics' scalars as a TensorBoard event file in `dir/tensorboard/`.
        public var tensorboard = false
    }

    public struct RuntimeSettings: Codable, Equatable {
        public var blasThreads = 1
        public var convAlgorithm = ConvAlgorithmSetting.auto
        /// What one rank's step may use, in GB (0: the machine's physical memory shared by its ranks); a
        /// config whose estimate exceeds it is refused (`MemoryEstimate`).
        public var memoryLimitGB = 0.0
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
    public var output = Output()
    public var runtime = RuntimeSettings()
    /// The file the config came from (for error messages; not a key).
    public var file = "<defaults>"
    /// What each `--set` replaced or merged (rank 0 logs them; not a key).
    public var overrideNotes: [String] = []
    /// The `--set` that wrote each dotted key (not a key): `configError` names it.
    public var overriddenKeys: [String: String] = [:]

    enum CodingKeys: String, CodingKey {
        case seed, mode, data, teacher, student, loss, optim, train, comm, output, runtime
    }

    public init() {}

    /// `output.dir`, or where a run that names none keeps its `version_N` folders (`versionRoot`): the
    /// train command replaces "" with the next of them before the run starts (`OutputDirectory.nextVersion`).
    public var outputDir: String {
        get { output.dir.isEmpty ? versionRoot : output.dir }
        set { output.dir = newValue }
    }

    /// `runs/<the config file's name without extension>`: the folder of the `version_N` folders of the runs
    /// of this config that name no `output.dir`, as PyTorch Lightning's `lightning_logs/version_N`.
    public var versionRoot: String {
        let name = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        return "runs/" + (name.isEmpty || name.hasPrefix("<") ? "default" : name)
    }
    public var convAlgorithm: ConvAlgorithmSetting {
        get { runtime.convAlgorithm }
        set { runtime.convAlgorithm = newValue }
    }
}

/// One `loss:` entry: its `kind` and `weight`, and its term built by the kind's `LossRegistry`
/// descriptor, which reads the entry's parameters through the strict `NodeReader` (errors name
/// `loss.N.key` and the line). Encoded as written (`params` in key order) for the resolved config.
public struct LossSpec: Codable, Equatable {
    public var kind: String
    public var weight: Double
    /// Term-specific keys as written (numbers or words such as `input: embedding`).
    public var params: [String: String]
    public var line: Int?
    /// The term, built from the entry when the config is read.
    public var term: any LossTerm

    public init(kind: String, weight: Double, params: [String: String], line: Int?, term: any LossTerm) {
        self.kind = kind; self.weight = weight; self.params = params; self.line = line; self.term = term
    }

    /// Equal when the term is the same (where it stood in the file does not matter).
    public static func == (a: LossSpec, b: LossSpec) -> Bool {
        a.kind == b.kind && a.weight == b.weight && a.params == b.params
    }

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(_ s: String) { stringValue = s }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(kind, forKey: Key("kind"))
        try c.encode(weight, forKey: Key("weight"))
        for k in params.keys.sorted() { try c.encode(PlainScalar(text: params[k]!), forKey: Key(k)) }
    }

    /// Only the config decoder builds entries (it hands over the YAML node and where it came from).
    public init(from decoder: Decoder) throws {
        guard let d = decoder as? ConfigNodeDecoder else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath,
                                                    debugDescription: "loss entries are read from a KDGraph config"))
        }
        let key = d.key
        var e = try NodeReader(source: d.source, path: key, node: d.node)
        kind = try e.string("kind", "").lowercased()
        if kind.isEmpty { throw e.error("kind", "each loss term needs a kind", d.node) }
        weight = try e.double("weight", 1.0, min: 0, max: Double(Float.greatestFiniteMagnitude))
        params = [:]
        for (k, v) in try e.scalars(except: ["kind", "weight"]) { params[k] = v }
        line = d.source.override(of: key) == nil ? d.node.mark?.line : nil
        var reader: any LossParameterReader = e
        do {
            term = try LossRegistry.make(kind, weight: Float(weight), reader: &reader)
        } catch let error as LossError {
            if case let .vanishingTerm(_, parts) = error {
                // Named at a `--set` that zeroed one of the parts, when one did.
                let blamed = parts.map { key + "." + $0 }.first { d.source.override(of: $0) != nil } ?? key
                throw d.source.error(blamed, "\(error)", line: line)
            }
            throw d.source.error(key + ".kind", "\(error)", line: line)
        }
        try reader.finish()
    }
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
        // An empty file (or comments only) is a mistake (a truncated copy, the wrong path), not a request for
        // every default. Text that does not parse holds something: reported as malformed YAML.
        guard let tree = try compose(text, file: path) else {
            throw ConfigError(file: path, key: "", message: "is empty: a config is a mapping of sections "
                              + "(\(sectionList)); see configs/*.yaml")
        }
        return try parse(tree: tree, file: path, overrides: overrides)
    }

    /// The YAML document of `yaml`, nil when it holds none; a malformed one is an error naming `file`.
    static func compose(_ yaml: String, file: String) throws -> Node? {
        do {
            return try Yams.compose(yaml: yaml)
        } catch YamlError.duplicatedKeysInMapping(let keys, let context) {
            // Yams would quote the whole mapping (a file's every line for a top-level key given twice).
            let named = keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
            throw ConfigError(file: file, key: "", message: "malformed YAML: the mapping that starts on this line "
                              + "gives \(named) more than once; a key may appear once", line: context.mark.line)
        } catch {
            // Yams quotes the offending line; a pathological file (e.g. 100 000 nested brackets) would
            // print all of it, so each line of its message is cut (and ConfigError bounds the whole).
            let lines = "\(error)".split(separator: "\n").map { abbreviated(String($0), limit: 100) }
            throw ConfigError(file: file, key: "", message: "malformed YAML: " + lines.joined(separator: " ⏎ "))
        }
    }

    /// The sections a config file may hold, for messages.
    static var sectionList: String { CodingKeys.allKeyNames.joined(separator: ", ") }

    /// Decodes `yaml` (a mapping of sections; another document is refused, and none at all reads as every
    /// default: `load` refuses an empty file), applies the overrides, merges the result over the defaults (an
    /// unknown key is an error naming its line), decodes it and validates it.
    public static func parse(yaml: String, file: String = "<string>", overrides: [String] = []) throws -> KDConfig {
        try parse(tree: try compose(yaml, file: file) ?? .mapping(Node.Mapping([])), file: file, overrides: overrides)
    }

    /// `parse(yaml:file:overrides:)` on the composed document.
    static func parse(tree fileTree: Node, file: String, overrides: [String]) throws -> KDConfig {
        guard fileTree.mapping != nil else {
            throw ConfigError(file: file, key: "", message: "expected a mapping of sections (\(sectionList)), got "
                              + "\(describe(fileTree)): not a KDGraph config", line: fileTree.mark?.line)
        }
        let schema = try ConfigNodeEncoder.node(KDConfig())
        var source = ConfigSource(file: file, fileTree: fileTree)
        var tree = fileTree, notes: [String] = []
        for o in overrides {
            tree = try ConfigOverride(spec: o).apply(to: tree, schema: schema, source: &source, notes: &notes)
        }
        let merged = try mergeOverDefaults(tree, schema, path: "", source: source)
        var c = try ConfigNodeDecoder(node: merged, path: [], source: source).decode(KDConfig.self)
        c.file = file
        c.overrideNotes = notes
        c.overriddenKeys = source.overridden
        do { try c.validate() } catch let e as ConfigError { throw source.locate(e) }
        return c
    }

    /// An error about `key` found after the config was read (by the data, the trainer, the teacher cache): named
    /// at the `--set` that gave the key or a section above it, as the config's own errors are, else in the file.
    public func configError(_ key: String, _ message: String) -> ConfigError {
        ConfigSource(file: file, overridden: overriddenKeys).error(key, message)
    }

    /// The samples per block in effect: `train.block_size`, or for 0 (the default) the largest divisor of
    /// `data.global_batch` that is at most 64 and at most `global_batch / 16` — so that up to 16 ranks each
    /// hold a block — (64: 4, 256: 16, 4096: 64, 10: 1). Larger blocks are cheaper (each block of a rank
    /// carries its own gradient partials), more blocks allow more ranks. A function of the config alone,
    /// never of the world size.
    public var samplesPerBlock: Int {
        if train.blockSize > 0 { return train.blockSize }
        let b = max(1, data.globalBatch), cap = max(1, min(64, b / 16))
        return (1...cap).last { b % $0 == 0 } ?? 1
    }

    /// Whether a loss term reads the teacher's outputs (`LossNeeds.teacherOutputs`); when none does, a
    /// distillation run leaves its teacher unrun.
    public var lossReadsTeacher: Bool { loss.contains { !$0.term.needs.isDisjoint(with: .teacherOutputs) } }

    /// Whether the ranks share the batch in whole blocks of `train.block_size` (deterministic training,
    /// block BatchNorm).
    public var sharesWholeBlocks: Bool { train.deterministic || student.batchNorm == .block }

    /// Keys of earlier versions, refused naming what replaced them.
    static let replacedKeys = [
        "student.sync_bn": "student.batch_norm: sync | block | local (sync_bn: true was sync, false was local)",
    ]

    /// The user's tree over the defaults' (`schema`): a mapping key by key (a key the defaults lack is
    /// unknown: an error), anything else replaced; `~` keeps the default.
    static func mergeOverDefaults(_ user: Node, _ schema: Node, path: String, source: ConfigSource) throws -> Node {
        if isNull(user) { return schema }
        guard let defaults = schema.mapping else { return user }
        guard let given = user.mapping else {
            throw source.error(path, "expected a mapping of keys, got \(describe(user))", node: user)
        }
        var seen: Set<String> = []
        var values: [String: Node] = [:]
        for (k, v) in given {
            let full = path.isEmpty ? (k.string ?? "?") : "\(path).\(k.string ?? "?")"
            guard let key = k.string else { throw source.error(path, "keys must be strings", node: k) }
            guard seen.insert(key).inserted else { throw source.error(full, "duplicate key", node: k) }
            if let replacement = replacedKeys[full] {
                throw source.error(full, "replaced by \(replacement)", node: k)
            }
            guard let d = defaults[key] else { throw source.error(full, "unknown key", node: k) }
            values[key] = try mergeOverDefaults(v, d, path: full, source: source)
        }
        return .mapping(Node.Mapping(defaults.map { k, d in (k, values[k.string ?? ""] ?? d) }))
    }
}

extension KDConfig.CodingKeys {
    static var allKeyNames: [String] {
        ["seed", "mode", "data", "teacher", "student", "loss", "optim", "train", "comm", "output", "runtime"]
    }
}

extension KDConfig {
    /// The config key of loss entry `i`'s `key` (`loss.0.k`), or of the entry itself (`loss.0`) for nil: where a
    /// term's `LossTerm.refusal` is named.
    static func lossKey(_ i: Int, _ key: String?) -> String { "loss.\(i)" + (key.map { ".\($0)" } ?? "") }

    /// The section a `--set` names (`train` for `--set train.steps=5`), read as the override itself reads it;
    /// nil for a malformed one, which loading the config refuses with its reason.
    public static func overrideSection(_ spec: String) -> String? {
        try? ConfigOverride(spec: spec).parts().keys.first
    }
}

/// One `--set key=value` (docs/config.md): `key` is dotted section names and keys (list entries by
/// index, `loss.0.weight=2`), each segment non-empty; `value` is YAML. A mapping value merges key by key
/// into the section it names (`--set 'train={steps: 3}'` sets `train.steps` only); a scalar never
/// replaces a section; a list replaces a list (the `loss:` list is replaced whole: its documented
/// meaning). Each application adds a note saying what it replaced, logged by rank 0.
struct ConfigOverride {
    let spec: String
    var shown: String { abbreviated(spec, limit: 120) }

    func refuse(_ why: String) -> ConfigError {
        ConfigError(file: "--set", key: shown, message: why + " (expected key=value, e.g. data.global_batch=256)")
    }

    /// The dotted key's segments (`loss.0.weight`: loss, 0, weight) and the value's text.
    func parts() throws -> (keys: [String], value: String) {
        guard let eq = spec.firstIndex(of: "=") else { throw refuse("no '='") }
        let keyText = String(spec[..<eq])
        guard !keyText.isEmpty else { throw refuse("no key before '='") }
        let keys = keyText.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if keys.contains(where: { $0.isEmpty }) { throw refuse("empty key segment in '\(keyText)'") }
        return (keys, String(spec[spec.index(after: eq)...]))
    }

    func apply(to root: Node, schema: Node, source: inout ConfigSource, notes: inout [String]) throws -> Node {
        let (keys, valueText) = try parts()
        let value: Node
        do { value = try Yams.compose(yaml: valueText) ?? Node("") } catch {
            throw ConfigError(file: "--set", key: shown,
                              message: "malformed value '\(abbreviated(valueText, limit: 80))'")
        }
        var written: [String] = []
        let result = try set(root, schema, keys[...], value, path: "", written: &written, notes: &notes)
        for k in written { source.overridden[k] = spec }
        return result
    }

    /// `node` (the user's tree at `path`; `schema` the defaults' there) with `value` written at `rest`.
    private func set(_ node: Node?, _ schema: Node?, _ rest: ArraySlice<String>, _ value: Node, path: String,
                     written: inout [String], notes: inout [String]) throws -> Node {
        guard let key = rest.first else { return try put(node, schema, value, path: path, written: &written,
                                                         notes: &notes) }
        let full = path.isEmpty ? key : "\(path).\(key)"
        if let idx = Int(key) {
            guard case .sequence(var seq)? = node, idx >= 0, idx < seq.count else {
                throw ConfigError(file: "--set", key: shown, message: "no list entry \(full)")
            }
            seq[idx] = try set(seq[idx], nil, rest.dropFirst(), value, path: full, written: &written, notes: &notes)
            return .sequence(seq)
        }
        var pairs: [(Node, Node)] = node?.mapping.map { $0.map { ($0.key, $0.value) } } ?? []
        let sub = schema?.mapping?[key]
        if let i = pairs.firstIndex(where: { $0.0.string == key }) {
            pairs[i].1 = try set(pairs[i].1, sub, rest.dropFirst(), value, path: full, written: &written,
                                 notes: &notes)
        } else {
            pairs.append((Node(key), try set(nil, sub, rest.dropFirst(), value, path: full, written: &written,
                                             notes: &notes)))
        }
        return .mapping(Node.Mapping(pairs))
    }

    /// `value` written over `node` at `path`: merged into a section, or replacing a value.
    private func put(_ node: Node?, _ schema: Node?, _ value: Node, path: String, written: inout [String],
                     notes: inout [String]) throws -> Node {
        if schema?.mapping != nil || node?.mapping != nil {
            guard let entries = value.mapping else {
                throw refuse("'\(path)' is a section; set one of its keys (or give a mapping of them)")
            }
            var merged = node ?? .mapping(Node.Mapping([]))
            var keys: [String] = []
            for (k, v) in entries {
                guard let key = k.string, !key.isEmpty else { throw refuse("keys must be non-empty strings") }
                merged = try set(merged, schema, [key][...], v, path: path, written: &written, notes: &notes)
                keys.append(key)
            }
            notes.append("--set \(shown): " + (keys.isEmpty ? "sets nothing (an empty mapping)"
                : "sets \(keys.map { "\(path).\($0)" }.joined(separator: ", ")); the other \(path) keys unchanged"))
            return merged
        }
        written.append(path)
        if let old = node, !isNull(old) {
            if path == "loss", let n = old.sequence?.count {
                let m = value.sequence?.count ?? 0
                notes.append("--set \(shown): replaces the file's loss list (\(n) term(s)) with \(m) term(s)")
            } else if old != value {
                let before = (try? Yams.serialize(node: old)) ?? "?"
                notes.append("--set \(shown): replaces \(path): "
                             + abbreviated(before.trimmingCharacters(in: .whitespacesAndNewlines), limit: 60))
            }
        }
        return value
    }
}

extension KDConfig {
    /// Bounds on sizes: far above any real run, low enough that no product of them overflows and that a
    /// typo (`train_size: 2e9`) is named here rather than failing an allocation later.
    static let maxSamples = 100_000_000, maxClasses = 1_000_000, maxImageSide = 131_072, maxWidth = 1 << 20
    static let maxRounds = 10_000, maxSteps = 1_000_000_000

    /// Every rule a config must satisfy beyond its types, in one place: bounds of each key, then the
    /// rules between keys. Errors name the dotted key (`parse` adds the line or the `--set`).
    public func validate() throws {
        func fail(_ key: String, _ message: String) -> ConfigError {
            ConfigError(file: file, key: key, message: message)
        }
        func check(_ key: String, _ v: Int, _ lo: Int, _ hi: Int) throws {
            if v < lo { throw fail(key, "must be ≥ \(lo), got \(v)") }
            if v > hi { throw fail(key, "must be ≤ \(hi), got \(v)") }
        }
        func check(_ key: String, _ v: Double, above lo: Double? = nil, atLeast min: Double? = nil,
                   atMost hi: Double = Double(Float.greatestFiniteMagnitude)) throws {
            if let lo, v <= lo { throw fail(key, "must be > \(lo), got \(v)") }
            if let min, v < min { throw fail(key, "must be ≥ \(min), got \(v)") }
            if v > hi { throw fail(key, "must be ≤ \(hi), got \(v)") }
        }
        func checkEach(_ key: String, _ vs: [Int], _ lo: Int, _ hi: Int) throws {
            for v in vs where v < lo || v > hi { throw fail(key, "entries must be in [\(lo), \(hi)], got \(v)") }
        }
        try check("seed", seed, 0, Int(Int32.max))
        try check("data.classes", data.classes, 2, Self.maxClasses)
        if let s = data.imageSize { try check("data.image_size", s, 4, Self.maxImageSide) }
        try check("data.train_size", data.trainSize, 1, Self.maxSamples)
        try check("data.eval_size", data.evalSize, 1, Self.maxSamples)
        try check("data.global_batch", data.globalBatch, 1, Self.maxSamples)
        try check("data.views", data.views, 1, 8)
        try check("data.crop_padding", data.cropPadding, 0, 64)
        try check("data.eval_fraction", data.evalFraction, atLeast: 0, atMost: 0.9)
        if data.source != .synthetic && data.path.isEmpty {
            throw fail("data.path", "required for data.source '\(data.source.rawValue)'")
        }
        if let mean = data.mean, mean.isEmpty { throw fail("data.mean", "needs one entry per channel, got []") }
        if let std = data.std, std.isEmpty || std.contains(where: { $0 <= 0 }) {
            throw fail("data.std", "needs one positive entry per channel, got \(std)")
        }
        if let mean = data.mean, let std = data.std, mean.count != std.count {
            throw fail("data.std", "mean and std need one entry per channel (got \(mean.count) means, "
                       + "\(std.count) stds)")
        }
        try check("teacher.clip_scale", teacher.clipScale, above: 0)
        try checkEach("teacher.hidden", teacher.hidden, 1, Self.maxWidth)
        try check("teacher.cache.rounds", teacher.cache.rounds, 0, Self.maxRounds)
        for (key, name) in [("student.model", student.model), ("teacher.model", teacher.model)]
        where !ModelZoo.names.contains(name) {
            throw fail(key, "unknown model '\(abbreviated(name, limit: 60))' (kdgraph models lists them: "
                       + ModelZoo.names.joined(separator: ", ") + ")")
        }
        try check("student.embed_dim", student.embedDim, 0, Self.maxWidth)
        try checkEach("student.hidden", student.hidden, 1, Self.maxWidth)
        try check("optim.lr", optim.lr, above: 0)
        try check("optim.momentum", optim.momentum, atLeast: 0, atMost: 1)
        try check("optim.weight_decay", optim.weightDecay, atLeast: 0)
        try check("optim.eps", optim.eps, above: 0)
        try check("optim.gamma", optim.gamma, above: 0)
        try check("optim.warmup_steps", optim.warmupSteps, 0, Self.maxSteps)
        try checkEach("optim.milestones", optim.milestones, 0, Self.maxSteps)
        if optim.betas.count != 2 || optim.betas.contains(where: { $0 < 0 || $0 >= 1 }) {
            throw fail("optim.betas", "expected two numbers in [0, 1), got \(optim.betas)")
        }
        if optim.nesterov && optim.momentum == 0 {
            throw fail("optim.nesterov", "Nesterov momentum needs optim.momentum > 0")
        }
        try check("train.epochs", train.epochs, 1, Self.maxSteps)
        try check("train.steps", train.steps, 0, Self.maxSteps)
        try check("train.log_every", train.logEvery, 1, Self.maxSteps)
        try check("train.eval_every", train.evalEvery, 0, Self.maxSteps)
        try check("train.checkpoint_every", train.checkpointEvery, 0, Self.maxSteps)
        try check("train.sync_check_every", train.syncCheckEvery, 0, Self.maxSteps)
        try check("train.block_size", train.blockSize, 0, Self.maxSamples)
        try check("comm.bucket_mb", comm.bucketMB, above: 0, atMost: 1_048_576)
        try check("comm.timeout_s", comm.timeoutS, above: 0, atMost: 1e7)
        try check("comm.link_probe_every", comm.linkProbeEvery, 0, Self.maxSteps)
        if !output.dir.isEmpty && output.dir.trimmingCharacters(in: .whitespaces).isEmpty {
            throw fail("output.dir", "is blank: name the folder the run writes to (e.g. runs/my-run), or leave "
                       + "the key out for a fresh \(versionRoot)/version_N")
        }
        try check("runtime.blas_threads", runtime.blasThreads, 1, 256)
        try check("runtime.memory_limit_gb", runtime.memoryLimitGB, atLeast: 0, atMost: 1e6)

        if !teacher.cache.path.isEmpty && teacher.kind == .embeddings {
            throw fail("teacher.cache.path", "applies to a network teacher; an embeddings teacher is already a "
                       + "file of outputs (teacher.embeddings; N×R×V×D with teacher.cache.rounds: R)")
        }
        if teacher.cache.rounds == 0 && !teacher.cache.path.isEmpty {
            throw fail("teacher.cache.rounds", "teacher.cache.path is set but rounds is 0: set the number of "
                       + "augmentation rounds to store (e.g. 10), or remove the path")
        }
        if train.deterministic || student.batchNorm == .block {
            if data.globalBatch % samplesPerBlock != 0 {
                let why = train.deterministic ? "train.deterministic shares whole blocks between ranks"
                                              : "student.batch_norm: block normalises whole blocks"
                throw fail("train.block_size", "data.global_batch \(data.globalBatch) must be a multiple of the "
                           + "block size \(samplesPerBlock) (\(why))")
            }
        }
        try check("train.micro_batch", train.microBatch, 0, Self.maxSamples)
        if train.microBatch > 0 {
            if student.model != "mlp" && student.batchNorm != .block {
                let bn = student.batchNorm.rawValue
                let over = student.batchNorm == .sync ? "the whole global batch" : "the rank's whole share"
                throw fail("train.micro_batch", "needs student.batch_norm: block (got \(bn)): a pass sees "
                           + "\(train.microBatch) samples of the rank and \(bn) BatchNorm normalises over \(over), "
                           + "so the two passes would not compute the one-pass step")
            }
            if train.microBatch % samplesPerBlock != 0 {
                throw fail("train.micro_batch", "\(train.microBatch) must be a multiple of the block size "
                           + "\(samplesPerBlock) (train.block_size): a pass holds whole sample blocks")
            }
        }
        if train.deterministic {
            if comm.overlap {
                throw fail("comm.overlap", "true cannot apply with train.deterministic: the exact gradient sum "
                           + "needs every block's gradient first (set comm.overlap: false)")
            }
        }
        if mode == .distill && loss.isEmpty { throw fail("loss", "mode 'distill' needs at least one loss term") }
        if mode == .distill && !loss.isEmpty && loss.allSatisfy({ $0.weight == 0 }) {
            // Named at a `--set` that zeroed a weight, when one did (`parse` locates it).
            let key = loss.indices.map { "loss.\($0).weight" }.first { overriddenKeys[$0] != nil } ?? "loss"
            throw fail(key, "every term has weight 0, so the student would learn nothing (give one a weight > 0)")
        }
        // Random teacher weights only when asked for by name: a missing checkpoint is never papered over.
        if mode == .distill && teacher.kind == .network && teacher.initialization == .checkpoint
            && teacher.checkpoint.isEmpty {
            throw fail("teacher.checkpoint", "a network teacher needs a checkpoint (or teacher.init: random for "
                       + "benchmarks)")
        }
        if teacher.kind == .embeddings && teacher.initialization == .random {
            throw fail("teacher.init", "'random' applies to a network teacher; an embeddings teacher has no weights")
        }
        if mode == .distill && teacher.kind == .embeddings && teacher.embeddings.isEmpty {
            throw fail("teacher.embeddings", "an embeddings teacher needs teacher.embeddings (.npy)")
        }
        // What the terms read must exist (here, so that `train --check` and the launch scripts catch it before
        // mpirun starts the ranks).
        for (i, entry) in loss.enumerated() where mode == .distill {
            let rows = data.globalBatch * data.views
            if let r = entry.term.refusal(rows: rows, graph: "a batch's graph has \(counted(rows, "row")) "
                                                + "(data.global_batch × data.views)") {
                throw fail(Self.lossKey(i, r.key), r.message)
            }
            let needs = entry.term.needs
            if needs.contains(.twoViews) && data.views < 2 {
                throw fail("data.views", "loss.\(i) (\(entry.kind)) needs 2 views per sample (real + virtual), got "
                           + "\(data.views)")
            }
            let fromPrompts = [needs.contains(.teacherLogits) ? "logits" : nil,
                               needs.contains(.proxies) ? "class proxies" : nil].compactMap { $0 }
            if teacher.kind == .embeddings && teacher.prompts.isEmpty && !fromPrompts.isEmpty {
                throw fail("teacher.prompts", "loss.\(i) (\(entry.kind)) needs the teacher's "
                           + fromPrompts.joined(separator: " and ") + ", which an embeddings teacher gets from its "
                           + "prompt embeddings only: set teacher.prompts (a K×C×D .npy)")
            }
        }
    }
}

extension KDConfig {
    /// The terms of a `loss:` list written in YAML, e.g. `[{kind: rkd}, {kind: kd, weight: 0.5}]`.
    public static func lossTerms(yaml: String, file: String = "<string>") throws -> [any LossTerm] {
        guard let node = try Yams.compose(yaml: yaml) else { return [] }
        let source = ConfigSource(file: file, fileTree: .mapping(Node.Mapping([(Node("loss"), node)])))
        return try ConfigNodeDecoder(node: node, path: ["loss"], source: source).decode([LossSpec].self).map(\.term)
    }
}
