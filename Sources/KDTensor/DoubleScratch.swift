/// Float64 scratch memory drawn from the `BufferPool` (so `peakBytes` counts it): `count` doubles in
/// the storage of a Float tensor of `2·count` elements, bound back to Float when released.
public final class DoubleScratch {
    private let storage: Tensor
    public let ptr: UnsafeMutablePointer<Double>
    public let count: Int

    public init(_ count: Int) {
        self.count = count
        storage = Tensor(uninitializedShape: [2 * max(count, 1)])
        ptr = UnsafeMutableRawPointer(storage.ptr).bindMemory(to: Double.self, capacity: max(count, 1))
    }

    /// `count` doubles set to 0.
    public static func zeros(_ count: Int) -> DoubleScratch {
        let s = DoubleScratch(count)
        s.ptr.update(repeating: 0, count: count)
        return s
    }

    deinit { UnsafeMutableRawPointer(ptr).bindMemory(to: Float.self, capacity: storage.count) }
}
