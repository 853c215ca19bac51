import Foundation

/// A pool of float buffers keyed by element count.
///
/// A training step allocates the same shapes every step, so after the first step every allocation is
/// served from the free lists and nothing is returned to the system: no per-op allocation churn.
/// `peakBytes` is the high-water mark of bytes handed out (live tensors), which the benchmarks report.
public final class BufferPool: @unchecked Sendable {
    public static let shared = BufferPool()

    private var free: [Int: [UnsafeMutablePointer<Float>]] = [:]
    private var lock = pthread_mutex_t()
    public private(set) var bytesInUse = 0
    public private(set) var peakBytes = 0
    public private(set) var bytesCached = 0
    public private(set) var allocations = 0   // fresh allocations from the system
    public private(set) var reuses = 0        // allocations served from the pool
    /// Buffers beyond this many cached bytes go back to the system.
    public var maxCachedBytes = 4 << 30

    init() { pthread_mutex_init(&lock, nil) }

    public func take(_ count: Int) -> UnsafeMutablePointer<Float> {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        bytesInUse += bytes
        if bytesInUse > peakBytes { peakBytes = bytesInUse }
        if var list = free[count], let p = list.popLast() {
            free[count] = list
            bytesCached -= bytes
            reuses += 1
            return p
        }
        allocations += 1
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        return raw.bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public func give(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        bytesInUse -= bytes
        if bytesCached + bytes > maxCachedBytes {
            UnsafeMutableRawPointer(p).deallocate()
            return
        }
        free[count, default: []].append(p)
        bytesCached += bytes
    }

    /// Resets the high-water mark to the bytes in use now (benchmarks call it before measuring).
    public func resetPeak() {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        peakBytes = bytesInUse
    }

    /// Returns every cached buffer to the system.
    public func trim() {
        pthread_mutex_lock(&lock); defer { pthread_mutex_unlock(&lock) }
        for (_, list) in free { for p in list { UnsafeMutableRawPointer(p).deallocate() } }
        free.removeAll(); bytesCached = 0
    }
}

/// Reference-counted float storage drawn from the `BufferPool`; several tensors (reshapes) may share one.
public final class Storage: @unchecked Sendable {
    public let ptr: UnsafeMutablePointer<Float>
    public let count: Int

    /// Uninitialised storage of `count` floats.
    public init(count: Int) {
        self.count = count
        self.ptr = BufferPool.shared.take(count)
    }

    deinit { BufferPool.shared.give(ptr, count) }
}
