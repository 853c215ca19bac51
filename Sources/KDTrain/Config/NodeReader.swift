import KDLosses
import Yams

/// Reads one `loss:` entry strictly (its parameters are the loss kind's, read through
/// `LossParameterReader`): every getter marks its key as used, and `finish()` rejects any key that no
/// getter asked for, so a misspelt parameter is an error rather than silently ignored. Errors name the
/// file and line of the key, or the `--set` that gave it (`ConfigSource.error`).
struct NodeReader {
    let source: ConfigSource
    let path: String
    private var pairs: [(String, Node)] = []
    private var used: Set<String> = []
    let line: Int?

    init(source: ConfigSource, path: String, node: Node?) throws {
        self.source = source
        self.path = path
        self.line = node?.mark.map { $0.line }
        guard let node else { return }
        if case .scalar(let s) = node, s.string.isEmpty || s.tag.description.hasSuffix("null") { return }
        guard let map = node.mapping else {
            throw source.error(path, "expected a mapping of keys, got \(describe(node))", node: node)
        }
        for (k, v) in map {
            guard let key = k.string else {
                throw source.error(path, "keys must be strings", node: k)
            }
            if pairs.contains(where: { $0.0 == key }) {
                throw source.error(full(key), "duplicate key", node: k)
            }
            pairs.append((key, v))
        }
    }

    func full(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    mutating func node(_ key: String) -> Node? {
        used.insert(key)
        return pairs.first(where: { $0.0 == key })?.1
    }

    func error(_ key: String, _ message: String, _ node: Node? = nil) -> ConfigError {
        source.error(full(key), message, node: node, line: line)
    }

    mutating func int(_ key: String, _ def: Int, min lo: Int? = nil, max hi: Int? = nil) throws -> Int {
        guard let n = node(key), !isNull(n) else { return def }
        guard !isString(n), let v = n.int else {
            throw error(key, "expected an integer, got \(describe(n))", n)
        }
        if let lo, v < lo { throw error(key, "must be ≥ \(lo), got \(v)", n) }
        if let hi, v > hi { throw error(key, "must be ≤ \(hi), got \(v)", n) }
        return v
    }

    mutating func double(_ key: String, _ def: Double, min lo: Double? = nil, max hi: Double? = nil,
                         exclusiveMin: Bool = false) throws -> Double {
        guard let n = node(key), !isNull(n) else { return def }
        guard !isString(n), let v = n.float ?? n.int.map(Double.init) else {
            throw error(key, "expected a number, got \(describe(n))", n)
        }
        guard v.isFinite else { throw error(key, "must be finite, got \(v)", n) }
        if let lo, exclusiveMin ? v <= lo : v < lo {
            throw error(key, "must be \(exclusiveMin ? ">" : "≥") \(lo), got \(v)", n)
        }
        if let hi, v > hi { throw error(key, "must be ≤ \(hi), got \(v)", n) }
        return v
    }

    mutating func string(_ key: String, _ def: String) throws -> String {
        guard let n = node(key), !isNull(n) else { return def }
        guard case .scalar(let s) = n else { throw error(key, "expected a string, got \(describe(n))", n) }
        return s.string
    }

    mutating func choice(_ key: String, _ def: String, _ allowed: [String]) throws -> String {
        let v = try string(key, def)
        guard allowed.contains(v) else {
            throw error(key, "must be one of \(allowed.joined(separator: ", ")), got '\(v)'",
                        pairs.first { $0.0 == key }?.1)
        }
        return v
    }

    /// Rejects keys no getter asked for.
    func finish() throws {
        for (k, v) in pairs where !used.contains(k) {
            throw source.error(full(k), "unknown key", node: v)
        }
    }

    /// Every key except `except` with its scalar value as written (loss parameters, echoed into the
    /// resolved config); marks nothing as read.
    func scalars(except: Set<String>) throws -> [(String, String)] {
        try pairs.filter { !except.contains($0.0) }.map { k, v in
            guard case .scalar(let s) = v else {
                throw error(k, "expected a number or a string, got \(describe(v))", v)
            }
            return (k, s.string)
        }
    }
}

/// A `loss:` entry's parameters are read by the same strict reader as the rest of the config.
extension NodeReader: LossParameterReader {
    mutating func number(_ key: String, _ def: Double, min: Double?, max: Double?,
                         exclusiveMin: Bool) throws -> Double {
        try double(key, def, min: min, max: max, exclusiveMin: exclusiveMin)
    }

    /// A refused spelling present in the entry: an error naming `loss.N.key`, its line and the replacement.
    mutating func refuse(_ key: String, replacement: String) throws {
        guard let n = node(key) else { return }
        throw error(key, "is not a key of this loss: use \(replacement) instead", n)
    }

    mutating func optionalInteger(_ key: String, min lo: Int?) throws -> Int? {
        guard let n = node(key), !isNull(n) else { return nil }
        return try int(key, 0, min: lo)
    }
}
