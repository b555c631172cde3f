import Foundation
import UnderstudyProtocol

/// Where checkpoints come from: a VM under QEMU, or a synthetic guest for tests and benchmarks.
///
/// Ordering rules the primary relies on:
/// - `startTracking` arms write tracking *before* the initial sync reads any page, so a page
///   written while it is being read is caught by the next `collectDirtyPages` or `capture`.
/// - `capture` pauses the guest, takes every page written since the previous collection,
///   copies them, saves the device state, seals the epoch's disk writes and network output, and
///   resumes; only what it returns is epoch content.
public protocol CheckpointSource: AnyObject, Sendable {
    var identity: VMIdentity { get }
    /// The guest's memory as the agent maps it.
    var memory: UnsafeRawBufferPointer { get }
    /// What the initial sync reads its pages from while the guest runs. Guest memory when
    /// tracking sees every write. When tracking compares pages with a copy, that copy: a page
    /// read from guest memory could be sent with a value the guest later reverts, the comparison
    /// would then find it unchanged, and the backup would keep the transient value.
    var syncMemory: UnsafeRawBufferPointer { get }
    /// Arms write tracking.
    func startTracking() throws
    /// Pages written since the last collection, without pausing the guest (pre-copy rounds).
    func collectDirtyPages() throws -> [UInt64]
    /// Pauses the guest, captures the content of checkpoint `epoch`, and resumes the guest unless
    /// `resume` is false (a final checkpoint before a switchover, or a consistency check).
    func capture(epoch: UInt64, resume: Bool) throws -> CapturedCheckpoint
    /// Keeps the guest paused for `duration`, then lets it run again: slows a guest whose
    /// replica lags behind its recovery-point objective.
    func hold(for duration: Duration) throws
}

extension CheckpointSource {
    public var syncMemory: UnsafeRawBufferPointer { memory }

    /// For a guest that only runs inside `capture` (synthetic guests): waiting is holding it.
    public func hold(for duration: Duration) throws {
        Thread.sleep(forTimeInterval: duration.seconds)
    }
}

/// The content of one checkpoint, copied out while the guest was paused.
/// The source allocates it for the dirty set, fills `pages`, and sets the device state and pause.
public final class CapturedCheckpoint: @unchecked Sendable {
    public let pageSize: Int
    /// Page numbers in `pages` order.
    public let pageIndices: [UInt64]
    /// The pages' bytes, contiguous, `pageIndices.count * pageSize`.
    public let pages: UnsafeMutableRawBufferPointer
    public var deviceState: [UInt8] = []
    /// The guest's disk changes of the epoch, in order.
    public var diskChanges: [DiskChange] = []
    /// How long the guest was paused for this capture.
    public var pause: Duration = .zero
    private let buffer: UnsafeMutableRawBufferPointer

    public init(pageIndices: [UInt64], pageSize: Int) {
        self.pageSize = pageSize
        self.pageIndices = pageIndices
        buffer = StagingPool.shared.take(byteCount: pageIndices.count * pageSize)
        pages = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<(pageIndices.count * pageSize)])
    }

    /// Copies `pageIndices` out of guest `memory` (the copy out of a paused guest).
    public convenience init(copying pageIndices: [UInt64], from memory: UnsafeRawBufferPointer, pageSize: Int) {
        self.init(pageIndices: pageIndices, pageSize: pageSize)
        for (position, index) in pageIndices.enumerated() {
            page(at: position).copyMemory(from: UnsafeRawBufferPointer(rebasing: memory[(Int(index) * pageSize)..<((Int(index) + 1) * pageSize)]))
        }
    }

    deinit { StagingPool.shared.give(buffer) }

    public func page(at position: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: pages[(position * pageSize)..<((position + 1) * pageSize)])
    }
}

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
