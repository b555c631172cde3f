import Foundation
import UnderstudyProtocol

/// Recycles staging buffers. The copy out of a paused guest is on the pause path: a fresh
/// allocation there would fault in every page (and unmap it again later, with TLB shootdowns),
/// while a recycled buffer is already mapped.
final class StagingPool: @unchecked Sendable {
    static let shared = StagingPool()
    /// Buffers kept at most; a few epochs in flight plus the one being captured.
    private static let keep = 8
    private static let granule = 1 << 20
    private let lock = NSLock()
    private var free: [UnsafeMutableRawBufferPointer] = []

    func take(byteCount: Int) -> UnsafeMutableRawBufferPointer {
        let size = max(1, (byteCount + StagingPool.granule - 1) / StagingPool.granule) * StagingPool.granule
        lock.lock()
        defer { lock.unlock() }
        if let index = free.firstIndex(where: { $0.count >= size }) { return free.remove(at: index) }
        return .allocate(byteCount: size, alignment: 4096)
    }

    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        lock.lock()
        defer { lock.unlock() }
        free.append(buffer)
        if free.count > StagingPool.keep {
            // Keep the largest: dirty sets grow and shrink, big buffers serve both.
            free.sort { $0.count > $1.count }
            free.removeLast().deallocate()
        }
    }
}
