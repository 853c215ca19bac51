import KDFormats

/// Errors of the data layer. Each names the file (or config field) and the offending values, and is
/// raised while the dataset, sampler and teacher files are opened, before training starts.
public enum DataError: Error, CustomStringConvertible, Equatable {
    /// A required file is missing.
    case missingFile(path: String, what: String)
    /// A `.npy` file that cannot be read or does not fit (the reader's message names file and reason).
    case npy(NPYError)
    /// A file exists but its content does not fit (size, layout, dtype, shape).
    case invalidFile(path: String, reason: String)
    /// A label outside `0..<classes`.
    case labelOutOfRange(path: String, index: Int, value: Int, classes: Int)
    /// Two files that must describe the same samples disagree on their count.
    case countMismatch(pathA: String, countA: Int, pathB: String, countB: Int)
    /// More ranks than samples in a (global or last partial) batch.
    case tooManyRanks(ranks: Int, batch: Int, reason: String)
    /// Fewer sample blocks than ranks in a batch (`train.deterministic` shares whole blocks).
    case tooFewBlocks(ranks: Int, batch: Int, blockSize: Int, reason: String)
    /// A configuration value that cannot be used.
    case invalidConfig(field: String, message: String)
    /// The prefetcher was shut down while a batch was requested.
    case prefetcherStopped

    /// The config key the error is about, when it is about one.
    public var configKey: String? {
        switch self {
        case let .invalidConfig(field, _): return field
        case .tooManyRanks: return "data.global_batch"
        case .tooFewBlocks: return "data.drop_last"
        default: return nil
        }
    }

    /// What is wrong, without the key `configKey` names (the caller places the key, e.g. at its `--set`).
    public var detail: String {
        if case let .invalidConfig(_, message) = self { return message }
        return description
    }

    public var description: String {
        switch self {
        case let .missingFile(p, w): return "\(p): missing \(w)"
        case let .npy(e): return e.description
        case let .invalidFile(p, r): return "\(p): \(r)"
        case let .labelOutOfRange(p, i, v, c): return "\(p): label \(v) at index \(i) is out of range 0..<\(c)"
        case let .countMismatch(a, na, b, nb):
            return "sample count mismatch: \(a) has \(na) samples but \(b) has \(nb)"
        case let .tooManyRanks(r, b, why):
            return "\(r) ranks but only \(b) samples in \(why): every rank needs at least one sample"
        case let .tooFewBlocks(r, b, s, why):
            return "\(r) ranks but \(why) of \(b) samples has \((b + s - 1) / s) block(s) of train.block_size \(s): "
                + "every rank needs at least one block (train.deterministic shares whole blocks); set "
                + "data.drop_last: true or change data.global_batch"
        case let .invalidConfig(f, m): return "config \(f): \(m)"
        case .prefetcherStopped: return "prefetcher: shut down while a batch was requested"
        }
    }
}
