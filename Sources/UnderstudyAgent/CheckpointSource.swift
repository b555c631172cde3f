import UnderstudyProtocol

/// Where checkpoints come from: a VM under QEMU, or a synthetic guest for tests and benchmarks.
///
/// Ordering rules the primary relies on:
/// - `startTracking` arms write tracking *before* the initial sync reads any page, so a page
///   written while it is being read is caught by the next `collectDirtyPages` or `capture`.
/// - `capture` pauses the guest, takes every page written since the previous collection,
///   copies them, saves the device state and resumes; only what it returns is epoch content.
public protocol CheckpointSource: AnyObject, Sendable {
    var identity: VMIdentity { get }
    /// The guest's memory as the agent maps it. Read while the guest runs only for the initial sync.
    var memory: UnsafeRawBufferPointer { get }
    /// Arms write tracking.
    func startTracking() throws
    /// Pages written since the last collection, without pausing the guest (pre-copy rounds).
    func collectDirtyPages() throws -> [UInt64]
    /// Pauses the guest, captures the checkpoint's content, resumes.
    func capture() throws -> CapturedCheckpoint
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
    /// How long the guest was paused for this capture.
    public var pause: Duration = .zero

    public init(pageIndices: [UInt64], pageSize: Int) {
        self.pageSize = pageSize
        self.pageIndices = pageIndices
        pages = .allocate(byteCount: max(pageIndices.count * pageSize, 1), alignment: 4096)
    }

    deinit { pages.deallocate() }

    public func page(at position: Int) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: pages[(position * pageSize)..<((position + 1) * pageSize)])
    }
}
