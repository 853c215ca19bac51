import KDTensor

/// The table of loss kinds. The config, the trainer, the conformance harness and the loss benchmark
/// all read it; adding a loss is one file (kernel, term, descriptor) plus one line here
/// (docs/losses.md, "Adding a loss").
public enum LossRegistry {
    public static let all: [LossDescriptor] = [
        KDTerm.descriptor,
        CETerm.descriptor,
        RKDTerm.descriptor,
        PRGTerm.descriptor,
        VRMTerm.descriptor,
        SpectralTerm.descriptor,
    ]

    /// The descriptor of `kind` (case-insensitive), or an error listing the known kinds.
    public static func descriptor(_ kind: String) throws -> LossDescriptor {
        let k = kind.lowercased()
        for d in extra + all where d.kind == k { return d }
        let known = (all + extra).map(\.kind).joined(separator: ", ")
        throw LossError.config("unknown loss kind '\(kind)' (known: \(known))")
    }

    /// Builds `kind` with weight `weight`, reading its parameters from `reader` (which rejects unread keys
    /// when the caller finishes it).
    public static func make(_ kind: String, weight: Float,
                            reader: inout any LossParameterReader) throws -> any LossTerm {
        try descriptor(kind).make(weight, &reader)
    }

    /// Builds `kind` with every parameter at its default.
    public static func makeDefault(_ kind: String, weight: Float = 1) throws -> any LossTerm {
        var r: any LossParameterReader = DefaultParameters()
        return try make(kind, weight: weight, reader: &r)
    }

    /// Kinds registered at run time (tests register theirs here; the product's are in `all`).
    nonisolated(unsafe) public static var extra: [LossDescriptor] = []
}

/// One loss kind: its config name, and how to build its term from the entry's typed parameters.
/// Each loss file ends with its descriptor, e.g. `extension RKDTerm { static let descriptor = … }`.
public struct LossDescriptor: @unchecked Sendable {
    /// The `kind:` of a `loss:` entry.
    public let kind: String
    /// Reads the entry's parameters (each with its default and range) and builds the term.
    public let make: (_ weight: Float, _ parameters: inout any LossParameterReader) throws -> any LossTerm
    /// The conformance fixture kinds it answers (`kdgraph conformance`), e.g. `rkd_distance`, `rkd_angle`.
    public let fixtures: [(kind: String, run: LossFixtureRunner)]

    public init(kind: String, fixtures: [(kind: String, run: LossFixtureRunner)] = [],
                make: @escaping (Float, inout any LossParameterReader) throws -> any LossTerm) {
        self.kind = kind
        self.fixtures = fixtures
        self.make = make
    }
}

/// One case of a loss fixture manifest (docs/losses.md, "Conformance") as a loss file's runner sees it.
public protocol LossFixture {
    /// The named float32 input array.
    func input(_ key: String) throws -> Tensor
    /// A numeric parameter of the case, `def` when absent (reading marks it as used).
    func parameter(_ key: String, _ def: Double) -> Double
    func hasParameter(_ key: String) -> Bool
}

/// Runs one fixture case through the real loss code (one rank, the whole batch): the loss, and the
/// computed arrays to compare with the case's `expected` arrays of the same names (`grad_<input>`, …).
public typealias LossFixtureRunner = (any LossFixture) throws -> (loss: Double, outputs: [(String, Tensor)])

/// Reads one `loss:` entry's parameters strictly: every getter marks its key as read, and the owner
/// rejects keys nobody read. The config's YAML reader implements it, so an error names the file, the
/// key (`loss.N.key`) and the line.
public protocol LossParameterReader {
    /// A finite number, `def` when absent, checked against the bounds.
    mutating func number(_ key: String, _ def: Double, min: Double?, max: Double?, exclusiveMin: Bool) throws -> Double
    /// An integer ≥ `min`, nil when absent.
    mutating func optionalInteger(_ key: String, min: Int?) throws -> Int?
    /// One of `allowed`, `def` when absent.
    mutating func choice(_ key: String, _ def: String, _ allowed: [String]) throws -> String
    /// Rejects the keys no getter read (a misspelt parameter is an error, not a silent default).
    func finish() throws
}

extension LossParameterReader {
    /// A finite Float, `def` when absent; `min` inclusive unless `exclusiveMin`. The bound is at most
    /// Float's largest value: `temperature: 1e39` is a finite Double but an infinite Float, which would
    /// pass the reader and fail at step 1.
    public mutating func float(_ key: String, _ def: Float, min: Double? = nil, max: Double? = nil,
                               exclusiveMin: Bool = false) throws -> Float {
        let largest = Double(Float.greatestFiniteMagnitude)
        return Float(try number(key, Double(def), min: min, max: Swift.min(max ?? largest, largest),
                                exclusiveMin: exclusiveMin))
    }
}

/// A reader with no keys: every parameter takes its default (benchmarks, `LossRegistry.makeDefault`).
public struct DefaultParameters: LossParameterReader {
    public init() {}
    public func number(_ key: String, _ def: Double, min: Double?, max: Double?, exclusiveMin: Bool) -> Double { def }
    public func optionalInteger(_ key: String, min: Int?) -> Int? { nil }
    public func choice(_ key: String, _ def: String, _ allowed: [String]) -> String { def }
    public func finish() {}
}

/// The inputs a term reads from the step. The trainer computes and gathers exactly the union over the
/// configured terms (`LossObjective.needs`).
public struct LossNeeds: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    /// Pooled penultimate student features `h`.
    public static let studentFeatures = LossNeeds(rawValue: 1 << 0)
    /// The student embedding after the projection head (same size as the teacher's).
    public static let studentEmbedding = LossNeeds(rawValue: 1 << 1)
    public static let studentLogits = LossNeeds(rawValue: 1 << 2)
    public static let teacherEmbedding = LossNeeds(rawValue: 1 << 3)
    public static let teacherLogits = LossNeeds(rawValue: 1 << 4)
    /// Ground-truth labels (gathered over the ranks).
    public static let labels = LossNeeds(rawValue: 1 << 5)
    /// Class proxies in the teacher's space.
    public static let proxies = LossNeeds(rawValue: 1 << 6)
    /// Two views per sample (`data.views ≥ 2`).
    public static let twoViews = LossNeeds(rawValue: 1 << 7)
}
