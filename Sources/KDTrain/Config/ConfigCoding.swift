import Foundation
import Yams

/// A config value with a fixed set of spellings (a kind, an algorithm, a mode): decoding names the
/// allowed ones, never falls back to a default.
public protocol ConfigChoice: RawRepresentable, CaseIterable, Codable, Equatable, Sendable
where RawValue == String {}

/// YAML keys are snake_case, Swift properties camelCase: `globalBatch` ↔ `global_batch`, `syncBN` ↔
/// `sync_bn`, `memoryLimitGB` ↔ `memory_limit_gb` (a run of capitals is one word).
func snakeCase(_ name: String) -> String {
    var out = ""
    let chars = Array(name)
    for (i, ch) in chars.enumerated() {
        if ch.isUppercase {
            let previousLower = i > 0 && chars[i - 1].isLowercase
            let endsRun = i > 0 && chars[i - 1].isUppercase && i + 1 < chars.count && chars[i + 1].isLowercase
            if previousLower || endsRun { out.append("_") }
            out += ch.lowercased()
        } else {
            out.append(ch)
        }
    }
    return out
}

/// Where each part of the tree being decoded came from: the file (lines from its nodes' marks) or a
/// `--set` override (named as such: its value was parsed on its own, so its "line 1" means nothing).
struct ConfigSource {
    let file: String
    /// Dotted key → the `--set` that wrote it (a mapping override records each key it set).
    var overridden: [String: String] = [:]
    /// The file's tree before defaults were merged in (for the line of a key that `validate` names).
    var fileTree: Node?

    /// The override that set `key` or a section above it, if any.
    func override(of key: String) -> String? {
        var k = key
        while true {
            if let o = overridden[k] { return o }
            guard let dot = k.lastIndex(of: ".") else { return nil }
            k = String(k[..<dot])
        }
    }

    /// The line of `key` in the file, when the file has it.
    func line(of key: String) -> Int? {
        var node = fileTree
        for part in key.split(separator: ".") {
            if let i = Int(part), let seq = node?.sequence, i < seq.count { node = seq[i]; continue }
            node = node?.mapping?[String(part)]
        }
        return node?.mark?.line
    }

    /// An error about `key`, located at its override, else in the file: the line of `node`, else `line`
    /// (the enclosing entry's), else the key's own.
    func error(_ key: String, _ message: String, node: Node? = nil, line fallback: Int? = nil) -> ConfigError {
        if let o = override(of: key) {
            return ConfigError(file: "--set", key: abbreviated(o, limit: 120), message: key + ": " + message)
        }
        return ConfigError(file: file, key: key, message: message,
                           line: node?.mark?.line ?? fallback ?? line(of: key))
    }

    /// `error` re-located: a `ConfigError` thrown without a line (by `validate`) gets the key's line or
    /// its override.
    func locate(_ e: ConfigError) -> ConfigError {
        guard e.line == nil, e.file == file, !e.key.isEmpty else { return e }
        return error(e.key, e.message)
    }
}

// MARK: - decoding

/// A `Decoder` over a Yams node tree in which every key is present (the defaults merged under the
/// user's file, `KDConfig.parse`): type errors name the dotted key, the file or override and the line.
final class ConfigNodeDecoder: Decoder {
    let node: Node
    let path: [String]
    let source: ConfigSource
    var codingPath: [CodingKey] { path.map { AnyKey($0) } }
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var key: String { path.joined(separator: ".") }

    init(node: Node, path: [String], source: ConfigSource) {
        self.node = node; self.path = path; self.source = source
    }

