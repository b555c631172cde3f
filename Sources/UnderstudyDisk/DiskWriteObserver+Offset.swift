import UnderstudyProtocol

/// Tells another observer about one disk's writes at that disk's place in a `DiskSet`: each disk
/// of a VM has its own NBD server, and all of them report into one recorder, in the order the
/// writes were replied to, so an epoch's writes to every disk form one ordered record.
public final class OffsetDiskWriteObserver: DiskWriteObserver {
    private let base: UInt64
    private let target: any DiskWriteObserver

    /// - Parameter base: where the disk starts in the set (`DiskSet.bases`).
    public init(base: UInt64, reportingTo target: any DiskWriteObserver) {
        self.base = base
        self.target = target
    }

    public func diskChanged(offset: UInt64, data: DiskWriteData) { target.diskChanged(offset: base + offset, data: data) }

    public func diskFlushed() { target.diskFlushed() }
}
