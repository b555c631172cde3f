import Synchronization
import UnderstudyProtocol

/// Told about every change a disk server applies to its image.
///
/// Ordering rule: the server calls these after the change reached its image and *before* it
/// replies to the guest. QMP `stop` waits for the replies of all requests in flight, so once it
/// has returned every change of the epoch has been reported, and sealing then is complete.
public protocol DiskWriteObserver: AnyObject, Sendable {
    /// Bytes written or a range zeroed, at `offset` of the image.
    func diskChanged(offset: UInt64, data: DiskWriteData)
    /// Every change reported so far is durable on the local image.
    func diskFlushed()
}

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