    func error(_ message: String, _ at: Node? = nil) -> ConfigError { source.error(key, message, node: at ?? node) }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard let m = node.mapping else { throw error("expected a mapping of keys, got \(describe(node))") }
        return KeyedDecodingContainer(KeyedNodeContainer<Key>(decoder: self, mapping: m))
    }

    func unkeyedContainer() throws -> UnkeyedDecodingContainer {
        guard let seq = node.sequence else { throw error("expected a list, got \(describe(node))") }
        return UnkeyedNodeContainer(decoder: self, items: Array(seq))
    }

    func singleValueContainer() throws -> SingleValueDecodingContainer { SingleNodeContainer(decoder: self) }

    func child(_ n: Node, _ name: String) -> ConfigNodeDecoder {
        ConfigNodeDecoder(node: n, path: path + [name], source: source)
    }

    /// A value of type `T` from this node: scalars by YAML type, choices by their spellings.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if let choice = T.self as? any ConfigChoice.Type { return try decodeChoice(choice) as! T }
        switch T.self {
        case is Int.Type:
            guard !isString(node), let v = node.int else {
                throw error("expected an integer, got \(describe(node))")
            }
            return v as! T
        case is Double.Type:
            guard !isString(node), let v = node.float ?? node.int.map(Double.init) else {
                throw error("expected a number, got \(describe(node))")
            }
            guard v.isFinite else { throw error("must be finite, got \(v)") }
            return v as! T
        case is Bool.Type:
            guard !isString(node), let v = node.bool else {
                throw error("expected true or false, got \(describe(node))")
            }
            return v as! T
        case is String.Type:
            guard case .scalar(let s) = node else { throw error("expected a string, got \(describe(node))") }
            return (isNull(node) ? "" : s.string) as! T
        default:
            return try T(from: self)
        }
    }

    func decodeChoice<C: ConfigChoice>(_ type: C.Type) throws -> C {
        let allowed = C.allCases.map(\.rawValue)
        guard case .scalar(let s) = node, let v = C(rawValue: s.string) else {
            throw error("must be one of \(allowed.joined(separator: ", ")), got \(describe(node))")
        }
        return v
    }
}

/// `'text'`, `a mapping`, `a list`: how a node is named in messages (values cut to 80 characters).
func describe(_ node: Node) -> String {
    switch node {
    case .scalar(let s): return "'\(abbreviated(s.string, limit: 80))'"
    case .mapping: return "a mapping"
    case .sequence: return "a list"
    case .alias: return "an alias"
    }
}

/// A scalar that is text, whatever it spells: quoted (`"8"`) or tagged `!!str` (`!!str 8`). Yams reads `8` out
/// of `!!str 8` as a number; YAML makes it the text "8", and so does the config.
func isString(_ n: Node) -> Bool {
    guard case .scalar(let s) = n else { return false }
    return s.style != .plain && s.style != .any || s.tag.description.hasSuffix(":str")
}

func isNull(_ n: Node) -> Bool {
    guard case .scalar(let s) = n else { return false }
    return s.tag.description.hasSuffix("null") || s.string == "~" || s.string == "null"
        || (s.string.isEmpty && s.style == .plain)
}

struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { stringValue = "\(intValue)"; self.intValue = intValue }
}

private struct KeyedNodeContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let decoder: ConfigNodeDecoder
    let mapping: Node.Mapping
    var codingPath: [CodingKey] { decoder.codingPath }
    var allKeys: [Key] { mapping.keys.compactMap { $0.string.flatMap { Key(stringValue: $0) } } }

    func name(_ key: Key) -> String { snakeCase(key.stringValue) }
    func contains(_ key: Key) -> Bool { mapping[name(key)] != nil }

    func value(_ key: Key) throws -> Node {
        guard let n = mapping[name(key)] else {
            throw decoder.source.error((decoder.path + [name(key)]).joined(separator: "."), "missing")
        }
        return n
    }

    func decodeNil(forKey key: Key) throws -> Bool { try isNull(value(key)) }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decoder.child(try value(key), name(key)).decode(T.self)
    }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let n = mapping[name(key)], !isNull(n) else { return nil }
        return try decoder.child(n, name(key)).decode(T.self)
    }
    func nestedContainer<N: CodingKey>(keyedBy type: N.Type, forKey key: Key) throws -> KeyedDecodingContainer<N> {
        try decoder.child(try value(key), name(key)).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> UnkeyedDecodingContainer {
        try decoder.child(try value(key), name(key)).unkeyedContainer()
    }
    func superDecoder() throws -> Decoder { decoder }
    func superDecoder(forKey key: Key) throws -> Decoder { decoder.child(try value(key), name(key)) }
}

private struct UnkeyedNodeContainer: UnkeyedDecodingContainer {
    let decoder: ConfigNodeDecoder
    let items: [Node]
    var currentIndex = 0
    var codingPath: [CodingKey] { decoder.codingPath }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    init(decoder: ConfigNodeDecoder, items: [Node]) { self.decoder = decoder; self.items = items }

