import KDCore
import KDTensor

/// The table of loss kinds. The config, the trainer, the conformance harness, the loss benchmark and
/// the loss contract check (`KDLossTesting`) all read it; adding a loss is one file (kernel, term,
/// descriptor) plus one line here (docs/losses.md, "Adding a loss").
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

    /// Builds `kind` with weight `weight`, reading its declared parameters from `reader` (which rejects
    /// unread keys when the caller finishes it).
    public static func make(_ kind: String, weight: Float,
                            reader: inout any LossParameterReader) throws -> any LossTerm {
        let d = try descriptor(kind)
        let values = try LossParameterValues(d.parameters, reader: &reader)
        if !d.parts.isEmpty && d.parts.allSatisfy({ values.number($0) == 0 }) {
            throw LossError.vanishingTerm(kind: d.kind, parts: d.parts)
        }
        return try d.make(weight, values)
    }

    /// Builds `kind` with every parameter at its default.
    public static func makeDefault(_ kind: String, weight: Float = 1) throws -> any LossTerm {
        let d = try descriptor(kind)
        return try d.make(weight, LossParameterValues(defaults: d.parameters))
    }

    /// Kinds registered at run time (tests register theirs here; the product's are in `all`).
    nonisolated(unsafe) public static var extra: [LossDescriptor] = []
}

/// One loss kind: its config name, its parameters (each key's default and range, written once, here),
/// how to build its term from the values read, and the conformance fixture kinds it answers.
/// Each loss file ends with its descriptor, e.g. `extension RKDTerm { static let descriptor = … }`.
public struct LossDescriptor: @unchecked Sendable {
    /// The `kind:` of a `loss:` entry.
    public let kind: String
    /// The entry's keys besides `kind` and `weight` (docs/losses.md "Parameters and defaults").
    public let parameters: [LossParameter]
    /// The number parameters that weigh the term's parts (`rkd`: `distance_weight`, `angle_weight`): with
    /// all of them 0 the term is identically zero, and `LossRegistry.make` refuses it. Empty: a part of the
    /// term is always on (`kd`'s KL term).
    public let parts: [String]
    /// Builds the term from its weight and its parameters' values (read and checked against the ranges).
    public let make: (_ weight: Float, _ values: LossParameterValues) throws -> any LossTerm
    /// The conformance fixture kinds it answers (`kdgraph conformance`), e.g. `rkd_distance`, `rkd_angle`.
    public let fixtures: [(kind: String, run: LossFixtureRunner)]

    public init(kind: String, parameters: [LossParameter] = [], parts: [String] = [],
                fixtures: [(kind: String, run: LossFixtureRunner)] = [],
                make: @escaping (Float, LossParameterValues) throws -> any LossTerm) {
        precondition(parts.allSatisfy { k in parameters.contains { $0.key == k } }, "\(kind): parts \(parts)")
        self.kind = kind
        self.parameters = parameters
        self.parts = parts
        self.fixtures = fixtures
        self.make = make
    }
}

/// One key of a `loss:` entry: its default and range, or, for a refused spelling, its replacement.
public struct LossParameter: Sendable, Equatable {
    public enum Value: Sendable, Equatable, CustomStringConvertible {
        /// A finite number.
        case number(Double)
        /// An integer, nil when absent (the term then picks its own, e.g. `k` from the class count).
        case integer(Int?)
        /// One of `LossParameter.allowed`.
        case choice(String)

        /// As docs/losses.md writes a default: `4`, `0.1`, `(none)`, `features`.
        public var description: String {
            switch self {
            case let .number(x): return x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
            case let .integer(i): return i.map(String.init) ?? "(none)"
            case let .choice(s): return s
            }
        }
    }

    public let key: String
    /// The value when the key is absent (nil for a refused key).
    public let defaultValue: Value?
    public let min: Double?, max: Double?, exclusiveMin: Bool
    /// A choice's values.
    public let allowed: [String]
    /// A refused key: the error names this replacement.
    public let replacement: String?

    /// A finite number, `min` inclusive unless `exclusiveMin`.
    public static func number(_ key: String, _ def: Double, min: Double? = nil, max: Double? = nil,
                              exclusiveMin: Bool = false) -> LossParameter {
        LossParameter(key: key, defaultValue: .number(def), min: min, max: max, exclusiveMin: exclusiveMin,
                      allowed: [], replacement: nil)
    }
    /// An integer ≥ `min`, `def` when absent (nil: the term decides).
    public static func integer(_ key: String, _ def: Int? = nil, min: Int? = nil) -> LossParameter {
        LossParameter(key: key, defaultValue: .integer(def), min: min.map(Double.init), max: nil, exclusiveMin: false,
                      allowed: [], replacement: nil)
    }
    /// One of `allowed`, `def` when absent.
    public static func choice(_ key: String, _ def: String, _ allowed: [String]) -> LossParameter {
        LossParameter(key: key, defaultValue: .choice(def), min: nil, max: nil, exclusiveMin: false, allowed: allowed,
                      replacement: nil)
    }
    /// A key this kind no longer reads: writing it is an error naming `replacement`.
    public static func refused(_ key: String, replacement: String) -> LossParameter {
        LossParameter(key: key, defaultValue: nil, min: nil, max: nil, exclusiveMin: false, allowed: [],
                      replacement: replacement)
    }
}

