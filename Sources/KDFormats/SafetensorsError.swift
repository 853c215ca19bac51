/// Errors of the safetensors reader and writer. Every message names the file (or `<memory>`) and,
/// where one is involved, the tensor.
public enum SafetensorsError: Error, CustomStringConvertible, Equatable {
    /// The file could not be opened, read, written, synced or renamed.
    case io(file: String, message: String)
    /// The 8-byte header length or the JSON header is malformed.
    case invalidHeader(file: String, message: String)
    /// One tensor's entry is malformed (dtype, shape, offsets, byte count).
    case invalidTensor(file: String, tensor: String, message: String)
    /// A tensor the caller asked for is absent.
    case missingTensor(file: String, tensor: String)
    /// The stored checksum does not match the file (header and data) or, in older files, the data section.
    case checksumMismatch(file: String, expected: String, actual: String)

    public var description: String {
        switch self {
        case let .io(file, message):
            return "safetensors \(file): \(message)"
        case let .invalidHeader(file, message):
            return "safetensors \(file): invalid header: \(message)"
        case let .invalidTensor(file, tensor, message):
            return "safetensors \(file): tensor '\(tensor)': \(message)"
        case let .missingTensor(file, tensor):
            return "safetensors \(file): no tensor named '\(tensor)'"
        case let .checksumMismatch(file, expected, actual):
            return "safetensors \(file): checksum mismatch (stored sha256 \(expected), file has \(actual)): "
                + "the file is corrupted or was edited after it was written"
        }
    }
}