    mutating func next() -> ConfigNodeDecoder {
        defer { currentIndex += 1 }
        return decoder.child(items[currentIndex], "\(currentIndex)")
    }
    mutating func decodeNil() throws -> Bool {
        guard isNull(items[currentIndex]) else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(T.self) }
    mutating func nestedContainer<N: CodingKey>(keyedBy type: N.Type) throws -> KeyedDecodingContainer<N> {
        try next().container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> UnkeyedDecodingContainer { try next().unkeyedContainer() }
    mutating func superDecoder() throws -> Decoder { next() }
}

private struct SingleNodeContainer: SingleValueDecodingContainer {
    let decoder: ConfigNodeDecoder
    var codingPath: [CodingKey] { decoder.codingPath }
    func decodeNil() -> Bool { isNull(decoder.node) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decoder.decode(T.self) }
}

// MARK: - encoding

/// An `Encoder` to a Yams node tree, keys in declaration order and snake_case, nil written as `~` (so
/// the defaults' tree names every key, optional ones included): the resolved config and the schema
/// the file is merged into.
final class ConfigNodeEncoder: Encoder {
    var codingPath: [CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    /// The value written so far: a mapping (as ordered pairs), a list, or a scalar.
    fileprivate var result = Slot()

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if result.pairs == nil { result.pairs = [] }
        return KeyedEncodingContainer(KeyedNodeEncoding<Key>(encoder: self))
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer {
        if result.items == nil { result.items = [] }
        return UnkeyedNodeEncoding(encoder: self)
    }
    func singleValueContainer() -> SingleValueEncodingContainer { SingleNodeEncoding(encoder: self) }

    /// `value` as a node.
    static func node<T: Encodable>(_ value: T) throws -> Node {
        if let choice = value as? any ConfigChoice { return Node(choice.rawValue) }
        if let plain = value as? PlainScalar { return Node(plain.text) }
        switch value {
        case let v as Int: return Node(String(v))
        case let v as Double: return Node("\(v)")
        case let v as Bool: return Node(v ? "true" : "false")
        case let v as String: return Node(v, Tag(.implicit), .doubleQuoted)
        default:
            let e = ConfigNodeEncoder()
            try value.encode(to: e)
            return e.result.node
        }
    }
}

/// A scalar written as the user wrote it (a loss parameter: `4`, `embedding`), unquoted.
struct PlainScalar: Encodable {
    let text: String
    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(text)
    }
}

fileprivate struct Slot {
    var pairs: [(String, Node)]?
    var items: [Node]?
    var scalar: Node?
    var node: Node {
        if let pairs { return .mapping(Node.Mapping(pairs.map { (Node($0.0), $0.1) })) }
        if let items { return .sequence(Node.Sequence(items, Tag(.implicit), .flow)) }
        return scalar ?? Node("~")
    }
}

private struct KeyedNodeEncoding<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let encoder: ConfigNodeEncoder
    var codingPath: [CodingKey] { encoder.codingPath }
    func put(_ key: Key, _ node: Node) { encoder.result.pairs!.append((snakeCase(key.stringValue), node)) }

    mutating func encodeNil(forKey key: Key) throws { put(key, Node("~")) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        put(key, try ConfigNodeEncoder.node(value))
    }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func encodeIfPresent(_ value: Int?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func encodeIfPresent(_ value: Double?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func encodeIfPresent(_ value: String?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func encodeIfPresent(_ value: Bool?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type,
                                                forKey key: Key) -> KeyedEncodingContainer<N> {
        fatalError("KDConfig sections encode their fields as values")
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer {
        fatalError("KDConfig sections encode their fields as values")
    }
    mutating func superEncoder() -> Encoder { encoder }
    mutating func superEncoder(forKey key: Key) -> Encoder { encoder }
}

private struct UnkeyedNodeEncoding: UnkeyedEncodingContainer {
    let encoder: ConfigNodeEncoder
    var codingPath: [CodingKey] { encoder.codingPath }
    var count: Int { encoder.result.items?.count ?? 0 }
    mutating func encodeNil() throws { encoder.result.items!.append(Node("~")) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        encoder.result.items!.append(try ConfigNodeEncoder.node(value))
    }
    mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
        fatalError("KDConfig lists hold values")
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { fatalError("KDConfig lists hold values") }
    mutating func superEncoder() -> Encoder { encoder }
}

private struct SingleNodeEncoding: SingleValueEncodingContainer {
    let encoder: ConfigNodeEncoder
    var codingPath: [CodingKey] { encoder.codingPath }
    mutating func encodeNil() throws { encoder.result.scalar = Node("~") }
    mutating func encode<T: Encodable>(_ value: T) throws { encoder.result.scalar = try ConfigNodeEncoder.node(value) }
}
