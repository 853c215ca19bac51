import Foundation

/// Reads one `loss:` entry (a YAML/JSON mapping) key by key; `finish()` rejects any key not read.
struct LossConfigReader {
    let dict: [String: Any]
    let kind: String
    private(set) var used: Set<String> = ["kind"]

    init(_ dict: [String: Any]) throws {
        self.dict = dict
        guard let k = dict["kind"] else { throw LossError.config("entry without 'kind': \(dict.keys.sorted())") }
        guard let s = k as? String else { throw LossError.config("'kind' must be a string, got \(k)") }
        kind = s.lowercased()
    }

    mutating func double(_ key: String, _ def: Double) throws -> Double {
        used.insert(key)
        guard let v = dict[key] else { return def }
        if let d = v as? Double { return d }
        if let i = v as? Int { return Double(i) }
        if let f = v as? Float { return Double(f) }
        if let n = v as? NSNumber { return n.doubleValue }
        if let s = v as? String, let d = Double(s) { return d }
        throw LossError.config("\(kind).\(key): expected a number, got '\(v)'")
    }

    mutating func float(_ key: String, _ def: Float) throws -> Float { Float(try double(key, Double(def))) }

    mutating func int(_ key: String) throws -> Int? {
        used.insert(key)
        guard let v = dict[key] else { return nil }
        if let i = v as? Int { return i }
        if let d = v as? Double, d.rounded() == d { return Int(d) }
        if let n = v as? NSNumber, n.doubleValue.rounded() == n.doubleValue { return n.intValue }
        if let s = v as? String, let i = Int(s) { return i }
        throw LossError.config("\(kind).\(key): expected an integer, got '\(v)'")
    }

    mutating func string(_ key: String, _ def: String, allowed: [String]) throws -> String {
        used.insert(key)
        guard let v = dict[key] else { return def }
        guard let s = v as? String, allowed.contains(s) else {
            throw LossError.config("\(kind).\(key): expected one of \(allowed), got '\(v)'")
        }
        return s
    }

    func finish() throws {
        let unknown = Set(dict.keys).subtracting(used).sorted()
        if !unknown.isEmpty {
            throw LossError.config("\(kind): unknown key(s) \(unknown.map { "'\($0)'" }.joined(separator: ", ")); known: \(used.sorted())")
        }
    }
}
