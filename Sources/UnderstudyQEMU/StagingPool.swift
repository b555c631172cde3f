import Foundation
import UnderstudyProtocol
import UnderstudySystem

/// Recycles staging buffers. The copy out of a paused guest is on the pause path: a fresh
/// allocation there would fault in every page (and unmap it again later, with TLB shootdowns),
/// while a recycled buffer is already mapped.
///
/// A burst (a page-cache fill, the first checkpoint after the initial sync) leaves buffers as
/// large as its dirty sets, up to `keep` of them. A free buffer not needed for `idleRelease` is
/// given back to the system, so that the agent does not hold a burst's memory for good; a later
/// burst faults its buffers in again before the stop (`reserve`, while the guest runs).
/// Ordering: buffers are given back only by `give` and `reserve`, never by `take`, which runs in
/// the pause; and on a thread of their own under SCHED_IDLE, in pieces (`releaseChunk`). Unmapping
/// 800 MiB at once took 48–82 ms here; in the pause bench's page-cache fill, a first version that
/// unmapped the dirty load's buffers whole on an ordinary thread had a 29.7 ms pause (in QEMU's
/// stop), the same run in pieces under SCHED_IDLE 1.59 ms at most.
final class StagingPool: @unchecked Sendable {
    static let shared = StagingPool()
    private static let granule = 1 << 20
    /// What one step of giving a buffer back covers: about 0.25 ms of MADV_DONTNEED here.
    static let releaseChunk = 4 << 20
    /// Buffers kept at most; a few epochs in flight plus the one being captured.
    private let keep: Int
    private let idleRelease: Duration
    /// CLOCK_MONOTONIC nanoseconds (injected by tests).
    private let now: @Sendable () -> UInt64
    private let lock = NSLock()
    /// The free buffers, and when each was last needed: given back, or relied on by `reserve`.
    private var free: [(buffer: AnonymousMemory, needed: UInt64)] = []

    /// - Parameters:
    ///   - idleRelease: how long a free buffer may go unneeded before it is given back to the
    ///     system. 30 s: a load that comes back in waves keeps its buffers, and a burst's memory
    ///     (each buffer up to 1.5 times its dirty set) is not held through the quiet after it.
    init(keep: Int = 8, idleRelease: Duration = .seconds(30), now: @escaping @Sendable () -> UInt64 = HostClock.monotonic) {
        self.keep = keep
        self.idleRelease = idleRelease
        self.now = now
    }

    /// The bytes of the free buffers held for reuse.
    var freeBytes: Int {
        lock.lock()
        defer { lock.unlock() }
        return free.reduce(0) { $0 + $1.buffer.bytes.count }
    }

    /// The smallest free buffer that holds `byteCount` (the larger ones stay for larger sets), or a
    /// new one.
    func take(byteCount: Int) -> AnonymousMemory {
        let size = Self.rounded(byteCount)
        lock.lock()
        defer { lock.unlock() }
        if let index = smallestFree(holding: size) { return free.remove(at: index).buffer }
        return AnonymousMemory(size: size, purpose: "checkpoint staging")
    }

    /// Makes sure a free buffer of at least `byteCount` is mapped, faulting a new one in now if
    /// there is none (then true): called while the guest runs, so that the pause's `take` finds it
    /// ready (and it counts as needed now, so that it is not given back before that take). A
    /// new buffer's first touch cost 2.7 µs a page on this machine alone and about 11 µs beside a
    /// busy guest (a 196 k-page pause copied for 2.2 s), against 0.4 µs into a mapped one.
    func reserve(byteCount: Int) -> Bool {
        let size = Self.rounded(byteCount)
        lock.lock()
        let ready = smallestFree(holding: size)
        if let ready { free[ready].needed = now() }
        let idle = takeIdle()
        lock.unlock()
        Self.release(idle)
        guard ready == nil else { return false }
        let buffer = AnonymousMemory(size: size, purpose: "checkpoint staging")
        Self.faultIn(buffer.bytes)
        give(buffer)
        return true
    }

    func give(_ buffer: AnonymousMemory) {
        lock.lock()
        free.append((buffer, now()))
        var released = takeIdle()
        if free.count > keep {
            // Keep the largest: dirty sets grow and shrink, big buffers serve both.
            free.sort { $0.buffer.bytes.count > $1.buffer.bytes.count }
            released.append(free.removeLast().buffer)
        }
        lock.unlock()
        Self.release(released)
    }

    /// Touches every page of `buffer`, so that writing it later takes no page faults.
    static func faultIn(_ buffer: UnsafeMutableRawBufferPointer) {
        for offset in stride(from: 0, to: buffer.count, by: Int(getpagesize())) { buffer[offset] = 0 }
    }

    private static func rounded(_ byteCount: Int) -> Int { max(1, (byteCount + granule - 1) / granule) * granule }

    /// Under the lock.
    private func smallestFree(holding size: Int) -> Int? {
        free.indices.filter { free[$0].buffer.bytes.count >= size }.min { free[$0].buffer.bytes.count < free[$1].buffer.bytes.count }
    }

    /// Removes the free buffers not needed for `idleRelease` (under the lock).
    private func takeIdle() -> [AnonymousMemory] {
        let time = now()
        let kept = free.partition { HostClock.span(from: $0.needed, to: time) > idleRelease }
        defer { free.removeSubrange(kept...) }
        return free[kept...].map(\.buffer)
    }

    /// Gives `buffers` back to the system piece by piece, then unmaps them (when the thread lets
    /// go of them), on a thread under SCHED_IDLE.
    private static func release(_ buffers: [AnonymousMemory]) {
        guard !buffers.isEmpty else { return }
        let releasing = Thread {
            IdlePriority.run {
                for buffer in buffers {
                    for start in stride(from: 0, to: buffer.bytes.count, by: releaseChunk) {
                        buffer.zero(bytes: start..<min(buffer.bytes.count, start + releaseChunk))
                    }
                }
            }
        }
        releasing.name = "staging-release"
        releasing.start()
    }
}
