import Foundation

/// A configuration error: names the file, the dotted key and what is wrong (with the YAML line when known).
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String
    public let message: String
    public let line: Int?

    /// Messages are bounded (`maxMessageLength`): a parser quoting a pathological line (100 000 nested
    /// brackets) or a value echoed back must not print hundreds of kilobytes on every rank.
    public init(file: String, key: String, message: String, line: Int? = nil) {
        self.file = file; self.key = abbreviated(key, limit: 160)
        self.message = abbreviated(message, limit: ConfigError.maxMessageLength); self.line = line
    }

    public static let maxMessageLength = 600

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        return key.isEmpty ? "\(file)\(at): \(message)" : "\(file): \(key): \(message)\(at)"
    }
}

/// `text` cut to at most `limit` characters, keeping its start and end around
/// `… (N characters cut) …`, with newlines shown as `⏎` so that the message stays one line.
public func abbreviated(_ text: String, limit: Int) -> String {
    let flat = text.count > limit ? text : text.replacingOccurrences(of: "\n", with: " ⏎ ")
    guard flat.count > limit else { return flat }
    let keep = max(8, limit / 2 - 16)
    let head = String(flat.prefix(keep)), tail = String(flat.suffix(keep))
    let cut = "… (\(flat.count - 2 * keep) characters cut) …"
    return (head + cut + tail).replacingOccurrences(of: "\n", with: " ⏎ ")
}

/// `n` and `noun`, plural unless `n` is 1: `1 row`, `4 rows` (messages).
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

/// The offset of the first byte of `bytes` that does not start or continue a well-formed UTF-8
/// sequence (its length when all do).
func utf8Prefix(_ bytes: Data) -> Int {
    let b = [UInt8](bytes)
    var i = 0
    while i < b.count {
        let lead = b[i]
        let n = lead < 0x80 ? 1 : lead >> 5 == 0b110 ? 2 : lead >> 4 == 0b1110 ? 3 : lead >> 3 == 0b11110 ? 4 : 0
        guard n > 0, i + n <= b.count, b[(i + 1)..<(i + n)].allSatisfy({ $0 >> 6 == 0b10 }) else { return i }
        i += n
    }
    return i
}
