import XCTest
import KDCore
import KDTensor
@testable import KDLosses

/// Deterministic small inputs for the loss tests.
struct LossCase {
    let b: Int, views: Int, d: Int, c: Int
    let sFeat: Tensor, sEmb: Tensor, zs: Tensor, tEmb: Tensor, zt: Tensor, proxies: Tensor, labels: [Int]

    init(b: Int = 7, views: Int = 1, d: Int = 5, c: Int = 4, seed: UInt64 = 1) {
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

    /// The inputs seen by rank `rank` of `ranks` (the whole batch by default).
    func inputs(rank: Int = 0, of ranks: Int = 1) -> LossInputs {
        LossInputs(plan: BatchPlan(globalSamples: b, rank: rank, worldSize: ranks), views: views,
                   studentFeatures: sFeat, studentEmbedding: sEmb, studentLogits: zs, teacherEmbedding: tEmb,
                   teacherLogits: zt, proxies: proxies, labels: labels)
    }
    var students: [Tensor] { [sFeat, sEmb, zs] }
}

/// Relative max-norm difference of two arrays.
func relErr(_ a: [Float], _ b: [Float]) -> Double {
    var d = 0.0, m = 0.0
    for (x, y) in zip(a, b) { d = max(d, abs(Double(x) - Double(y))); m = max(m, abs(Double(y))) }
    return d / max(m, 1e-12)
}

/// A loss entry given as a dictionary, read strictly (the product reads YAML through the config's
/// reader; this one lets the loss tests build terms without a config file).
struct DictionaryParameters: LossParameterReader {
    let entry: [String: Any]
    var read: Set<String> = ["kind", "weight"]

    mutating func value(_ key: String) -> Any? { read.insert(key); return entry[key] }

    mutating func number(_ key: String, _ def: Double, min: Double?, max: Double?,
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

    mutating func optionalInteger(_ key: String, min: Int?) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard let i = (v as? Int) ?? (v as? String).flatMap({ Int($0) }) else {
            throw LossError.config("\(key): expected an integer, got '\(v)'")
        }
        if let min, i < min { throw LossError.config("\(key): expected an integer ≥ \(min), got \(i)") }
        return i
    }

    mutating func choice(_ key: String, _ def: String, _ allowed: [String]) throws -> String {
        guard let v = value(key) else { return def }
        guard let s = v as? String, allowed.contains(s) else {
            throw LossError.config("\(key): expected one of \(allowed)")
        }
        return s
    }

    func finish() throws {
        let unknown = Set(entry.keys).subtracting(read).sorted()
        if !unknown.isEmpty {
            throw LossError.config("unknown key(s) \(unknown.map { "'\($0)'" }.joined(separator: ", "))")
        }
    }
}

/// The term of a dictionary entry, e.g. `["kind": "rkd", "angle_weight": 0]`, through the registry.
func makeLossTerm(_ entry: [String: Any]) throws -> any LossTerm {
    guard let kind = entry["kind"] as? String else { throw LossError.config("entry without 'kind'") }
    let weight = (entry["weight"] as? Double) ?? (entry["weight"] as? Int).map(Double.init) ?? 1
    var reader: any LossParameterReader = DictionaryParameters(entry: entry)
    let term = try LossRegistry.make(kind, weight: Float(weight), reader: &reader)
    try reader.finish()
    return term
}

extension LossObjective {
    init(config: [[String: Any]]) throws { self.init(terms: try config.map(makeLossTerm)) }
}
