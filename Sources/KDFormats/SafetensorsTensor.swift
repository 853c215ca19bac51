/// Element types of the safetensors format and their sizes in bytes.
public enum SafetensorsDType: String, CaseIterable, Sendable {
    case BOOL, U8, I8, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64

    public var byteSize: Int {
        switch self {
        case .BOOL, .U8, .I8: return 1
        case .I16, .U16, .F16, .BF16: return 2
        case .I32, .U32, .F32: return 4
        case .F64, .I64, .U64: return 8
        }
    }
}

/// One tensor of a safetensors file: dtype, shape (C order) and its raw little-endian bytes.
public struct SafetensorsTensor: Equatable, Sendable {
    public var dtype: SafetensorsDType
    public var shape: [Int]
    public var bytes: [UInt8]

    public init(dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) {
        self.dtype = dtype; self.shape = shape; self.bytes = bytes
    }

    /// Float32 values (stored little-endian).
    public init(shape: [Int], floats: UnsafeBufferPointer<Float>) {
        self.init(dtype: .F32, shape: shape, bytes: Self.littleEndianBytes(floats.lazy.map(\.bitPattern),
                                                                          count: floats.count))
    }

    public init(shape: [Int], floats: [Float]) {
        self = floats.withUnsafeBufferPointer { SafetensorsTensor(shape: shape, floats: $0) }
    }

    /// Float64 values.
    public init(shape: [Int], doubles: [Double]) {
        self.init(dtype: .F64, shape: shape, bytes: Self.littleEndianBytes(doubles.lazy.map(\.bitPattern),
                                                                          count: doubles.count))
    }

    /// Int64 values.
    public init(shape: [Int], int64s: [Int64]) {
        self.init(dtype: .I64, shape: shape, bytes: Self.littleEndianBytes(int64s, count: int64s.count))
    }

    /// The `count` values as little-endian bytes (the safetensors byte order on every host).
    static func littleEndianBytes<B: FixedWidthInteger>(_ values: some Sequence<B>, count: Int) -> [UInt8] {
        let size = MemoryLayout<B>.size
        var b = [UInt8](repeating: 0, count: count * size)
        b.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() { raw.storeBytes(of: v.littleEndian, toByteOffset: size * i, as: B.self) }
        }
        return b
    }

    /// Element count implied by the shape.
    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes implied by dtype and shape, nil on overflow.
    public var expectedByteCount: Int? {
        var n = dtype.byteSize
        for d in shape {
            guard d >= 0 else { return nil }
            let (m, o) = n.multipliedReportingOverflow(by: d)
            if o { return nil }
            n = m
        }
        return n
    }

    /// The values converted to Float (F32 exactly; F64, F16, BF16 and integer types by rounding).
    public func floatValues() -> [Float] {
        let n = elementCount
        return bytes.withUnsafeBytes { raw -> [Float] in
            func load<T: FixedWidthInteger>(_: T.Type, _ i: Int) -> T {
                T(littleEndian: raw.loadUnaligned(fromByteOffset: i * MemoryLayout<T>.size, as: T.self))
            }
            switch dtype {
            case .F32: return (0..<n).map { Float(bitPattern: load(UInt32.self, $0)) }
            case .F64: return (0..<n).map { Float(Double(bitPattern: load(UInt64.self, $0))) }
            case .F16: return (0..<n).map { Float(halfBits: load(UInt16.self, $0)) }
            case .BF16: return (0..<n).map { Float(bitPattern: UInt32(load(UInt16.self, $0)) << 16) }
            case .I64: return (0..<n).map { Float(load(Int64.self, $0)) }
            case .U64: return (0..<n).map { Float(load(UInt64.self, $0)) }
            case .I32: return (0..<n).map { Float(load(Int32.self, $0)) }
            case .U32: return (0..<n).map { Float(load(UInt32.self, $0)) }
            case .I16: return (0..<n).map { Float(load(Int16.self, $0)) }
            case .U16: return (0..<n).map { Float(load(UInt16.self, $0)) }
            case .I8: return (0..<n).map { Float(load(Int8.self, $0)) }
            case .U8, .BOOL: return (0..<n).map { Float(load(UInt8.self, $0)) }
            }
        }
    }

    /// Copies the values, converted to Float, into `dst` (`elementCount` values).
    public func copyFloats(into dst: UnsafeMutablePointer<Float>) {
        if dtype == .F32 {
            bytes.withUnsafeBytes { raw in
                for i in 0..<elementCount {
                    dst[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 * i,
                                                                                      as: UInt32.self)))
                }
            }
        } else {
            for (i, v) in floatValues().enumerated() { dst[i] = v }
        }
    }

    /// The values as Int64 (integer dtypes exactly, floats truncated toward zero when finite).
    public func int64Values() -> [Int64] {
        if dtype == .I64 {
            return bytes.withUnsafeBytes { raw in
                (0..<elementCount).map {
                    Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * $0, as: Int64.self))
                }
            }
        }
        return floatValues().map { $0.isFinite && abs($0) < 9.2e18 ? Int64($0) : 0 }
    }
}

extension Float {
    /// IEEE 754 binary16 bits to Float (portable: no Float16 on every platform).
    init(halfBits h: UInt16) {
        let sign = UInt32(h >> 15) << 31
        let exp = Int((h >> 10) & 0x1F), mant = UInt32(h & 0x3FF)
        if exp == 0 {
            let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
            self = sign != 0 ? -v : v
        } else if exp == 31 {
            self = Float(bitPattern: sign | 0x7F80_0000 | (mant << 13))
        } else {
            self = Float(bitPattern: sign | UInt32(exp - 15 + 127) << 23 | (mant << 13))
        }
    }
}
