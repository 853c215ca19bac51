/// A configuration error: names the file, the dotted key and what is wrong (with the YAML line when known).
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let key: String
    public let message: String
    public let line: Int?

    public init(file: String, key: String, message: String, line: Int? = nil) {
        self.file = file; self.key = key; self.message = message; self.line = line
    }

    public var description: String {
        let at = line.map { " (line \($0))" } ?? ""
        return key.isEmpty ? "\(file)\(at): \(message)" : "\(file): \(key): \(message)\(at)"
    }
}
