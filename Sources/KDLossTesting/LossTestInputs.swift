import KDCore
import KDLosses
import KDTensor

/// Deterministic random inputs for a loss: every matrix a term may read (`LossInputs`), the GLOBAL
/// batch of `b` samples × `views` views (sample-major rows). The one place the loss tests, the
/// contract check and the multi-rank checks build random loss inputs.
public struct LossCase {
    public let b: Int, views: Int, d: Int, c: Int
    public let sFeat: Tensor, sEmb: Tensor, zs: Tensor, tEmb: Tensor, zt: Tensor, proxies: Tensor
    public let labels: [Int]

    /// Student features are `d + 1` wide (RKD compares them with the `d`-wide teacher embedding), logits
    /// `c` wide with std 2 (peaked but not saturated softmaxes), labels `i mod c`.
    public init(b: Int = 7, views: Int = 1, d: Int = 5, c: Int = 4, seed: UInt64 = 1) {
        self.b = b; self.views = views; self.d = d; self.c = c
        var rng = KDRandom(keys: seed, 99)
        let n = b * views
        sFeat = .randn([n, d + 1], rng: &rng)
        sEmb = .randn([n, d], rng: &rng)
        zs = .randn([n, c], std: 2, rng: &rng)
        tEmb = .randn([n, d], rng: &rng)
        zt = .randn([n, c], std: 2, rng: &rng)
        proxies = .randn([c, d], rng: &rng)
        labels = (0..<b).map { $0 % c }
    }

    /// The inputs seen by rank `rank` of `ranks` (the whole batch by default), with `comm` when given.
    /// With `exact`, in loss blocks of `blockSize` samples (deterministic training's evaluation).
    public func inputs(rank: Int = 0, of ranks: Int = 1, step: Int = 0, comm: Communicator? = nil,
                       blockSize: Int = 1, exact: Bool = false) -> LossInputs {
        LossInputs(plan: BatchPlan(globalSamples: b, rank: rank, worldSize: ranks, blockSize: blockSize), views: views,
                   studentFeatures: sFeat, studentEmbedding: sEmb, studentLogits: zs, teacherEmbedding: tEmb,
                   teacherLogits: zt, proxies: proxies, labels: labels, step: step, comm: comm, exact: exact)
    }

    /// The student matrices (on the tape when a test sets `requiresGrad`).
    public var students: [Tensor] { [sFeat, sEmb, zs] }
}

/// Max-norm relative difference `max|a − b| / max(max|b|, 1e-6)` (the conformance harness's measure).
public func relativeError(_ a: [Float], _ b: [Float]) -> Double { Conformance.maxNormRelativeError(a, b) }

/// A loss entry given as a dictionary, read strictly (the product reads YAML through the config's
/// reader; this one lets the loss tests and checks build terms without a config file).
public struct DictionaryParameters: LossParameterReader {
    let entry: [String: Any]
    var read: Set<String> = ["kind", "weight"]

    public init(entry: [String: Any]) { self.entry = entry }

    mutating func value(_ key: String) -> Any? { read.insert(key); return entry[key] }

    public mutating func number(_ key: String, _ def: Double, min: Double?, max: Double?,
                                exclusiveMin: Bool) throws -> Double {
        guard let v = value(key) else { return def }
        guard let d = (v as? Double) ?? (v as? Int).map(Double.init) ?? (v as? String).flatMap(Double.init),
              d.isFinite else {
            throw LossError.config("\(key): expected a number, got '\(v)'")
        }
        if let min, exclusiveMin ? d <= min : d < min { throw LossError.config("\(key): \(d) below \(min)") }
        if let max, d > max { throw LossError.config("\(key): \(d) above \(max)") }
        return d
    }

    public mutating func optionalInteger(_ key: String, min: Int?) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = (v as? Int) ?? (v as? String).flatMap({ Int($0) }) else {
            throw LossError.config("\(key): expected an integer, got '\(v)'")
        }
        if let min, i < min { throw LossError.config("\(key): expected an integer ≥ \(min), got \(i)") }
        return i
    }

    public mutating func choice(_ key: String, _ def: String, _ allowed: [String]) throws -> String {
        guard let v = value(key) else { return def }
        guard let s = v as? String, allowed.contains(s) else {
            throw LossError.config("\(key): expected one of \(allowed)")
        }
        return s
    }

    public func finish() throws {
        let unknown = Set(entry.keys).subtracting(read).sorted()
        if !unknown.isEmpty {
            throw LossError.config("unknown key(s) \(unknown.map { "'\($0)'" }.joined(separator: ", "))")
        }
    }
}

/// The term of a dictionary entry, e.g. `["kind": "rkd", "angle_weight": 0]`, through the registry.
public func makeLossTerm(_ entry: [String: Any]) throws -> any LossTerm {
    guard let kind = entry["kind"] as? String else { throw LossError.config("entry without 'kind'") }
    let weight = (entry["weight"] as? Double) ?? (entry["weight"] as? Int).map(Double.init) ?? 1
    var reader: any LossParameterReader = DictionaryParameters(entry: entry)
    let term = try LossRegistry.make(kind, weight: Float(weight), reader: &reader)
    try reader.finish()
    return term
}

extension LossObjective {
    /// The objective of dictionary entries (`makeLossTerm`).
    public init(config: [[String: Any]]) throws { self.init(terms: try config.map(makeLossTerm)) }
}
