import Synchronization
import UnderstudyProtocol

/// Collects the primary's disk changes per epoch: what arrives between two seals is one epoch's.
public final class DiskEpochRecorder: DiskWriteObserver {
    private struct Pending {
        var changes: [DiskChange] = []
        var bytes = 0
    }

    private let pending = Mutex(Pending())

    public init() {}

    public func diskChanged(offset: UInt64, data: DiskWriteData) {
        pending.withLock {
            $0.changes.append(.write(offset: offset, data: data))
            $0.bytes += data.length
        }
    }

    public func diskFlushed() {
        pending.withLock { $0.changes.append(.flush) }
    }

    /// Takes the changes since the previous seal, in order. Call with the guest paused (after QMP
    /// `stop` returned), so that they are exactly the epoch's.
    public func seal() -> [DiskChange] {
        pending.withLock { pending in
            defer { pending = Pending() }
            return pending.changes
        }
    }

    /// Bytes written (data and zeroed ranges) since the previous seal.
    public var pendingBytes: Int { pending.withLock { $0.bytes } }
}
