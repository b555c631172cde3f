import Synchronization
import UnderstudyProtocol

/// Collects the primary's disk changes per epoch: what arrives between two seals is one epoch's.
///
/// The record is held in memory, so it is capped: a backup that stops acknowledging (the
/// checkpoint loop stops sealing) or a long stretch between sessions must not let it grow without
/// bound. Past the cap the record is dropped at once and the next seal throws, so that the loss
/// ends the session and the next one copies the disk in full.
public final class DiskEpochRecorder: DiskWriteObserver {
    /// The default cap on bytes recorded between two seals.
    public static let defaultLimit = 512 << 20

    private struct Pending {
        var changes: [DiskChange] = []
        var bytes = 0
        /// Set once the cap was passed: what was recorded is gone until the loss is reported.
        var overflowed = false
    }

    private let pending = Mutex(Pending())
    /// Bytes (data and zeroed ranges) recorded between two seals, at most.
    public let limit: Int

    public init(limit: Int = DiskEpochRecorder.defaultLimit) {
        precondition(limit > 0)
        self.limit = limit
    }

    public func diskChanged(offset: UInt64, data: DiskWriteData) {
        pending.withLock {
            guard !$0.overflowed else { return }
            guard data.length <= limit - $0.bytes else {
                $0 = Pending(overflowed: true)
                return
            }
            $0.changes.append(.write(offset: offset, data: data))
            $0.bytes += data.length
        }
    }

    public func diskFlushed() {
        pending.withLock {
            guard !$0.overflowed else { return }
            $0.changes.append(.flush)
        }
    }

    /// Takes the changes since the previous seal, in order. Call with the guest paused (after QMP
    /// `stop` returned), so that they are exactly the epoch's.
    /// - Throws: `DiskError.recordOverflow` when more than `limit` bytes were written since the
    ///   previous seal: the changes are lost (recording starts afresh after this call).
    public func seal() throws(DiskError) -> [DiskChange] {
        let taken = pending.withLock { pending in
            defer { pending = Pending() }
            return pending
        }
        if taken.overflowed { throw .recordOverflow(limit: limit) }
        return taken.changes
    }

    /// Bytes written (data and zeroed ranges) since the previous seal.
    public var pendingBytes: Int { pending.withLock { $0.bytes } }
}