/// The values of a descriptor's parameters, read and range-checked (`LossRegistry.make`), at their
/// defaults (`init(defaults:)`) or from a fixture case (`init(_:fixture:)`).
public struct LossParameterValues {
    var values: [String: LossParameter.Value]

    /// Every parameter at its default.
    public init(defaults parameters: [LossParameter]) {
        values = [:]
        for p in parameters { if let d = p.defaultValue { values[p.key] = d } }
    }

    /// Reads every parameter through `reader` (each with its default and range); a refused key present
    /// is an error naming its replacement.
    public init(_ parameters: [LossParameter], reader r: inout any LossParameterReader) throws {
        values = [:]
        for p in parameters {
            switch p.defaultValue {
            case nil:
                try r.refuse(p.key, replacement: p.replacement ?? "")
            case let .number(def)?:
                let largest = Double(Float.greatestFiniteMagnitude)
                values[p.key] = .number(try r.number(p.key, def, min: p.min, max: Swift.min(p.max ?? largest, largest),
                                                     exclusiveMin: p.exclusiveMin))
            case let .integer(def)?:
                values[p.key] = .integer(try r.optionalInteger(p.key, min: p.min.map { Int($0) }) ?? def)
            case let .choice(def)?:
                values[p.key] = .choice(try r.choice(p.key, def, p.allowed))
            }
        }
    }

    /// A fixture case's numeric parameters, the descriptor's defaults for those it does not set.
    public init(_ parameters: [LossParameter], fixture f: any LossFixture) {
        self.init(defaults: parameters)
        for p in parameters {
            switch p.defaultValue {
            case let .number(def)?: values[p.key] = .number(f.parameter(p.key, def))
            case .integer?: if f.hasParameter(p.key) { values[p.key] = .integer(Int(f.parameter(p.key, 0))) }
            default: break
            }
        }
    }

    /// The value of `key`; a key the descriptor does not declare is a programming error.
    public subscript(key: String) -> LossParameter.Value {
        guard let v = values[key] else { preconditionFailure("loss parameter '\(key)' is not declared") }
        return v
    }
    public func number(_ key: String) -> Double {
        guard case let .number(x) = self[key] else { preconditionFailure("'\(key)' is not a number") }
        return x
    }
    /// A number parameter as the Float the kernels take (the reader bounds it by Float's largest value:
    /// `temperature: 1e39` is a finite Double but an infinite Float).
    public func float(_ key: String) -> Float { Float(number(key)) }
    public func integer(_ key: String) -> Int? {
        guard case let .integer(i) = self[key] else { preconditionFailure("'\(key)' is not an integer") }
        return i
    }
    public func choice(_ key: String) -> String {
        guard case let .choice(s) = self[key] else { preconditionFailure("'\(key)' is not a choice") }
        return s
    }
}

/// One case of a loss fixture manifest (docs/losses.md, "Conformance") as a loss file's runner sees it.
/// The runner evaluates the share of the rows `share(samples:)` gives (the whole batch for
/// `kdgraph conformance`; one rank's samples in the row-sharded fixture check), passing `comm` to the
/// kernels that take one.
public protocol LossFixture {
    /// The named float32 input array.
    func input(_ key: String) throws -> Tensor
    /// A numeric parameter of the case, `def` when absent (reading marks it as used).
    func parameter(_ key: String, _ def: Double) -> Double
    func hasParameter(_ key: String) -> Bool
    /// This rank's samples of a batch of `samples` (`0..<samples` on one rank).
    func share(samples: Int) -> Range<Int>
    /// The ranks sharing the case (nil: one rank, every kernel builds its whole matrices).
    var comm: Communicator? { get }
}

/// Runs one fixture case through the real loss code: the loss share and the computed arrays to
/// compare with the case's `expected` arrays of the same names. Arrays named `grad_<input>` are
/// shares (they add up over the ranks); any other array (PRG's `teacher_logits`, `proxies`) is the
/// same on every rank.
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
    /// Refuses `key` when the entry has it, naming `replacement`; marks it as read.
    mutating func refuse(_ key: String, replacement: String) throws
}

extension LossParameterReader {
    /// Refuses `key` when the entry has it (with any value), naming `replacement`; marks it as read.
    /// (A NaN default cannot be a written value: the reader returns only finite numbers.)
    public mutating func refuse(_ key: String, replacement: String) throws {
        let present: Bool
        do {
            present = !(try number(key, .nan, min: nil, max: nil, exclusiveMin: false)).isNaN
        } catch {
            present = true
        }
        if present { throw LossError.config("\(key) is not a key of this loss: use \(replacement) instead") }
    }
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
    /// What the teacher provides: a term needing none of it leaves the teacher unrun.
    public static let teacherOutputs: LossNeeds = [.teacherEmbedding, .teacherLogits, .proxies]
}
